#!/usr/bin/env python3
"""Patch: a direct change with no plan, as ADW's patch workflow is (the build stage)."""

from __future__ import annotations

from _adw import run_stages

if __name__ == "__main__":
    raise SystemExit(run_stages(("build",)))
