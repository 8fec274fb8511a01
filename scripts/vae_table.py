"""Runs one VAE of the docs/results.md table; prints and writes its summary.

    python scripts/vae_table.py POSTERIOR LAYERS SEED [STEPS] [OBJECTIVE] [K]

e.g. ``python scripts/vae_table.py planar 10 0 8000``; writes ``runs/vae/<name>/``.
"""

import json
import sys
from pathlib import Path

import torch

from flowforge.train.vae import train_vae

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"

torch.set_num_threads(1)
posterior, layers, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 8000
objective = sys.argv[5] if len(sys.argv) > 5 else "elbo"
k = int(sys.argv[6]) if len(sys.argv) > 6 else 1
name = f"{posterior}{layers}_{objective}{k}_s{seed}_{steps}"
config = {
    "name": name,
    "seed": seed,
    "data": {
        "name": "binarized_mnist",
        "n_train": 50000,
        "n_val": 1000,
        "n_test": 10000,
        "path": str(DATA),
    },
    "model": {
        "latent": 40,
        "hidden": [300, 300],
        "posterior": {"name": posterior, "layers": layers},
    },
    "train": {
        "steps": steps,
        "batch_size": 100,
        "lr": 1e-3,
        "objective": objective,
        "k": k,
        "eval_every": 1000,
    },
    "eval": {"k": 200, "n": 1000},
}
summary = train_vae(
    config,
    Path(__file__).resolve().parents[1] / "runs" / "vae",
    progress=lambda r: print(json.dumps(r), flush=True),
)
print(json.dumps(summary), flush=True)
