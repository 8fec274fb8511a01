"""The ``flowforge`` command.

::

    flowforge train [CONFIG.yaml] [--set key=value ...] [--device cpu|cuda] [--resume RUN_DIR]
                    [--compile | --no-compile] [--threads N]   (any objective: `flowforge list`)
                    [--accept-unidentified]     (with --resume: a last.pt without identity)
    flowforge eval RUN_DIR [--split test|val|train]
    flowforge sample RUN_DIR [-n 1000] [--temperature 1.0] [--class K | --context V] [--out FILE]
    flowforge interpolate RUN_DIR        (image runs: PNG grid of latent interpolations)
    flowforge manipulate RUN_DIR         (image runs: thin-to-thick stroke edits)
    flowforge inpaint RUN_DIR --image test:0,1|FILE.npy --mask centre|FILE.npy [-k 8]
                                         (c-Glow inpainting runs: samples and bits/dim)
    flowforge fit-target U1 [--model planar --set layers=32] [--anneal]   (a reverse_kl run)
    flowforge compare CONFIG.yaml [--out DIR]   (several models, any objective, 3+ seeds)
    flowforge report RUN_DIR [RUN_DIR ...] [--out PAGE.html]   (a static HTML page)
    flowforge serve [--port 8000]       (the local web playground, on 127.0.0.1)
    flowforge check [PATTERN]
    flowforge list

User errors (bad configs, missing files, corrupt checkpoints, diverged runs) print one line
starting with ``error:`` and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

try:  # the command's own dependencies: the `cli` extra
    import tqdm  # noqa: F401
    import yaml  # noqa: F401
except ImportError as missing:  # tests/test_packaging.py
    sys.exit(
        f"error: the flowforge command needs the cli extra ({missing.name} is not installed): "
        f"pip install 'flowforge[cli]'"
    )

from flowforge.config import ConfigError, apply_overrides, load_config, parse_config  # noqa: E402
from flowforge.run_files import LAST  # noqa: E402

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["main"]


def _train(args: argparse.Namespace) -> int:
    from flowforge.runs import train_run
    from flowforge.train.distributed import Group

    overrides = list(args.set or [])
    if args.device:
        overrides.append(f"device={args.device}")
    if args.compile is not None:
        overrides.append(f"train.compile={args.compile}")
    if args.time is not None:
        overrides.append(f"train.max_seconds={args.time}")
    if args.threads is not None:
        overrides.append(f"train.threads={args.threads}")
    if args.accept_unidentified and not args.resume:
        raise ConfigError("--accept-unidentified goes with --resume RUN_DIR")
    if args.resume:
        if args.config is not None or args.data is not None:
            raise ConfigError("give CONFIG, --data FILE or --resume RUN_DIR, one of them")
        result = train_run(
            resume=args.resume,
            overrides=overrides,
            progress=not args.quiet,
            accept_unidentified=args.accept_unidentified,
        )
    elif args.data is not None:
        from flowforge.runs.shorthand import data_file_config

        if args.config is not None:
            raise ConfigError("give CONFIG or --data FILE, not both")
        data = apply_overrides({}, overrides).get("data") or {}  # --set data.* sizes too
        context = args.context.split(",") if args.context else data.get("context")
        features = args.features.split(",") if args.features else data.get("features")
        drop = args.drop_na or data.get("drop_nonfinite") is True
        paths = data.get("val_path"), data.get("test_path")
        raw = data_file_config(args.data, args.model, context, features, drop, *paths)
        raw = _resolved_paths(apply_overrides(raw, overrides))
        result = train_run(parse_config(raw), progress=not args.quiet)
    else:
        if args.model or args.context or args.features or args.drop_na:
            raise ConfigError(
                "--model, --context, --features and --drop-na go with --data FILE (in a "
                "config: model.name, data.context, data.features, data.drop_nonfinite)"
            )
        cfg = load_config(args.config, overrides)
        result = train_run(cfg, progress=not args.quiet)
    if Group.from_environment().is_main:  # under torchrun, rank 0 reports
        print(summary_line(result.summary))
        print(f"wrote {result.run_dir}/")
    return 0


def _resolved_paths(raw: dict) -> dict:
    """The short form's config with the data files' paths absolute (``--set
    data.test_path=test.csv`` included), so the run can be resumed or evaluated from
    anywhere."""
    data = raw.get("data") or {}
    for key in ("path", "val_path", "test_path"):
        if isinstance(data.get(key), str):
            data[key] = str(Path(data[key]).resolve())
    return raw


def summary_line(s: dict) -> str:
    """One line of a run's summary: its facts, then its typed results (the headline with its
    error bar and kind, the NLL, the other measures; :mod:`flowforge.objectives.results`)."""
    from flowforge.objectives.results import read_evaluation

    head = f"{s['name']}: {s['model']}"
    head += f" on {s['data']}" if s.get("data") else ""
    head += f" ({s['objective']}), {s['steps']} steps in {s['train_seconds']:.1f} s: "
    results = read_evaluation(s)
    body = "no test results in the summary" if results is None else results.line()
    if "yardstick" in s:
        from flowforge.yardstick import yardstick_sentence

        body += "\n" + yardstick_sentence(s["yardstick"])
    return head + body


def _output(path: str | Path | None, option: str = "--out") -> Path | None:
    """An output path given on the command line, as given; refused when it names one of a
    run's own files (:func:`~flowforge.runs.directory.check_output`)."""
    if path is None:
        return None
    from flowforge.runs.directory import check_output

    check_output(path, option)
    return Path(path)


def _eval(args: argparse.Namespace) -> int:
    from flowforge.runs import open_run
    from flowforge.train.threads import torch_threads

    run = open_run(args.run)
    device = args.device or "cpu"
    with torch_threads(run.threads):  # as many as the run's own evaluation
        results = run.objective(device).evaluate(run.model(device=device), args.split)
    out = results.to_dict()
    bad = results.not_finite()  # a command never exits 0 with a NaN or infinite result
    if bad:
        raise ConfigError(f"eval {args.run}: {', '.join(bad)} is not finite (the model is broken)")
    print(json.dumps({"run": str(args.run), "split": args.split, **out}, indent=2))
    print(results.line(), file=sys.stderr)
    if "yardstick" in out:
        from flowforge.yardstick import yardstick_sentence

        print(yardstick_sentence(out["yardstick"]), file=sys.stderr)
    return 0


SAMPLE_SUFFIXES = {".npy", ".csv", ".png"}


def _sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from flowforge.runs import open_run

    if args.n < 1:
        raise ConfigError(f"-n: should be positive, got {args.n}")
    if not args.temperature > 0:
        raise ConfigError(f"--temperature: should be positive, got {args.temperature}")
    run = open_run(args.run)
    spec = run.spec
    image = len(spec["event_shape"]) == 3
    out = _output(args.out)
    if out is not None and out.suffix not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--out: unknown format {out.suffix!r}; use .npy, .csv or .png")
    if out is not None and out.suffix == ".png" and not image:
        raise ConfigError(
            f"--out: a PNG needs an image run (this run's shape is {spec['event_shape']})"
        )
    if len(spec.get("context_shape") or ()) > 1:
        raise ConfigError(
            f"{args.run}: its model is conditioned on images {tuple(spec['context_shape'])}; "
            "sample it with flowforge inpaint (inpainting runs) or flow.sample(n, context=image)"
        )
    label = class_index(spec, args.label)
    context = sample_context(spec, args.n, label, args.context)
    if out is None:
        suffix = "" if label is None else f"_class{label}"
        out = run.path / (f"samples_T{args.temperature}{suffix}.png" if image else "samples.npy")
    model = run.model(device=args.device or "cpu")
    torch.manual_seed(args.seed)
    if out.suffix == ".png":
        from flowforge.viz.images import sample_grid

        sample_grid(model, out, args.n, args.temperature, label, spec["context_classes"] or 10)
        print(f"wrote {args.n} samples to {out}")
        return 0
    if context is not None:
        context = context.to(next(model.parameters()).device)
    x = model.sample(args.n, context, temperature=args.temperature).cpu().numpy()
    if not np.isfinite(x).all():
        raise ConfigError(
            f"sample {args.run}: {int((~np.isfinite(x)).sum())} values are not finite"
        )
    if out.suffix == ".npy":
        np.save(out, x)
    else:
        rows = x.reshape(len(x), -1)
        header = _csv_header(spec, rows.shape[1])
        np.savetxt(out, rows, delimiter=",", fmt="%.8g", header=header, comments="")
    print(f"wrote {args.n} samples of shape {tuple(x.shape[1:])} to {out}")
    return 0


def _csv_header(spec: dict, width: int) -> str:
    """The header of a samples CSV: the run's feature names (file data), else ``x0, x1,
    ...``; quoted as CSV where a name needs it."""
    import csv
    import io

    names = (spec.get("names") or {}).get("features") or []
    if len(names) != width:
        names = [f"x{i}" for i in range(width)]
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(names)
    return line.getvalue()


def _levels(spec: dict) -> tuple[str, list[str]] | None:
    """The column and levels of a run conditioned on one categorical column, else ``None``."""
    names = spec.get("names") or {}
    levels = names.get("levels") or {}
    if spec.get("context_classes") and len(levels) == 1:
        column, values = next(iter(levels.items()))
        if len(values) == spec["context_classes"]:
            return column, list(values)
    return None


def class_index(spec: dict, label: str | int | None) -> int | None:
    """``--class``: a level name of the run's categorical context (``Adelie``; it wins over
    an index when a level is itself a number) or a class index; ``None`` without one."""
    if label is None or isinstance(label, int):
        return label
    named = _levels(spec)
    if named and label in named[1]:
        return named[1].index(label)
    try:
        return int(label)
    except ValueError:
        if named:
            raise ConfigError(
                f"--class: {label!r} is not a level of {named[0]!r}; its levels: "
                f"{', '.join(named[1])}"
            ) from None
        raise ConfigError(f"--class: should be a class index, got {label!r}") from None


def sample_context(spec: dict, n: int, label: int | None, values: str | None) -> Tensor | None:
    """The ``(n, context_features)`` context for sampling a run with ``spec``: one-hot
    ``label`` (class-conditional runs), or ``values`` (comma-separated numbers for every
    sample, or a ``.npy``/``.csv`` file with one row or ``n`` rows, in the encoded form; a
    run on file data with categorical context columns takes one value per column, a level
    name for those); ``None`` for an unconditional run. Every mismatch is a
    :class:`ConfigError`."""
    import numpy as np
    import torch

    features, classes = spec.get("context_features", 0), spec.get("context_classes", 0)
    if label is not None and values is not None:
        raise ConfigError("give --class or --context, not both")
    if label is not None:
        if not classes:
            why = "it has no context" if not features else "its context is not a class label"
            raise ConfigError(f"--class: this run is not class-conditional ({why})")
        if not 0 <= label < classes:
            named = _levels(spec)
            levels = f"one of {', '.join(named[1])} or " if named else ""
            raise ConfigError(f"--class: should be {levels}in [0, {classes}), got {label}")
        return torch.nn.functional.one_hot(torch.full((n,), label), classes).float()
    if values is None:
        if features:
            hint = " or --class K" if classes else ""
            raise ConfigError(
                f"this run is conditional on {features} context features: give --context{hint}"
            )
        return None
    if not features:
        raise ConfigError("--context: this run's model is unconditional")
    path = Path(values)
    if path.suffix in (".npy", ".csv"):
        if not path.is_file():
            raise ConfigError(f"--context: file not found: {path}")
        try:
            rows = (
                np.load(path, allow_pickle=False)
                if path.suffix == ".npy"
                else np.loadtxt(path, delimiter=",", ndmin=2)
            )
        except ValueError as e:
            raise ConfigError(f"--context: cannot read {path}: {e}") from None
    elif (spec.get("names") or {}).get("levels"):
        rows = _encoded_context(spec["names"], values)
    else:
        try:
            rows = np.array([[float(v) for v in values.split(",")]])
        except ValueError:
            raise ConfigError(
                f"--context: should be comma-separated numbers or a .npy/.csv file, got {values!r}"
            ) from None
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, rows.shape[-1] if rows.ndim else 1)
    if rows.shape[1] != features:
        raise ConfigError(f"--context: {rows.shape[1]} values per row, the model takes {features}")
    if len(rows) not in (1, n):
        raise ConfigError(f"--context: {len(rows)} rows; give 1 or -n ({n})")
    if not np.isfinite(rows).all():
        raise ConfigError("--context: holds NaN or infinite values")
    return torch.from_numpy(rows).float().expand(n, features).contiguous()


def _encoded_context(names: dict, values: str):  # noqa: ANN202
    """``--context v1,v2`` of a run with categorical context columns: one value per column of
    the file (a level name, or a number), as the one ``(1, encoded)`` row the model takes."""
    import numpy as np

    levels = names["levels"]
    columns: list[str] = []
    for name in names["context"]:  # "species=Adelie" is column species; others are themselves
        column = next(
            (c for c, known in levels.items() if name in (f"{c}={k}" for k in known)), name
        )
        if column not in columns:
            columns.append(column)
    tokens = [v.strip() for v in values.split(",")]
    if len(tokens) != len(columns):
        raise ConfigError(
            f"--context: {len(tokens)} values per row, the model takes {len(columns)} "
            f"({', '.join(columns)})"
        )
    row: list[float] = []
    for column, token in zip(columns, tokens, strict=True):
        try:
            number = float(token)
        except ValueError:
            number = None
        if column in levels:
            known = levels[column]
            level = token if token in known else None
            if level is None and number is not None and f"{number:.15g}" in known:
                level = f"{number:.15g}"
            if level is None:
                raise ConfigError(
                    f"--context: {token!r} is not a level of {column!r}; its levels: "
                    f"{', '.join(known)}"
                )
            row += [float(level == k) for k in known]
        elif number is None:
            raise ConfigError(f"--context: {column!r} takes a number, got {token!r}")
        else:
            row.append(number)
    return np.array([row])


def _image_run(run_path: str):  # noqa: ANN202
    """An image run's model and data (interpolation and edits start from test images)."""
    from flowforge.runs import open_run
    from flowforge.runs.build import load_data

    run = open_run(run_path)
    if len(run.spec["event_shape"]) != 3:
        raise ConfigError(f"{run_path}: not an image run (data shape {run.spec['event_shape']})")
    splits = load_data(run.config)
    assert splits is not None  # image runs are maximum-likelihood runs on data
    return run, splits, run.model()


def _interpolate(args: argparse.Namespace) -> int:
    from flowforge.viz.images import interpolation_grid

    out = _output(args.out) or Path(args.run) / "interpolations.png"
    _, splits, flow = _image_run(args.run)
    k = min(args.pairs, splits.test.shape[0] // 2)
    pairs = splits.test[: 2 * k].reshape(k, 2, *splits.event_shape)
    context = None if splits.test_context is None else splits.test_context[: 2 * k : 2]
    interpolation_grid(flow, pairs, out, args.steps, context)
    print(f"wrote {k} interpolations of {args.steps} steps to {out}")
    return 0


def _manipulate(args: argparse.Namespace) -> int:
    from flowforge.latent import attribute_direction, thickness_groups
    from flowforge.viz.images import manipulation_grid

    out = _output(args.out) or Path(args.run) / "thin_to_thick.png"
    _, splits, flow = _image_run(args.run)
    if splits.context_features:
        raise ConfigError("manipulate: needs an unconditional image run")
    levels = splits.info.get("levels", 256)
    thin, thick = thickness_groups(splits.train[: args.reference], 0.2, levels)
    direction = attribute_direction(flow, thin, thick)
    manipulation_grid(flow, splits.test[: args.n], direction, out)
    print(f"wrote thin-to-thick edits of {args.n} test images to {out}")
    return 0


def _read_images(spec: str, run, shape: tuple[int, ...]) -> Tensor:  # noqa: ANN001
    """``--image``: ``test:I,J,...`` (the run's test images) or a ``.npy`` of raw pixel values
    ``(H, W)``, ``(C, H, W)`` or ``(n, C, H, W)``."""
    import numpy as np
    import torch

    from flowforge.runs.build import load_data

    if spec.startswith("test:"):
        try:
            idx = [int(i) for i in spec[5:].split(",")]
        except ValueError:
            raise ConfigError(
                f"--image: should be test:I,J,... with integers, got {spec!r}"
            ) from None
        splits = load_data(run.config)
        assert splits is not None
        if any(not 0 <= i < splits.test.shape[0] for i in idx):
            raise ConfigError(f"--image: test indices should be in [0, {splits.test.shape[0]})")
        return splits.test[idx].float()
    path = Path(spec)
    if path.suffix != ".npy" or not path.is_file():
        raise ConfigError(f"--image: should be test:I,J,... or an existing .npy file, got {spec!r}")
    x = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
    if x.dim() == len(shape) - 1:
        x = x.unsqueeze(0)
    if x.dim() == len(shape):
        x = x.unsqueeze(0) if tuple(x.shape) == shape else x.unsqueeze(1)
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise ConfigError(
            f"--image: the run's images are {shape}, got an array of shape {tuple(x.shape)}"
        )
    return x


def _read_masks(spec: str, n: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """``--mask``: a kind (``centre``, ``random``, ``top``, ...) or a ``.npy`` ``(H, W)`` or
    ``(n, H, W)`` array of 1 (visible) and 0 (missing)."""
    import numpy as np
    import torch

    from flowforge.data.structured import MASK_KINDS, make_mask

    if spec in MASK_KINDS:
        g = torch.Generator().manual_seed(seed)
        return torch.stack([make_mask(spec, shape[1], shape[2], g) for _ in range(n)])
    path = Path(spec)
    if path.suffix != ".npy" or not path.is_file():
        raise ConfigError(
            f"--mask: should be one of {list(MASK_KINDS)} or a .npy file, got {spec!r}"
        )
    m = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
    return m.expand(n, *m.shape[-2:]) if m.dim() == 2 else m


def _inpaint(args: argparse.Namespace) -> int:
    import json as _json

    import torch

    from flowforge.data.structured import MaskError, inpainting_context
    from flowforge.models.inpainting import cglow_fill, missing_bits
    from flowforge.runs import open_run
    from flowforge.viz.images import save_image_grid

    if args.k < 1:
        raise ConfigError(f"-k: should be positive, got {args.k}")
    run = open_run(args.run)
    out = _output(args.out) or run.path / "inpainting.png"
    _output(out.with_suffix(".json"), "--out (its .json report)")
    spec = run.spec
    shape = tuple(spec["event_shape"])
    cshape = tuple(spec.get("context_shape") or ())
    if len(shape) != 3 or cshape != (shape[0] + 1, *shape[1:]):
        raise ConfigError(
            f"{args.run}: not an inpainting run (a model conditioned on visible pixels and mask, "
            f"context {(shape[0] + 1, *shape[1:]) if len(shape) == 3 else '?'}); its context is "
            f"{cshape or 'none'}"
        )
    levels = int(spec["options"].get("levels", 256))
    x = _read_images(args.image, run, shape)
    mask = _read_masks(args.mask, x.shape[0], shape, args.seed)
    try:
        context = inpainting_context(x, mask, levels)
    except MaskError as e:
        raise ConfigError(f"--mask: {e}") from None
    if not bool(((x >= 0) & (x <= levels - 1)).all()):
        raise ConfigError(f"--image: pixel values should be in [0, {levels - 1}]")
    m = context[:, -1:]
    model = run.model(device="cpu")
    torch.manual_seed(args.seed)
    filled = cglow_fill(model, x, m, context, args.k, args.temperature, levels)
    bits = missing_bits(model, x, context, m)
    shown = x * m + (levels - 1) / 2 * (1 - m)  # missing pixels in grey
    rows = torch.cat([x[:, None], shown[:, None], filled], dim=1)  # (n, 2 + k, C, H, W)
    save_image_grid(rows.flatten(0, 1), out, nrow=2 + args.k, levels=levels, scale=2)
    report = {
        "images": args.image,
        "mask": args.mask,
        "samples": args.k,
        "temperature": args.temperature,
        "bits_per_missing_pixel": [round(float(b), 4) for b in bits],
        "mean_bits_per_missing_pixel": float(bits.mean()),
        "note": "upper bound: -log2 p(x | visible, mask) / n_missing, one dequantization draw",
    }
    out.with_suffix(".json").write_text(_json.dumps(report, indent=2) + "\n")
    print(
        f"wrote {x.shape[0]} rows (image, visible part, {args.k} samples) to {out}; "
        f"conditional bits per missing pixel <= {float(bits.mean()):.4f}"
    )
    return 0


def _fit_target(args: argparse.Namespace) -> int:
    """Shorthand for a ``reverse_kl`` config: ``--set KEY=VALUE`` without a section sets a
    recipe option, ``--set section.key=VALUE`` any config key."""
    from flowforge.runs import train_run
    from flowforge.runs.shorthand import fit_target_config

    model_options = [s for s in args.set or [] if "." not in s.split("=", 1)[0]]
    config_keys = [s for s in args.set or [] if s not in model_options]
    raw = fit_target_config(
        args.target,
        args.model,
        apply_overrides({}, model_options),
        args.steps,
        args.batch_size,
        args.lr,
        args.anneal_length if args.anneal else 0,
        args.seed,
    )
    cfg = parse_config(apply_overrides(raw, config_keys))
    result = train_run(cfg, progress=not args.quiet)
    print(summary_line(result.summary))
    print(f"wrote {result.run_dir}/")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Trains the comparison's models over its seeds and writes one report
    (:mod:`flowforge.compare`)."""
    from flowforge.compare import load_comparison, run_comparison

    out = run_comparison(load_comparison(args.config), args.out, progress=not args.quiet)
    print(f"wrote {out}/report.md, report.json, samples.png, curves.png")
    return 0


def _report(args: argparse.Namespace) -> int:
    """One static HTML page of one or several runs (:mod:`flowforge.report`)."""
    from flowforge.report import write_report

    if args.draw:
        _draw_missing_figures(args.runs)
    out = write_report(args.runs, _output(args.out))
    print(f"wrote {out}")
    return 0


def _draw_missing_figures(runs: list[str]) -> None:
    """Draws the figures of runs whose ``plots/`` folder has none (e.g. trained with
    ``plots=False``, or before every run kind drew figures)."""
    from flowforge.runs import open_run
    from flowforge.runs.figures import draw_run_figures

    for path in runs:
        run = open_run(path)
        if not list(run.directory.plots.glob("*.png")):
            draw_run_figures(run.config, run.objective(), run.model(), run.directory)


def _serve(args: argparse.Namespace) -> int:
    """The local web playground (:mod:`flowforge.serve`)."""
    from flowforge.serve import serve

    limits = {} if args.max_trainings is None else {"max_trainings": args.max_trainings}
    serve(args.host, args.port, args.workspace, allow_remote=args.allow_remote, **limits)
    return 0


def _check(args: argparse.Namespace) -> int:
    from flowforge.testing import check_transform
    from flowforge.testing.registry import all_cases

    if args.stress:
        from flowforge.testing.stress import format_stress, stress

        results = stress(args.pattern)
        if not results:
            print(f"no conformance case matches {args.pattern!r}")
            return 1
        print(format_stress(results))
        return 0

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
    from flowforge.models import MODELS
    from flowforge.objectives import OBJECTIVES
    from flowforge.targets import TARGETS

    print("objectives: " + ", ".join(OBJECTIVES))
    print("models:     " + ", ".join(sorted(MODELS)))
    print("data sets:  " + ", ".join(sorted(DATASETS)))
    print("targets:    " + ", ".join(TARGETS))
    return 0


@contextmanager
def _data_warnings_as_lines() -> Iterator[None]:
    """Prints each :class:`~flowforge.data.columns.DataWarning` (a fact about the user's
    table and what to do) once, as a ``warning: ...`` line; other warnings as Python does."""
    import warnings

    from flowforge.data.columns import DataWarning

    shown: set[str] = set()
    with warnings.catch_warnings():
        python = warnings.showwarning

        def show(message, category, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if not issubclass(category, DataWarning):
                python(message, category, *args, **kwargs)
            elif str(message) not in shown:
                shown.add(str(message))
                print(f"warning: {message}", file=sys.stderr)

        warnings.showwarning = show
        yield


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowforge", description="Normalizing flows in PyTorch.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a run (any objective), or resume one")
    p.add_argument("config", nargs="?", help="YAML config (default: RealNVP on the parabola)")
    p.add_argument(
        "--data", metavar="FILE", help="your own .csv/.tsv/.npy/.npz file (a sized config)"
    )
    p.add_argument(
        "--model",
        help="with --data: nsf, maf or realnvp (default: nsf below 20,000 rows, else maf)",
    )
    p.add_argument(
        "--context",
        metavar="COLS",
        help="with --data: context columns, comma-separated (text ones are one-hot categories)",
    )
    p.add_argument(
        "--features",
        metavar="COLS",
        help="with --data: the columns modelled (default: every numeric one not in --context)",
    )
    p.add_argument(
        "--drop-na",
        action="store_true",
        help="with --data: drop rows with missing values in the columns used (and say how many)",
    )
    p.add_argument(
        "--time",
        type=float,
        metavar="SECONDS",
        help="wall-clock training budget (train.max_seconds; --data sizes one from the rows)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (overrides the config)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument(
        "--accept-unidentified",
        action="store_true",
        help=f"with --resume: accept a {LAST} that does not record its model spec, objective "
        "and data fingerprint (its tensors are still checked)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    compiling = p.add_mutually_exclusive_group()
    compiling.add_argument(
        "--compile",
        action="store_const",
        const="true",
        help="torch.compile the training step's loss terms (train.compile=true; default auto: "
        "when the run is long enough to repay the compilation)",
    )
    compiling.add_argument(
        "--no-compile",
        dest="compile",
        action="store_const",
        const="false",
        help="never compile the training step (train.compile=false)",
    )
    p.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads (train.threads; 0: automatic)"
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a run's best model")
    p.add_argument("run", help="run directory")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("sample", help="draw samples from a run's best model")
    p.add_argument("run", help="run directory")
    p.add_argument("-n", type=int, default=1000, help="number of samples")
    p.add_argument("--temperature", type=float, default=1.0, help="base noise scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output .npy, .csv, or .png for image runs (default: in RUN)")
    p.add_argument(
        "--class",
        dest="label",
        help="class to sample (class-conditional): a level name (--class Adelie) or an index",
    )
    p.add_argument(
        "--context", help="context of every sample: comma-separated numbers, or a .npy/.csv file"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default cpu)")
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

    p = sub.add_parser("inpaint", help="fill masked images with a c-Glow inpainting run (PNG)")
    p.add_argument("run", help="run directory of a c-Glow trained on the inpainting data set")
    p.add_argument("--image", required=True, help="test:I,J,... or a .npy of raw pixel values")
    p.add_argument("--mask", required=True, help="centre, random, half, top, ... or a .npy")
    p.add_argument("-k", type=int, default=8, help="samples per image")
    p.add_argument("--temperature", type=float, default=1.0, help="base noise scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output .png (default RUN/inpainting.png; a .json beside it)")
    p.set_defaults(func=_inpaint)

    p = sub.add_parser("fit-target", help="variational inference: fit a flow to an energy")
    p.add_argument("target", help="U1, U2, U3, U4, funnel or banana")
    p.add_argument("--model", default="planar", help="recipe name (default planar)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="recipe option (KEY) or config key (section.key)",
    )
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--anneal", action="store_true", help="beta_t = min(1, 0.01 + t/length)")
    p.add_argument("--anneal-length", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_fit_target)

    p = sub.add_parser("compare", help="train several models on the same data and budget")
    p.add_argument("config", help="comparison YAML (see configs/compare/)")
    p.add_argument("--out", help="report directory (default OUTPUT_DIR/NAME)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_compare)

    p = sub.add_parser("report", help="a static HTML page of one run, or comparing several")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--out", help="the page (default RUN_DIR/report.html, or ./report.html)")
    p.add_argument(
        "--no-draw",
        dest="draw",
        action="store_false",
        help="do not draw the figures of runs that have none",
    )
    p.set_defaults(func=_report)

    p = sub.add_parser("serve", help="the web playground: train 2-D flows and watch them")
    p.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument("--workspace", default="runs/playground", help="where its runs are written")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (the playground has no authentication)",
    )
    p.add_argument(
        "--max-trainings",
        type=int,
        metavar="N",
        help="runs training at once (default 4; more are refused until one ends)",
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser("check", help="run the conformance kit over every registered transform")
    p.add_argument("pattern", nargs="?", help="only cases whose name contains this")
    p.add_argument(
        "--stress",
        action="store_true",
        help="worst round-trip and log-det errors under hard parameters, float32 and float64",
    )
    p.set_defaults(func=_check)

    p = sub.add_parser("list", help="list models and data sets")
    p.set_defaults(func=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from flowforge.allocator import tune_allocator
    from flowforge.train.checkpoint import CheckpointError
    from flowforge.train.trainer import TrainingDiverged, TrainingInterrupted

    # OSError: a full or read-only disk, a file that cannot be read; one line, not a traceback
    user_errors = (ConfigError, CheckpointError, TrainingDiverged, OSError)
    tune_allocator()  # fewer page faults on activation-sized tensors (flowforge.allocator)
    try:
        with _data_warnings_as_lines():
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
