"""The JKO flow beside FFJORD (with and without RNODE's kinetic regulariser) and RealNVP, at a
matched parameter count and wall-clock budget, on 2-D toy sets and gmm8
(docs/wasserstein-flows.md).

    nice python benchmarks/jko_table.py [--out /tmp/jko-table] [--steps-per-block 100]

Per data set, four runs through the one trainer (one thread each, constant learning rate):

- ``jko``: JKO-iFlow's network, ``ffjord`` with 4 CNF blocks (concat-squash MLPs 2 x 32,
  T = 0.5, two fixed RK4 steps), trained block after block by ``objective: jko`` (h_k = 0.5 *
  1.5^k, ``--steps-per-block`` steps each). Its training time is the budget of the others;
- ``ffjord``: one CNF (MLP 3 x w, T = 0.5, dopri5 at 1e-4), maximum likelihood;
- ``ffjord-rnode``: the same with RNODE's kinetic-energy penalty (weight 0.01);
- ``realnvp``: 8 affine couplings (MLP 2 x w);

each width w chosen so the parameter count is the nearest to the JKO flow's; the three
train until JKO's seconds are spent (``train.max_seconds``). All CNFs take the exact
divergence in training (FFJORD's brute-force option). The table: parameters, steps taken,
training seconds (wall clock, the budget), CPU seconds of the whole run (training, evaluation,
summary: what each run got of a shared machine), test NLL with its standard error, the gap to
the true entropy (known for every set here) and the transport cost E|T(x) - x|^2 of each
learned map on the test set (:func:`flowforge.objectives.jko.transport_cost`). Finished runs
are kept under ``--out`` (the same command again goes on where it stopped); the table goes to
``benchmarks/results/jko-table.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from flowforge.config import parse_config
from flowforge.data.registry import load_dataset
from flowforge.models import build_model
from flowforge.objectives.jko import transport_cost
from flowforge.runs import RunDirectory, train_run
from flowforge.runs.load import load

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["8gaussians", "moons", "checkerboard", "gmm8"]
MODELS = ["jko", "ffjord", "ffjord-rnode", "realnvp"]
SIZES = (20000, 1000, 5000)  # train, validation, test rows
BLOCKS, JKO_WIDTH = 4, 32


def model_options(model: str, width: int) -> dict[str, Any]:
    """The ``model:`` section of ``model`` at hidden width ``width``."""
    cnf = {"end_time": 0.5, "exact_train": True}
    if model == "jko":
        return {
            "name": "ffjord",
            "blocks": BLOCKS,
            "hidden": [width] * 2,
            "method": "rk4",
            "step_size": 0.25,
            **cnf,
        }
    if model.startswith("ffjord"):
        kinetic = 0.01 if model == "ffjord-rnode" else 0.0
        return {
            "name": "ffjord",
            "hidden": [width] * 3,
            "atol": 1e-4,
            "rtol": 1e-4,
            "kinetic_energy": kinetic,
            **cnf,
        }
    return {"name": "realnvp", "couplings": 8, "hidden": [width] * 2}


def parameters(model: str, width: int, features: int) -> int:
    options = model_options(model, width)
    name = options.pop("name")
    return sum(p.numel() for p in build_model(name, options, (features,)).parameters())


def matched_width(model: str, features: int) -> int:
    """The width whose parameter count is the nearest to the JKO flow's."""
    target = parameters("jko", JKO_WIDTH, features)
    width, below = 4, parameters(model, 4, features)
    while below < target:  # the count grows with the width: the first width past the target
        above = parameters(model, width + 1, features)
        if above >= target:
            return width + 1 if above - target < target - below else width
        width, below = width + 1, above
    return width


def config(
    data: str,
    model: str,
    out: Path,
    steps_per_block: int,
    seconds: float,
    sizes: tuple[int, int, int] = SIZES,
) -> dict:
    features = 8 if data == "gmm8" else 2
    n_train, n_val, n_test = sizes
    width = JKO_WIDTH if model == "jko" else matched_width(model, features)
    options = model_options(model, width)
    train = {
        "batch_size": 256,
        "lr": 5e-3,
        "schedule": "constant",
        "eval_every": steps_per_block,
        "eval_batch_size": 5000,
        "threads": 1,
    }
    if model == "jko":
        objective = {"name": "jko", "step_size": 0.5, "step_growth": 1.5}
        objective["steps_per_block"] = steps_per_block
        train["steps"] = BLOCKS * steps_per_block
    else:
        objective = {"name": "mle"}
        train.update(steps=1_000_000, max_seconds=seconds)
    return {
        "name": f"{data}-{model}",
        "output_dir": str(out),
        "seed": 0,
        "data": {"name": data, "n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": 0},
        "model": options,
        "objective": objective,
        "train": train,
    }


def run(
    data: str,
    model: str,
    out: Path,
    steps_per_block: int,
    seconds: float,
    sizes: tuple[int, int, int] = SIZES,
) -> dict:
    """The run's summary (trained now, or read from a finished run) with its transport cost."""
    run_dir, cpu_path = out / f"{data}-{model}", out / f"{data}-{model}.cpu"
    summary = RunDirectory(run_dir).read_summary()
    if summary is None:
        cfg = parse_config(config(data, model, out, steps_per_block, seconds, sizes))
        began = time.process_time()
        summary = train_run(cfg, progress=False, plots=False).summary
        cpu_path.write_text(f"{time.process_time() - began:.1f}\n")
    summary["cpu_seconds"] = float(cpu_path.read_text()) if cpu_path.is_file() else math.nan
    if "test_transport" not in summary:
        test = load_dataset(data, *sizes, 0).test
        cost = transport_cost(load(run_dir), test)  # type: ignore[arg-type]
        summary["test_transport"] = cost.mean().item()
        summary["test_transport_stderr"] = (cost.std() / math.sqrt(cost.numel())).item()
    return summary


def row(data: str, model: str, s: dict) -> dict:
    return {
        "data": data,
        "model": model,
        "parameters": s["parameters"],
        "steps": s["steps"],
        "train_seconds": s["train_seconds"],
        "cpu_seconds": s["cpu_seconds"],
        "test_nll": s["test_nll"],
        "test_stderr": s["test_stderr"],
        "entropy": s["entropy"],
        "gap": s["gap"],
        "transport": s["test_transport"],
        "transport_stderr": s["test_transport_stderr"],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | model | parameters | steps | train s | CPU s | test NLL (nats) | gap | "
        "transport E\\|T(x)-x\\|² |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['model']} | {r['parameters']:,} | {r['steps']:,} | "
            f"{r['train_seconds']:.0f} | {r['cpu_seconds']:.0f} | "
            f"{r['test_nll']:.3f} ± {r['test_stderr']:.3f} | "
            f"{r['gap']:.3f} | {r['transport']:.2f} ± {r['transport_stderr']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/jko-table"))
    parser.add_argument("--steps-per-block", type=int, default=100)
    parser.add_argument("--data", default=",".join(DATASETS), help="comma-separated data sets")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated; jko first")
    parser.add_argument("--sizes", default="20000,1000,5000", help="train,val,test rows")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    n_train, n_val, n_test = (int(n) for n in args.sizes.split(","))
    sizes = (n_train, n_val, n_test)
    rows = []
    for data in args.data.split(","):
        jko = run(data, "jko", args.out, args.steps_per_block, 0.0, sizes)
        rows.append(row(data, "jko", jko))
        for model in args.models.split(",")[1:]:
            seconds = jko["train_seconds"]
            summary = run(data, model, args.out, args.steps_per_block, seconds, sizes)
            rows.append(row(data, model, summary))
        print(markdown([r for r in rows if r["data"] == data]), flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "jko-table.json").write_text(json.dumps(rows, indent=1) + "\n")
    table = markdown(rows)
    (args.results / "jko-table.md").write_text(table)
    print(table)
    return rows


if __name__ == "__main__":
    main()
