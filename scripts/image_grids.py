"""Sample, interpolation and attribute-manipulation grids of a trained image run, as PNGs.

    python scripts/image_grids.py runs/glow-digits docs/img/glow-digits --temperature 0.7

Writes OUT/samples_T{temperature}.png (for a class-conditional run OUT/samples_T{t}_classes.png,
one row of 8 per class),
OUT/interpolations.png (test image pairs, one row each) and OUT/thin_to_thick.png (test images
moved along the mean latent difference between the thinnest and thickest 20% of 2,000
training images; unconditional runs). The same functions back
`flowforge sample/interpolate/manipulate`.
"""

import argparse
from pathlib import Path

import torch

from flowforge.latent import attribute_direction, thickness_groups
from flowforge.runs import open_run
from flowforge.runs.build import load_data
from flowforge.viz.images import interpolation_grid, manipulation_grid, sample_grid


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, default=1, help="enlarge each pixel this many times")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    run = open_run(args.run_dir)
    splits, flow = load_data(run.config), run.model()
    levels = splits.info["levels"]
    t = args.temperature
    n_classes = splits.context_features
    if n_classes:  # one row of 8 samples per class
        labels = [label for label in range(n_classes) for _ in range(8)]
        path = args.out_dir / f"samples_T{t}_classes.png"
        sample_grid(flow, path, len(labels), t, labels, n_classes, scale=args.scale)
        context = splits.test_context
    else:
        sample_grid(flow, args.out_dir / f"samples_T{t}.png", args.n, t, scale=args.scale)
        context = None
    pairs = splits.test[:16].reshape(8, 2, *splits.event_shape)
    pair_context = None if context is None else context[:16:2]
    interpolation_grid(
        flow, pairs, args.out_dir / "interpolations.png", 8, pair_context, scale=args.scale
    )
    thin, thick = thickness_groups(splits.train[:2000], 0.2, levels)
    direction = attribute_direction(flow, thin, thick) if context is None else None
    if direction is not None:
        path = args.out_dir / "thin_to_thick.png"
        manipulation_grid(flow, splits.test[:8], direction, path, scale=args.scale)
    print(f"wrote {sorted(p.name for p in args.out_dir.iterdir())} to {args.out_dir}")


if __name__ == "__main__":
    main()
