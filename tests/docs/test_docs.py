"""The docs cannot drift from the code: every message, error code, setting,
CLI command and progress-line field the code defines is documented."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from adwd.actors.progress import PREFIX, ProgressLine
from adwd.events.errors import CloseCode, ErrorCode
from adwd.events.wire import ClientMessage, ServerMessage
from adwd.service.cli import build_parser
from adwd.service.config import ENV_VARS, Config
from tests.strategies import tagged_types

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _read(name: str) -> str:
    return (DOCS / name).read_text()


@pytest.mark.parametrize(
    "cls", tagged_types(ClientMessage) + tagged_types(ServerMessage), ids=lambda c: c.__name__
)
def test_every_message_type_has_a_section(cls: type[msgspec.Struct]) -> None:
    tag = cls.__struct_config__.tag
    assert re.search(rf"^#+ `{tag}`", _read("protocol.md"), re.MULTILINE), tag


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_is_documented(code: ErrorCode) -> None:
    assert f"`{code.value}`" in _read("protocol.md")


@pytest.mark.parametrize("code", list(CloseCode), ids=str)
def test_every_close_code_is_documented(code: CloseCode) -> None:
    assert f"| {code.value} |" in _read("protocol.md")


@pytest.mark.parametrize("field", Config.__struct_fields__)
def test_every_setting_is_documented(field: str) -> None:
    assert f"`{field}`" in _read("operations.md")


@pytest.mark.parametrize("var", [*sorted(ENV_VARS), "ADWD_CONFIG"])
def test_every_environment_variable_is_documented(var: str) -> None:
    assert f"`{var}`" in _read("operations.md")


def test_every_cli_command_and_flag_is_documented() -> None:
    text = _read("cli.md")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():  # type: ignore[union-attr]
        assert f"adwd {name}" in text, name
        for action in command._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}`" in text, f"adwd {name} {flag}"


def test_progress_line_format_is_documented() -> None:
    text = _read("workflows.md")
    assert PREFIX.decode().strip() in text
    for field in ProgressLine.__struct_fields__:
        assert f"`{field}`" in text


def test_readme_leads_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```", 2)[1]
    assert "make run" in first_block
    assert "make test" in first_block
