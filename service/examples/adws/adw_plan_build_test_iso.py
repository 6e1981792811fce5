#!/usr/bin/env python3
"""Composite workflow: the example stages plan, build, test,
in order, in one run."""

from __future__ import annotations

from _adw import run_stages

STAGES = ("plan", "build", "test")

if __name__ == "__main__":
    raise SystemExit(run_stages(STAGES))
