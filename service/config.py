"""Configuration: defaults, then a TOML file, then ``ADWD_*`` variables, then flags.

Decoded and validated by msgspec; an invalid file gets an error that names
the field and says what to write instead.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from adwd.actors.auth import SecurityConfig
from adwd.actors.catalogue import DEFAULT_CATALOGUE, RetryPolicy, WorkflowSpec, check_template
from adwd.actors.classify import BY_ID
from adwd.actors.health import MonitorSettings
from adwd.events.errors import ConfigError
from adwd.service.logs import LogFormat

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
CLASS_IDS = tuple(BY_ID)
STAGE_TRIGGERS = {
    "plan": "adw_plan_iso",
    "build": "adw_build_iso",
    "test": "adw_test_iso",
    "review": "adw_review_iso",
    "document": "adw_document_iso",
}


class Config(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every setting of the service. See docs/operations.md."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8500
    data_dir: str = "data"
    max_concurrent: Annotated[int, Meta(ge=1)] = 2
    max_queue: Annotated[int, Meta(ge=1)] = 1000
    python: str = ""  # default: the interpreter running adwd
    project_dir: str = ""  # default: the bundled example workflows
    shutdown_grace_s: Annotated[float, Meta(ge=0)] = 5.0
    max_outbound_bytes: Annotated[int, Meta(ge=4096)] = 4 * 1024 * 1024
    log_lines_per_s: Annotated[float, Meta(gt=0)] = 20.0
    queue_status_interval_s: Annotated[float, Meta(ge=0)] = 1.0
    compression: Literal["deflate", "off"] = "deflate"
    compression_min_bytes: Annotated[int, Meta(ge=0)] = 1024
    connection_threads: Annotated[int, Meta(ge=1, le=64)] = 2
    log_format: LogFormat = "plain"  # "json": one object per line, for log collectors
    # Test-only: a ping whose request_id is "adwd-fault:<actor>" makes that actor
    # raise, to test supervision. Never turn it on in production.
    fault_injection: bool = False
    # Automatic retries of failed runs (docs/workflows.md, "Retries"); a workflow's
    # own ``retry`` table wins.
    retry: RetryPolicy = RetryPolicy()
    # An error class's own policy (e.g. [retry_classes."system.spawn"]), under a type's.
    retry_classes: dict[str, RetryPolicy] = {}
    # Drag-and-drop triggers: a card moved to a stage starts this workflow type.
    stage_triggers: dict[str, str] = msgspec.field(default_factory=lambda: dict(STAGE_TRIGGERS))
    workflows: dict[str, WorkflowSpec] = {}
    monitor: MonitorSettings = MonitorSettings()  # [monitor]: sampling, health rules, alerts
    # Security (docs/security.md). ``insecure``: listen beyond loopback without
    # authentication (refused otherwise); only from the --insecure flag or the file.
    security: SecurityConfig = SecurityConfig()
    insecure: bool = False

    def __post_init__(self) -> None:
        for name, spec in self.catalogue.items():
            check_template(name, spec)
        unknown_classes = sorted(set(self.retry_classes) - set(CLASS_IDS))
        if unknown_classes:
            raise ConfigError(
                f"retry_classes: unknown error class(es) {unknown_classes}; use: "
                f"{', '.join(CLASS_IDS)}."
            )
        known = {**DEFAULT_CATALOGUE, **self.workflows}
        for stage, workflow_type in self.stage_triggers.items():
            if workflow_type not in known:
                raise ConfigError(
                    f"stage_triggers.{stage}: {workflow_type!r} is not a workflow type; "
                    f"use one of: {', '.join(sorted(known))}."
                )
        problems = self.security.problems()
        if problems:
            raise ConfigError(f"Invalid [security]: {'; '.join(problems)}.")

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def project_path(self) -> Path:
        """The directory workflows run in (holding ``adws/``)."""
        return Path(self.project_dir).expanduser().resolve() if self.project_dir else EXAMPLES_DIR

    @property
    def python_path(self) -> str:
        """The Python that runs workflow scripts."""
        return self.python or sys.executable

    @property
    def catalogue(self) -> dict[str, WorkflowSpec]:
        """The enabled workflow types: the ADW defaults merged with the file's."""
        merged = dict(DEFAULT_CATALOGUE)
        merged.update(self.workflows)
        return {name: spec for name, spec in merged.items() if spec.enabled}


ENV_VARS = {
    "ADWD_HOST": "host",
    "ADWD_PORT": "port",
    "ADWD_DATA_DIR": "data_dir",
    "ADWD_MAX_CONCURRENT": "max_concurrent",
    "ADWD_PROJECT_DIR": "project_dir",
    "ADWD_PYTHON": "python",
    "ADWD_LOG_FORMAT": "log_format",
}


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config: defaults < file (``path`` or ``$ADWD_CONFIG``) < env < overrides."""
    raw: dict[str, Any] = {}
    path = path or env.get("ADWD_CONFIG") or None
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"Config file {path} does not exist; check --config.") from exc
        except OSError as exc:
            raise ConfigError(f"Cannot read config file {path}: {exc.strerror}.") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from exc
    for var, field in ENV_VARS.items():
        if var in env:
            raw[field] = env[var]
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    _over_defaults(raw)
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        source = f"config file {path}" if path else "settings"
        raise ConfigError(
            f"Invalid {source}: {exc}. See docs/operations.md for each setting."
        ) from exc


def _over_defaults(raw: dict[str, Any]) -> None:
    """A file's ``[workflows.<default type>]`` changes only the keys it names:
    ``timeout_s = 60`` for adw_build_iso keeps its stages and dependencies."""
    workflows = raw.get("workflows")
    if not isinstance(workflows, dict):
        return
    for name, entry in workflows.items():
        if name in DEFAULT_CATALOGUE and isinstance(entry, dict):
            workflows[name] = {**msgspec.to_builtins(DEFAULT_CATALOGUE[name]), **entry}
