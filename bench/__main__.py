"""``make bench``: run every benchmark and print one table."""

from __future__ import annotations

from bench import latency, replay
from bench.common import print_table, write_result


def main() -> None:
    """Run the suite: each benchmark saves its own result file."""
    rows = []
    for name, module in (("latency", latency), ("replay", replay)):
        result = module.run()
        write_result(name, result)
        rows.extend(result)
    print_table(rows)


if __name__ == "__main__":
    main()
