"""Test bits/dim against wall-clock for a running (or resumed) image training run.

Watches RUN_DIR/checkpoints/last.pt; each time it changes, evaluates it on the first N test
images (with the averaged parameters when the run keeps a moving average, ``train.ema``, as
its validation and best.pt do) and appends {step, averaged, elapsed (training wall-clock, s),
test_bpd, stderr, peak RSS of the training process} to RUN_DIR/test_curve.jsonl. Stops when
RUN_DIR/summary.json appears or the training process (--pid) has exited.

    nice -n 15 python scripts/image_curve.py runs/glow-mnist --pid 1234 --n-test 2000
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from flowforge.objectives.mle import bits_per_dim, evaluate_nll
from flowforge.run_files import LAST
from flowforge.runs import open_run
from flowforge.runs.build import load_data
from flowforge.train.checkpoint import (
    load_averaged_parameters,
    load_checkpoint,
    load_model_state,
)


def peak_rss_mb(pid):
    """Peak resident memory (VmHWM) of ``pid`` or, if larger, of any of its descendants: a
    wrapper such as ``timeout`` forks the training process, whose memory is what counts."""
    try:
        peak = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                peak = max(peak, peak_rss_mb(int(child)) or 0.0)
        return peak
    except OSError:
        return None


def due(step, last_step, every):
    """Whether the checkpoint at ``step`` is evaluated: the first one always, later ones only
    ``every`` or more steps after the last one evaluated."""
    return last_step is None or step - last_step >= every


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--pid", type=int, help="training process to follow (and measure)")
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--poll", type=float, default=30.0, help="seconds between checks")
    p.add_argument(
        "--every",
        type=int,
        default=0,
        help="skip checkpoints fewer than this many steps after the last one evaluated",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    run = open_run(args.run_dir)
    ckpt = run.directory.checkpoint_path(LAST)
    cfg, splits, flow = run.config, load_data(run.config), run.model("last")
    x = splits.test[: args.n_test]
    c = None if splits.test_context is None else splits.test_context[: args.n_test]
    dims = math.prod(splits.event_shape)
    out = args.run_dir / "test_curve.jsonl"
    seen, last_step = None, None
    while True:
        if ckpt.is_file() and ckpt.stat().st_mtime != seen:
            seen = ckpt.stat().st_mtime
            time.sleep(2)  # let an atomic replace settle
            payload = load_checkpoint(ckpt)
            step = int(payload["step"])
            if not due(step, last_step, args.every):
                continue
            last_step = step
            load_model_state(ckpt, flow, payload)
            averaged = load_averaged_parameters(ckpt, flow, payload)
            nll, se = evaluate_nll(flow, x, c, cfg.train.eval_batch_size)
            record = {
                "step": step,
                "averaged": averaged,
                "elapsed": round(float(payload["elapsed"]), 1),
                "test_bpd": bits_per_dim(nll, dims),
                "test_bpd_stderr": bits_per_dim(se, dims),
                "n_test": int(x.shape[0]),
                "peak_rss_mb": peak_rss_mb(args.pid) if args.pid else None,
            }
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
        if run.directory.summary_file.exists():
            break
        if args.pid and not os.path.exists(f"/proc/{args.pid}"):
            break
        time.sleep(args.poll)


if __name__ == "__main__":
    main()
