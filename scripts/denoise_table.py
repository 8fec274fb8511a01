"""The c-Glow denoising numbers of docs/results.md: on the first N test images of a
``denoising`` run, the PSNR of the noisy input (clipped to [0, 1]), of its 3x3 box filter, of
the training mean image, of c-Glow's posterior mean (K samples) and of one sample (the run's
conditional bits/dim is in its summary.json).

    python scripts/denoise_table.py runs/cglow-denoise-mnist -n 200 -k 8
"""

from __future__ import annotations

import argparse
import json

import torch

from flowforge.models.cglow import posterior_mean, psnr
from flowforge.runs import open_run
from flowforge.runs.build import load_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("-k", type=int, default=8)
    args = p.parse_args()
    run = open_run(args.run)
    splits = load_data(run.config)
    flow = run.model()
    torch.manual_seed(0)
    x, c = splits.test[: args.n], splits.test_context[: args.n]
    noisy = c.clamp(0, 1) * 255
    box = torch.nn.functional.avg_pool2d(noisy, 3, 1, 1, count_include_pad=False)
    mean = posterior_mean(flow, c, args.k)
    one = posterior_mean(flow, c, 1)
    out = {
        "images": args.n,
        "samples": args.k,
        "psnr_noisy_clipped": float(psnr(noisy, x).mean()),
        "psnr_box3_of_noisy": float(psnr(box, x).mean()),
        "psnr_training_mean": float(psnr(splits.train.mean(0).expand_as(x), x).mean()),
        "psnr_cglow_mean": float(psnr(mean.clamp(0, 255), x).mean()),
        "psnr_cglow_one_sample": float(psnr(one.clamp(0, 255), x).mean()),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
