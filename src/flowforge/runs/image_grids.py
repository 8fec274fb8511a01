"""Latent-space grids of an image run: ``flowforge interpolate`` and ``flowforge manipulate``
(and ``scripts/image_grids.py``, which draws both beside sample grids).

:func:`open_image_run` opens a run whose data are images, with its data splits (the grids start
from test images) and its best model; :func:`write_interpolations` writes the latent-space
paths between pairs of test images, :func:`write_thin_to_thick` test images moved along the
mean latent difference between the thinnest and thickest strokes of the training images
(:func:`flowforge.latent.attribute_direction`). :func:`interpolate_run` and
:func:`manipulate_run` are the commands: the output checked, the run opened, one grid written.
Drawing is :mod:`flowforge.viz.images`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from flowforge.config import ConfigError
from flowforge.data.registry import Splits
from flowforge.latent import attribute_direction, thickness_groups
from flowforge.runs.build import load_data
from flowforge.runs.directory import output_path
from flowforge.runs.load import Run, open_run
from flowforge.viz.images import interpolation_grid, manipulation_grid

__all__ = [
    "ImageRun",
    "WrittenGrid",
    "interpolate_run",
    "manipulate_run",
    "open_image_run",
    "write_interpolations",
    "write_thin_to_thick",
]


@dataclass(frozen=True)
class ImageRun:
    """An image run, its data splits and its best model (in eval mode, on the cpu)."""

    run: Run
    splits: Splits
    flow: nn.Module


@dataclass(frozen=True)
class WrittenGrid:
    """A grid written to ``path``: ``what`` it shows."""

    path: Path
    what: str

    def line(self) -> str:
        """The command's closing line."""
        return f"wrote {self.what} to {self.path}"


def interpolate_run(
    path: str | Path, out: str | Path | None = None, pairs: int = 8, steps: int = 8
) -> WrittenGrid:
    """``flowforge interpolate``: :func:`write_interpolations` of the image run at ``path`` to
    ``out`` (default ``RUN/interpolations.png``; refused when it names one of a run's own
    files, before the run is opened)."""
    out = output_path(out) or Path(path) / "interpolations.png"
    k = write_interpolations(open_image_run(path), out, pairs, steps)
    return WrittenGrid(out, f"{k} interpolations of {steps} steps")


def manipulate_run(
    path: str | Path, out: str | Path | None = None, n: int = 8, reference: int = 2000
) -> WrittenGrid:
    """``flowforge manipulate``: :func:`write_thin_to_thick` of the first ``n`` test images of
    the unconditional image run at ``path`` to ``out`` (default ``RUN/thin_to_thick.png``;
    refused when it names one of a run's own files, before the run is opened)."""
    out = output_path(out) or Path(path) / "thin_to_thick.png"
    write_thin_to_thick(open_image_run(path), out, n, reference)
    return WrittenGrid(out, f"thin-to-thick edits of {n} test images")


def open_image_run(path: str | Path) -> ImageRun:
    """The image run at ``path``; a :class:`~flowforge.config.ConfigError` when its data are
    not images."""
    run = open_run(path)
    if len(run.spec["event_shape"]) != 3:
        raise ConfigError(f"{path}: not an image run (data shape {run.spec['event_shape']})")
    splits = load_data(run.config)
    assert splits is not None  # image runs are maximum-likelihood runs on data
    return ImageRun(run, splits, run.model())


def write_interpolations(
    image: ImageRun, out: str | Path, pairs: int = 8, steps: int = 8, scale: int = 1
) -> int:
    """Writes to ``out`` (PNG) one row per pair of consecutive test images (``pairs`` of them,
    fewer when the test split is smaller): ``steps`` images along the latent-space path from
    the first to the second (a class-conditional run with the first image's class). Returns the
    number of rows."""
    splits = image.splits
    k = min(pairs, splits.test.shape[0] // 2)
    first_and_second = splits.test[: 2 * k].reshape(k, 2, *splits.event_shape)
    context = None if splits.test_context is None else splits.test_context[: 2 * k : 2]
    interpolation_grid(image.flow, first_and_second, out, steps, context, scale=scale)
    return k


def write_thin_to_thick(
    image: ImageRun, out: str | Path, n: int = 8, reference: int = 2000, scale: int = 1
) -> Path:
    """Writes to ``out`` (PNG) one row per test image (the first ``n``): the image moved along
    the thin-to-thick direction, the mean latent of the thickest 20% of the first
    ``reference`` training images minus that of the thinnest 20% (stroke thickness:
    :func:`flowforge.latent.stroke_thickness`). Needs an unconditional run."""
    splits = image.splits
    if splits.context_features:
        raise ConfigError("manipulate: needs an unconditional image run")
    levels = splits.info.get("levels", 256)
    thin, thick = thickness_groups(splits.train[:reference], 0.2, levels)
    direction = attribute_direction(image.flow, thin, thick)
    return manipulation_grid(image.flow, splits.test[:n], direction, out, scale=scale)
