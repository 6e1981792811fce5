"""The deployment recipes in service/deploy/ agree with the code they deploy.

No container engine or systemd runs here, so the unit file and the
Containerfile are parsed and their key settings checked against the code:
env var names against ``ENV_VARS``, the stop timeout against the default
``shutdown_grace_s``, COPY sources against the checkout, the exposed port
against ``Config().port``. The health check command is run for real against
an in-process service. ``systemd-analyze verify`` checks the unit's
directives where it is installed.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from adwd.service.config import ENV_VARS, Config, load_config
from adwd.transport.server import TransportActor
from tests.integration.conftest import TIMEOUT, services

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "service" / "deploy"
UNIT = DEPLOY / "adwd.service"
ENV_FILE = DEPLOY / "adwd.env"
CONTAINERFILE = DEPLOY / "Containerfile"

KNOWN_VARS = {*ENV_VARS, "ADWD_CONFIG"}  # ADWD_CONFIG names the file; load_config reads it
# Beyond shutdown_grace_s, a stop waits for the log to flush and sockets to close;
# the scheduler itself allows each workflow actor grace + 10 s to stop.
STOP_MARGIN_S = 10.0

Unit = dict[str, list[tuple[str, str]]]


# -- parsers ------------------------------------------------------------------------


def parse_unit(text: str) -> Unit:
    """A systemd unit file: each section's ``(key, value)`` pairs, in order (keys repeat)."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue  # also inside a continuation: systemd drops comment lines there too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, val = line.partition("=")
        assert sep, f"not a setting: {line!r}"
        assert current is not None, f"a setting before any section: {line!r}"
        current.append((key.strip(), val.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    """Every value given to ``key`` in ``section``."""
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, section: str, key: str) -> str:
    """The value that counts (the last one given), which must exist."""
    found = values(unit, section, key)
    assert found, f"[{section}] has no {key}="
    return found[-1]


def timespan_s(text: str) -> float:
    """A systemd time span (``30``, ``45s``, ``1min 30s``) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0}
    units |= {"h": 3600.0, "hr": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    assert parts, text
    assert "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(float(number) * units[unit] for number, unit in parts)


def unit_environment(unit: Unit) -> dict[str, str]:
    """The variables set by ``Environment=`` lines."""
    env: dict[str, str] = {}
    for line in values(unit, "Service", "Environment"):
        for assignment in shlex.split(line):
            name, _, val = assignment.partition("=")
            env[name] = val
    return env


def env_file_entries() -> list[tuple[str, str, bool, str]]:
    """adwd.env's variables: (name, example value, commented out, the comment above it)."""
    entries = []
    comment = ""
    for line in ENV_FILE.read_text().splitlines():
        found = re.fullmatch(r"(#?)\s*([A-Z][A-Z0-9_]*)=(.*)", line)
        if found:
            entries.append((found[2], found[3], found[1] == "#", comment))
            comment = ""
        elif line.startswith("#"):
            comment += line.lstrip("# ") + " "
        else:
            comment = ""  # a blank line: the comment above belonged to something else
    return entries


def instructions(text: str) -> list[tuple[str, str]]:
    """A Containerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    result = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comment lines inside a continuation are dropped as well
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "the Containerfile ends inside a continuation"
    return result


def final_stage(text: str) -> list[tuple[str, str]]:
    """The instructions of the last stage: the image that runs."""
    found = instructions(text)
    last_from = max(i for i, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[last_from:]


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of CMD, ENTRYPOINT or VOLUME."""
    parsed = json.loads(args)
    assert isinstance(parsed, list), args
    return parsed


def container_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The variables the ENV instructions of a stage set (``KEY=value`` form)."""
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for assignment in shlex.split(args):
                name, sep, val = assignment.partition("=")
                assert sep, f"use ENV KEY=value: {args!r}"
                env[name] = val
    return env


def healthcheck_command(text: str = "") -> list[str]:
    """The HEALTHCHECK's command (exec form) of the Containerfile."""
    stage = final_stage(text or CONTAINERFILE.read_text())
    (args,) = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    _options, sep, command = args.partition(" CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args!r}"
    return exec_form(command)


# -- the systemd unit -----------------------------------------------------------------


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def test_the_unit_runs_adwd_serve_from_the_venv(unit: Unit) -> None:
    argv = shlex.split(value(unit, "Service", "ExecStart"))
    assert argv == ["/opt/adwd/venv/bin/adwd", "serve"]
    # exec, not notify: adwd does not speak sd_notify.
    assert value(unit, "Service", "Type") == "exec"
    assert value(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_unit_restarts_on_failure_but_not_on_a_config_error(unit: Unit) -> None:
    assert value(unit, "Service", "Restart") == "on-failure"
    assert timespan_s(value(unit, "Service", "RestartSec")) > 0
    assert "2" in value(unit, "Service", "RestartPreventExitStatus").split()


def test_the_unit_leaves_stopping_the_workflows_to_adwd(unit: Unit) -> None:
    assert value(unit, "Service", "KillMode") == "mixed"
    assert value(unit, "Service", "KillSignal") == "SIGTERM"
    timeout = timespan_s(value(unit, "Service", "TimeoutStopSec"))
    assert timeout > Config().shutdown_grace_s + STOP_MARGIN_S


def test_the_unit_keeps_the_data_in_its_state_directory(unit: Unit) -> None:
    assert value(unit, "Service", "StateDirectory") == "adwd"
    assert unit_environment(unit)["ADWD_DATA_DIR"] == "/var/lib/adwd"
    assert value(unit, "Service", "EnvironmentFile") == "-/etc/adwd/adwd.env"


def test_the_unit_sets_only_real_variables(unit: Unit) -> None:
    assert set(unit_environment(unit)) <= KNOWN_VARS


def test_the_unit_runs_as_a_dedicated_user_with_hardening(unit: Unit) -> None:
    assert value(unit, "Service", "User") not in ("root", "0")
    assert values(unit, "Service", "DynamicUser") in ([], ["no"], ["false"])
    assert value(unit, "Service", "NoNewPrivileges") == "true"
    assert value(unit, "Service", "PrivateTmp") == "true"
    assert value(unit, "Service", "ProtectSystem") == "strict"


def test_the_example_project_dir_is_writable_under_the_unit(unit: Unit) -> None:
    (project,) = [val for name, val, _, _ in env_file_entries() if name == "ADWD_PROJECT_DIR"]
    writable = [
        Path(path.lstrip("-+"))
        for line in values(unit, "Service", "ReadWritePaths")
        for path in line.split()
    ]
    assert any(Path(project).is_relative_to(path) for path in writable), (project, writable)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_accepts_every_directive(tmp_path: Path) -> None:
    # verify also wants ExecStart's program to exist: point it at one that does.
    text = re.sub(
        r"(?m)^ExecStart=.*$", f"ExecStart={sys.executable} -m adwd serve", UNIT.read_text()
    )
    copy = tmp_path / "adwd.service"
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # An unknown or invalid directive is only a warning naming the file: exit status 0.
    complaints = [line for line in result.stderr.splitlines() if "adwd.service" in line]
    assert result.returncode == 0, result.stderr
    assert not complaints, result.stderr


# -- the environment file ---------------------------------------------------------------


def test_the_env_file_lists_every_variable_commented_out() -> None:
    entries = env_file_entries()
    names = [name for name, _, _, _ in entries]
    assert len(names) == len(set(names)), names
    assert set(names) == KNOWN_VARS
    for name, _, commented_out, comment in entries:
        assert commented_out, f"{name}: examples stay commented out, so defaults apply"
        assert comment.strip(), f"{name} has no comment saying what it does"


def test_the_env_file_examples_are_valid_settings() -> None:
    examples = {name: val for name, val, _, _ in env_file_entries() if name != "ADWD_CONFIG"}
    config = load_config(env=examples)
    assert config.data_dir == "/var/lib/adwd"


# -- the Containerfile ------------------------------------------------------------------


@pytest.fixture(scope="module")
def containerfile() -> str:
    return CONTAINERFILE.read_text()


def test_every_copy_source_exists_and_the_package_is_complete(containerfile: str) -> None:
    copied: set[str] = set()
    for keyword, args in instructions(containerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        parts = shlex.split(args)
        if any(part.startswith("--from=") for part in parts):
            continue  # from another stage, not from the build context
        sources = [part for part in parts if not part.startswith("--")][:-1]
        assert sources, args
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            copied.add(source.rstrip("/"))
    # What `pip wheel .` reads: pyproject.toml, the readme, every package folder.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", pyproject["project"]["readme"], "adwd"}
    needed |= set(pyproject["tool"]["setuptools"]["package-dir"].values())
    assert needed <= copied, needed - copied


def test_the_image_is_python_slim_with_tini_as_pid_1(containerfile: str) -> None:
    stage = final_stage(containerfile)
    assert stage[0] == ("FROM", "python:3.12-slim")
    (entrypoint,) = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    assert exec_form(entrypoint) == ["/usr/bin/tini", "--"]
    installs = [args for keyword, args in stage if keyword == "RUN" and "apt-get install" in args]
    assert any("tini" in args.split() for args in installs)
    (cmd,) = [args for keyword, args in stage if keyword == "CMD"]
    assert exec_form(cmd) == ["adwd", "serve"]


def test_the_app_is_installed_with_pip_not_editable(containerfile: str) -> None:
    runs = [args for keyword, args in instructions(containerfile) if keyword == "RUN"]
    pip = [args for args in runs if re.search(r"\bpip (install|wheel)\b", args)]
    assert pip
    assert not any(re.search(r"(^|\s)(-e|--editable)\b", args) for args in pip)


def test_the_image_runs_as_a_non_root_user(containerfile: str) -> None:
    stage = final_stage(containerfile)
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].partition(":")[0]
    assert user not in ("root", "0")
    created = [args for keyword, args in stage if keyword == "RUN" and "useradd" in args]
    assert any(f"--uid {user}" in args for args in created), "USER is not the one created"


def test_the_data_volume_port_and_address(containerfile: str) -> None:
    stage = final_stage(containerfile)
    env = container_env(stage)
    assert set(env) - {"PATH"} <= KNOWN_VARS
    assert env["ADWD_HOST"] == "0.0.0.0"
    volumes = [v for keyword, args in stage if keyword == "VOLUME" for v in exec_form(args)]
    assert env["ADWD_DATA_DIR"] in volumes
    exposed = [args.split("/")[0] for keyword, args in stage if keyword == "EXPOSE"]
    assert str(Config().port) in exposed
    assert env.get("ADWD_PORT", str(Config().port)) == str(Config().port)


def test_the_healthcheck_asks_a_path_the_server_serves() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    code = command[2]
    compile(code, "HEALTHCHECK", "exec")
    (path,) = re.findall(r"'(/[\w/-]*)'", code)
    # The transport keeps no table of routes: check that its HTTP handler answers the path.
    # (Once /readyz exists, the health check moves to it.)
    assert f'path == "{path}"' in inspect.getsource(TransportActor._http_answer)


def test_the_healthcheck_passes_against_a_running_service_and_fails_without(
    tmp_path: Path,
) -> None:
    code = healthcheck_command()[2]

    def check(port: int) -> int:
        return subprocess.run(
            [sys.executable, "-c", code],
            env={"ADWD_PORT": str(port)},
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        ).returncode

    with services(tmp_path) as start:
        port = start().service.port
        assert check(port) == 0
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        unused = free.getsockname()[1]
    assert check(unused) != 0
