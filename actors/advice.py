"""What a client is told it can do about a failure: ``recovery_instructions``.

Pure: the figures come from the lineage projection (a fold of the log), so
``adwd replay --until`` gives what a client was told.

``success_probability`` of an option after an error class is the mean of a
Beta posterior: a prior ``Beta(a, b)`` with ``a + b = PRIOR_WEIGHT`` and mean
``PRIOR_TRANSIENT`` for transient classes (nothing in the workflow to fix)
or ``PRIOR_OTHER`` otherwise, updated with how often that option, after that
class, led to a completed run: ``(a + completed) / (a + b + tried)``. With no
history it is the prior; with much, the observed rate. ``based_on`` is
``tried``. ``estimated_time`` is the median duration of the last completed
runs of the type the option starts (0 with no history: unknown).
"""

from __future__ import annotations

from adwd.actors.classify import BY_ID
from adwd.events.domain import RecoveryOffered
from adwd.projections.lineage import Failure, LineageProjection
from adwd.projections.metrics import expected_duration

PRIOR_WEIGHT = 2.0
PRIOR_TRANSIENT = 0.6
PRIOR_OTHER = 0.3
# The options a failure of a workflow offers, best guess first.
RETRY_OPTIONS = ("retry", "retry_heavy")
RESUME = "resume_from_stage"


def success_probability(lineage: LineageProjection, error_class: str, option: str) -> float:
    """The Beta posterior mean (see the module docstring), rounded to 4 places."""
    known = BY_ID.get(error_class)
    mean = PRIOR_TRANSIENT if known is not None and known.transient else PRIOR_OTHER
    a, b = PRIOR_WEIGHT * mean, PRIOR_WEIGHT * (1 - mean)
    tally = lineage.outcomes.get((error_class, option))
    tried, completed = (tally.tried, tally.completed) if tally else (0, 0)
    return round((a + completed) / (a + b + tried), 4)


def estimated_time(lineage: LineageProjection, workflow_type: str) -> float:
    """Median seconds of the type's recent completed runs; 0.0 when none."""
    return expected_duration(lineage.durations.get(workflow_type, ())) or 0.0


def offer(
    lineage: LineageProjection, failure: Failure, *, resumable: bool, resume_type: str
) -> RecoveryOffered:
    """The ``recovery_offered`` event for a failure the user must act on."""
    kind = failure.workflow_type
    options = [*RETRY_OPTIONS, *((RESUME,) if resumable else ())]
    figures = []
    for option in options:
        starts = resume_type if option == RESUME else kind
        tally = lineage.outcomes.get((failure.error_class, option))
        figures.append(
            {
                "option": option,
                "success_probability": success_probability(lineage, failure.error_class, option),
                "estimated_time": estimated_time(lineage, starts),
                "based_on": tally.tried if tally else 0,
            }
        )
    best = max(figures, key=lambda f: (f["success_probability"], -options.index(f["option"])))
    known = BY_ID.get(failure.error_class)
    steps = [
        *([known.action] if known is not None else []),
        f'Send {{"type":"recover","data":{{"error_id":"{failure.error_id}",'
        f'"option":"{best["option"]}"}}}} to start {kind} again for {failure.adw_id}.',
        "Follow the new run's status_update messages; it is linked to this failure "
        f"(retry_of {failure.error_id}).",
        'Or send option "cancel" to give the work up.',
    ]
    return RecoveryOffered(
        error_id=failure.error_id,
        adw_id=failure.adw_id,
        workflow_type=kind,
        error_class=failure.error_class,
        option=str(best["option"]),
        steps=steps,
        estimated_time=float(best["estimated_time"]),
        success_probability=float(best["success_probability"]),
        based_on=int(best["based_on"]),
        options=figures,
    )
