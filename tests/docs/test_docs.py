"""The docs cannot drift from the code: every message, error code, setting,
CLI command and progress-line field the code defines is documented, and
what protocol.md says is sent is what the service's code builds."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import msgspec
import pytest

from adwd.actors.progress import PREFIX, ProgressLine
from adwd.events.codec import decode_server, encode
from adwd.events.errors import CloseCode, ErrorCode
from adwd.events.testing import tagged_types
from adwd.events.wire import ClientMessage, ServerMessage
from adwd.service.cli import build_parser
from adwd.service.config import ENV_VARS, Config

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


# --------------------------------------------------------------------------
# What the service sends, derived from its code

SERVICE_ENTRY = "adwd.service.app"  # the running service: what it imports is what it runs
SERVER_TYPES = {cls.__name__: str(cls.__struct_config__.tag) for cls in tagged_types(ServerMessage)}


def _module_file(module: str) -> Path | None:
    """The source of an ``adwd.<layer>...`` module in this checkout (layers are
    top-level folders, mapped to ``adwd.<layer>`` by pyproject.toml)."""
    parts = module.split(".")
    if parts[0] != "adwd":
        return None
    base = ROOT.joinpath(*parts[1:]) if len(parts) > 1 else ROOT / "adwd"
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST) -> Iterator[str]:
    """Every module an import names, local imports inside functions included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)  # submodules


@cache
def _service_modules() -> tuple[Path, ...]:
    """The source files reachable by import from the service's entry module:
    the client library, test helpers and the like are not what the server sends."""
    entry = _module_file(SERVICE_ENTRY)
    assert entry is not None
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(ast.parse(path.read_text())):
            found = _module_file(module)
            if found is not None and found not in seen:
                todo.append(found)
    return tuple(sorted(seen))


def constructions(source: str) -> set[str]:
    """The tags of the server messages a piece of code builds (``Name(...)`` or
    ``wire.Name(...)`` for a ServerMessage class)."""
    tags = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in SERVER_TYPES:
                tags.add(SERVER_TYPES[name])
    return tags


@cache
def _sent_by_code() -> dict[str, list[str]]:
    """tag -> the service modules that build a message of that type."""
    sent: dict[str, list[str]] = {}
    for path in _service_modules():
        for tag in constructions(path.read_text()):
            sent.setdefault(tag, []).append(str(path.relative_to(ROOT)))
    return sent


def _section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading."""
    start = text.index(f"{heading}\n")
    end = text.find("\n#", start + len(heading))
    return text[start : end if end >= 0 else None]


def _documented_as_sent() -> set[str]:
    """The types in the table of protocol.md's "Sent today" section: the marker."""
    table = _section(_read("protocol.md"), "### Sent today")
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))


def test_the_scanner_finds_a_construction_and_ignores_other_uses() -> None:
    source = (
        "frame = encode(wire.Alert(AlertData(alert_id='a')))\n"
        "send(StatusUpdate(data, seq=1))\n"
        "if isinstance(message, Pong): pass\n"
    )
    assert constructions(source) == {"alert", "status_update"}


def test_the_service_modules_include_the_ones_that_send() -> None:
    names = {str(p.relative_to(ROOT)) for p in _service_modules()}
    assert {"actors/wireview.py", "actors/connection.py", "transport/server.py"} <= names
    assert "transport/client.py" not in names  # a client's messages are not sent by the server


def test_every_message_type_the_code_sends_is_documented_as_sent() -> None:
    documented = _documented_as_sent()
    undocumented = {tag: where for tag, where in _sent_by_code().items() if tag not in documented}
    assert not undocumented, (
        "built by the service but missing from the 'Sent today' table of docs/protocol.md "
        f"(type: modules): {undocumented}"
    )


def test_every_message_type_documented_as_sent_is_sent() -> None:
    never_built = _documented_as_sent() - set(_sent_by_code())
    assert not never_built, (
        f"in the 'Sent today' table of docs/protocol.md, but no service code builds: {never_built}"
    )


@pytest.mark.parametrize("tag", sorted(SERVER_TYPES.values()))
def test_a_type_not_sent_is_marked_so(tag: str) -> None:
    if tag in _sent_by_code():
        return
    heading = re.search(rf"^#+ `{tag}`(.*)$", _read("protocol.md"), re.MULTILINE)
    assert heading is not None, tag
    assert "(defined, not yet sent" in heading.group(1), tag


def _error_code_rows() -> dict[str, str]:
    """code -> its "Sent today?" cell in protocol.md's table of error codes."""
    table = _section(_read("protocol.md"), "### Error codes")
    return dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", table, re.MULTILINE))


def test_every_error_code_the_code_uses_is_documented_as_sent() -> None:
    """The "Sent today?" column of the error codes: "No" exactly for the codes
    no service code names (``ErrorCode.X``)."""
    used = set()
    for path in _service_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "ErrorCode":
                used.add(ErrorCode[node.attr].value)
    rows = _error_code_rows()
    assert set(rows) == {code.value for code in ErrorCode}
    reserved = {code for code, sent in rows.items() if sent.startswith("No")}
    assert not used & reserved, f"used by the service, documented as not sent: {used & reserved}"
    assert not set(rows) - reserved - used, (
        f"documented as sent, never used by the service: {set(rows) - reserved - used}"
    )


def _examples() -> list[str]:
    """Every one-line server message in protocol.md's examples."""
    lines = (line.strip() for line in _read("protocol.md").splitlines())
    return [
        line
        for line in lines
        if line.startswith('{"type":"') and line.split('"', 4)[3] in SERVER_TYPES.values()
    ]


@pytest.mark.parametrize("example", _examples(), ids=lambda e: e.split('"', 4)[3])
def test_every_server_message_example_is_what_the_code_encodes(example: str) -> None:
    """Decoding and encoding again gives the same text: no field is missing, extra,
    misnamed or out of order (a new field must be added to the examples)."""
    assert encode(decode_server(example)).decode() == example


# --------------------------------------------------------------------------
# architecture.md's map of the code

LAYERS = ("events", "projections", "actors", "transport", "service", "adwd")  # bottom to top


def _layer_modules() -> list[Path]:
    """Every module of the package (the bundled example workflows are scripts)."""
    return [
        path
        for layer in LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
        if path.name != "__init__.py" or layer == "adwd"
        if "examples" not in path.parts
    ]


def _layers_block() -> dict[str, str]:
    """layer -> its entry in the code block under "## Layers" of architecture.md."""
    block = _section(_read("architecture.md"), "## Layers").split("```")[1]
    entries: dict[str, str] = {}
    layer = ""
    for line in block.splitlines():
        if line and not line.startswith(" "):
            layer = line.split("/", 1)[0]
        entries[layer] = entries.get(layer, "") + line + "\n"
    return entries


@pytest.mark.parametrize("module", _layer_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_is_on_the_architecture_map(module: Path) -> None:
    entry = _layers_block().get(module.relative_to(ROOT).parts[0], "")
    assert re.search(rf"(?<![\w/]){module.stem}\.py\b", entry), (
        f"{module.relative_to(ROOT)} is missing from the Layers block of docs/architecture.md"
    )


@pytest.mark.parametrize("module", _layer_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_only(module: Path) -> None:
    """As architecture.md says: no layer imports one above it."""
    rank = LAYERS.index(module.relative_to(ROOT).parts[0])
    for name in _imports(ast.parse(module.read_text())):
        parts = name.split(".")
        if parts[0] == "adwd" and len(parts) > 1 and parts[1] in LAYERS:
            assert LAYERS.index(parts[1]) <= rank, f"{module.relative_to(ROOT)} imports {name}"
