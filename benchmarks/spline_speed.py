"""Training-step time of the spline flows against the spline of an earlier revision.

The nsf_c8 and nsf_ar8 shapes of ``benchmarks/peers.py`` (8 features, 8 layers, MLP/MADE
2x128, 8 bins on [-5, 5], batch 512, Adam), built three times from one seed: with the
rational-quadratic spline of git revision ``--before`` (its ``spline.py`` loaded from
``git show``; default: the commit before the soft bound on the raw parameters), with today's
spline (``raw_bound`` at its default) and with today's spline unbounded (``raw_bound=None``).
The three take turns in every round (the order rotated), so the machine's load falls on all of
them alike; the figures are the median over rounds of each time divided by the "before" time,
with the min-max spread. One command (the repository's git history is needed)::

    .venv/bin/python benchmarks/spline_speed.py --rounds 31
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from flowforge.models import nsf
from flowforge.transforms.spline import RationalQuadraticSpline

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "3706df1^"  # the spline before raw_bound (issue 19, numerics under hard parameters)


def spline_class_at(revision: str) -> type:
    """``RationalQuadraticSpline`` as it was at ``revision``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/flowforge/transforms/spline.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spline_before.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("spline_before", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.RationalQuadraticSpline


def flows(kind: str, before: type) -> dict[str, torch.nn.Module]:
    out = {}
    for variant in ("before", "bounded", "unbounded"):
        torch.manual_seed(0)
        flow = nsf(8, kind, layers=8, hidden=128, residual_blocks=0, bins=8, bound=5.0)
        for m in flow.modules():
            if isinstance(m, RationalQuadraticSpline):
                if variant == "before":
                    m.__class__ = before  # same attributes; the old methods
                elif variant == "unbounded":
                    m.raw_bound = None
        out[variant] = flow
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help=f"git revision (default {BEFORE})")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    before = spline_class_at(args.before)
    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(1))
    for kind in ("coupling", "autoregressive"):
        models = flows(kind, before)
        optimizers = {v: torch.optim.Adam(f.parameters(), 1e-3) for v, f in models.items()}
        ratios: dict[str, list[float]] = {"bounded": [], "unbounded": []}
        names = list(models)
        for r in range(args.rounds):
            times = {}
            for variant in names[r % 3 :] + names[: r % 3]:
                flow, opt = models[variant], optimizers[variant]
                start = time.perf_counter()
                for _ in range(args.steps):
                    opt.zero_grad()
                    (-flow.log_prob(x).mean()).backward()
                    opt.step()
                times[variant] = time.perf_counter() - start
            for variant, values in ratios.items():
                values.append(times[variant] / times["before"])
        for variant, values in ratios.items():
            values.sort()
            print(
                f"nsf {kind}: step time {variant} / before ({args.before}) = "
                f"{values[len(values) // 2]:.3f} (min {values[0]:.3f}, max {values[-1]:.3f}; "
                f"{args.rounds} rounds of {args.steps} steps)"
            )


if __name__ == "__main__":
    main()
