r"""Tabular density-estimation data: the five sets of the MAF paper, and scikit-learn's digits.

POWER, GAS, HEPMASS, MINIBOONE and BSDS300 are read from the files of the Zenodo archive
(record 1161203, https://zenodo.org/record/1161203) that a user has unpacked under ``data_dir``,
and preprocessed exactly as in the MAF paper's code (Papamakarios, Pavlakou and Murray 2017,
https://arxiv.org/abs/1705.07057, ``gpapamak/maf/datasets``):

- ``power`` (``power/data.npy``, 6 dims): shuffle the rows with ``RandomState(42)``, drop
  columns 3 and 1 (global intensity, reactive power), add uniform noise drawn in this order
  after the shuffle: voltage ``0.01 U``, active power ``0.001 U``, sub-meterings ``U``, time 0;
  the last 10 % of rows are test, the last 10 % of the rest validation; z-score with the train
  + validation statistics.
- ``gas`` (``gas/ethylene_CO.pickle``, a pandas pickle read without running code, or the
  same table as ``gas/ethylene_CO.csv``, 8 dims): drop Meth, Eth and Time;
  repeatedly drop the first column with a Pearson correlation above 0.98 to another; z-score
  over all rows (sample sd); then the same tail split.
- ``hepmass`` (``hepmass/1000_train.csv`` and ``1000_test.csv``, 21 dims): keep the signal
  class (label 1), drop the label (and the test file's last column; columns match by
  position); z-score with the train statistics (sample sd); drop the features whose smallest
  value occurs more than 5 times in train; the last 10 % of train is validation.
- ``miniboone`` (``miniboone/data.npy``, 43 dims; the archive has outliers and discrete
  features removed already): the tail split, then z-score with train + validation statistics.
- ``bsds300`` (``BSDS300/BSDS300.hdf5``, 63 dims): the archive's ``train``, ``validation`` and
  ``test`` patches (dequantized, centred, last pixel dropped) as they are.

``n_train``, ``n_val`` and ``n_test`` take a seeded random subset of each split when smaller
than it (so CPU-sized runs stay unbiased); a size at least the split's keeps it whole (the
paper's protocol). GAS needs ``pandas`` and BSDS300 ``h5py``.

``digits`` is scikit-learn's ``load_digits`` (1,797 8x8 images with 17 grey levels, 64 dims):
dequantized as :math:`x = (v + u) / 17`, :math:`u \sim U(0, 1)`, then z-scored with the train
statistics. ``info["nll_offset"]`` converts an NLL in the z-scored space to the dequantized
unit cube (:math:`+\sum_i \log \sigma_i`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from flowforge.data.registry import Splits, register_dataset
from flowforge.data.safe_pickle import load_restricted, pandas_frame_classes

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "load_bsds300",
    "load_gas",
    "load_hepmass",
    "load_miniboone",
    "load_power",
    "split_tail",
]

ZENODO = "https://zenodo.org/record/1161203"
GAS_PICKLE = "gas/ethylene_CO.pickle"
GAS_CSV = "gas/ethylene_CO.csv"
#: the GAS columns the MAF code drops; the others are the sensors'
GAS_DROPPED = ("Meth", "Eth", "Time")


def _file(data_dir: str, relative: str) -> Path:
    if not data_dir:
        raise ValueError(
            f"'data_dir' should point to the unpacked MAF data archive ({ZENODO}); "
            "set data.data_dir in the config"
        )
    path = Path(data_dir).expanduser() / relative
    if not path.is_file():
        raise ValueError(f"'data_dir': expected the file {path} (from {ZENODO})")
    return path


def split_tail(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MAF split: the last ``int(0.1 n)`` rows are test, then the last ``int(0.1 m)`` of the
    remaining ``m`` rows are validation."""
    n_test = int(0.1 * data.shape[0])
    rest, test = data[: data.shape[0] - n_test], data[data.shape[0] - n_test :]
    n_val = int(0.1 * rest.shape[0])
    return rest[: rest.shape[0] - n_val], rest[rest.shape[0] - n_val :], test


def _zscore(
    parts: tuple[np.ndarray, ...], reference: np.ndarray, ddof: int
) -> tuple[np.ndarray, ...]:
    mu, sd = reference.mean(0), reference.std(0, ddof=ddof)
    return tuple((p - mu) / sd for p in parts)


def load_power(data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """POWER (6 dims) as in the MAF code; see the module docstring."""
    rng = np.random.RandomState(42)
    data = np.load(_file(data_dir, "power/data.npy"))
    rng.shuffle(data)
    n = data.shape[0]
    # columns: active power, reactive power, voltage, intensity, 3 sub-meterings, time
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)  # drawn first, as in the paper's code
    active_noise = 0.001 * rng.rand(n, 1)
    metering_noise = rng.rand(n, 3)
    noise = np.hstack([active_noise, voltage_noise, metering_noise, np.zeros((n, 1))])
    train, val, test = split_tail(data + noise)
    return _zscore((train, val, test), np.vstack([train, val]), ddof=0)


def _drop_correlated(columns: list[str], values: np.ndarray) -> np.ndarray:
    """Repeatedly drops the first column correlated above 0.98 with another one."""
    keep = list(range(len(columns)))
    while True:
        corr = np.corrcoef(values[:, keep], rowvar=False)
        over = (corr > 0.98).sum(1)  # the diagonal counts once
        if not (over > 1).any():
            return values[:, keep]
        del keep[int(np.argmax(over > 1))]


def _gas_frame(data_dir: str) -> pd.DataFrame:
    """The GAS table: ``gas/ethylene_CO.csv`` when there is one (a header row of column
    names), else the pickle, read with the allow-list of :mod:`flowforge.data.safe_pickle`."""
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the GAS loader reads a pandas pickle: pip install pandas") from e

    csv = Path(data_dir).expanduser() / GAS_CSV if data_dir else None
    if csv is not None and csv.is_file():
        return pd.read_csv(csv)
    path = _file(data_dir, GAS_PICKLE)
    advice = (
        f". If this is the genuine file of an older pandas, convert it once, from a copy you "
        f"trust: python -c \"import pandas as pd; pd.read_pickle('{path}')"
        f".to_csv('{path.with_suffix('.csv')}', index=False)\""
    )
    frame = load_restricted(path, pandas_frame_classes(), advice)
    if type(frame) is not pd.DataFrame:
        raise ValueError(f"{path}: holds a {type(frame).__name__}, not a pandas DataFrame")
    return frame


def load_gas(data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GAS (8 dims) as in the MAF code; see the module docstring. Needs pandas."""
    frame = _gas_frame(data_dir)
    missing = [c for c in GAS_DROPPED if c not in frame.columns]
    if missing or len(frame.columns) <= len(GAS_DROPPED):
        raise ValueError(
            f"{data_dir}: the GAS table should have the columns {list(GAS_DROPPED)} and the "
            f"sensors' (ethylene_CO of the Zenodo archive); it has "
            f"{[str(c) for c in frame.columns][:20]}"
        )
    frame = frame.drop(columns=list(GAS_DROPPED))
    try:
        numbers = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{data_dir}: the GAS table's sensor columns are not all numbers"
        ) from None
    values = _drop_correlated(list(frame.columns), numbers)
    (values,) = _zscore((values,), values, ddof=1)
    return split_tail(values)


def _smallest_value_count(column: np.ndarray) -> int:
    return int((column == column.min()).sum())


def load_hepmass(data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HEPMASS (21 dims) as in the MAF code; see the module docstring."""
    raw = [
        np.loadtxt(_file(data_dir, f"hepmass/1000_{s}.csv"), delimiter=",", skiprows=1, ndmin=2)
        for s in ("train", "test")
    ]
    train = raw[0][raw[0][:, 0] == 1][:, 1:]
    test = raw[1][raw[1][:, 0] == 1][:, 1:-1]  # the test file has one more trailing column
    mu, sd = train.mean(0), train.std(0, ddof=1)
    train = (train - mu) / sd
    test = (test - mu[: test.shape[1]]) / sd[: test.shape[1]]
    keep = [i for i in range(train.shape[1]) if _smallest_value_count(train[:, i]) <= 5]
    train, test = train[:, keep], test[:, keep]
    n_val = int(0.1 * train.shape[0])
    return train[: train.shape[0] - n_val], train[train.shape[0] - n_val :], test


def load_miniboone(data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MINIBOONE (43 dims) as in the MAF code; see the module docstring."""
    train, val, test = split_tail(np.load(_file(data_dir, "miniboone/data.npy")))
    return _zscore((train, val, test), np.vstack([train, val]), ddof=0)


def load_bsds300(data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BSDS300 patches (63 dims) as in the MAF archive. Needs h5py."""
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the BSDS300 loader reads HDF5: pip install h5py") from e
    with h5py.File(_file(data_dir, "BSDS300/BSDS300.hdf5"), "r") as f:
        return np.asarray(f["train"]), np.asarray(f["validation"]), np.asarray(f["test"])


def _subsets(
    parts: tuple[np.ndarray, ...], sizes: tuple[int, int, int], seed: int
) -> list[torch.Tensor]:
    out = []
    for k, (part, n) in enumerate(zip(parts, sizes, strict=True)):
        if n < 1:
            raise ValueError(f"split sizes should be positive, got {sizes}")
        if n < part.shape[0]:
            idx = np.sort(np.random.default_rng([seed, k]).choice(part.shape[0], n, replace=False))
            part = part[idx]
        out.append(torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32)))
    return out


Arrays3 = tuple[np.ndarray, np.ndarray, np.ndarray]


def _register_maf_set(name: str, load: Callable[[str], Arrays3]) -> None:
    def loader(n_train: int, n_val: int, n_test: int, seed: int = 0, data_dir: str = "") -> Splits:
        parts = load(data_dir)
        tensors = _subsets(parts, (n_train, n_val, n_test), seed)
        sizes = [p.shape[0] for p in parts]
        info = {"kind": "tabular (MAF paper)", "full_split_sizes": sizes, "source": ZENODO}
        return Splits(*tensors, info=info)

    loader.__doc__ = f"The MAF paper's {name.upper()} data set (see flowforge.data.tabular)."
    register_dataset(name)(loader)


for _name, _load in (
    ("power", load_power),
    ("gas", load_gas),
    ("hepmass", load_hepmass),
    ("miniboone", load_miniboone),
    ("bsds300", load_bsds300),
):
    _register_maf_set(_name, _load)


@register_dataset("digits")
def digits(n_train: int = 1197, n_val: int = 300, n_test: int = 300, seed: int = 0) -> Splits:
    """scikit-learn's 8x8 digits (64 dims), dequantized and z-scored; see the module docstring."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data come from scikit-learn: pip install scikit-learn") from e
    pixels = load_digits().data  # (1797, 64), integers 0..16
    if n_train + n_val + n_test > len(pixels):
        raise ValueError(
            f"n_train + n_val + n_test should be at most {len(pixels)} for digits, "
            f"got {n_train + n_val + n_test}"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pixels))
    x = (pixels[order] + rng.uniform(size=pixels.shape)) / 17.0
    train, val, test = np.split(x[: n_train + n_val + n_test], [n_train, n_train + n_val])
    sd = train.std(0)
    parts = _zscore((train, val, test), train, ddof=0)
    info = {
        "kind": "tabular (scikit-learn digits, dequantized)",
        "nll_offset": float(np.log(sd).sum()),
        "nll_offset_about": "NLL in [0,1]^64 = NLL here + nll_offset; the 17-level data's "
        f"bits/dim <= (NLL in [0,1]^64 + 64 ln 17) / (64 ln 2), ln 17 = {math.log(17):.4f}",
    }
    tensors = [torch.from_numpy(p.astype(np.float32)) for p in parts]
    return Splits(*tensors, info=info)
