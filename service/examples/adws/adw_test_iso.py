#!/usr/bin/env python3
"""Test stage: run checks in a child Python process and write ``test-report.json``.

Always checks that the interpreter starts and reports its version; if the build stage left
``build/adw_generated.py``, also imports it in a fresh, isolated interpreter and runs its
``check()``. Exits 1 if any check fails (the report is written either way).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from _adw import AdwContext, context, exit_if_fail_requested, fail, log, progress, write_text

TIMEOUT_SECONDS = 30

MODULE_CHECK = """\
import sys
sys.path.insert(0, sys.argv[1])
import adw_generated
problems = adw_generated.check()
print("ok" if not problems else "; ".join(problems))
sys.exit(1 if problems else 0)
"""


def run_check(name: str, code: str, args: list[str], ctx: AdwContext) -> dict[str, object]:
    """Run ``code`` with ``python -I -c`` in the work dir and describe the outcome."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", code, *args],
            cwd=ctx.work_dir,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        returncode, output = proc.returncode, (proc.stdout + proc.stderr).strip()
    except subprocess.TimeoutExpired:
        returncode, output = None, f"timed out after {TIMEOUT_SECONDS}s"
    result: dict[str, object] = {
        "name": name,
        "passed": returncode == 0,
        "returncode": returncode,
        "output": output[-2000:],
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    last_line = output.splitlines()[-1] if output else ""
    log(f"check {name}: {'PASS' if result['passed'] else 'FAIL'} {last_line}".rstrip())
    return result


def main() -> int:
    """Run the checks, write test-report.json and return the exit code."""
    ctx = context()
    progress(5, "Stage: test", f"Testing adw {ctx.adw_id}")
    exit_if_fail_requested(ctx)

    results = [
        run_check("interpreter", "import sys; print(sys.version.split()[0])", [], ctx),
    ]
    progress(40, "Stage: test", "Interpreter check done")

    build_dir = ctx.work_dir / "build"
    if (build_dir / "adw_generated.py").is_file():
        results.append(run_check("generated-module", MODULE_CHECK, [str(build_dir)], ctx))
    else:
        log("no build/adw_generated.py (build stage not run); skipping the module check")
    progress(80, "Stage: test", "Writing test report")

    passed = all(bool(r["passed"]) for r in results)
    report = {
        "adw_id": ctx.adw_id,
        "issue_number": ctx.issue_number,
        "python": sys.executable,
        "passed": passed,
        "checks": results,
    }
    path = write_text(ctx.work_dir / "test-report.json", json.dumps(report, indent=2) + "\n")
    log(f"wrote {path}")
    summary = f"{sum(bool(r['passed']) for r in results)}/{len(results)} checks passed"
    if not passed:
        fail(f"tests failed: {summary}")
    progress(100, "Stage: test", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
