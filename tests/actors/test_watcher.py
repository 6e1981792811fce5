"""The watcher's reading of agent files: complete lines once, from recorded offsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adwd.actors import watcher
from adwd.actors.watcher import read_new


def _file(root: Path) -> Path:
    path = root / "sdlc_planner" / "raw_output.jsonl"
    path.parent.mkdir(parents=True)
    return path


def test_complete_lines_once_and_a_partial_line_later(tmp_path: Path) -> None:
    path = _file(tmp_path)
    path.write_text(json.dumps({"n": 1}) + "\n" + '{"n": ')
    items, offsets, more = read_new(tmp_path, {})
    assert items == [("sdlc_planner/raw_output.jsonl", {"n": 1})]
    assert not more
    assert read_new(tmp_path, offsets)[0] == []  # nothing new: nothing again
    with path.open("a") as f:
        f.write("2}\n")
    items, offsets2, _ = read_new(tmp_path, offsets)
    assert items == [("sdlc_planner/raw_output.jsonl", {"n": 2})]
    assert offsets2["sdlc_planner/raw_output.jsonl"][1] == path.stat().st_size


def test_bad_and_too_long_lines_are_skipped_with_their_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path)
    monkeypatch.setattr(watcher, "MAX_LINE", 20)
    path.write_text('not json\n{"a": "' + "x" * 30 + '"}\n{"ok": 1}\n')
    items, _, _ = read_new(tmp_path, {})
    assert [record for _, record in items] == [8, 39, {"ok": 1}]


def test_a_replaced_or_truncated_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = _file(tmp_path)
    path.write_text('{"n": 1}\n{"n": 2}\n')
    _, offsets, _ = read_new(tmp_path, {})
    path.write_text('{"n": 3}\n')  # the agent ran again: a shorter file
    items, _, _ = read_new(tmp_path, offsets)
    assert [record for _, record in items] == [{"n": 3}]


def test_drain_numbers_each_batch_so_the_last_offsets_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path)
    path.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(100)))
    monkeypatch.setattr(watcher, "MAX_READ", 100)  # many batches
    delivered: list[object] = []
    w = watcher.Watcher(tmp_path, {}, lambda items, offsets: delivered.append(items))
    batches = w.drain()  # never started: drain reads everything itself
    assert not delivered
    serials = [serial for _, _, serial in batches]
    assert serials == sorted(set(serials))
    assert len(serials) > 5
    assert [r["n"] for items, _, _ in batches for _, r in items] == list(range(100))
    assert batches[-1][1]["sdlc_planner/raw_output.jsonl"][1] == path.stat().st_size
