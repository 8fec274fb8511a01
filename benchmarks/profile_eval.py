"""Op self-times of evaluation: ``torch.profiler`` over ``log_prob`` and ``sample`` calls.

    python benchmarks/profile_eval.py [--model realnvp8] [--batch 4096] [--calls 10]

Models as in ``benchmarks/ab_options.py`` (the MAF and RealNVP 8-D rows of
``benchmarks/peers.py``), parameters drawn at random (std 0.05) so no layer is the identity,
1 thread, a fresh process. Prints the top ops by self CPU time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_options import MODELS  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="realnvp8")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    flow = MODELS[args.model]().eval()
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(args.batch, 8)
    with torch.no_grad():
        flow.log_prob(x), flow.sample(args.batch)  # warm-up
        with profile() as prof:
            for _ in range(args.calls):
                flow.log_prob(x)
                flow.sample(args.batch)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    print(table)
    return table


if __name__ == "__main__":
    main()
