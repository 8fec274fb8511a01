"""Collects run summaries into a markdown table: test NLL beside the true entropy.

Usage: python scripts/results_table.py runs/realnvp-* runs/nice-*
"""

import sys

from flowforge.runs import RunDirectory


def main(paths: list[str]) -> None:
    rows = [s for s in map(lambda p: RunDirectory(p).read_summary(), paths) if s is not None]
    print("| data | model | test NLL (nats) | ± s.e. | true entropy | gap | steps | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in sorted(rows, key=lambda r: (r["data"], r["model"])):
        h = s.get("entropy")
        gap = f"{s['gap']:+.3f}" if h is not None else "–"
        ent = f"{h:.3f}" if h is not None else "–"
        print(
            f"| {s['data']} | {s['model']} | {s['test_nll']:.3f} | {s['test_stderr']:.3f} | "
            f"{ent} | {gap} | {s['steps']} | {s['train_seconds']:.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
