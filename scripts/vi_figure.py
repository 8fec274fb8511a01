"""Figure 3 of Rezende and Mohamed (2015) and the reverse-KL table of docs/results.md.

    python scripts/vi_figure.py [STEPS] [TARGETS] [FLOWS] [--out DIR] [--figure PNG] [--quiet]

e.g. ``python scripts/vi_figure.py 3000 U1,U2,U3,U4 planar2,planar8,planar32,radial,iaf,realnvp``.
Fits each flow to each target by reverse KL (Adam, cosine decay, batch 256, annealing
beta_t = min(1, 0.01 + t / (STEPS / 2)), seed 0), prints one JSON line per fit with
KL(q || p) (log Z by grid integration) on 50,000 samples, and writes
``docs/img/vi-figure3-<targets>.png`` (or ``--figure``) and ``DIR/vi/results_<targets>.json``.

Since the one-trainer change each fit is a ``reverse_kl`` run of ``flowforge.runs.train_run``,
the config ``configs/variational/planar-u1.yaml`` with the target, model, learning rate, steps
and annealing of the cell, written to ``DIR/vi/<target>-<flow>/`` (``DIR`` default ``runs``;
a taken name gets ``-2``, ``-3``, ...). The figure is drawn from the models loaded back with
``flowforge.runs.load``. What differs from the old loop: the model scored is the run's best
validation checkpoint (validation every STEPS / 10 steps on 2,000 samples; under the cosine
decay normally the last), Adam is AdamW without decay, and non-finite steps are rolled back
rather than skipped, so numbers are reproduced in distribution, not bit for bit. ``seconds``
is the run's training time (validation included).
"""

import argparse
import json
from pathlib import Path

import torch
import yaml

from flowforge.config import parse_config
from flowforge.runs import load, train_run
from flowforge.targets import make_target
from flowforge.viz.vi import plot_vi_grid

ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = ROOT / "configs" / "variational" / "planar-u1.yaml"
FLOWS = {  # column: (model section, learning rate)
    "planar2": ({"name": "planar", "layers": 2}, 3e-3),
    "planar8": ({"name": "planar", "layers": 8}, 3e-3),
    "planar32": ({"name": "planar", "layers": 32}, 3e-3),
    "radial": ({"name": "radial", "layers": 32}, 3e-3),
    "iaf": ({"name": "iaf", "layers": 6, "hidden": [32, 32]}, 1e-3),
    "realnvp": ({"name": "realnvp", "couplings": 6, "hidden": [32, 32]}, 1e-3),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="?", type=int, default=3000)
    parser.add_argument("targets", nargs="?", default="U1,U2,U3,U4")
    parser.add_argument("flows", nargs="?", default=",".join(FLOWS))
    parser.add_argument("--out", default="runs", help="runs go to OUT/vi/ (default runs)")
    parser.add_argument("--figure", help="output .png (default docs/img/vi-figure3-<targets>.png)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    unknown = [c for c in args.flows.split(",") if c not in FLOWS]
    if unknown:
        parser.error(f"unknown flow(s) {unknown}; choose from {list(FLOWS)}")
    return args


def cell_config(target, column, steps, out):
    """The reverse_kl config of one cell: planar-u1.yaml with the cell's settings."""
    model, lr = FLOWS[column]
    raw = yaml.safe_load(BASE_CONFIG.read_text())
    raw.update(name=f"{target}-{column}", seed=0, output_dir=str(Path(out) / "vi"))
    raw["objective"].update(target=target, anneal=max(steps // 2, 1), eval_samples=50000)
    raw["model"] = dict(model)
    raw["train"].update(steps=steps, batch_size=256, lr=lr, eval_every=max(1, steps // 10))
    return parse_config(raw)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    targets = [make_target(t) for t in args.targets.split(",")]
    columns = args.flows.split(",")
    fitted, kls, rows = {}, {}, []
    for target in targets:
        for column in columns:
            cfg = cell_config(target.name, column, args.steps, args.out)
            result = train_run(cfg, progress=not args.quiet, plots=False)
            s = result.summary
            fitted[(target.name, column)] = load(result.run_dir)
            kls[(target.name, column)] = s["kl"]
            row = {
                "target": target.name,
                "flow": column,
                "kl": s["kl"],
                "kl_stderr": s["loss_stderr"],
                "log_z": target.log_z,
                "steps": s["steps"],
                "seconds": round(s["train_seconds"], 1),
                "parameters": s["parameters"],
                "run": str(result.run_dir),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    tag = "-".join(t.name for t in targets)
    out = Path(args.out) / "vi"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results_{tag}.json").write_text(json.dumps(rows, indent=1))
    figure = Path(args.figure) if args.figure else ROOT / "docs" / "img" / f"vi-figure3-{tag}.png"
    print(plot_vi_grid(targets, fitted, columns, figure, kls))


if __name__ == "__main__":
    main()
