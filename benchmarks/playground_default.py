"""Candidates for the playground's default: how close each gets to the true entropy, and how
long it takes, trained exactly as the page trains it (``Playground.config``, one CPU thread as
the playground's worker, the figures drawn at the end as every run draws them).

Each candidate is a flow family and depth of the page, a toy data set, a step count and a
learning rate (cosine schedule, batch 256, 10,000 training points); the table gives its test
NLL's gap to the data set's true entropy (nats; the test NLL's standard error is about 0.01)
and the training call's wall-clock and CPU seconds (one thread: CPU seconds are what the run
takes on an idle core), with the 1-minute load average when it ended. The machine is shared:
run each candidate at least twice (``--repeats``) and read the spread. One command::

    nice -n 5 .venv/bin/python benchmarks/playground_default.py --repeats 2 --workspace /tmp/pg

``--only nsf`` keeps the candidates whose label contains ``nsf``; ``--seed`` trains another
seed (the data sets are drawn from it too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import torch

from flowforge.config import parse_config
from flowforge.runs import train_run
from flowforge.serve.playground import Playground

# label: (family, depth, data, steps, lr, model options over the family's); "(32)": NSF
# conditioners of 32 units, else 64 (the page's)
CANDIDATES: dict[str, tuple[str, int, str, int, float, dict[str, Any]]] = {
    "realnvp-6 2spirals 600 (the old page)": ("realnvp", 6, "2spirals", 600, 2e-3, {}),
    "realnvp-6 2spirals 2000": ("realnvp", 6, "2spirals", 2000, 2e-3, {}),
    "realnvp-6 moons 2000": ("realnvp", 6, "moons", 2000, 2e-3, {}),
    "realnvp-6 moons 3500": ("realnvp", 6, "moons", 3500, 2e-3, {}),
    "nsf-6 (32) 2spirals 1500": ("nsf", 6, "2spirals", 1500, 5e-3, {"hidden": 32}),
    "nsf-8 (32) 2spirals 1500": ("nsf", 8, "2spirals", 1500, 5e-3, {"hidden": 32}),
    "nsf-8 (32) moons 1500": ("nsf", 8, "moons", 1500, 5e-3, {"hidden": 32}),
    "nsf-8 (32) 8gaussians 1500": ("nsf", 8, "8gaussians", 1500, 5e-3, {"hidden": 32}),
    "nsf-6 AR (32) 2spirals 1000": (
        "nsf",
        6,
        "2spirals",
        1000,
        5e-3,
        {"hidden": 32, "kind": "autoregressive"},
    ),
    "nsf-8 2spirals 1000": ("nsf", 8, "2spirals", 1000, 5e-3, {"hidden": 64}),
    "nsf-8 2spirals 1300": ("nsf", 8, "2spirals", 1300, 5e-3, {"hidden": 64}),
    "nsf-6 2spirals 1300": ("nsf", 6, "2spirals", 1300, 5e-3, {"hidden": 64}),
    "nsf-8 moons 1000": ("nsf", 8, "moons", 1000, 5e-3, {"hidden": 64}),
    "nsf-8 8gaussians 1000": ("nsf", 8, "8gaussians", 1000, 5e-3, {"hidden": 64}),
    "nsf-8 pinwheel 1000": ("nsf", 8, "pinwheel", 1000, 5e-3, {"hidden": 64}),
    "nsf-8 checkerboard 1000": ("nsf", 8, "checkerboard", 1000, 5e-3, {"hidden": 64}),
}


def measure(playground: Playground, candidate: tuple, seed: int) -> dict[str, Any]:
    family, depth, data, steps, lr, options = candidate
    request = {"family": family, "depth": depth, "data": data, "steps": steps, "lr": lr}
    _, raw, _ = playground.config(request)
    raw["model"].update(options)
    raw["seed"] = seed
    wall, cpu = time.perf_counter(), time.process_time()
    summary = train_run(parse_config(raw), progress=False).summary
    return {
        "gap": round(summary["gap"], 4),
        "test_stderr": round(summary["test_stderr"], 4),
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "load": round(os.getloadavg()[0], 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="", help="candidates whose label contains this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", default="/tmp/flowforge-playground-default")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the playground's worker
    playground = Playground(args.workspace)
    chosen = {k: v for k, v in CANDIDATES.items() if args.only in k}
    rows = []
    for _ in range(args.repeats):
        for label, candidate in chosen.items():
            row = {
                "candidate": label,
                "seed": args.seed,
                **measure(playground, candidate, args.seed),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| candidate | gap (nats) | wall s | CPU s | load |\n|---|---|---|---|---|")
    for label in chosen:
        mine = [r for r in rows if r["candidate"] == label]
        span = {k: "/".join(f"{r[k]:g}" for r in mine) for k in ("wall_s", "cpu_s", "load")}
        gap = statistics.median(r["gap"] for r in mine)
        print(f"| {label} | {gap:.3f} | {span['wall_s']} | {span['cpu_s']} | {span['load']} |")
    return rows


if __name__ == "__main__":
    main()
