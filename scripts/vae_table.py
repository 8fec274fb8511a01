"""Runs one VAE of the docs/results.md table; prints and writes its summary.

    python scripts/vae_table.py POSTERIOR LAYERS SEED [STEPS] [OBJECTIVE] [K]
        [--warmup W] [--lr LR] [--latent D] [--eval-k K] [--eval-n N]

e.g. ``python scripts/vae_table.py planar 10 0 8000 --warmup 4000``; writes
``runs/vae/<name>/`` (the name lists every option that differs from the defaults).
"""

import argparse
import json
from pathlib import Path

import torch

from flowforge.train.vae import train_vae

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("posterior")
parser.add_argument("layers", type=int)
parser.add_argument("seed", type=int)
parser.add_argument("steps", type=int, nargs="?", default=8000)
parser.add_argument("objective", nargs="?", default="elbo")
parser.add_argument("k", type=int, nargs="?", default=1)
parser.add_argument("--warmup", type=int, default=0, help="KL warm-up steps (0: off)")
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--latent", type=int, default=40)
parser.add_argument("--eval-k", type=int, default=200)
parser.add_argument("--eval-n", type=int, default=1000)
args = parser.parse_args()

torch.set_num_threads(1)
name = f"{args.posterior}{args.layers}_{args.objective}{args.k}_s{args.seed}_{args.steps}"
for flag, value, default in (
    ("w", args.warmup, 0),
    ("lr", args.lr, 1e-3),
    ("d", args.latent, 40),
    ("ek", args.eval_k, 200),
    ("en", args.eval_n, 1000),
):
    if value != default:
        name += f"_{flag}{value:g}"
config = {
    "name": name,
    "seed": args.seed,
    "data": {
        "name": "binarized_mnist",
        "n_train": 50000,
        "n_val": 1000,
        "n_test": 10000,
        "path": str(DATA),
    },
    "model": {
        "latent": args.latent,
        "hidden": [300, 300],
        "posterior": {"name": args.posterior, "layers": args.layers},
    },
    "train": {
        "steps": args.steps,
        "batch_size": 100,
        "lr": args.lr,
        "objective": args.objective,
        "k": args.k,
        "warmup": args.warmup,
        "eval_every": 1000,
    },
    "eval": {"k": args.eval_k, "n": args.eval_n},
}
summary = train_vae(
    config,
    Path(__file__).resolve().parents[1] / "runs" / "vae",
    progress=lambda r: print(json.dumps(r), flush=True),
)
print(json.dumps(summary), flush=True)
