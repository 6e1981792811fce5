"""``make bench``: run every benchmark and print one table."""

from __future__ import annotations

from bench import latency
from bench.common import print_table, write_result


def main() -> None:
    """Run the suite."""
    rows = latency.run()
    write_result("latency", rows)
    print_table(rows)


if __name__ == "__main__":
    main()
