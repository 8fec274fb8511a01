r"""Your own data: a data set read from a ``.npy``, ``.npz``, ``.csv`` or ``.tsv`` file.

``data: {name: file, path: wine.csv, n_train: 142, n_val: 18, n_test: 18}`` reads the file
(NumPy files without unpickling anything, and ``.npy`` memory-mapped, so only the rows used
are read; CSV/TSV with pandas), picks the feature and context columns (by name or index),
splits the rows by a seeded permutation (or takes the validation and test rows from their
own files), and fits a standardisation on the training split: the per-feature mean
:math:`\mu` and standard deviation :math:`\sigma` become a fixed
:class:`~flowforge.transforms.Standardize` in front of the flow, so
:math:`\log p(x) = \log p_{\text{flow}}((x - \mu)/\sigma) - \sum_i \log \sigma_i` is in the
units of the file and samples come back in them. The tensors stay in the file's units.

Every problem with a file is a ``ValueError`` naming it: a missing file, an unknown format, a
column that is not numeric (its name and first bad row), NaN or infinite values (how many rows
and the first ones; ``drop_nonfinite: true`` drops those rows instead), too few rows for the
split, a constant feature (a density over it is degenerate), a context column that is also a
feature. Parquet is not read: its readers (pyarrow) are a heavy dependency; convert with
``pandas.read_parquet(f).to_csv(...)`` once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flowforge.data.registry import Splits, register_dataset
from flowforge.data.standardization import fit_standardization

__all__ = ["FORMATS", "load_file", "read_table"]

FORMATS = (".npy", ".npz", ".csv", ".tsv")
Column = str | int


def read_table(path: str | Path, key: str | None = None) -> tuple[np.ndarray, list[str]]:
    """The file's values ``(rows, columns)`` (a memory map for ``.npy``) and column names
    (the header of a CSV/TSV, else ``"0"``, ``"1"``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown format {suffix!r}; flowforge reads {', '.join(FORMATS)}")
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    try:
        if suffix == ".npy":
            values = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if key is None and len(names) != 1:
                    raise ValueError(f"{path}: holds arrays {names}; name one with data.key")
                if key is not None and key not in names:
                    raise ValueError(f"{path}: no array {key!r}; it holds {names}")
                values = archive[key or names[0]]
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable NumPy file ({e})") from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ValueError(
                f"{path}: holds Python objects (refused: loading them could run code)"
            ) from None
        raise
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise ValueError(
            f"{path}: expected a 2-D numeric array (rows, columns), got shape {values.shape} "
            f"of {values.dtype}"
        )
    return values, [str(i) for i in range(values.shape[1])]


def _read_delimited(path: Path, sep: str) -> tuple[np.ndarray, list[str]]:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is in the cli extra
        raise ValueError(f"{path}: reading CSV/TSV needs pandas (pip install pandas)") from None
    try:
        frame = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable table ({str(e).splitlines()[0]})") from None
    columns = []
    for name in frame.columns:
        raw = frame[name]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bool(bad.any()):
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{path}: column {name!r} is not numeric: data row {row + 1} (line {row + 2}) "
                f"holds {str(raw.iloc[row])[:40]!r}"
            )
        columns.append(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    if not columns:
        raise ValueError(f"{path}: no columns")
    return np.stack(columns, 1), [str(c) for c in frame.columns]


def _indices(columns: Sequence[Column] | None, names: list[str], what: str) -> list[int]:
    out = []
    for c in columns or []:
        if isinstance(c, int) and not isinstance(c, bool):
            if not -len(names) <= c < len(names):
                raise ValueError(f"data.{what}: column {c} out of range ({len(names)} columns)")
            out.append(c % len(names))
        elif isinstance(c, str) and c in names:
            out.append(names.index(c))
        else:
            raise ValueError(f"data.{what}: no column {c!r}; the file has {names}")
    return out


def _usable_rows(values: np.ndarray, cols: list[int], path: Path, drop: bool) -> np.ndarray:
    """Indices of the rows whose selected columns are all finite; other rows are named (or
    dropped with ``drop``)."""
    finite = np.ones(values.shape[0], dtype=bool)
    for start in range(0, values.shape[0], 65536):  # chunks: a memory map stays a map
        block = np.asarray(values[start : start + 65536][:, cols], dtype=np.float64)
        finite[start : start + len(block)] = np.isfinite(block).all(1)
    bad = np.flatnonzero(~finite)
    if len(bad) and not drop:
        first = ", ".join(str(int(i) + 1) for i in bad[:5])
        raise ValueError(
            f"{path}: {len(bad)} rows hold NaN or infinite values (data rows {first}"
            f"{', ...' if len(bad) > 5 else ''}); drop them with data.drop_nonfinite: true"
        )
    return np.flatnonzero(finite)


@register_dataset("file")
def load_file(
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int = 0,
    path: str = "",
    val_path: str | None = None,
    test_path: str | None = None,
    features: list[Column] | None = None,
    context: list[Column] | None = None,
    key: str | None = None,
    standardize: bool | str = True,
    drop_nonfinite: bool = False,
) -> Splits:
    """Splits of the user's file (see the module docstring).

    Arguments:
        n_train, n_val, n_test: rows per split (taken in that order from a seeded permutation
            of the file's rows; validation and test rows from ``val_path``/``test_path`` when
            given).
        seed: the permutation's seed.
        path: the file (``.npy``, ``.npz``, ``.csv``, ``.tsv``).
        val_path, test_path: separate files for the validation and test splits.
        features: columns modelled (names or indices; default: every column not in
            ``context``).
        context: columns the flow is conditioned on (default: none).
        key: the array of an ``.npz`` holding several.
        standardize: fit a standardisation on the training split, a fixed transform inside
            the flow, so densities stay in the file's units: ``true`` or ``"diagonal"`` (per
            feature), ``"linear"`` (a linear-Gaussian regression on the context: the flow
            starts as that Gaussian; :mod:`flowforge.data.standardization`), ``false``: none.
        drop_nonfinite: drop rows with NaN or infinite values instead of refusing them.
    """
    if not path:
        raise ValueError("data.path: name the file to read")
    values, names = read_table(path, key)
    ctx = _indices(context, names, "context")
    feats = (
        _indices(features, names, "features")
        if features
        else [i for i in range(len(names)) if i not in ctx]
    )
    both = sorted(set(ctx) & set(feats))
    if both:
        raise ValueError(
            f"data: column(s) {[names[i] for i in both]} are both features and context"
        )
    if not feats:
        raise ValueError("data.features: no feature columns left")
    rng = np.random.default_rng(seed)
    sources = {"train": (Path(path), values)}
    for split, other in (("val", val_path), ("test", test_path)):
        if other is not None:
            other_values, other_names = read_table(other, key)
            if other_names != names:
                raise ValueError(f"{other}: its columns {other_names} differ from {path}'s {names}")
            sources[split] = (Path(other), other_values)
    wanted = {"train": n_train, "val": n_val, "test": n_test}
    cols = feats + ctx
    order = {  # each file's usable rows in a seeded random order
        file: rng.permutation(_usable_rows(vals, cols, file, drop_nonfinite))
        for file, vals in sources.values()
    }
    offsets = dict.fromkeys(order, 0)
    tensors: dict[str, torch.Tensor | None] = {}
    for split in ("train", "val", "test"):
        file, vals = sources.get(split, sources["train"])
        start = offsets[file]
        taken = order[file][start : start + wanted[split]]
        if len(taken) < wanted[split]:
            in_file = [s for s in wanted if sources.get(s, sources["train"])[0] == file]
            need = sum(wanted[s] for s in in_file)
            raise ValueError(
                f"{file}: {len(order[file])} usable rows, too few for {' + '.join(in_file)} = "
                f"{need} (set data.n_train, n_val, n_test; `flowforge train --data FILE` "
                f"splits 80/10/10)"
            )
        offsets[file] = start + wanted[split]
        block = np.asarray(vals[np.sort(taken)][:, cols], dtype=np.float64)
        tensors[split] = torch.from_numpy(block[:, : len(feats)]).float()
        tensors[f"{split}_context"] = (
            torch.from_numpy(block[:, len(feats) :]).float() if ctx else None
        )
    train = tensors["train"]
    assert train is not None
    std = train.double().std(0)
    flat = [names[feats[i]] for i in torch.nonzero(std == 0).flatten().tolist()]
    if flat:
        raise ValueError(
            f"{path}: feature column(s) {flat} are constant on the training split; a density "
            f"over them is degenerate (leave them out with data.features)"
        )
    return Splits(
        train=train,
        val=tensors["val"],  # type: ignore[arg-type]
        test=tensors["test"],  # type: ignore[arg-type]
        train_context=tensors["train_context"],
        val_context=tensors["val_context"],
        test_context=tensors["test_context"],
        info={
            "kind": "file",
            "path": str(path),
            "features": [names[i] for i in feats],
            "context": [names[i] for i in ctx],
        },
        standardization=(
            fit_standardization(
                train,
                tensors["train_context"],
                "diagonal" if standardize is True else str(standardize),
            )
            if standardize
            else None
        ),
    )
