"""Wall-clock per training step of the residual and continuous recipes on a 2-D toy set.

Builds each model from its config in configs/toy/, runs ``--warmup`` untimed steps and then
``--steps`` timed Adam steps of ``-log_prob(x).mean()`` at the config's batch size, on one
thread, and prints the median and the mean seconds per step. Early steps are cheaper for
FFJORD than late ones (the number of solver evaluations grows as the dynamics get stiffer),
so its figure is a lower bound.

    nice -n 10 .venv/bin/python scripts/residual_step_cost.py --data 8gaussians
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from flowforge.config import load_config
from flowforge.data.registry import load_dataset
from flowforge.models import RECIPES

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="8gaussians")
    p.add_argument("--models", nargs="+", default=["resflow", "iresnet", "ffjord", "realnvp"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        cfg = load_config(str(ROOT / "configs" / "toy" / f"{name}-{args.data}.yaml"), [])
        torch.manual_seed(0)
        data = load_dataset(args.data, 4096, 16, 16).train
        flow = RECIPES[cfg.model.name](2, **cfg.model.options)
        opt = torch.optim.Adam(flow.parameters(), cfg.train.lr)
        times = []
        for i in range(args.warmup + args.steps):
            x = data[torch.randint(0, data.shape[0], (cfg.train.batch_size,))]
            t0 = time.perf_counter()
            loss = -flow.log_prob(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        print(
            f"{name:8s} batch {cfg.train.batch_size}: median {statistics.median(times):.3f} s/step,"
            f" mean {statistics.mean(times):.3f} s/step over {args.steps} steps"
        )


if __name__ == "__main__":
    main()
