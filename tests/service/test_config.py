"""Configuration layering (defaults < TOML file < ADWD_* env < overrides) and its errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adwd.actors.catalogue import DEFAULT_CATALOGUE, DEFAULT_WORKFLOW_TYPES, WorkflowSpec
from adwd.events.errors import ConfigError
from adwd.service.config import EXAMPLES_DIR, load_config


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "adwd.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_env() -> None:
    config = load_config(env={})
    assert (config.host, config.port, config.max_concurrent, config.max_queue) == (
        "127.0.0.1", 8500, 2, 1000,
    )  # fmt: skip
    assert list(config.catalogue) == list(DEFAULT_WORKFLOW_TYPES)
    assert config.python_path == sys.executable
    assert config.project_path == EXAMPLES_DIR
    assert config.data_path == Path("data").resolve()


def test_file_settings_replace_defaults(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'host = "0.0.0.0"\nport = 9000\nproject_dir = "/proj"\n')
    config = load_config(path, env={})
    assert (config.host, config.port, config.max_concurrent) == ("0.0.0.0", 9000, 2)
    assert config.project_path == Path("/proj")


def test_file_workflow_adds_a_type_and_keeps_the_defaults(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        '[workflows.adw_sleep]\nargv = ["{python}", "adws/adw_sleep.py", "{adw_id}"]\n'
        "timeout_s = 30\nmax_concurrent = 1\n",
    )
    catalogue = load_config(path, env={}).catalogue
    assert set(catalogue) == {*DEFAULT_WORKFLOW_TYPES, "adw_sleep"}
    assert catalogue["adw_sleep"] == WorkflowSpec(
        argv=("{python}", "adws/adw_sleep.py", "{adw_id}"), timeout_s=30.0, max_concurrent=1
    )
    assert catalogue["adw_plan_iso"] == DEFAULT_CATALOGUE["adw_plan_iso"]


def test_a_file_entry_for_a_default_type_changes_only_what_it_names(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[workflows.adw_build_iso]\nstart_to_close_s = 60\n")
    build = load_config(path, env={}).catalogue["adw_build_iso"]
    assert build.attempt_timeout_s == 60.0
    assert (build.stages, build.requires) == (("build",), ("plan",))


def test_a_stage_trigger_naming_no_workflow_is_refused(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[stage_triggers]\nplan = "adw_plan"\n')
    with pytest.raises(ConfigError, match=r"stage_triggers\.plan: 'adw_plan' is not a workflow"):
        load_config(path, env={})


def test_a_bad_stage_in_the_catalogue_is_refused(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[workflows.x]\nstages = ["plan", "deploy"]\n')
    with pytest.raises(ConfigError, match=r"workflows\.x\.stages: unknown stage"):
        load_config(path, env={})


def test_disabled_workflow_leaves_the_catalogue(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[workflows.adw_ship_iso]\nenabled = false\n")
    catalogue = load_config(path, env={}).catalogue
    assert "adw_ship_iso" not in catalogue
    assert set(catalogue) == set(DEFAULT_WORKFLOW_TYPES) - {"adw_ship_iso"}


def test_config_file_is_found_through_adwd_config(tmp_path: Path) -> None:
    path = _toml(tmp_path, "max_queue = 7\n")
    assert load_config(env={"ADWD_CONFIG": str(path)}).max_queue == 7


def test_env_overrides_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'port = 9000\nhost = "0.0.0.0"\n')
    env = {"ADWD_PORT": "9100", "ADWD_MAX_CONCURRENT": "5", "ADWD_PYTHON": "/opt/py"}
    config = load_config(path, env=env)
    assert (config.port, config.host, config.max_concurrent) == (9100, "0.0.0.0", 5)
    assert config.python_path == "/opt/py"


def test_overrides_beat_env_and_none_overrides_are_ignored(tmp_path: Path) -> None:
    path = _toml(tmp_path, "port = 9000\n")
    env = {"ADWD_PORT": "9100", "ADWD_HOST": "10.0.0.1"}
    config = load_config(path, env=env, overrides={"port": 9200, "host": None})
    assert (config.port, config.host) == (9200, "10.0.0.1")


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = _toml(tmp_path, "max_concurency = 3\n")
    with pytest.raises(ConfigError, match="max_concurency") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_unknown_workflow_key_is_named(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[workflows.x]\ntimeout = 3\n")
    with pytest.raises(ConfigError, match="timeout"):
        load_config(path, env={})


def test_unknown_placeholder_in_argv(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[workflows.x]\nargv = ["{python}", "{script}"]\n')
    with pytest.raises(ConfigError, match=r"workflows\.x: bad placeholder.*\{script\}"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("port = 70000\n", "port"),
        ("max_concurrent = 0\n", "max_concurrent"),
        ('max_queue = "lots"\n', "max_queue"),
        ("max_outbound_bytes = 10\n", "max_outbound_bytes"),
    ],
)
def test_invalid_values_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(_toml(tmp_path, text), env={})


def test_invalid_env_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="port"):
        load_config(env={"ADWD_PORT": "eighty"})


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "port = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path, env={})


def test_attribute_placeholder_in_argv(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[workflows.x]\nargv = ["{python.version}"]\n')
    with pytest.raises(ConfigError):
        load_config(path, env={})


def test_a_retry_policy_for_an_unknown_error_class_is_refused(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[retry_classes."system.oops"]\nmaximum_attempts = 2\n')
    with pytest.raises(ConfigError, match=r"retry_classes: unknown error class.*system\.oops"):
        load_config(path, env={})
    ok = _toml(tmp_path, '[retry_classes."system.spawn"]\nmaximum_attempts = 5\n')
    assert load_config(ok, env={}).retry_classes["system.spawn"].maximum_attempts == 5
