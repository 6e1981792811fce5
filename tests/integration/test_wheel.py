"""The wheel, built from the checkout and installed into a fresh venv, works on its own.

The rest of the suite runs against the editable install of the checkout, where the
layer folders (``events/``, ``service/``...) sit beside ``adwd/`` and the example
workflows are found in the source tree. None of that proves what a user gets from
``pip install adwd``: here the wheel is built, its RECORD is checked to install
nothing but the ``adwd`` namespace, it is installed (not editable) into a new venv,
and the installed ``adwd`` command serves a real WebSocket client and runs a bundled
example workflow from the installed copy, all from a directory outside the checkout.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from tests.integration.conftest import TIMEOUT, Client

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# pip's own limits on an index that does not answer, so an unreachable one fails in
# seconds; and a hard stop on the whole command (a normal build or install takes seconds).
PIP_NETWORK = ("--timeout", "10", "--retries", "2")
PIP_TIMEOUT = 120.0
# pip's messages when it cannot reach an index; only these turn a failure into a skip.
NETWORK_ERRORS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
)
# Checkout artefacts that are no source: never copied into the build tree.
NOT_SOURCE_ANYWHERE = (
    "__pycache__",
    "*.egg-info",
    ".venv*",
    ".*_cache",
    ".hypothesis",
    "node_modules",
)
NOT_SOURCE_AT_ROOT = {".git", "build", "dist", "data"}
SERVING = re.compile(r"adwd: serving ws://([^:/\s]+):(\d+)/ws/trigger")
LOG_HEADER = re.compile(r"^--- adwd: (?P<argv>.*) \(cwd (?P<cwd>.*)\) at ")


@dataclass(frozen=True)
class Installed:
    """A venv with the wheel installed, and where its ``adwd`` package landed."""

    venv: Path
    site_packages: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def adwd(self) -> Path:
        return self.venv / "bin" / "adwd"


def clean_env() -> dict[str, str]:
    """The environment without anything that could lead a process back to the checkout.

    PYTHONPATH (and the other PYTHON* variables), a VIRTUAL_ENV of the checkout's venv,
    and ADWD_* settings such as ADWD_PROJECT_DIR or ADWD_CONFIG would all let the
    installed package find the source tree instead of its own files.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "ADWD_")) and name != "VIRTUAL_ENV"
    }


def run(
    argv: Sequence[str | Path], cwd: Path, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end in ``cwd`` with the clean environment, capturing its output."""
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pip(args: Sequence[str | Path], python: Path | str, cwd: Path, step: str) -> None:
    """Run ``python -m pip ARGS``; skip the test only if pip failed to reach an index."""
    argv = [python, "-m", "pip", "--disable-pip-version-check", *args, *PIP_NETWORK]
    try:
        done = run(argv, cwd, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as expired:
        # Output captured before the kill is bytes, whatever text= says.
        output = b"".join(o for o in (expired.stdout, expired.stderr) if isinstance(o, bytes))
        skip_if_network_error(
            output.decode(errors="replace"), f"{step} (killed after {PIP_TIMEOUT} s)"
        )
        raise
    if done.returncode == 0:
        return
    output = done.stdout + done.stderr
    skip_if_network_error(output, step)
    pytest.fail(f"{step} failed with exit code {done.returncode}:\n{output[-4000:]}")


def skip_if_network_error(output: str, step: str) -> None:
    """Skip the test if pip's output says it could not reach a package index."""
    network = [line for line in output.splitlines() if any(e in line for e in NETWORK_ERRORS)]
    if network:
        pytest.skip(f"the package index is unreachable: {step} failed with: {network[0].strip()}")


def ignore_non_source(directory: str, names: list[str]) -> set[str]:
    """The ``shutil.copytree`` filter that leaves the checkout's artefacts behind."""
    ignored = set(shutil.ignore_patterns(*NOT_SOURCE_ANYWHERE)(directory, names))
    if Path(directory) == ROOT:
        ignored |= NOT_SOURCE_AT_ROOT & set(names)
    return ignored


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the project, built like a release would be (isolated build env)."""
    # Built from a copy: setuptools writes build/ and *.egg-info into the source tree,
    # which must not change the checkout others work in (nor race with a run of the
    # suite under another Python), and a stale build/lib there could smuggle deleted
    # modules into the wheel.
    source = tmp_path_factory.mktemp("source") / "adwd"
    shutil.copytree(ROOT, source, symlinks=True, ignore=ignore_non_source)
    dist = tmp_path_factory.mktemp("dist")
    pip(["wheel", "--no-deps", "--wheel-dir", dist, source], sys.executable, dist, "pip wheel")
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name for w in wheels] == [f"adwd-{VERSION}-py3-none-any.whl"]
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Installed:
    """A fresh venv with the wheel and its dependencies installed, as a user would."""
    base = tmp_path_factory.mktemp("installed")
    venv = base / "venv"
    created = run([sys.executable, "-m", "venv", venv], base, timeout=PIP_TIMEOUT)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    pip(["install", wheel], python, base, "pip install of the wheel")
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], base)
    assert purelib.returncode == 0, purelib.stderr
    return Installed(venv=venv, site_packages=Path(purelib.stdout.strip()))


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory away from the checkout: nothing of the source tree is on sys.path."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


class ServeProcess:
    """``adwd serve`` as a real process, its stderr read (and echoed) by a thread until EOF.

    The thread keeps the pipe drained for the whole life of the process, so the
    service's logging never blocks on a full pipe.
    """

    def __init__(self, argv: Sequence[str | Path], cwd: Path) -> None:
        self.lines: list[str] = []
        self._ports: queue.Queue[int | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            sys.stderr.write(line)  # pytest shows it if the test fails
            found = SERVING.search(line)
            if found:
                self._ports.put(int(found.group(2)))
        self._ports.put(None)  # EOF: the process is gone

    def port(self) -> int:
        """The port from the ``adwd: serving`` line, once the service listens."""
        try:
            port = self._ports.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"adwd serve did not say it listens within {TIMEOUT} s")
        if port is None:
            said = "".join(self.lines[-30:])  # complete: the reader saw EOF
            pytest.fail(f"adwd serve exited with {self.proc.wait()} before listening:\n{said}")
        return port

    def terminate(self) -> int:
        """SIGTERM, then the exit code once the process and its stderr have ended."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(timeout=TIMEOUT)  # EOF now that the process is gone
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Sequence[str | Path], Path], ServeProcess]]:
    """A starter of ServeProcess; whatever it started is killed and reaped at teardown."""
    started: list[ServeProcess] = []

    def start(argv: Sequence[str | Path], cwd: Path) -> ServeProcess:
        process = ServeProcess(argv, cwd)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def test_wheel_installs_nothing_but_the_adwd_namespace(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        rows = list(csv.reader(io.StringIO(archive.read(record).decode())))
        metadata = archive.read(f"adwd-{VERSION}.dist-info/METADATA").decode()
    paths = [row[0] for row in rows if row]
    assert sorted(paths) == sorted(names), "RECORD lists exactly the wheel's files"
    dist_info, data = f"adwd-{VERSION}.dist-info", f"adwd-{VERSION}.data"
    # Scripts a wheel carries (under .data/scripts) go to bin/, not site-packages.
    top_level = {p.split("/")[0] for p in paths if not p.startswith(f"{data}/scripts/")}
    assert top_level == {"adwd", dist_info}
    assert f"Version: {VERSION}" in metadata.splitlines()
    # The service runs these as scripts from its own directory: they must ship.
    examples = {p for p in paths if p.startswith("adwd/service/examples/adws/")}
    assert "adwd/service/examples/adws/adw_plan_iso.py" in examples
    assert "adwd/service/examples/adws/_adw.py" in examples


def test_installed_command_reports_the_version(installed: Installed, elsewhere: Path) -> None:
    for argv in ([installed.adwd, "--version"], [installed.python, "-m", "adwd", "--version"]):
        done = run(argv, elsewhere)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"adwd {VERSION}\n"


def test_only_adwd_is_importable_from_the_install(installed: Installed, elsewhere: Path) -> None:
    # Each import is tried in the installed interpreter, run from elsewhere so that
    # the cwd (first on sys.path with -c) holds no layer folder.
    probe = """
import importlib, json
outcome = {}
for name in ("events", "actors", "projections", "transport", "service", "adwd.client"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        outcome[name] = "missing" if exc.name == name else f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        outcome[name] = f"{type(exc).__name__}: {exc}"
    else:
        outcome[name] = "ok"
import adwd
print(json.dumps({"imports": outcome, "adwd": adwd.__file__, "version": adwd.__version__}))
"""
    done = run([installed.python, "-c", probe], elsewhere)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["imports"] == {
        "events": "missing",
        "actors": "missing",
        "projections": "missing",
        "transport": "missing",
        "service": "missing",
        "adwd.client": "ok",
    }
    assert Path(found["adwd"]).resolve().parent == (installed.site_packages / "adwd").resolve()
    assert found["version"] == VERSION


def test_installed_service_runs_a_bundled_workflow_over_websocket(
    installed: Installed,
    elsewhere: Path,
    tmp_path: Path,
    serve: Callable[[Sequence[str | Path], Path], ServeProcess],
) -> None:
    data_dir = (tmp_path / "data").resolve()
    server = serve([installed.adwd, "serve", "--port", "0", "--data-dir", data_dir], elsewhere)
    port = server.port()
    client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
    try:
        response = client.trigger("adw_plan_iso", issue_number=42)
        assert response["data"]["status"] == "accepted", response
        adw_id = response["data"]["adw_id"]
        final = client.wait_terminal(adw_id)
    finally:
        client.close()
    assert final["data"]["status"] == "completed", final

    plan = data_dir / "agents" / adw_id / "work" / "plan.md"
    assert plan.is_file()
    assert plan.read_text().startswith("# Plan for issue #42\n")
    logs_path = Path(response["data"]["logs_path"])
    assert logs_path == data_dir / "agents" / adw_id / "adw_plan_iso" / "execution.log"

    # The run's log header says what ran where: the installed copy of the example
    # script, under the venv's site-packages, run by the venv's Python.
    header = LOG_HEADER.match(logs_path.read_text().splitlines()[0])
    assert header is not None, logs_path.read_text()
    examples = (installed.site_packages / "adwd" / "service" / "examples").resolve()
    assert Path(header["cwd"]).resolve() == examples
    argv = header["argv"].split()
    assert Path(argv[0]).parent.resolve() == (installed.venv / "bin").resolve()
    assert argv[1] == "adws/adw_plan_iso.py"
    assert (examples / argv[1]).is_file()

    assert server.terminate() == 0  # SIGTERM is a graceful stop, not a death by signal
