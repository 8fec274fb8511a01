"""How long the ``flowforge`` command takes to answer ``--help`` and an argument error, for this
source tree and another commit's, side by side.

    python benchmarks/cli_startup.py [--against REF] [--runs 9]

Each case is ``python -m flowforge ARGS`` run as a fresh subprocess (the interpreter's start
included, as a user waits for it), ``--runs`` times per tree, the trees in turn within a round
so that a change in the machine's load hits both; prints the median and the range of the
wall-clock seconds per case and tree. ``--against REF`` (a commit, a branch) extracts that
commit's ``src/`` with ``git archive`` into a temporary folder and times it beside this tree's;
both run with the same interpreter and packages. The argument error is ``flowforge sample``
without its run directory (argparse's usage line and exit status 2). Returns the rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: case name -> (arguments, the exit status the command answers with)
CASES = {"--help": (["--help"], 0), "argument error": (["sample"], 2)}


def source_of(ref: str, folder: Path) -> Path:
    """``ref``'s ``src/`` extracted under ``folder``; returns the path to put on PYTHONPATH."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src"], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def seconds(src: Path, args: list[str], status: int) -> float:
    """The wall-clock seconds of one ``python -m flowforge ARGS`` with ``src`` first on the
    path; an unexpected exit status is an error, not a number."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "flowforge", *args], env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    if proc.returncode != status:
        raise SystemExit(
            f"error: flowforge {' '.join(args)} ({src}) exited {proc.returncode}, not {status}: "
            f"{proc.stderr[-500:]}"
        )
    return took


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--against", metavar="REF", help="a commit to time beside this tree")
    p.add_argument("--runs", type=int, default=9, help="runs per case and tree (median)")
    args = p.parse_args(argv)
    if args.runs < 1:
        raise SystemExit(f"error: --runs: should be positive, got {args.runs}")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": REPO / "src"}
        if args.against:
            trees[args.against] = source_of(args.against, Path(tmp))
        times: dict[tuple[str, str], list[float]] = {
            (case, tree): [] for case in CASES for tree in trees
        }
        for case, (case_args, status) in CASES.items():
            seconds(REPO / "src", case_args, status)  # warm the file cache, untimed
            for _ in range(args.runs):
                for tree, src in trees.items():
                    times[case, tree].append(seconds(src, case_args, status))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} runs per cell")
    print(f"{'case':<16} {'tree':<24} {'median s':>9} {'min s':>7} {'max s':>7}")
    rows = []
    for (case, tree), ts in times.items():
        row = {"case": case, "tree": tree, "median": statistics.median(ts), "runs": ts}
        rows.append(row)
        print(f"{case:<16} {tree:<24} {row['median']:>9.3f} {min(ts):>7.3f} {max(ts):>7.3f}")
    return rows


if __name__ == "__main__":
    main()
