r"""Columns that break a continuous density, found in a table's values, and their remedies.

A flow is a density on :math:`\mathbb R^D`. A table's columns often are not:

- an **index** (integers 1..N, or integers strictly monotone in file order) is the row's
  position, not a fact about it: :func:`index_like` (a file sorted by a measured column keeps
  that column: its values are not all integers);
- **few distinct values** (at most :data:`FEW_VALUES`): the column is a category or a count;
  a continuous density over it is a sum of spikes (better conditioned on, ``--context``):
  :func:`few_values`;
- values on a **rounding grid** (every value an integer multiple of a step :math:`h`, each
  seen twice on average): a continuous density can put unbounded mass on the grid points, so
  its likelihood says how sharp the spikes are, not how good the fit is. The remedy is
  dequantisation (Theis, van den Oord and Bethge 2016; Uria et al. 2013): add
  :math:`u \sim U(-h/2, h/2)` to each value; the density of :math:`y = x + u` is then a
  proper density, and :math:`\log p(y)` is a lower bound on the log-probability of the
  rounded value :math:`x` under :math:`\int_{x - h/2}^{x + h/2} p`: :func:`grid_step`,
  :func:`dequantize`;
- **extreme rows**, beyond :data:`EXTREME_SD` robust standard deviations
  (:math:`|x - \mathrm{median}| / (1.4826\,\mathrm{MAD}) > 10`): typos or heavy tails, which
  dominate a standardisation by mean and standard deviation: :func:`extreme_rows`.

Categorical context columns (text, or integers with few levels) are one-hot encoded with
their levels: :func:`is_categorical`, :func:`level_names`, :func:`one_hot`.

:mod:`flowforge.data.files` turns each finding into a :class:`DataWarning` saying what to do
about it; the ``flowforge`` command prints them as ``warning: ...`` lines
(:func:`data_warnings_as_lines`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "EXTREME_SD",
    "FEW_VALUES",
    "DataWarning",
    "data_warnings_as_lines",
    "as_levels",
    "dequantize",
    "extreme_rows",
    "few_values",
    "grid_step",
    "index_like",
    "is_categorical",
    "level_names",
    "one_hot",
    "repeated",
]

FEW_VALUES = 20  #: at most this many distinct values: a category or a count, not a continuum
EXTREME_SD = 10.0  #: rows farther than this many robust standard deviations are extreme
MIN_ROWS = 10  #: fewer rows than this say nothing about a column's order or grid
MAX_DECIMALS = 6  #: grids finer than 10**-6 are not looked for


class DataWarning(UserWarning):
    """A fact about the user's table that changes or threatens the fit, with what to do."""


@contextmanager
def data_warnings_as_lines(stream: TextIO | None = None) -> Iterator[None]:
    """Within it, each :class:`DataWarning` is written once to ``stream`` (default
    ``sys.stderr``), as one ``warning: ...`` line without Python's file and line; other
    warnings are shown as Python does."""
    shown: set[str] = set()
    with warnings.catch_warnings():
        python = warnings.showwarning

        def show(message, category, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if not issubclass(category, DataWarning):
                python(message, category, *args, **kwargs)
            elif str(message) not in shown:
                shown.add(str(message))
                print(f"warning: {message}", file=stream or sys.stderr)

        warnings.showwarning = show
        yield


def index_like(x: np.ndarray) -> str | None:
    """Why the column ``x`` (its values in file order) looks like a row index: integers
    strictly monotone in file order, or a shuffled run of consecutive integers; ``None`` if it
    does not (or has fewer than :data:`MIN_ROWS` finite values). A sorted column of
    measurements is not an index: its values are not all integers."""
    x = x[np.isfinite(x)]
    if len(x) < MIN_ROWS or not bool((x == np.round(x)).all()):
        return None
    step = np.diff(x)
    if bool((step > 0).all()) or bool((step < 0).all()):
        return "strictly increasing" if step[0] > 0 else "strictly decreasing"
    if x.max() - x.min() + 1 == len(x):
        if len(np.unique(x)) == len(x):
            return "every integer from its minimum to its maximum once"
    return None


def few_values(x: np.ndarray) -> int | None:
    """The number of distinct finite values of ``x`` if at most :data:`FEW_VALUES` and
    each is seen twice on average (:func:`repeated`)."""
    count = len(np.unique(x[np.isfinite(x)]))
    return count if count <= FEW_VALUES and repeated(x) else None


def grid_step(x: np.ndarray, eps: float = float(np.finfo(np.float64).eps)) -> float | None:
    r"""The coarsest step :math:`h` (``k / 10**d``, ``d <= 6``) such that every finite value of
    ``x`` is an integer multiple of it, or ``None``. ``eps``: the relative resolution of the
    stored numbers (float32 files hold ``0.1`` as ``0.100000001``).

    The decimals :math:`d` are the fewest that make every :math:`10^d x` an integer; :math:`h`
    is then the greatest common divisor of those integers over :math:`10^d` (values 3750,
    3800, 3625 give 25)."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None
    biggest = float(np.abs(x).max())
    for d in range(MAX_DECIMALS + 1):
        scale = 10.0**d
        if biggest * scale > 2.0**52 or 16 * eps * biggest * scale > 0.01:
            return None  # the grid would be finer than the numbers' resolution
        scaled = x * scale
        k = np.round(scaled)
        if bool((np.abs(scaled - k) <= 16 * eps * np.maximum(1.0, np.abs(scaled))).all()):
            g = int(np.gcd.reduce(np.abs(k).astype(np.int64)))
            return g / scale if g > 0 else None
    return None


def repeated(x: np.ndarray) -> bool:
    """Whether each distinct finite value of ``x`` is seen twice on average (a grid that a
    flow can resolve into spikes)."""
    x = x[np.isfinite(x)]
    return len(x) >= MIN_ROWS and len(np.unique(x)) <= len(x) / 2


def extreme_rows(block: np.ndarray) -> tuple[np.ndarray, list[int]]:
    r"""Which rows of ``block`` ``(rows, columns)`` hold a value farther than
    :data:`EXTREME_SD` robust standard deviations (:math:`1.4826\,\mathrm{MAD}`) from its
    column's median, and how many such rows each column has (columns with a MAD of 0, more
    than half of one value, are not judged)."""
    rows = np.zeros(block.shape[0], dtype=bool)
    counts = []
    for column in block.T:
        median = np.median(column)
        sd = 1.4826 * np.median(np.abs(column - median))
        far = np.abs(column - median) > EXTREME_SD * sd if sd > 0 else np.zeros_like(rows)
        rows |= far
        counts.append(int(far.sum()))
    return rows, counts


def dequantize(x: Tensor, steps: dict[int, float], seed: int) -> Tensor:
    """``x`` with :math:`U(-h/2, h/2)` noise added to column ``i`` for each ``i: h`` of
    ``steps``, drawn from a generator seeded with ``seed`` (fixed noise: evaluations of the
    same split are comparable)."""
    if not steps:
        return x
    g = torch.Generator().manual_seed(seed)
    out = x.double().clone()
    for i, h in steps.items():
        out[:, i] += h * (torch.rand(out.shape[0], generator=g, dtype=torch.float64) - 0.5)
    return out.to(x.dtype)


def is_categorical(x: np.ndarray) -> bool:
    """Whether a numeric column is a category: integer values, few of them
    (:func:`few_values`)."""
    x = x[np.isfinite(x)]
    return bool((x == np.round(x)).all()) and few_values(x) is not None


def level_names(values: np.ndarray) -> list[str]:
    """The sorted distinct levels of a categorical column, as names: text as it is, numbers
    in order and written without a trailing ``.0`` (``2007``, ``0.5``). ``values``: the
    column's non-missing values (numbers, or strings)."""
    if values.dtype.kind in "fiub":
        return [f"{v:.15g}" for v in np.unique(values.astype(np.float64))]
    return sorted({str(v) for v in values})


def as_levels(values: np.ndarray) -> np.ndarray:
    """A categorical column's values as level names (see :func:`level_names`)."""
    if values.dtype.kind in "fiub":
        return np.array([f"{v:.15g}" for v in values.astype(np.float64)], dtype=object)
    return np.array([str(v) for v in values], dtype=object)


def one_hot(names: np.ndarray, levels: list[str]) -> np.ndarray:
    """``(rows, len(levels))`` one-hot rows of the level ``names`` (each one of ``levels``)."""
    index = {level: i for i, level in enumerate(levels)}
    out = np.zeros((len(names), len(levels)))
    out[np.arange(len(names)), [index[v] for v in names]] = 1.0
    return out
