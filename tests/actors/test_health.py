"""Health rules: the config's changes to the defaults, and health as the worst firing alert."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from adwd.actors.alerts import AlertRule
from adwd.actors.health import (
    DEFAULT_RULES,
    MonitorSettings,
    RuleSettings,
    build_rules,
    describe,
    health_of,
)
from adwd.service.config import load_config


def test_a_rule_changed_in_the_config_keeps_what_it_did_not_change() -> None:
    settings = MonitorSettings(
        rules={
            "queue_age_s": RuleSettings(raise_at=60, clear_at=30, for_s=5),
            "connections": RuleSettings(enabled=False),
        }
    )
    rules = build_rules(settings)
    assert "connections" not in rules
    queue = rules["queue_age_s"]
    assert (queue.raise_at, queue.clear_level, queue.for_s) == (60, 30, 5)
    assert queue.keep_firing_for_s == DEFAULT_RULES["queue_age_s"].keep_firing_for_s
    # A new raise_at alone clears at the same level (the default clear_at could be above it).
    alone = build_rules(MonitorSettings(rules={"queue_age_s": RuleSettings(raise_at=100)}))
    assert alone["queue_age_s"].clear_level == 100


def test_unknown_rules_and_impossible_thresholds_are_config_errors() -> None:
    with pytest.raises(msgspec.ValidationError, match="Unknown monitor rule"):
        msgspec.convert({"rules": {"memroy_percent": {}}}, MonitorSettings)
    with pytest.raises(msgspec.ValidationError, match="could never resolve"):
        msgspec.convert({"rules": {"disk_free_mb": {"clear_at": 10}}}, MonitorSettings)


def test_the_monitor_section_of_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "adwd.toml"
    path.write_text("[monitor]\ninterval_s = 1\n[monitor.rules.failure_rate]\nraise_at = 0.9\n")
    config = load_config(path, env={})
    assert config.monitor.interval_s == 1
    assert build_rules(config.monitor)["failure_rate"].raise_at == 0.9


def test_health_is_the_worst_firing_impact() -> None:
    degraded = AlertRule(name="a", component="c", raise_at=1)
    unhealthy = AlertRule(name="b", component="c", raise_at=1, health="unhealthy")
    assert health_of([]) == "healthy"
    assert health_of([degraded]) == "degraded"
    assert health_of([degraded, unhealthy]) == "unhealthy"


def test_every_default_message_formats_its_value() -> None:
    for rule in DEFAULT_RULES.values():
        assert "{" not in describe(rule, 0.5), rule.name
        assert describe(rule, None)
