"""Runs one VAE of the docs/results.md table; prints its records and its summary.

    python scripts/vae_table.py POSTERIOR LAYERS SEED [STEPS] [OBJECTIVE] [K]
        [--warmup W] [--lr LR] [--latent D] [--eval-k K] [--eval-n N] [--out DIR] [--quiet]

e.g. ``python scripts/vae_table.py planar 10 0 8000 --warmup 4000``; writes
``DIR/vae/<name>/`` (``DIR`` default ``runs``; the name lists every option that differs from
the defaults). OBJECTIVE is ``elbo`` (default) or ``iwae``, trained with ``K`` samples.

Since the one-trainer change this is a thin layer over ``flowforge.runs.train_run``: the run
is ``configs/variational/vae-gaussian0.yaml`` with the arguments applied (``--warmup`` is
``objective.kl_warmup``, ``--eval-k``/``--eval-n`` are ``objective.eval_k``/``eval_n``;
``python scripts/vae_table.py planar 10 0 10000 --warmup 5000`` is the config of
``configs/variational/vae-planar10-warmup.yaml`` under another name). It prints one JSON line
per validation record of the run's ``metrics.jsonl`` once training ends (the progress bar
shows the run while it trains), then one line with the summary: the run's ``summary.json``
(test ELBO, ``test_nll`` by ``eval_k`` importance samples with its standard error, ...) plus
the options and the run directory. What differs from the old loop: the test numbers are those
of the best validation checkpoint (validation every 1000 steps; normally the last), batches are
epoch-wise permutations of the training set (no longer draws with replacement), the dynamic
binarization draws from torch's generator, and Adam is AdamW without decay, so numbers are
reproduced in distribution, not bit for bit. The VAE run directory is a full run
(``flowforge eval``, ``flowforge.load``, ``flowforge train --resume``).
"""

import argparse
import json
from pathlib import Path

import torch
import yaml

from flowforge.config import parse_config
from flowforge.runs import RunDirectory, train_run

ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = ROOT / "configs" / "variational" / "vae-gaussian0.yaml"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("posterior")
    parser.add_argument("layers", type=int)
    parser.add_argument("seed", type=int)
    parser.add_argument("steps", type=int, nargs="?", default=8000)
    parser.add_argument("objective", nargs="?", default="elbo", choices=("elbo", "iwae"))
    parser.add_argument("k", type=int, nargs="?", default=1)
    parser.add_argument("--warmup", type=int, default=0, help="KL warm-up steps (0: off)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--latent", type=int, default=40)
    parser.add_argument("--eval-k", type=int, default=200)
    parser.add_argument("--eval-n", type=int, default=1000)
    parser.add_argument("--out", default="runs", help="runs go to OUT/vae/ (default runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def run_name(args):
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
    return name


def config(args):
    raw = yaml.safe_load(BASE_CONFIG.read_text())
    raw.update(name=run_name(args), seed=args.seed, output_dir=str(Path(args.out) / "vae"))
    raw["objective"] = {
        "name": args.objective,
        "k": args.k,
        "kl_warmup": args.warmup,
        "eval_k": args.eval_k,
        "eval_n": args.eval_n,
    }
    raw["model"].update(posterior=args.posterior, flow_layers=args.layers, latent=args.latent)
    raw["train"].update(
        steps=args.steps, lr=args.lr, eval_every=min(raw["train"]["eval_every"], args.steps)
    )
    return parse_config(raw)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    result = train_run(config(args), progress=not args.quiet, plots=False)
    for record in RunDirectory(result.run_dir).read_metrics():
        print(json.dumps(record), flush=True)
    options = {
        "posterior": args.posterior,
        "flow_layers": args.layers,
        "k": args.k,
        "warmup": args.warmup,
        "lr": args.lr,
        "latent": args.latent,
        "seed": args.seed,
    }
    print(json.dumps({**options, **result.summary, "run": str(result.run_dir)}), flush=True)


if __name__ == "__main__":
    main()
