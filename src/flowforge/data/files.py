r"""Your own data: a data set read from a ``.npy``, ``.npz``, ``.csv`` or ``.tsv`` file.

``data: {name: file, path: penguins.csv, n_train: 274, n_val: 34, n_test: 34}`` reads the file
(NumPy files without unpickling anything, and ``.npy`` memory-mapped; CSV/TSV with pandas),
picks the feature and context columns by name (or index) before converting anything, splits
the rows by a seeded permutation (or takes the validation and test rows from their own
files), and fits a standardisation on the training split: the per-feature mean :math:`\mu`
and standard deviation :math:`\sigma` become a fixed :class:`~flowforge.transforms.
Standardize` in front of the flow, so
:math:`\log p(x) = \log p_{\text{flow}}((x - \mu)/\sigma) - \sum_i \log \sigma_i` is in the
units of the file and samples come back in them. The tensors stay in the file's units.

Tables as they come:

- **Columns.** ``features`` defaults to every numeric column that is not context and does not
  look like a row index (:func:`~flowforge.data.columns.index_like`); the text columns and
  index columns so left out are named in a :class:`~flowforge.data.columns.DataWarning`. A
  column named in ``features`` must be numeric: a text one is an error saying how to proceed.
- **Categorical context.** A context column of text, or of at most 20 integer levels, is
  one-hot encoded (``categorical``: the list of context columns to encode, default: those);
  its levels, sorted, are the training split's (a level only in the validation or test split
  is an error), recorded in ``info["levels"]``, and the encoded context is named
  ``column=level`` in ``info["context"]``. With one categorical context column,
  ``context_classes`` is its number of levels (``flowforge sample RUN --class LEVEL``).
- **Missing values.** A row with a missing (empty, ``NA``), NaN or infinite value in a column
  used is an error naming the rows, or with ``drop_nonfinite: true`` is dropped before the
  split sizes are taken (how many went: a warning and ``info["dropped_rows"]``).
- **Separate files.** ``val_path``/``test_path``: that split is every usable row of its file
  (at most ``n_val``/``n_test``, a seeded subset then); the main file holds the other splits
  (when it holds the training split alone, every row up to ``n_train``). Rows of a file left in
  no split are counted in a warning. The paths are recorded resolved.
- **Diagnostics** (:mod:`flowforge.data.columns`), each a warning with a suggestion: columns
  on a rounding grid (``dequantize``: ``auto``, the default, adds uniform noise of one grid
  step to the columns whose values repeat, ``true`` to every column on a grid, ``false`` to
  none; the noise is seeded and fixed, and the NLL is then that of the dequantised data,
  ``info["dequantized"] = {column: step}``), features with few distinct values, rows beyond
  10 robust standard deviations (``info["extreme_rows"]``).

Every problem with a file is a ``ValueError`` naming it: a missing file, an unknown format, a
non-numeric feature (its name, its first bad row and what to do), missing values (how many
rows and the first ones), too few rows for the split, a constant feature (a density over it
is degenerate), a context column that is also a feature. Parquet is not read: its readers
(pyarrow) are a heavy dependency; convert with ``pandas.read_parquet(f).to_csv(...)`` once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowforge.data import columns as col
from flowforge.data.arrays import check_numpy_file
from flowforge.data.columns import DataWarning
from flowforge.data.registry import Splits, register_dataset
from flowforge.data.standardization import fit_standardization

__all__ = ["FORMATS", "DataWarning", "Table", "load_file", "open_table", "read_table", "usable"]

FORMATS = (".npy", ".npz", ".csv", ".tsv")
SPLITS = ("train", "val", "test")
Column = str | int


@dataclass(eq=False)
class Table:
    """A file's columns as read, converted to numbers only when asked for.

    Attributes:
        path: the file.
        names: column names (a CSV/TSV's header, else ``"0"``, ``"1"``, ...).
        frame: a CSV/TSV's pandas ``DataFrame`` as read (numbers, text, missing cells).
        array: a NumPy file's ``(rows, columns)`` array (a memory map for ``.npy``).
    """

    path: Path
    names: list[str]
    frame: Any = None
    array: np.ndarray | None = None
    _cache: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> int:
        return len(self.frame) if self.array is None else self.array.shape[0]

    @property
    def eps(self) -> float:
        """The relative resolution of the stored numbers (a float32 array's is coarser)."""
        dtype = self.array.dtype if self.array is not None else np.dtype(np.float64)
        return float(np.finfo(dtype if dtype.kind == "f" else np.float64).eps)

    def _parse(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Column ``i`` as float64 (NaN where missing or not a number) and where it holds a
        cell that is not a number."""
        import pandas as pd

        if ("parse", i) not in self._cache:
            raw = self.frame.iloc[:, i]
            numbers = pd.to_numeric(raw, errors="coerce")
            bad = numbers.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
            parsed = numbers.to_numpy(dtype=np.float64, na_value=np.nan), bad.to_numpy()
            self._cache["parse", i] = parsed
        return self._cache["parse", i]

    def is_text(self, i: int) -> bool:
        """Whether column ``i`` is text: more of its present cells are not numbers than are
        (a column of numbers with a stray word is a numeric column with a bad cell)."""
        import pandas as pd

        if self.array is not None or pd.api.types.is_numeric_dtype(self.frame.iloc[:, i]):
            return False
        _, bad = self._parse(i)
        return int(bad.sum()) > int(self.frame.iloc[:, i].notna().sum()) / 2

    def numbers(self, i: int) -> np.ndarray:
        """Column ``i`` as float64, NaN where missing; a ``ValueError`` naming its first cell
        that is not a number, and how to proceed."""
        if ("numbers", i) not in self._cache:
            if self.array is not None:
                values = np.asarray(self.array[:, i], dtype=np.float64)
            else:
                values, bad = self._parse(i)
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    name = self.names[i]
                    raise ValueError(
                        f"{self.path}: column {name!r} is not numeric: data row {row + 1} "
                        f"(line {row + 2}) holds {str(self.frame.iloc[row, i])[:40]!r}; leave "
                        f"it out of the features (--features, data.features), or use it as a "
                        f"categorical context (--context {name})"
                    )
            self._cache["numbers", i] = values
        return self._cache["numbers", i]

    def labels(self, i: int) -> np.ndarray:
        """Column ``i``'s values as level names (:func:`~flowforge.data.columns.as_levels`),
        ``None`` where missing (NaN or infinite in a numeric column)."""
        if ("labels", i) not in self._cache:
            out = np.full(self.rows, None, dtype=object)
            if self.array is not None or not self.is_text(i):
                values = self.numbers(i)
                present = np.isfinite(values)
            else:
                values = self.frame.iloc[:, i].to_numpy(dtype=object)
                present = self.frame.iloc[:, i].notna().to_numpy()
            out[present] = col.as_levels(values[present])
            self._cache["labels", i] = out
        return self._cache["labels", i]


def open_table(path: str | Path, key: str | None = None) -> Table:
    """The file as a :class:`Table` (nothing converted yet); a ``ValueError`` for a missing,
    unknown or unreadable file, and for a NumPy file of Python objects (never unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown format {suffix!r}; flowforge reads {', '.join(FORMATS)}")
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    check_numpy_file(path, key)  # dtype and size from the headers, before any data is read
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
    return Table(path, [str(i) for i in range(values.shape[1])], array=values)


def _read_delimited(path: Path, sep: str) -> Table:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is in the cli extra
        raise ValueError(f"{path}: reading CSV/TSV needs pandas (pip install pandas)") from None
    try:
        frame = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable table ({str(e).splitlines()[0]})") from None
    if frame.shape[1] == 0:
        raise ValueError(f"{path}: no columns")
    return Table(path, [str(c) for c in frame.columns], frame=frame)


def read_table(path: str | Path, key: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Every column of the file as numbers ``(rows, columns)`` (a NumPy file's own array, a
    memory map for ``.npy``) and the column names; a text column is a ``ValueError``."""
    table = open_table(path, key)
    if table.array is not None:
        return table.array, table.names
    return np.stack([table.numbers(i) for i in range(len(table.names))], 1), table.names


def _warn(message: str) -> None:
    # stacklevel 1, one place: a message met twice (the short form, then the loader) shows once
    warnings.warn(message, DataWarning, stacklevel=1)


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


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


@dataclass
class Choice:
    """The columns a run uses: ``features`` and ``context`` (indices), which context columns
    are ``categorical``, and the columns ``left_out`` of the default features (name: why)."""

    features: list[int]
    context: list[int]
    categorical: set[int]
    left_out: dict[str, str]


def choose_columns(
    table: Table,
    features: Sequence[Column] | None,
    context: Sequence[Column] | None,
    categorical: Sequence[Column] | None,
) -> Choice:
    """The feature and context columns of ``table`` (see the module docstring), with a
    warning naming the columns left out of the default features and how to use them."""
    names = table.names
    ctx = _indices(context, names, "context")
    if categorical is None:
        cats = {i for i in ctx if table.is_text(i) or col.is_categorical(table.numbers(i))}
        counted = [i for i in sorted(cats) if not table.is_text(i)]
        if counted:
            _warn(
                f"{table.path}: context column(s) {_quoted([names[i] for i in counted])} hold "
                f"few integer levels and are one-hot encoded as categories; to condition on "
                f"them as numbers, set data.categorical: []"
            )
    else:
        cats = set(_indices(categorical, names, "categorical"))
        outside = sorted(cats - set(ctx))
        if outside:
            raise ValueError(
                f"data.categorical: {_quoted([names[i] for i in outside])} are not context columns"
            )
        text = [names[i] for i in ctx if i not in cats and table.is_text(i)]
        if text:
            raise ValueError(
                f"data.context: column(s) {_quoted(text)} hold text; list them in "
                f"data.categorical to one-hot encode them"
            )
    left_out: dict[str, str] = {}
    if features:
        feats = _indices(features, names, "features")
        for i in feats:  # a text feature is an error saying how to proceed
            if why := col.index_like(table.numbers(i)):
                _warn(
                    f"{table.path}: feature {names[i]!r} looks like a row index ({why} in "
                    f"file order): a density over it says nothing about the rows; leave it out "
                    f"of --features (data.features)"
                )
    else:
        feats = []
        for i in range(len(names)):
            if i in ctx:
                continue
            if table.is_text(i):
                left_out[names[i]] = "text"
            elif why := col.index_like(table.numbers(i)):
                left_out[names[i]] = f"row index: {why} in file order"
            else:
                feats.append(i)
        _warn_left_out(table, left_out, feats)
    both = sorted(set(ctx) & set(feats))
    if both:
        raise ValueError(
            f"data: column(s) {[names[i] for i in both]} are both features and context"
        )
    if not feats:
        raise ValueError(
            f"data.features: no feature columns left in {table.path} (columns {names}"
            + (f"; left out: {left_out}" if left_out else "")
            + ")"
        )
    return Choice(feats, ctx, cats, left_out)


def _warn_left_out(table: Table, left_out: dict[str, str], feats: list[int]) -> None:
    text = [n for n, why in left_out.items() if why == "text"]
    index = {n: why.split(": ", 1)[1] for n, why in left_out.items() if n not in text}
    chosen = ",".join(table.names[i] for i in feats)
    if text:
        _warn(
            f"{table.path}: column(s) {_quoted(text)} are not numeric and are left out of the "
            f"features; condition on one with --context {text[0]} (data.context), or choose "
            f"the features with --features {chosen} (data.features)"
        )
    if index:
        _warn(
            f"{table.path}: column(s) {_quoted(index)} look like a row index "
            f"({'; '.join(index.values())}) and are left out of the features; to "
            f"model them anyway, name them in --features (data.features)"
        )


def usable(table: Table, choice: Choice, drop: bool) -> np.ndarray:
    """Indices of the rows of ``table`` with every used value present and finite; the others
    are an error naming them, or with ``drop`` are dropped with a warning saying how many."""
    ok = np.ones(table.rows, dtype=bool)
    missing = {}
    for i in choice.features + choice.context:
        if i in choice.categorical:
            present = np.array([v is not None for v in table.labels(i)], dtype=bool)
        else:
            present = np.isfinite(table.numbers(i))
        if not present.all():
            missing[table.names[i]] = int((~present).sum())
        ok &= present
    bad = np.flatnonzero(~ok)
    if len(bad):
        first = ", ".join(str(int(i) + 1) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
        by_column = ", ".join(f"{n} {k}" for n, k in missing.items())
        if not drop:
            raise ValueError(
                f"{table.path}: {len(bad)} rows hold missing, NaN or infinite values in the "
                f"columns used (data rows {first}; by column: {by_column}); drop them with "
                f"--drop-na (data.drop_nonfinite: true), or leave those columns out"
            )
        _warn(
            f"{table.path}: dropped {len(bad)} of {table.rows} rows with missing, NaN or "
            f"infinite values in the columns used (data rows {first}; by column: {by_column})"
        )
    return np.flatnonzero(ok)


def usable_shape(
    path: str | Path,
    features: Sequence[Column] | None = None,
    context: Sequence[Column] | None = None,
    drop_nonfinite: bool = False,
    key: str | None = None,
    categorical: Sequence[Column] | None = None,
) -> tuple[int, int]:
    """The number of rows of the file that the splits can use and of feature columns, with
    the checks (and warnings) of :func:`load_file`: what the ``--data`` short form sizes."""
    table = open_table(path, key)
    choice = choose_columns(table, features, context, categorical)
    return len(usable(table, choice, drop_nonfinite)), len(choice.features)


def _split_rows(
    tables: dict[str, Table], rows: dict[Table, np.ndarray], wanted: dict[str, int], seed: int
) -> dict[str, np.ndarray]:
    """The rows of each split in its file, in file order (see the module docstring)."""
    rng = np.random.default_rng(seed)
    files = list(dict.fromkeys(tables.values()))  # the distinct tables, main first
    taken: dict[str, np.ndarray] = {}
    for table in files:
        splits = [s for s in SPLITS if tables[s] is table]
        order = rng.permutation(rows[table])
        if len(splits) == 1:  # a file of its own: all its rows, at most the size asked for
            taken[splits[0]] = np.sort(order[: wanted[splits[0]]])
        else:
            need = sum(wanted[s] for s in splits)
            if len(order) < need:
                raise ValueError(
                    f"{table.path}: {len(order)} usable rows, too few for "
                    f"{' + '.join(splits)} = {need} (set data.n_train, n_val, n_test; "
                    f"`flowforge train --data FILE` splits 80/10/10)"
                )
            start = 0
            for s in splits:
                taken[s] = np.sort(order[start : start + wanted[s]])
                start += wanted[s]
        used = sum(len(taken[s]) for s in splits)
        if used < len(order):
            _warn(
                f"{table.path}: {len(order) - used} of its {len(order)} usable rows are in no "
                f"split ({' + '.join(f'n_{s}' for s in splits)} = {used})"
            )
    return taken


def _encode_context(
    tables: dict[str, Table], taken: dict[str, np.ndarray], choice: Choice
) -> tuple[dict[str, np.ndarray], list[str], dict[str, list[str]]]:
    """Each split's context ``(rows, encoded features)``, the encoded names and the levels of
    the categorical columns (the training split's; another level is an error)."""
    names = tables["train"].names
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    encoded: list[str] = []
    levels: dict[str, list[str]] = {}
    for i in choice.context:
        name = names[i]
        if i not in choice.categorical:
            for s in SPLITS:
                parts[s].append(tables[s].numbers(i)[taken[s]][:, None])
            encoded.append(name)
            continue
        values = {s: tables[s].labels(i)[taken[s]] for s in SPLITS}
        known = (
            col.level_names(tables["train"].numbers(i)[taken["train"]])
            if not tables["train"].is_text(i)
            else col.level_names(values["train"])
        )
        for s in ("val", "test"):
            new = sorted(set(values[s]) - set(known))
            if new:
                raise ValueError(
                    f"data.context: column {name!r} has level(s) {_quoted(new)} in the {s} "
                    f"split but not in the training split (levels {known}); a flow cannot "
                    f"condition on a level it never saw: change data.seed, or leave those rows "
                    f"out of the file"
                )
        for s in SPLITS:
            parts[s].append(col.one_hot(values[s], known))
        encoded += [f"{name}={level}" for level in known]
        levels[name] = known
    return {s: np.concatenate(parts[s], 1) for s in SPLITS}, encoded, levels


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
    categorical: list[Column] | None = None,
    key: str | None = None,
    standardize: bool | str = True,
    drop_nonfinite: bool = False,
    dequantize: bool | str = "auto",
) -> Splits:
    """Splits of the user's file (see the module docstring).

    Arguments:
        n_train, n_val, n_test: rows per split (taken in that order from a seeded permutation
            of the file's usable rows); a split read from its own file takes all its rows,
            at most this many.
        seed: the permutation's seed (and the dequantisation noise's).
        path: the file (``.npy``, ``.npz``, ``.csv``, ``.tsv``).
        val_path, test_path: separate files for the validation and test splits.
        features: columns modelled (names or indices; default: every numeric column that is
            not context and not a row index).
        context: columns the flow is conditioned on (default: none).
        categorical: context columns one-hot encoded (default: those of text, or of at most
            20 integer levels).
        key: the array of an ``.npz`` holding several.
        standardize: fit a standardisation on the training split, a fixed transform inside
            the flow, so densities stay in the file's units: ``true`` or ``"diagonal"`` (per
            feature), ``"linear"`` (a linear-Gaussian regression on the context, or a Gaussian
            per level of a categorical one: the flow starts as that Gaussian;
            :mod:`flowforge.data.standardization`), ``false``: none.
        drop_nonfinite: drop rows with missing, NaN or infinite values instead of refusing.
        dequantize: ``"auto"``, ``True`` or ``False``: uniform noise of one grid step on the
            features whose values lie on a rounding grid and repeat (auto), on every feature
            on a grid (true), or on none (false).
    """
    if not path:
        raise ValueError("data.path: name the file to read")
    if dequantize not in ("auto", True, False):
        raise ValueError(f"data.dequantize: should be auto, true or false, got {dequantize!r}")
    main = open_table(path, key)
    choice = choose_columns(main, features, context, categorical)
    tables = {"train": main, "val": main, "test": main}
    for split, other in (("val", val_path), ("test", test_path)):
        if other is not None:
            table = open_table(other, key)
            if table.names != main.names:
                raise ValueError(f"{other}: its columns {table.names} differ from {path}'s")
            tables[split] = table
    rows = {t: usable(t, choice, drop_nonfinite) for t in dict.fromkeys(tables.values())}
    wanted = {"train": n_train, "val": n_val, "test": n_test}
    taken = _split_rows(tables, rows, wanted, seed)
    x = {s: np.stack([tables[s].numbers(i)[taken[s]] for i in choice.features], 1) for s in SPLITS}
    names = [main.names[i] for i in choice.features]
    flat = [names[i] for i in np.flatnonzero(x["train"].std(0) == 0)]
    if flat:
        raise ValueError(
            f"{path}: feature column(s) {flat} are constant on the training split; a density "
            f"over them is degenerate (leave them out with data.features)"
        )
    info: dict[str, Any] = {
        "kind": "file",
        "path": str(Path(path).resolve()),
        **{
            f"{s}_path": str(tables[s].path.resolve())
            for s in ("val", "test")
            if tables[s] is not main
        },
        "rows": {s: len(taken[s]) for s in SPLITS},
        "dropped_rows": sum(t.rows - len(r) for t, r in rows.items()),
        "features": names,
    }
    if choice.left_out:
        info["left_out"] = choice.left_out
    steps = _diagnose(np.concatenate([x[s] for s in SPLITS]), names, main, dequantize, info)
    tensors = {
        s: col.dequantize(torch.from_numpy(x[s]), steps, seed * 3 + k).float()
        for k, s in enumerate(SPLITS)
    }
    contexts: dict[str, torch.Tensor | None] = dict.fromkeys(SPLITS)
    classes = 0
    info["context"] = []
    if choice.context:
        encoded, info["context"], levels = _encode_context(tables, taken, choice)
        contexts = {s: torch.from_numpy(encoded[s]).float() for s in SPLITS}
        if levels:
            info["levels"] = levels
        if len(choice.context) == 1 and levels:
            classes = len(next(iter(levels.values())))
    train = tensors["train"]
    return Splits(
        train=train,
        val=tensors["val"],
        test=tensors["test"],
        train_context=contexts["train"],
        val_context=contexts["val"],
        test_context=contexts["test"],
        info=info,
        context_classes=classes,
        standardization=(
            fit_standardization(
                train, contexts["train"], "diagonal" if standardize is True else str(standardize)
            )
            if standardize
            else None
        ),
    )


def _diagnose(
    x: np.ndarray, names: list[str], table: Table, dequantize: bool | str, info: dict
) -> dict[int, float]:
    """Warns about the features ``x`` (every split's rows) that break a continuous density
    (:mod:`flowforge.data.columns`), records the findings in ``info``, and returns the grid
    steps to dequantise by (column index: step)."""
    where = table.path
    grids = {i: col.grid_step(x[:, i], table.eps) for i in range(len(names))}
    repeats = {i: h for i, h in grids.items() if h is not None and col.repeated(x[:, i])}
    steps = {} if dequantize is False else dict(repeats)
    if dequantize is True:
        steps = {i: h for i, h in grids.items() if h is not None}
    listed = ", ".join(f"{names[i]} (step {h:g})" for i, h in repeats.items())
    if steps:
        info["dequantized"] = {names[i]: h for i, h in steps.items()}
        shown = ", ".join(f"{names[i]} (step {h:g})" for i, h in steps.items())
        _warn(
            f"{where}: column(s) on a rounding grid: {shown}; a continuous density would fit "
            f"spikes on the grid, so each value gets uniform noise of one step (dequantised; "
            f"data.dequantize: false turns it off): the NLL is that of the dequantised data"
        )
    elif repeats:
        _warn(
            f"{where}: column(s) on a rounding grid: {listed}; a continuous density fits "
            f"spikes there and its NLL rewards them: set data.dequantize: auto to add uniform "
            f"noise of one step"
        )
    few = {names[i]: k for i in range(len(names)) if (k := col.few_values(x[:, i]))}
    if few:
        listed = ", ".join(f"{n} ({k} values)" for n, k in few.items())
        first = next(iter(few))
        _warn(
            f"{where}: feature(s) with few distinct values: {listed}; a density over a "
            f"category or a count is a poor model: condition on it (--context {first}) or "
            f"leave it out (--features)"
        )
    far, counts = col.extreme_rows(x)
    info["extreme_rows"] = int(far.sum())
    if far.any():
        by_column = ", ".join(f"{n} {k}" for n, k in zip(names, counts, strict=True) if k)
        _warn(
            f"{where}: {int(far.sum())} of {len(x)} rows lie beyond {col.EXTREME_SD:g} robust "
            f"standard deviations of a feature's median (by column: {by_column}): check them "
            f"for errors; heavy tails may fit better after a log transform of the column"
        )
    return steps
