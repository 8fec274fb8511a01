"""Does compiling the training step pay? Compile time and per-step gain per model family.

    python benchmarks/compile_pays.py [--rows realnvp-2d,maf-32d] [--rounds 6] [--window 10]
        [--threads 1] [--json FILE]

Times are CPU seconds (this process and the compiler processes it waited for), so a busy
shared machine does not stretch them; on one thread and a machine to itself they are the
wall-clock. Each row is a config of ``configs/`` (its model, batch and data; the splits cut to a few
thousand rows) trained by :class:`flowforge.train.trainer.Trainer` itself, once eager and once
with ``train.compile: true``: the trainer's whole step (batch, training module, loss,
backward, clipping, fused AdamW). The compiled trainer's first steps compile: "compile s" is
their time less as many compiled steps, cold (inductor's caches off, so a first run's cost).
Then ``--rounds`` interleaved windows of ``--window`` steps each; "eager ms" and
"compiled ms" are medians of the windows' mean step times, "ratio" the median per-round ratio
compiled / eager, and "pays after" the steps that repay the compilation,
``compile s / (eager - compiled)``. ``params x batch`` is what
:func:`flowforge.train.compiling.estimated_step_seconds` scales the eager step by.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch._dynamo

from flowforge.config import load_config
from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec
from flowforge.runs.directory import RunDirectory
from flowforge.train.schedule import seed_everything
from flowforge.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["data.n_train=4096", "data.n_val=512", "data.n_test=512"]

#: row: (family, config file under configs/, overrides)
ROWS: dict[str, tuple[str, str, list[str]]] = {
    "realnvp-2d": ("realnvp", "realnvp-parabola.yaml", SMALL),
    "realnvp-32d": ("realnvp", "autoregressive/realnvp-gmm32.yaml", SMALL),
    "maf-8d": ("maf", "autoregressive/maf-gmm8.yaml", SMALL),
    "maf-32d": ("maf", "autoregressive/maf-gmm32.yaml", SMALL),
    "nsf-coupling-8d": ("nsf", "autoregressive/nsf-coupling-gmm8.yaml", SMALL),
    "nsf-ar-8d": ("nsf", "autoregressive/nsf-ar-gmm8.yaml", SMALL),
    "nice-2d": ("nice", "toy/nice-moons.yaml", SMALL),
    "vae-mnist": ("vae", "variational/vae-gaussian0.yaml", ["data.n_train=4096"]),
    "glow-digits": ("glow", "images/glow-digits.yaml", []),
    "realnvp-image-mnist": ("realnvp_image", "images/realnvp-mnist.yaml", SMALL),
    "glow-mnist-small": ("glow", "images/glow-mnist-small.yaml", SMALL),
}


def make_trainer(config: str, overrides: list[str], compiled: bool, out: Path) -> Trainer:
    """A trainer of the config (eager or compiled), writing into ``out``."""
    flag = "true" if compiled else "false"
    cfg = load_config(CONFIGS / config, [*overrides, f"train.compile={flag}", "train.threads=0"])
    seed_everything(cfg.seed, cfg.deterministic)
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    spec = model_spec(cfg, objective)
    model = build_from_spec(spec)
    directory = RunDirectory.create(out, f"{cfg.name}-{flag}")
    identity = {"spec": spec, "objective": cfg.objective.name, "fingerprint": {}}
    return Trainer(cfg, objective, model, directory, identity)


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (inductor's compiler calls)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def window(trainer: Trainer, steps: int) -> float:
    """Mean CPU seconds of ``steps`` trainer steps (on one thread the wall-clock of a machine
    to itself; unlike the wall-clock, not stretched by other jobs on a shared one)."""
    began = time.process_time()
    for _ in range(steps):
        trainer.train_step()
    return (time.process_time() - began) / steps


def measure(config: str, overrides: list[str], rounds: int, steps: int) -> dict[str, float]:
    """One row: compile seconds, eager and compiled step seconds, their ratio."""
    torch._dynamo.reset()  # each row compiles afresh (and below dynamo's recompile limit)
    with tempfile.TemporaryDirectory() as tmp:
        eager = make_trainer(config, overrides, False, Path(tmp))
        compiled = make_trainer(config, overrides, True, Path(tmp))
        window(eager, 3)  # warm-up (and data-dependent starts)
        began = cpu_seconds()
        window(compiled, 3)
        first = cpu_seconds() - began
        pairs = [(window(eager, steps), window(compiled, steps)) for _ in range(rounds)]
    t_eager = statistics.median(e for e, _ in pairs)
    t_compiled = statistics.median(c for _, c in pairs)
    saving = t_eager - t_compiled
    compile_s = first - 3 * t_compiled
    params = sum(p.numel() for p in eager.parameters)
    return {
        "params": params,
        "batch": eager.cfg.train.batch_size,
        "compile_s": compile_s,
        "eager_ms": 1e3 * t_eager,
        "compiled_ms": 1e3 * t_compiled,
        "ratio": statistics.median(c / e for e, c in pairs),
        "pays_after": compile_s / saving if saving > 0 else math.inf,
    }


def table(results: dict[str, dict[str, float]]) -> str:
    head = (
        "| row | family | params x batch | compile s | eager ms | compiled ms | ratio | pays after "
    )
    head += "(steps) |"
    lines = [head, "|" + "---|" * 8]
    for row, r in results.items():
        pays = "never" if math.isinf(r["pays_after"]) else f"{r['pays_after']:,.0f}"
        lines.append(
            f"| {row} | {ROWS[row][0]} | {r['params']:,} x {r['batch']} | {r['compile_s']:.1f} "
            f"| {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | {r['ratio']:.2f} | {pays} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--window", type=int, default=10, help="steps per timed window")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {sorted(ROWS)}")
    import torch._inductor.config as inductor

    inductor.force_disable_caches = True  # a first run's compile time, every time
    inductor.compile_threads = 1  # compile in this process, so its CPU time counts
    torch.set_num_threads(args.threads)
    results = {}
    for row in rows:
        _, config, overrides = ROWS[row]
        results[row] = measure(config, overrides, args.rounds, args.window)
        print(row, json.dumps({k: round(v, 4) for k, v in results[row].items()}), flush=True)
    print(f"\n{args.threads} thread(s), {args.rounds} rounds of {args.window} steps\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
