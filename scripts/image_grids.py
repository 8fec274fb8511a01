"""Sample, interpolation and attribute-manipulation grids of a trained image run, as PNGs.

    python scripts/image_grids.py runs/glow-digits docs/img/glow-digits --temperature 0.7

Writes OUT/samples_T{temperature}.png (for a class-conditional run OUT/samples_T{t}_classes.png,
one row of 8 per class),
OUT/interpolations.png (test image pairs, one row each) and OUT/thin_to_thick.png (test images
moved along the mean latent difference between the thinnest and thickest 20% of 2,000
training images; unconditional runs): the functions of `flowforge interpolate` and `flowforge
manipulate` (flowforge/runs/image_grids.py), and the sample grid `flowforge sample --out X.png`
draws.
"""

import argparse
from pathlib import Path

import torch

from flowforge.runs.image_grids import open_image_run, write_interpolations, write_thin_to_thick
from flowforge.viz.images import sample_grid


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
    image = open_image_run(args.run_dir)
    t, n_classes = args.temperature, image.splits.context_features
    if n_classes:  # one row of 8 samples per class
        labels = [label for label in range(n_classes) for _ in range(8)]
        path = args.out_dir / f"samples_T{t}_classes.png"
        sample_grid(image.flow, path, len(labels), t, labels, n_classes, scale=args.scale)
    else:
        path = args.out_dir / f"samples_T{t}.png"
        sample_grid(image.flow, path, args.n, t, scale=args.scale)
    write_interpolations(image, args.out_dir / "interpolations.png", scale=args.scale)
    if not n_classes:
        write_thin_to_thick(image, args.out_dir / "thin_to_thick.png", scale=args.scale)
    print(f"wrote {sorted(p.name for p in args.out_dir.iterdir())} to {args.out_dir}")


if __name__ == "__main__":
    main()
