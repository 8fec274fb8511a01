"""Reading the data sets that are published as pickles without running code from them.

``pickle.load`` calls whatever callable a file names (``os.system``, ``builtins.eval``), so a
hostile ``data_batch_1`` or ``ethylene_CO.pickle`` would run code. :func:`load_restricted`
unpickles with a :class:`pickle.Unpickler` whose ``find_class`` hands out only the exact
classes and functions of an allow-list, resolved here, never imported by the name the file
gives; any other global is an :class:`UnsafePickleError` naming the file and the global, and
nothing of the file has run.

The lists hold what the genuine files need, measured by recording ``find_class`` while
unpickling them (numpy 2.4, pandas 3.1):

- :data:`NUMPY_ARRAYS`: a numpy array (``ndarray``, ``dtype``, and the reconstructors of
  protocols 2-4, ``_reconstruct``, and 5, ``_frombuffer``, under their numpy 1 and 2 module
  names). CIFAR-10's batches are dicts of bytes keys, lists of ints and one uint8 array.
- :func:`pandas_frame_classes`: a ``DataFrame`` of float columns with string labels, as
  ``DataFrame.to_pickle`` writes it with pandas 2/3. Pickles of older pandas name other
  classes and are refused; the message says how to convert such a file once.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "NUMPY_ARRAYS",
    "OversizedPickleError",
    "UnsafePickleError",
    "load_restricted",
    "pandas_frame_classes",
]

Allowed = Mapping[tuple[str, str], Any]


class UnsafePickleError(ValueError):
    """A pickle names a class or function outside the allow-list; nothing of it has run."""


def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    """``_reconstruct`` and ``_frombuffer`` under numpy 1's and 2's module names."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    return {
        (f"numpy.{core}.{module}", name): fn
        for core in ("core", "_core")
        for module, name, fn in (
            ("multiarray", "_reconstruct", _reconstruct),
            ("numeric", "_frombuffer", _frombuffer),
        )
    }


NUMPY_ARRAYS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **_numpy_reconstructors(),
}


def pandas_frame_classes() -> dict[tuple[str, str], Any]:
    """:data:`NUMPY_ARRAYS` and the pandas classes of a pickled ``DataFrame`` (imports
    pandas)."""
    import pandas as pd
    from pandas._libs.arrays import __pyx_unpickle_NDArrayBacked
    from pandas._libs.internals import _unpickle_block
    from pandas.core.indexes.base import _new_Index
    from pandas.core.internals.managers import BlockManager

    return {
        **NUMPY_ARRAYS,
        ("builtins", "slice"): slice,
        ("pandas", "DataFrame"): pd.DataFrame,
        ("pandas", "Index"): pd.Index,
        ("pandas", "RangeIndex"): pd.RangeIndex,
        ("pandas", "StringDtype"): pd.StringDtype,
        ("pandas.arrays", "StringArray"): pd.arrays.StringArray,
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"): __pyx_unpickle_NDArrayBacked,
        ("pandas._libs.internals", "_unpickle_block"): _unpickle_block,
        ("pandas.core.indexes.base", "_new_Index"): _new_Index,
        ("pandas.core.internals.managers", "BlockManager"): BlockManager,
    }


class OversizedPickleError(ValueError):
    """A pickle declares an array larger than the file could hold; nothing was allocated."""


class _SizedNdarray:
    """``numpy.ndarray`` as a pickle names it, with the size of an array it asks for checked
    before anything is allocated: called (``ndarray(shape, dtype)``, uninitialised memory),
    or handed to ``_reconstruct`` as the type to build (the form of protocols 2-4). An array
    unpickled from a file holds its bytes in that file, so declaring more than the file's
    size is refused."""

    def __init__(self, path: Path) -> None:
        self.path, self.limit = path, path.stat().st_size

    def check(self, shape: Any, dtype: Any) -> None:
        try:
            n = int(np.prod(np.asarray(shape, dtype=np.int64), dtype=np.int64))
            nbytes = n * np.dtype(dtype).itemsize
        except (TypeError, ValueError, OverflowError):
            raise OversizedPickleError(
                f"{self.path}: refused: an array of shape {shape!r} of {dtype!r}"
            ) from None
        if n < 0 or nbytes > self.limit:
            dims = tuple(int(d) for d in np.atleast_1d(shape))
            raise OversizedPickleError(
                f"{self.path}: refused: declares an array of shape {dims} "
                f"({nbytes / 1e9:.3g} GB), more than the file's {self.limit:,} bytes hold"
            )

    def __call__(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        self.check(shape, dtype)
        return np.ndarray(shape, dtype, *args, **kwargs)

    def reconstruct(self, reconstruct: Any) -> Any:
        """``_reconstruct`` taking this object for ``numpy.ndarray``."""

        def sized(subtype: Any, shape: Any, dtype: Any) -> Any:
            self.check(shape, dtype.decode("latin-1") if isinstance(dtype, bytes) else dtype)
            return reconstruct(np.ndarray if subtype is self else subtype, shape, dtype)

        return sized


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose globals come from ``allowed`` only; ``numpy.ndarray`` and
    ``_reconstruct`` in their sized forms (:class:`_SizedNdarray`)."""

    def __init__(
        self, file: BinaryIO, path: Path, allowed: Allowed, advice: str, encoding: str
    ) -> None:
        super().__init__(file, encoding=encoding)
        self.path, self.allowed, self.advice = path, allowed, advice
        self.sized = _SizedNdarray(path)

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object for ``module.name``; anything else is refused."""
        if (module, name) not in self.allowed:
            raise UnsafePickleError(
                f"{self.path}: refused to unpickle {module}.{name}: only plain numpy/pandas "
                f"data is read from pickles, since a pickle can run code{self.advice}"
            )
        found = self.allowed[(module, name)]
        if found is np.ndarray:
            return self.sized
        if name == "_reconstruct":
            return self.sized.reconstruct(found)
        return found


def load_restricted(path: Path, allowed: Allowed, advice: str = "", encoding: str = "ASCII") -> Any:
    """Unpickles ``path`` using only the globals in ``allowed``. A global outside it is an
    :class:`UnsafePickleError` (its message ends with ``advice``); a damaged file a
    ``ValueError`` naming it. ``encoding="bytes"`` reads Python 2 pickles' strings as bytes."""
    with Path(path).open("rb") as f:
        try:
            return _RestrictedUnpickler(f, Path(path), allowed, advice, encoding).load()
        except (UnsafePickleError, OversizedPickleError):
            raise
        except MemoryError:  # a length that no file this size holds (BINBYTES8 of 1 TB)
            raise ValueError(
                f"{path}: refused: declares more memory than there is; not a genuine data file"
            ) from None
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(
                f"{path}: corrupt or not the expected pickle ({type(e).__name__}: {e})"
            ) from None
