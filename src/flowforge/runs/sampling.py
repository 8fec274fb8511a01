"""Sampling a run: ``flowforge sample RUN [-n N] [--class K | --context V] [--out FILE]``.

:func:`write_samples` draws ``n`` samples of a run's best model and writes them as ``.npy``,
``.csv`` (with the run's feature names as header) or, for an image run, a ``.png`` grid. The
context of a conditional run comes from :func:`class_index` (``--class``: a level name of a
categorical context column, or a class index) and :func:`sample_context` (``--context``: numbers,
a file, or one value per column of a file run with categorical context columns). Every value
that does not fit the run is a :class:`~flowforge.config.ConfigError` naming the option, and
samples that are not finite are refused, never written.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowforge.config import ConfigError
from flowforge.runs.directory import output_path
from flowforge.runs.load import open_run

__all__ = [
    "SAMPLE_SUFFIXES",
    "WrittenSamples",
    "class_index",
    "csv_header",
    "sample_context",
    "write_samples",
]

SAMPLE_SUFFIXES = {".npy", ".csv", ".png"}


@dataclass(frozen=True)
class WrittenSamples:
    """What :func:`write_samples` wrote: ``n`` samples to ``path``; ``shape`` is one sample's
    shape for an array file, ``None`` for a PNG grid."""

    path: Path
    n: int
    shape: tuple[int, ...] | None

    def line(self) -> str:
        """The command's closing line."""
        if self.shape is None:
            return f"wrote {self.n} samples to {self.path}"
        return f"wrote {self.n} samples of shape {self.shape} to {self.path}"


def write_samples(
    run_path: str | Path,
    n: int = 1000,
    temperature: float = 1.0,
    seed: int = 0,
    label: str | int | None = None,
    context: str | None = None,
    out: str | Path | None = None,
    device: str | None = None,
) -> WrittenSamples:
    """Draws ``n`` samples of the run at ``run_path`` (its best model on ``device``, default
    cpu) at ``temperature`` after ``torch.manual_seed(seed)``, and writes them to ``out``
    (``.npy``, ``.csv``, or ``.png`` for image runs; default ``RUN/samples.npy``, or
    ``RUN/samples_T{temperature}[_class{K}].png`` for image runs). ``label`` and ``context``
    are ``--class`` and ``--context`` as given (:func:`class_index`, :func:`sample_context`)."""
    if n < 1:
        raise ConfigError(f"-n: should be positive, got {n}")
    if not temperature > 0:
        raise ConfigError(f"--temperature: should be positive, got {temperature}")
    run = open_run(run_path)
    spec = run.spec
    image = len(spec["event_shape"]) == 3
    out = output_path(out)
    if out is not None:
        if out.suffix not in SAMPLE_SUFFIXES:
            raise ConfigError(f"--out: unknown format {out.suffix!r}; use .npy, .csv or .png")
        if out.suffix == ".png" and not image:
            raise ConfigError(
                f"--out: a PNG needs an image run (this run's shape is {spec['event_shape']})"
            )
    if len(spec.get("context_shape") or ()) > 1:
        raise ConfigError(
            f"{run_path}: its model is conditioned on images {tuple(spec['context_shape'])}; "
            "sample it with flowforge inpaint (inpainting runs) or flow.sample(n, context=image)"
        )
    label = class_index(spec, label)
    c = sample_context(spec, n, label, context)
    if out is None:
        suffix = "" if label is None else f"_class{label}"
        out = run.path / (f"samples_T{temperature}{suffix}.png" if image else "samples.npy")
    model = run.model(device=device or "cpu")
    torch.manual_seed(seed)
    if out.suffix == ".png":
        from flowforge.viz.images import sample_grid

        sample_grid(model, out, n, temperature, label, spec["context_classes"] or 10)
        return WrittenSamples(out, n, None)
    if c is not None:
        c = c.to(next(model.parameters()).device)
    x = model.sample(n, c, temperature=temperature).cpu().numpy()
    if not np.isfinite(x).all():
        raise ConfigError(
            f"sample {run_path}: {int((~np.isfinite(x)).sum())} values are not finite"
        )
    if out.suffix == ".npy":
        np.save(out, x)
    else:
        rows = x.reshape(len(x), -1)
        header = csv_header(spec, rows.shape[1])
        np.savetxt(out, rows, delimiter=",", fmt="%.8g", header=header, comments="")
    return WrittenSamples(out, n, tuple(x.shape[1:]))


def csv_header(spec: dict, width: int) -> str:
    """The header of a samples CSV: the run's feature names (file data), else ``x0, x1,
    ...``; quoted as CSV where a name needs it."""
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
    :class:`~flowforge.config.ConfigError`."""
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


def _encoded_context(names: dict, values: str) -> np.ndarray:
    """``--context v1,v2`` of a run with categorical context columns: one value per column of
    the file (a level name, or a number), as the one ``(1, encoded)`` row the model takes."""
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
