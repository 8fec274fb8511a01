"""The ``flowforge`` command.

::

    flowforge train [CONFIG.yaml] [--set key=value ...] [--device cpu|cuda] [--resume RUN_DIR]
                    [--compile]
    flowforge eval RUN_DIR [--split test|val|train]
    flowforge sample RUN_DIR [-n 1000] [--temperature 1.0] [--class K] [--out FILE]
    flowforge interpolate RUN_DIR        (image runs: PNG grid of latent interpolations)
    flowforge manipulate RUN_DIR         (image runs: thin-to-thick stroke edits)
    flowforge fit-target U1 [--model planar --set layers=32] [--anneal]
    flowforge check [PATTERN]
    flowforge list

User errors (bad configs, missing files, corrupt checkpoints, diverged runs) print one line
starting with ``error:`` and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from flowforge.config import ConfigError, apply_overrides, load_config, parse_config

__all__ = ["main"]


def _train(args: argparse.Namespace) -> int:
    from flowforge.train.distributed import Group
    from flowforge.train.loop import train_run

    overrides = list(args.set or [])
    if args.device:
        overrides.append(f"device={args.device}")
    if args.compile:
        overrides.append("train.compile=true")
    if args.resume:
        run_dir = Path(args.resume)
        config_path = run_dir / "config.yaml"
        if args.config is not None:
            raise ConfigError("give either CONFIG or --resume RUN_DIR, not both")
        if not config_path.is_file():
            raise ConfigError(f"--resume: not a run directory (no config.yaml): {run_dir}")
        cfg = parse_config(apply_overrides(yaml.safe_load(config_path.read_text()), overrides))
    else:
        raw = _read_yaml(args.config)
        if isinstance(raw.get("model"), dict) and raw["model"].get("name") == "vae":
            if Group.from_environment().active:
                raise ConfigError("VAE baselines train in one process: run them without torchrun")
            return _train_vae(apply_overrides(raw, overrides))
        cfg = load_config(args.config, overrides)
    result = train_run(
        cfg, resume=Path(args.resume) if args.resume else None, progress=not args.quiet
    )
    if Group.from_environment().is_main:  # under torchrun, rank 0 reports
        _print_summary(result.run_dir, result.summary)
    return 0


def _read_yaml(path: str | None) -> dict:
    if path is None:
        return {}
    if not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: should hold a mapping of sections")
    return raw


def _train_vae(raw: dict) -> int:
    """A ``model: {name: vae, posterior: {...}}`` config: ELBO/IWAE training of a VAE."""
    from flowforge.train.vae import train_vae

    out_dir = raw.pop("output_dir", "runs")
    try:
        summary = train_vae(raw, out_dir=out_dir)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"vae config: {e}") from None
    print(json.dumps(summary, indent=2))
    return 0


def _print_summary(run_dir: Path, s: dict) -> None:
    line = f"test NLL {s['test_nll']:.4f} ± {s['test_stderr']:.4f} nats"
    if "test_bpd" in s:
        line = f"test {s['test_bpd']:.4f} ± {s['test_bpd_stderr']:.4f} bits/dim ({line})"
    if "entropy" in s:
        line += f"; true entropy {s['entropy']:.4f}, gap {s['gap']:+.4f}"
    print(
        f"{s['name']}: {s['model']} on {s['data']}, {s['steps']} steps in "
        f"{s['train_seconds']:.1f} s: {line}"
    )
    print(f"wrote {run_dir}/")


def _eval(args: argparse.Namespace) -> int:
    from flowforge.train.loop import load_run
    from flowforge.train.metrics import bits_per_dim, evaluate_nll

    cfg, splits, flow = load_run(args.run)
    x, c = getattr(splits, args.split), getattr(splits, f"{args.split}_context")
    nll, se = evaluate_nll(flow, x, c, cfg.train.eval_batch_size)
    out = {"run": str(args.run), "split": args.split, "nll": nll, "stderr": se, "n": len(x)}
    if splits.unit == "bits/dim":
        dims = int(x[0].numel())
        out.update(bpd=bits_per_dim(nll, dims), bpd_stderr=bits_per_dim(se, dims))
    if splits.entropy is not None:
        out.update(entropy=splits.entropy, gap=nll - splits.entropy)
    print(json.dumps(out, indent=2))
    return 0


def _sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from flowforge.train.loop import load_run

    if args.n < 1:
        raise ConfigError(f"-n: should be positive, got {args.n}")
    if not args.temperature > 0:
        raise ConfigError(f"--temperature: should be positive, got {args.temperature}")
    _, splits, flow = load_run(args.run)
    torch.manual_seed(args.seed)
    if len(splits.event_shape) == 3:  # images: a PNG grid
        from flowforge.viz.images import sample_grid

        if args.label is not None and not splits.context_features:
            raise ConfigError("--class: this run's model is not class-conditional")
        suffix = "" if args.label is None else f"_class{args.label}"
        out = (
            Path(args.out)
            if args.out
            else Path(args.run) / f"samples_T{args.temperature}{suffix}.png"
        )
        sample_grid(flow, out, args.n, args.temperature, args.label, splits.context_features or 10)
        print(f"wrote {args.n} samples to {out}")
        return 0
    context = None
    if splits.test_context is not None:
        context = splits.test_context[torch.randint(len(splits.test_context), (args.n,))]
    x = flow.sample(args.n, context, temperature=args.temperature).cpu().numpy()
    out = Path(args.out) if args.out else Path(args.run) / "samples.npy"
    np.save(out, x)
    print(f"wrote {args.n} samples of shape {tuple(x.shape[1:])} to {out}")
    return 0


def _image_run(run: str):  # noqa: ANN202
    from flowforge.train.loop import load_run

    cfg, splits, flow = load_run(run)
    if len(splits.event_shape) != 3:
        raise ConfigError(f"{run}: not an image run (data shape {splits.event_shape})")
    return cfg, splits, flow


def _interpolate(args: argparse.Namespace) -> int:
    from flowforge.viz.images import interpolation_grid

    _, splits, flow = _image_run(args.run)
    k = min(args.pairs, splits.test.shape[0] // 2)
    pairs = splits.test[: 2 * k].reshape(k, 2, *splits.event_shape)
    context = None if splits.test_context is None else splits.test_context[: 2 * k : 2]
    out = Path(args.out) if args.out else Path(args.run) / "interpolations.png"
    interpolation_grid(flow, pairs, out, args.steps, context)
    print(f"wrote {k} interpolations of {args.steps} steps to {out}")
    return 0


def _manipulate(args: argparse.Namespace) -> int:
    from flowforge.latent import attribute_direction, thickness_groups
    from flowforge.viz.images import manipulation_grid

    _, splits, flow = _image_run(args.run)
    if splits.context_features:
        raise ConfigError("manipulate: needs an unconditional image run")
    levels = splits.info.get("levels", 256)
    thin, thick = thickness_groups(splits.train[: args.reference], 0.2, levels)
    direction = attribute_direction(flow, thin, thick)
    out = Path(args.out) if args.out else Path(args.run) / "thin_to_thick.png"
    manipulation_grid(flow, splits.test[: args.n], direction, out)
    print(f"wrote thin-to-thick edits of {args.n} test images to {out}")
    return 0


def _fit_target(args: argparse.Namespace) -> int:
    import torch

    from flowforge.models import RECIPES
    from flowforge.targets import make_target
    from flowforge.train.variational import fit_target
    from flowforge.viz.vi import plot_vi_grid

    try:
        target = make_target(args.target)
    except ValueError as e:
        raise ConfigError(f"TARGET: {e}") from None
    if args.model not in RECIPES:
        raise ConfigError(f"--model: unknown model {args.model!r}; choose one of {sorted(RECIPES)}")
    options = apply_overrides({}, args.set or [])
    torch.manual_seed(args.seed)
    try:
        flow = RECIPES[args.model](target.dim, **options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--set: {args.model!r} cannot be built: {e}") from None
    result = fit_target(
        flow,
        target,
        args.steps,
        args.batch_size,
        args.lr,
        args.anneal,
        args.anneal_length,
        seed=args.seed,
    )
    out = Path(args.out or f"runs/vi-{args.target}-{args.model}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "target": args.target,
        "model": args.model,
        "options": options,
        "kl": result.kl,
        "loss": result.loss,
        "loss_stderr": result.loss_stderr,
        "steps": result.steps,
        "skipped": result.skipped,
        "seconds": round(result.seconds, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if target.dim == 2:
        plot_vi_grid(
            [target],
            {(target.name, args.model): flow},
            [args.model],
            out / "fit.png",
            kls=None if result.kl is None else {(target.name, args.model): result.kl},
        )
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}/")
    return 0


def _check(args: argparse.Namespace) -> int:
    from flowforge.testing import check_transform
    from flowforge.testing.registry import all_cases

    cases = {k: v for k, v in all_cases().items() if not args.pattern or args.pattern in k}
    if not cases:
        print(f"no conformance case matches {args.pattern!r}")
        return 1
    names = ["round_trip", "log_det", "inverse_log_det", "gradients", "state_dict", "repr"]
    width = max(len(k) for k in cases)
    print(f"{'case':<{width}}  " + "  ".join(f"{n:<15}" for n in names))
    failures = 0
    for name, case in sorted(cases.items()):
        x, c = case.inputs()
        results = {
            r.name: r for r in check_transform(case.make_transform, x, c, case.atol, case.rtol)
        }
        cells = []
        for n in names:
            r = results[n]
            mark = "ok" if r.passed else "FAIL"
            if r.detail.startswith("skipped"):
                mark = "skipped"
            cells.append(f"{mark:<15}")
            failures += not r.passed
        print(f"{name:<{width}}  " + "  ".join(cells))
    print(f"{len(cases)} cases, {failures} failed checks")
    return 1 if failures else 0


def _list(args: argparse.Namespace) -> int:
    from flowforge.data.registry import DATASETS
    from flowforge.models import RECIPES

    print("models:    " + ", ".join(sorted(RECIPES)))
    print("data sets: " + ", ".join(sorted(DATASETS)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowforge", description="Normalizing flows in PyTorch.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a flow by maximum likelihood")
    p.add_argument("config", nargs="?", help="YAML config (default: RealNVP on the parabola)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (overrides the config)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the training step's log_prob"
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a run's best model")
    p.add_argument("run", help="run directory")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.set_defaults(func=_eval)

    p = sub.add_parser("sample", help="draw samples from a run's best model")
    p.add_argument("run", help="run directory")
    p.add_argument("-n", type=int, default=1000, help="number of samples")
    p.add_argument("--temperature", type=float, default=1.0, help="base noise scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output .npy, or .png for image runs (default: in RUN)")
    p.add_argument("--class", dest="label", type=int, help="class to sample (class-conditional)")
    p.set_defaults(func=_sample)

    p = sub.add_parser("interpolate", help="latent interpolations between test images (PNG)")
    p.add_argument("run", help="image run directory")
    p.add_argument("--pairs", type=int, default=8, help="number of image pairs (rows)")
    p.add_argument("--steps", type=int, default=8, help="images per row")
    p.add_argument("--out", help="output .png (default RUN/interpolations.png)")
    p.set_defaults(func=_interpolate)

    p = sub.add_parser("manipulate", help="move test images along the thin-to-thick direction")
    p.add_argument("run", help="unconditional image run directory")
    p.add_argument("-n", type=int, default=8, help="test images to edit (rows)")
    p.add_argument("--reference", type=int, default=2000, help="training images for the direction")
    p.add_argument("--out", help="output .png (default RUN/thin_to_thick.png)")
    p.set_defaults(func=_manipulate)

    p = sub.add_parser("fit-target", help="variational inference: fit a flow to an energy")
    p.add_argument("target", help="U1, U2, U3, U4, funnel or banana")
    p.add_argument("--model", default="planar", help="recipe name (default planar)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe option")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--anneal", action="store_true", help="beta_t = min(1, 0.01 + t/length)")
    p.add_argument("--anneal-length", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output directory (default runs/vi-TARGET-MODEL)")
    p.set_defaults(func=_fit_target)

    p = sub.add_parser("check", help="run the conformance kit over every registered transform")
    p.add_argument("pattern", nargs="?", help="only cases whose name contains this")
    p.set_defaults(func=_check)

    p = sub.add_parser("list", help="list models and data sets")
    p.set_defaults(func=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from flowforge.allocator import tune_allocator
    from flowforge.train.checkpoint import CheckpointError
    from flowforge.train.loop import TrainingDiverged, TrainingInterrupted

    user_errors = (ConfigError, CheckpointError, TrainingDiverged, FileNotFoundError)
    tune_allocator()  # fewer page faults on activation-sized tensors (flowforge.allocator)
    try:
        status = args.func(args)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        status = 130
    except user_errors as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        status = 2
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # a torchrun process that trained
        from flowforge.train.distributed import exit_process

        exit_process(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
