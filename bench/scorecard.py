"""The speed targets of issue 13, one row each, gathered from the benches of one `make bench` run.

A bench calls `record(...)` for each target it measures; `make bench` clears
the card first and prints it last (`python bench/scorecard.py`), so every row
comes from the same run on the same machine. A bench run on its own records
too; `--clear` starts a new card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CARD = Path(__file__).resolve().parents[1] / ".bench" / "scorecard.jsonl"

ORDER = (
    "slip-memory-vs-lcel",
    "slip-kafka-vs-memory",
    "bus-tracing",
    "kafka-vs-raw",
    "llama-single",
    "transformers-batch",
    "main-job",
    "embedding-throughput",
)
"""The issue's table order; rows with other ids follow in the order they were recorded."""


def record(row: str, measure: str, now: str, target: str, met: bool) -> None:
    """One target: what was measured, the figure (with its ratio), the target, and whether it was met."""
    CARD.parent.mkdir(parents=True, exist_ok=True)
    line = {"row": row, "measure": measure, "now": now, "target": target, "met": met}
    with CARD.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def read() -> list[dict[str, object]]:
    if not CARD.exists():
        return []
    latest: dict[str, dict[str, object]] = {}
    for line in CARD.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            latest[str(entry["row"])] = entry
    rank = {row: index for index, row in enumerate(ORDER)}
    return sorted(latest.values(), key=lambda entry: rank.get(str(entry["row"]), len(ORDER)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clear", action="store_true", help="start a new card")
    args = parser.parse_args()
    if args.clear:
        CARD.unlink(missing_ok=True)
        return 0
    rows = read()
    if not rows:
        print("no bench has recorded a target yet (run `make bench`)", file=sys.stderr)
        return 1
    print("## Issue 13 targets from this run\n")
    print("| measure | now | target | |\n| --- | --- | --- | --- |")
    for entry in rows:
        print(f"| {entry['measure']} | {entry['now']} | {entry['target']} | {'met' if entry['met'] else 'missed'} |")
    met = sum(1 for entry in rows if entry["met"])
    print(f"\n{met} of {len(rows)} targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
