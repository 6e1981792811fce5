"""The agent activity stream: what an agent did, as the board's messages (pure).

Two sources feed it, both turned into ``agent_activity`` events of the run:

- the coding agent's stream-json output, ``agents/<adw_id>/<agent>/raw_output.jsonl``,
  read by the run's watcher (actors/watcher.py): assistant ``text`` ->
  ``text_block``, ``tool_use`` -> ``tool_use_pre``, ``thinking`` ->
  ``thinking_block``, a user record's ``tool_result`` -> ``tool_use_post``,
  ``system`` and ``result`` records -> ``agent_log`` (the original server's
  mapping, adw_modules/agent_directory_monitor.py);
- the scripts' notifier (``POST /api/agent-state-update`` and the other
  endpoints of transport/http_api.py).

Bounds, so that a chatty agent cannot flood a board: a content field longer
than ``max_chars`` is cut, and the cut is said in the text and by
``truncated``; each run admits ``rate`` records a second (bursts of
``burst``), and what is over is coalesced: counted, not sent, and said in an
``agent_log`` note at most once a second.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from adwd.events.domain import AgentActivity, AgentOffsets, DomainEvent
from adwd.events.http import OutputChunkPost, PhaseTransitionPost, ScreenshotPost, SpecCreatedPost

MAX_CHARS = 8000  # of one content field (text, thinking, tool input or output)
RATE = 50.0  # records a second per run, on average
BURST = 200  # records at once per run
NOTE_EVERY_S = 1.0  # at most one "coalesced" note a second per run

Activity = tuple[str, dict[str, Any]]  # (the board's message type, its data)


def iso(epoch_s: float) -> str:
    """An ISO 8601 UTC time, as the board reads ``timestamp``."""
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="milliseconds")


def cut(text: str, limit: int = MAX_CHARS) -> tuple[str, bool]:
    """``text`` at most ``limit`` characters (plus the note of the cut), and whether cut."""
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}… [cut {len(text) - limit} of {len(text)} characters]", True


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content blocks of a tool result
        parts = [b.get("text", "") for b in value if isinstance(b, dict)]
        if all(isinstance(p, str) for p in parts) and any(parts):
            return "\n".join(p for p in parts if isinstance(p, str))
    return msgspec.json.encode(value).decode()


def _input(value: object, limit: int) -> tuple[dict[str, Any] | None, bool]:
    """A tool's input, or a cut preview of it when it is too large."""
    if value is None:
        return None, False
    if not isinstance(value, dict):
        value = {"value": value}
    text = msgspec.json.encode(value).decode()
    if len(text) <= limit:
        return value, False
    preview, _ = cut(text, limit)
    return {"preview": preview}, True


@dataclass
class AgentStream:
    """One run's stream: the stream-json mapping, the bounds, and what it
    remembers between records (tool names by ``tool_use_id``, the gate)."""

    adw_id: str
    workflow_type: str
    rate: float = RATE
    burst: int = BURST
    max_chars: int = MAX_CHARS
    _tokens: float = field(default=float(BURST), init=False)
    _last: float | None = field(default=None, init=False)
    _coalesced: int = field(default=0, init=False)
    _coalesced_total: int = field(default=0, init=False)
    _last_note: float = field(default=float("-inf"), init=False)
    _tools: dict[str, str] = field(default_factory=dict, init=False)
    _state: dict[str, Any] | None = field(default=None, init=False)  # adw_state.json, last seen

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)  # a run starts with a full burst

    @property
    def coalesced_total(self) -> int:
        """Records coalesced since the run started."""
        return self._coalesced_total

    # -- the gate --------------------------------------------------------------

    def _admit(self, now: float) -> bool:
        if self._last is not None:
            elapsed = max(
                0.0, now - self._last
            )  # a clock stepped back gives nothing, takes nothing
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self._coalesced += 1
        self._coalesced_total += 1
        return False

    def _note(self, now: float, *, final: bool = False) -> Activity | None:
        """The note of what was coalesced, at most once per NOTE_EVERY_S (and at the end)."""
        if not self._coalesced or (not final and now - self._last_note < NOTE_EVERY_S):
            return None
        count, self._coalesced, self._last_note = self._coalesced, 0, now
        message = (
            f"{count} agent records coalesced: over {self.rate:g} a second for this run "
            f"({self._coalesced_total} so far); the full output is in the agent's raw_output.jsonl"
        )
        return self._log(message, "WARNING", now, source="adwd")

    # -- building blocks -------------------------------------------------------

    def _data(self, now: float, **fields: Any) -> dict[str, Any]:
        return {"adw_id": self.adw_id, "timestamp": iso(now), **fields}

    def _log(self, message: str, level: str, now: float, **fields: Any) -> Activity:
        text, _ = cut(message, self.max_chars)
        return "agent_log", self._data(now, message=text, level=level, **fields)

    def _event(self, activity: Activity, source: str) -> AgentActivity:
        kind, data = activity
        return AgentActivity(
            adw_id=self.adw_id,
            workflow_type=self.workflow_type,
            kind=kind,
            data=data,
            source=source,
        )

    # -- stream-json records ---------------------------------------------------

    def from_record(self, record: object, agent: str, now: float) -> list[Activity]:
        """The board messages one stream-json record of ``agent`` becomes."""
        if not isinstance(record, dict):
            return []
        kind = record.get("type")
        message = record.get("message")
        blocks = message.get("content") if isinstance(message, dict) else None
        blocks = blocks if isinstance(blocks, list) else []
        session = record.get("session_id") if isinstance(record.get("session_id"), str) else None
        out: list[Activity] = []
        if kind == "assistant":
            for block in blocks:
                out.extend(self._assistant_block(block, now))
        elif kind == "user":
            for block in blocks:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    out.append(self._tool_result(block, now))
        elif kind == "system":
            out.append(self._system(record, agent, session, now))
        elif kind == "result":
            level = "ERROR" if record.get("is_error") else "SUCCESS"
            summary = (
                f"Agent {agent} finished ({record.get('subtype', '')}): "
                f"{record.get('num_turns', '?')} turns, {record.get('duration_ms', '?')} ms"
            )
            if isinstance(record.get("total_cost_usd"), int | float):
                summary += f", ${record['total_cost_usd']:.4f}"
            log = self._log(
                summary, level, now, source="raw_output.jsonl", agent_role=agent, session_id=session
            )
            out.append(log)
        return out

    def _assistant_block(self, block: object, now: float) -> list[Activity]:
        if not isinstance(block, dict):
            return []
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            text, truncated = cut(block["text"], self.max_chars)
            return [("text_block", self._data(now, content=text, truncated=truncated))]
        if kind == "thinking" and isinstance(block.get("thinking"), str) and block["thinking"]:
            text, truncated = cut(block["thinking"], self.max_chars)
            data = self._data(now, content=text, reasoning_type="thinking", truncated=truncated)
            return [("thinking_block", data)]
        if kind == "tool_use":
            name = str(block.get("name", ""))
            use_id = str(block.get("id", "")) or None
            if use_id:
                if len(self._tools) > 10_000:  # a bound on what is remembered
                    self._tools.clear()
                self._tools[use_id] = name
            given, truncated = _input(block.get("input"), self.max_chars)
            data = self._data(
                now,
                tool_name=name,
                tool_input=given,
                input=given,
                tool_use_id=use_id,
                truncated=truncated,
            )
            return [("tool_use_pre", data)]
        return []

    def _tool_result(self, block: dict[str, Any], now: float) -> Activity:
        use_id = str(block.get("tool_use_id", "")) or None
        output, truncated = cut(_as_text(block.get("content", "")), self.max_chars)
        failed = block.get("is_error") is True
        data = self._data(
            now,
            tool_name=self._tools.get(use_id or "", ""),
            tool_output=output,
            output=output,
            status="error" if failed else "success",
            success=not failed,
            error=output if failed else None,
            tool_use_id=use_id,
            truncated=truncated,
        )
        return "tool_use_post", data

    def _system(
        self, record: dict[str, Any], agent: str, session: str | None, now: float
    ) -> Activity:
        subtype = str(record.get("subtype", ""))
        level = "INFO"
        if subtype == "init":
            tools = record.get("tools")
            count = len(tools) if isinstance(tools, list) else 0
            model = record.get("model", "?")
            message = f"Agent session initialized (model: {model}, tools: {count})"
        elif subtype == "hook_response":
            stderr = str(record.get("stderr") or "")
            level = "ERROR" if record.get("exit_code") or stderr else "INFO"
            message = f"Hook '{record.get('hook_name', '')}' executed" + (
                f": {stderr[:200]}" if stderr else ""
            )
        elif subtype == "error":
            level = "ERROR"
            message = f"Agent error: {record.get('message', record.get('error', 'unknown'))}"
        else:
            message = f"Agent system record: {subtype or '(no subtype)'}"
        return self._log(
            message, level, now, source="raw_output.jsonl", agent_role=agent, session_id=session
        )

    # -- what the actor calls ----------------------------------------------------

    def records(
        self,
        items: list[tuple[str, object]],
        offsets: Mapping[str, list[int]] | None,
        now: float,
    ) -> list[DomainEvent]:
        """The events of what the watcher read: each item is ``(path, record)``
        (``path`` is ``<agent>/raw_output.jsonl``; ``record`` the decoded JSON, or
        an int: the size of a line too long or not JSON, skipped and noted).
        Ends with the offsets the watcher reached (None: an older batch, whose
        offsets a newer one already recorded), committed with them."""
        events: list[DomainEvent] = []
        for path, record in items:
            agent = path.split("/", 1)[0]
            if not path.endswith("raw_output.jsonl"):
                activities = self._file(path, record, now)
            elif isinstance(record, int):
                skipped = self._log(
                    f"A record of {record} bytes in {path} was skipped: longer than the "
                    "maximum record size, or not JSON.",
                    "WARNING",
                    now,
                    source="adwd",
                    agent_role=agent,
                )
                activities = [skipped]
            else:
                activities = self.from_record(record, agent, now)
            for activity in activities:
                if self._admit(now):
                    events.append(self._event(activity, path))
        note = self._note(now)
        if note is not None:
            events.append(self._event(note, "adwd"))
        if offsets is not None:
            events.append(
                AgentOffsets(
                    adw_id=self.adw_id, workflow_type=self.workflow_type, offsets=dict(offsets)
                )
            )
        return events

    def _file(self, path: str, record: object, now: float) -> list[Activity]:
        """A file the watcher announces: a screenshot, a spec, the ADW state."""
        if path == "adw_state.json" and isinstance(record, dict):
            before, self._state = self._state, record
            changed = sorted(
                k for k in set(before or {}) | set(record) if (before or {}).get(k) != record.get(k)
            )
            if before is not None and not changed:
                return []
            data = self._data(now, state=record, changed_fields=changed)
            return [("agent_updated", data)]
        size = record.get("size") if isinstance(record, dict) else None
        metadata = {"file_size": size, "file_name": path.rsplit("/", 1)[-1]}
        if path.startswith("specs/"):
            name = path.lower()
            kind = "patch" if "patch" in name else "review" if "review" in name else "plan"
            return [
                ("spec_created", self._data(now, spec_path=path, spec_type=kind, metadata=metadata))
            ]
        return [
            ("screenshot_available",
             self._data(now, screenshot_path=path, screenshot_type="review", metadata=metadata))
        ]  # fmt: skip

    def reported(self, activity: Activity, now: float) -> list[DomainEvent]:
        """The events of one notifier report (same gate as the stream)."""
        events: list[DomainEvent] = []
        if self._admit(now):
            events.append(self._event(activity, "notifier"))
        note = self._note(now)
        if note is not None:
            events.append(self._event(note, "adwd"))
        return events

    def final(self, now: float) -> list[DomainEvent]:
        """At the run's end: the note of what was coalesced since the last one."""
        note = self._note(now, final=True)
        return [] if note is None else [self._event(note, "adwd")]


# -- the notifier's reports (HTTP bodies already validated by msgspec) ----------


def notifier_activity(
    adw_id: str, event_type: str, data: Mapping[str, Any], now: float, limit: int = MAX_CHARS
) -> Activity:
    """The board message of a ``POST /api/agent-state-update`` (its ``event_type``
    and ``data``), as the original server broadcast it, both field names sent."""
    base: dict[str, Any] = {"adw_id": adw_id, "timestamp": iso(now)}

    def text(key: str) -> tuple[str | None, bool]:
        value = data.get(key)
        if value is None:
            return None, False
        return cut(value if isinstance(value, str) else _as_text(value), limit)

    if event_type == "state_change":
        keep = (
            "status", "workflow_name", "current_step", "message", "state_snapshot", "state",
            "changed_fields",
        )  # fmt: skip
        return "agent_updated", {**base, **{k: data[k] for k in keep if k in data}}
    if event_type == "log_entry":
        message, _ = text("message")
        return "agent_log", {
            **base,
            "message": message or "",
            "level": str(data.get("level", "INFO")),
            "source": "notifier",
            "details": text("details")[0],
            "context": data.get("context") if isinstance(data.get("context"), dict) else None,
        }
    if event_type == "file_operation":
        diff, truncated = text("diff")
        operation = str(data.get("operation", "modify"))
        return "file_changed", {
            **base,
            "file_path": str(data.get("file_path", "")),
            "operation": operation,
            "change_type": operation,
            "diff": diff,
            "summary": text("summary")[0],
            "lines_added": _int(data.get("lines_added")),
            "lines_removed": _int(data.get("lines_removed")),
            "truncated": truncated,
        }
    if event_type == "thinking":
        content, truncated = text("content")
        return "thinking_block", {
            **base,
            "content": content or "",
            "reasoning_type": data.get("reasoning_type"),
            "duration_ms": _int_or_none(data.get("duration_ms")),
            "sequence": _int_or_none(data.get("sequence")),
            "truncated": truncated,
        }
    if event_type == "tool_execution_pre":
        given, truncated = _input(
            data.get("input") if data.get("input") is not None else data.get("tool_input"), limit
        )
        return "tool_use_pre", {
            **base,
            "tool_name": str(data.get("tool_name", "")),
            "tool_input": given,
            "input": given,
            "tool_use_id": data.get("tool_use_id"),
            "truncated": truncated,
        }
    if event_type == "tool_execution_post":
        output, truncated = (
            text("output") if data.get("output") is not None else text("tool_output")
        )
        success = data.get("success")
        status = str(data.get("status") or ("error" if success is False else "success"))
        return "tool_use_post", {
            **base,
            "tool_name": str(data.get("tool_name", "")),
            "tool_output": output,
            "output": output,
            "status": status,
            "success": status == "success" if success is None else bool(success),
            "error": text("error")[0],
            "tool_use_id": data.get("tool_use_id"),
            "duration_ms": _int_or_none(data.get("duration_ms")),
            "truncated": truncated,
        }
    # text_block (the HTTP layer admits no other event_type)
    content, truncated = text("content")
    return "text_block", {
        **base,
        "content": content or "",
        "sequence": _int_or_none(data.get("sequence")),
        "truncated": truncated,
    }


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def posted_activity(body: object, now: float, limit: int = MAX_CHARS) -> Activity:
    """The board message of a notifier POST other than agent-state-update."""
    base = {"timestamp": iso(now)}
    if isinstance(body, PhaseTransitionPost):
        return "workflow_phase_transition", {
            "adw_id": body.adw_id,
            "phase_to": body.phase_to,
            **base,
            "phase_from": body.phase_from,
            "workflow_name": body.workflow_name,
            "metadata": body.metadata,
        }
    if isinstance(body, OutputChunkPost):
        content, truncated = cut(body.content, limit)
        return "agent_output_chunk", {
            "adw_id": body.adw_id,
            "agent_role": body.agent_role,
            "content": content,
            **base,
            "line_number": body.line_number,
            "total_lines": body.total_lines,
            "is_complete": body.is_complete,
            "truncated": truncated,
        }
    if isinstance(body, ScreenshotPost):
        return "screenshot_available", {
            "adw_id": body.adw_id,
            "screenshot_path": body.screenshot_path,
            "screenshot_type": body.screenshot_type,
            **base,
            "metadata": body.metadata,
        }
    assert isinstance(body, SpecCreatedPost), type(body)
    return "spec_created", {
        "adw_id": body.adw_id,
        "spec_path": body.spec_path,
        "spec_type": body.spec_type,
        **base,
        "metadata": body.metadata,
    }
