"""The share of a default run's time spent evaluating: validation, test, figures.

    python benchmarks/eval_share.py [--runs default,data,image] [--out /tmp/eval-share]
        [--profile] [--json FILE]

Each run is a ``flowforge train`` command as a user types it (the CLI in this process, one
thread, writing under ``--out``):

- ``default``: ``flowforge train`` (``configs/realnvp-parabola.yaml``: RealNVP, 3,000 steps,
  validation every 250);
- ``data``: ``flowforge train --data table.csv``, the short form on a 6-column table of
  12,000 rows written here (a correlated, skewed mixture), which sizes the model, the steps and
  the budget itself and reports the yardstick's baselines;
- ``image``: ``flowforge train configs/images/glow-digits.yaml`` (Glow on 8x8 digits, 2,000
  steps).

The phases are timed in CPU seconds of the process (so other jobs on a shared machine do not
stretch them): validation passes (``Trainer.evaluate_and_log``), the test evaluation with the
yardstick (``Objective.evaluate`` in the summary), the figures (``draw_run_figures``), and
the whole command; "share" is the evaluation phases' part of the whole. The data-dependent
start (``MaximumLikelihood.start``: the short form's mixture base, fitted as the yardstick's
validated mixture) is shown beside them. ``--profile`` prints ``cProfile``'s top functions
of the evaluation phases.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import flowforge.runs.training as training
from flowforge.cli import main as flowforge
from flowforge.objectives.mle import MaximumLikelihood
from flowforge.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def table_csv(path: Path, rows: int = 12_000, seed: int = 0) -> Path:
    """A 6-column table: two skewed, correlated clusters (so the flow has something to fit)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, 6))
    cluster = rng.random(rows) < 0.3
    x = z @ rng.standard_normal((6, 6)) * 0.5
    x[:, 0] = np.exp(0.5 * x[:, 0])  # skewed
    x[cluster] += 3.0
    header = ",".join(f"x{i}" for i in range(6))
    np.savetxt(path, x, delimiter=",", header=header, comments="", fmt="%.6g")
    return path


def commands(out: Path) -> dict[str, list[str]]:
    where = ["--set", f"output_dir={out}", "--quiet", "--threads", "1"]
    return {
        "default": ["train", *where, "--set", "name=default"],
        "data": ["train", "--data", str(table_csv(out / "table.csv")), *where],
        "image": ["train", str(CONFIGS / "images/glow-digits.yaml"), *where],
    }


class Phases:
    """CPU seconds of the evaluation phases, by wrapping the functions that run them."""

    def __init__(self, profile: bool) -> None:
        self.seconds = {"start": 0.0, "validation": 0.0, "test": 0.0, "figures": 0.0}
        self.profiler = cProfile.Profile() if profile else None

    def timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()
            if self.profiler:
                self.profiler.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.profiler:
                    self.profiler.disable()
                self.seconds[phase] += time.process_time() - began

        return wrapper

    @contextlib.contextmanager
    def installed(self) -> Any:
        saved = (
            Trainer.evaluate_and_log,
            training._summarise,
            training.draw_run_figures,
            MaximumLikelihood.start,
        )
        Trainer.evaluate_and_log = self.timed("validation", saved[0])
        training._summarise = self.timed("test", saved[1])
        training.draw_run_figures = self.timed("figures", saved[2])
        MaximumLikelihood.start = self.timed("start", saved[3])
        try:
            yield self
        finally:
            (
                Trainer.evaluate_and_log,
                training._summarise,
                training.draw_run_figures,
                MaximumLikelihood.start,
            ) = saved


def measure(argv: list[str], profile: bool) -> dict[str, Any]:
    phases = Phases(profile)
    with phases.installed():
        began = time.process_time()
        status = flowforge(argv)
        total = time.process_time() - began
    if status != 0:
        raise SystemExit(f"flowforge {' '.join(argv)} exited with {status}")
    evaluation = sum(v for k, v in phases.seconds.items() if k != "start")
    result: dict[str, Any] = {
        "total_s": total,
        **{f"{k}_s": v for k, v in phases.seconds.items()},
        "share": evaluation / total,
    }
    if phases.profiler:
        text = io.StringIO()
        pstats.Stats(phases.profiler, stream=text).sort_stats("cumulative").print_stats(25)
        result["profile"] = text.getvalue()
    return result


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="default,data,image")
    parser.add_argument("--out", type=Path, default=Path("/tmp/eval-share"))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    out = args.out / stamp
    out.mkdir()
    runs = commands(out)
    results = {}
    for name in args.runs.split(","):
        results[name] = measure(runs[name], args.profile)
        r = results[name]
        print(
            f"{name}: total {r['total_s']:.1f} s, start {r['start_s']:.1f} s, validation "
            f"{r['validation_s']:.1f} s, test "
            f"{r['test_s']:.1f} s, figures {r['figures_s']:.1f} s: evaluation "
            f"{100 * r['share']:.1f}%",
            flush=True,
        )
        if args.profile:
            print(r.pop("profile"))
    print("\n| run | command | total s | start s | validation s | test s | figures s | share |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        command = "flowforge " + " ".join(runs[name]).replace(str(out), "OUT")
        print(
            f"| {name} | `{command}` | {r['total_s']:.1f} | {r['start_s']:.1f} | "
            f"{r['validation_s']:.1f} | "
            f"{r['test_s']:.1f} | {r['figures_s']:.1f} | {100 * r['share']:.1f}% |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
