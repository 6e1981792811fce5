#!/usr/bin/env python3
"""Document stage: write ``docs.md``, an inventory of the work dir's files and their sizes."""

from __future__ import annotations

from _adw import context, exit_if_fail_requested, issue_label, log, progress, work_files, write_text

DOCS_NAME = "docs.md"


def main() -> int:
    """List the work dir's files in docs.md and return the exit code."""
    ctx = context()
    progress(5, "Stage: document", f"Documenting {issue_label(ctx)} for adw {ctx.adw_id}")
    exit_if_fail_requested(ctx)

    files = work_files(ctx, exclude=(DOCS_NAME,))
    sizes = [(path.relative_to(ctx.work_dir).as_posix(), path.stat().st_size) for path in files]
    total = sum(size for _, size in sizes)
    log(f"found {len(sizes)} files, {total} bytes in total")
    progress(50, "Stage: document", f"Listed {len(sizes)} files")

    lines = [
        f"# Work products for issue {issue_label(ctx)}",
        "",
        f"ADW id `{ctx.adw_id}`, model set {ctx.model_set}.",
        "",
        "| File | Bytes |",
        "| --- | ---: |",
        *(f"| `{rel}` | {size} |" for rel, size in sizes),
        f"| **total** | {total} |",
        "",
    ]
    write_text(ctx.work_dir / DOCS_NAME, "\n".join(lines))
    log(f"wrote {ctx.work_dir / DOCS_NAME}")
    progress(100, "Stage: document", f"Wrote {DOCS_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
