"""The c-Glow inpainting comparison of docs/results.md: per mask kind, on the first N test
images of the c-Glow run's data set (MNIST, Fashion-MNIST), c-Glow's fills and bits against an
unconditional Glow with Langevin fills, the training mean and the nearest training image
(flowforge.models.inpainting.compare_fills).

    python scripts/inpaint_table.py runs/cglow-inpaint-mnist runs/glow-mnist-small -n 100
    python scripts/inpaint_table.py runs/cglow-inpaint-fashion-mnist \
        runs/glow-fashion-mnist-small -n 100
"""

from __future__ import annotations

import argparse
import json

import torch

import flowforge
from flowforge.data.structured import inpainting_context, make_mask
from flowforge.models.inpainting import compare_fills
from flowforge.runs import open_run
from flowforge.runs.build import load_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("cglow_run")
    p.add_argument("glow_run", nargs="?")
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--masks", default="random,centre,top,left")
    p.add_argument("--steps", type=int, default=300, help="Langevin steps")
    p.add_argument("--step-size", type=float, default=1e-4)
    p.add_argument("--out", help="JSON file of the numbers")
    args = p.parse_args()
    run = open_run(args.cglow_run)
    splits = load_data(run.config)
    cflow = run.model()
    gflow = flowforge.load(args.glow_run) if args.glow_run else None
    x = splits.test[: args.n]
    rows = {}
    for kind in args.masks.split(","):
        g = torch.Generator().manual_seed(1234)
        m = torch.stack([make_mask(kind, x.shape[2], x.shape[3], g) for _ in range(len(x))])
        context = inpainting_context(x, m, 256)
        rows[kind] = compare_fills(
            cflow,
            gflow,
            x,
            m[:, None],
            context,
            splits.train,
            langevin_steps=args.steps,
            step_size=args.step_size,
        )
        print(kind, json.dumps(rows[kind]), flush=True)
    cols = [
        "cglow_bits_per_missing_pixel",
        "cglow_conditional_bpd",
        "cglow_sample_mse",
        "cglow_mean_mse",
        "glow_langevin_mse",
        "mean_fill_mse",
        "nn_fill_mse",
    ]
    print("| mask | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for kind, r in rows.items():
        print(f"| {kind} | " + " | ".join(f"{r[c]:.4f}" if c in r else "-" for c in cols) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
