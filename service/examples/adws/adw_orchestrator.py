#!/usr/bin/env python3
"""The orchestrator: runs the stages it is given, as the ADW orchestrator does.

``adw_orchestrator.py <issue_number> <adw_id> --stages plan,build`` or
``--config '{"stages": ["plan", "build"]}'``; with neither, plan to document.
"""

from __future__ import annotations

import json
import sys

from _adw import fail, run_stages

DEFAULT = ("plan", "build", "test", "review", "document")


def stages_from(argv: list[str]) -> tuple[list[str], list[str]]:
    """The stages asked for, and the positional arguments left."""
    stages: list[str] = list(DEFAULT)
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--stages":
            stages = [s for s in next(args, "").split(",") if s]
        elif arg == "--config":
            try:
                config = json.loads(next(args, "{}"))
            except json.JSONDecodeError as exc:
                fail(f"--config is not JSON: {exc}", code=2)
            stages = list(config.get("stages") or DEFAULT)
        else:
            rest.append(arg)
    return stages, rest


if __name__ == "__main__":
    chosen, positional = stages_from(sys.argv[1:])
    sys.argv[1:] = positional  # the stages read <issue_number> <adw_id> as usual
    raise SystemExit(run_stages(chosen))
