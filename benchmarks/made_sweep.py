"""MADE inversion: the degree sweep against D full passes (what the peer libraries do).

    python benchmarks/made_sweep.py [--batch 4096] [--rounds 15] [--threads 1]

For an 8-dimensional MADE with 2 x 128 hidden units (the MAF and NSF-AR rows of
``benchmarks/peers.py``) and the parameter counts of the affine (2) and 8-bin spline (23)
transformers, times the network work of one inversion both ways under ``torch.no_grad``,
interleaved (A B A B ...), and prints the median time and the median of the per-round ratios.
Only the conditioner is timed; the transformer's work is the same either way.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from flowforge.nn.made import MADE
from flowforge.testing import perturb_parameters


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--features", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    d, b = args.features, args.batch
    print(f"D = {d}, batch {b}, {args.threads} thread(s), {args.rounds} interleaved rounds")
    print("| transformer | params/dim | D full passes (ms) | sweep (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for name, p in (("affine", 2), ("spline, 8 bins", 23)):
        torch.manual_seed(0)
        made = MADE(d, p, (128, 128))
        perturb_parameters(made, 0.1)
        x = torch.randn(b, d)

        def passes(made=made, x=x) -> None:
            y = torch.zeros_like(x)
            for i in range(d):  # each pass fixes one more dimension, as in nflows/zuko
                made(y)
                y[:, i] = x[:, i]

        def sweep(made=made, x=x) -> None:
            made.sweep(lambda i, params: x[:, i], b)

        times: dict[str, list[float]] = {"passes": [], "sweep": []}
        with torch.no_grad():
            for _ in range(args.rounds):
                for key, fn in (("passes", passes), ("sweep", sweep)):
                    start = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - start)
        pairs = zip(times["passes"], times["sweep"], strict=True)
        ratio = statistics.median([a / s for a, s in pairs])
        ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"| {name} | {p} | {ms['passes']:.2f} | {ms['sweep']:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
