"""Health rules: from a sample of the service to alerts and a health status. Pure.

Each rule watches one sampled value (docs/operations.md lists them with
their defaults). When a rule's alert fires, the service's health is at
least that rule's ``health`` (``degraded`` or ``unhealthy``); with no alert
firing it is ``healthy``. So health_status, /health and the alerts never
disagree: health is the worst firing alert.

The thresholds are settings (``[monitor.rules.<name>]`` in the config), so
an operator tunes a rule without a new release, and a test sets one low.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from adwd.actors.alerts import AlertLevel, AlertRule, HealthImpact

HealthState = Literal["healthy", "degraded", "unhealthy"]


class Sample(Struct, frozen=True, kw_only=True):
    """One look at the service. None: not measured on this platform or yet."""

    uptime_s: float
    cpu_percent: float  # the service and its workflow children, % of one core
    memory_rss_bytes: int  # the service and its children
    memory_percent: float  # of the machine's memory
    open_files: int | None
    children: int
    read_bytes: int  # disk I/O of the service and its children since they started
    write_bytes: int
    net_bytes_sent: int | None  # the machine's interfaces (psutil has no per-process figure)
    net_bytes_recv: int | None
    load: float  # 1-minute load average per CPU
    commit_max_s: float  # longest event-log commit since the previous sample
    commits: int  # commits since the previous sample
    batch_max: int  # largest commit since the previous sample, in events
    log_bytes: int  # events.db and its WAL
    disk_free_mb: float  # free space of the data directory's filesystem
    queue_length: int
    queue_age_s: float  # how long the oldest queued run has waited
    running: int
    failure_rate: float | None  # of the recent ended runs (None: too few)
    connections: int
    core_actors_down: int


class RuleSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rule's settings in the config; what is absent keeps the default."""

    enabled: bool = True
    raise_at: float | None = None
    clear_at: float | None = None
    for_s: Annotated[float, Meta(ge=0)] | None = None
    keep_firing_for_s: Annotated[float, Meta(ge=0)] | None = None
    level: AlertLevel | None = None
    health: HealthImpact | None = None


class MonitorSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[monitor]``: sampling, what clients get by default, the rules."""

    enabled: bool = True
    interval_s: Annotated[float, Meta(ge=0.05, le=3600)] = 5.0
    # Every connection gets health_status this often unless it chose otherwise (0: never).
    health_interval_s: Annotated[float, Meta(ge=0, le=86400)] = 30.0
    # And performance_metrics this often (0: only connections that ask for them).
    performance_interval_s: Annotated[float, Meta(ge=0, le=86400)] = 0.0
    # And connection_quality, each connection its own (0: only connections that ask).
    quality_interval_s: Annotated[float, Meta(ge=0, le=86400)] = 60.0
    # WebSocket keepalive: a ping every ping_interval_s; no pong within ping_timeout_s
    # closes the connection with 1011. The round trips are connection_quality's latency.
    ping_interval_s: Annotated[float, Meta(ge=0, le=3600)] = 20.0
    ping_timeout_s: Annotated[float, Meta(ge=0, le=3600)] = 20.0
    failure_window: Annotated[int, Meta(ge=1, le=10000)] = 20  # recent runs for failure_rate
    rules: dict[str, RuleSettings] = {}

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rules) - set(DEFAULT_RULES))
        if unknown:
            raise ValueError(
                f"Unknown monitor rule(s) {', '.join(unknown)}: use one of "
                f"{', '.join(DEFAULT_RULES)} (docs/operations.md)."
            )
        build_rules(
            self
        )  # thresholds that could never resolve fail at load, not at the first alert


DEFAULT_RULES: dict[str, AlertRule] = {
    rule.name: rule
    for rule in (
        AlertRule(
            name="memory_percent",
            component="service",
            raise_at=80,
            clear_at=70,
            for_s=60,
            keep_firing_for_s=60,
            message="adwd and its workflows use {value:.0f}% of the machine's memory",
            actions_required=("Lower max_concurrent", "Add memory to the machine"),
        ),
        AlertRule(
            name="event_log_commit_s",
            component="event_log",
            raise_at=1.0,
            clear_at=0.25,
            for_s=15,
            keep_firing_for_s=30,
            message="Event log commits take up to {value:.2f} s: clients see events late",
            actions_required=("Check the data directory's disk (iostat)", "Move data_dir to SSD"),
        ),
        AlertRule(
            name="queue_age_s",
            component="scheduler",
            raise_at=900,
            clear_at=300,
            keep_firing_for_s=60,
            message="The oldest queued run has waited {value:.1f} s",
            actions_required=("Raise max_concurrent", "Cancel runs nobody waits for"),
        ),
        AlertRule(
            name="disk_free_mb",
            component="event_log",
            raise_at=512,
            clear_at=1024,
            above=False,
            keep_firing_for_s=60,
            level="critical",
            health="unhealthy",
            message="Only {value:.0f} MiB free for the event log; adwd stops when it is full",
            actions_required=("Free disk space in the data directory", "adwd backup, then prune"),
        ),
        AlertRule(
            name="failure_rate",
            component="workflows",
            raise_at=0.5,
            clear_at=0.2,
            level="error",
            message="{value:.0%} of the recent runs failed",
            actions_required=(
                "Read the error_report of the failed runs",
                "adwd events --type run_failed",
            ),
        ),
        AlertRule(
            name="core_actors_down",
            component="service",
            raise_at=1,
            level="critical",
            health="unhealthy",
            message="{value:.0f} core actor(s) of adwd are down; it is stopping",
            actions_required=("Let the process supervisor restart adwd", "Read adwd's log"),
        ),
        AlertRule(
            name="connections",
            component="transport",
            raise_at=10000,
            clear_at=9000,
            for_s=30,
            keep_firing_for_s=60,
            message="{value:.0f} WebSocket connections are open",
            actions_required=("Check for clients that reconnect in a loop", "Add an instance"),
        ),
    )
}


def build_rules(settings: MonitorSettings) -> dict[str, AlertRule]:
    """The default rules with the config's changes; disabled rules left out."""
    out: dict[str, AlertRule] = {}
    for name, rule in DEFAULT_RULES.items():
        change = settings.rules.get(name)
        if change is None:
            out[name] = rule
            continue
        if not change.enabled:
            continue
        fields = {
            k: getattr(change, k)
            for k in ("raise_at", "clear_at", "for_s", "keep_firing_for_s", "level", "health")
            if getattr(change, k) is not None
        }
        if "raise_at" in fields and "clear_at" not in fields:
            fields["clear_at"] = None  # a new raise_at alone: clear at the same level
        out[name] = AlertRule(**{**_fields(rule), **fields})
    return out


def _fields(rule: AlertRule) -> dict[str, object]:
    return {k: getattr(rule, k) for k in rule.__struct_fields__}


def values(sample: Sample) -> dict[str, float | None]:
    """The value each rule watches, by rule name."""
    return {
        "memory_percent": sample.memory_percent,
        "event_log_commit_s": sample.commit_max_s,
        "queue_age_s": sample.queue_age_s,
        "disk_free_mb": sample.disk_free_mb,
        "failure_rate": sample.failure_rate,
        "core_actors_down": float(sample.core_actors_down),
        "connections": float(sample.connections),
    }


def health_of(firing: list[AlertRule]) -> HealthState:
    """The service's health: the worst of the firing alerts' impacts."""
    impacts = {rule.health for rule in firing}
    if "unhealthy" in impacts:
        return "unhealthy"
    return "degraded" if impacts else "healthy"


def describe(rule: AlertRule, value: float | None) -> str:
    """The rule's message for a value (the value left out when it is None)."""
    if value is None:
        return rule.message.split("{", 1)[0].strip() or rule.name
    try:
        return rule.message.format(value=value)
    except (ValueError, IndexError, KeyError):
        return f"{rule.message} ({value})"
