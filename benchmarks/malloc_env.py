"""A/B of glibc's allocator settings, in separate processes run in turn, as ratios.

On Linux, an activation-sized tensor (``batch x 128`` floats: 2 MiB at batch 4096) is above
glibc's mmap and trim thresholds, so each one is fresh memory whose first write page-faults:
``torch.profiler`` shows it as ``aten::copy_`` inside ``addmm`` (the bias copied into the new
output). Raising the thresholds keeps freed memory for reuse. It is a setting of the process,
so it helps every library in it alike; this measures by how much for flowforge's MAF and
RealNVP 8-D rows (``benchmarks/peers.py``), evaluation ``log_prob`` at batch 4096 and a training
step at batch 512, 1 thread.

    python benchmarks/malloc_env.py [--rounds 5]

Prints the median per-round ratio tuned / default (below 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # ab_options.py's models, imported by each child
TUNED = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}

CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, BENCHMARKS)
from ab_options import MODELS
torch.set_num_threads(1)
torch.manual_seed(0)
out = {}
for name, make in MODELS.items():
    flow = make()
    opt = torch.optim.Adam(flow.parameters(), 1e-3)
    xb, xe = torch.randn(512, 8), torch.randn(4096, 8)
    def step():
        opt.zero_grad(set_to_none=True)
        (-flow.log_prob(xb).mean()).backward()
        opt.step()
    def timed(fn, reps):
        times = []
        for _ in range(reps):
            t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
        return sorted(times)[reps // 2]
    for _ in range(3):
        step()
    out[name + " step"] = timed(step, REPS)
    flow.eval()
    with torch.no_grad():
        out[name + " log_prob"] = timed(lambda: flow.log_prob(xe), REPS)
print(json.dumps(out))
"""


def run_child(tuned: bool, reps: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in TUNED}
    if tuned:
        env.update(TUNED)
    code = CHILD.replace("REPS", str(reps)).replace("BENCHMARKS", repr(str(HERE)))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=15, help="timed calls per process")
    args = parser.parse_args(argv)
    ratios: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        default, tuned = run_child(False, args.reps), run_child(True, args.reps)
        for key in default:
            ratios.setdefault(key, []).append(tuned[key] / default[key])
    print(f"| measurement | tuned / default ({' '.join(f'{k}={v}' for k, v in TUNED.items())}) |")
    print("|---|---|")
    for key, values in ratios.items():
        print(f"| {key} | {statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}] |")


if __name__ == "__main__":
    main()
