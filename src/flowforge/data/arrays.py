"""What a NumPy file holds, read from its headers before any of its data: real numbers only,
and no more of them than memory allows.

A ``.npy`` file starts with a header naming its dtype and shape; an ``.npz`` is a zip of
``.npy`` members, each with that header at its start. :func:`check_numpy_file` reads only
those headers (a few hundred bytes, decompressing none of the data), so a file that declares
more than memory allows (an ``.npz`` of 2.4 GB of deflated zeros, a ``.npy`` whose header
promises a terabyte) is refused at once, before anything is allocated, and so is a dtype
that is not a real number: complex values (the imaginary part would be dropped), time deltas
and dates (their unit would be), text, raw bytes, records and Python objects.

The bound, :func:`max_data_bytes`: ``FLOWFORGE_MAX_DATA_BYTES`` (bytes; default 2 GiB)
or the memory available now, whichever is smaller; an array counts at 8 bytes a value, the
float64 it is converted to for reading.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_BYTES_ENV",
    "available_memory",
    "check_numpy_file",
    "check_real",
    "check_size",
    "max_data_bytes",
]

#: the environment variable that sets :func:`max_data_bytes`, and its default
MAX_BYTES_ENV, DEFAULT_MAX_BYTES = "FLOWFORGE_MAX_DATA_BYTES", 2**31
#: dtype kinds of real numbers: signed and unsigned integers, floats
REAL_KINDS = "iuf"


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: ``MemAvailable`` of ``/proc/meminfo``, else the
    free physical pages), or ``None`` where the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def max_data_bytes() -> int:
    """The most bytes one array read from a file may take: ``FLOWFORGE_MAX_DATA_BYTES``
    (default :data:`DEFAULT_MAX_BYTES`) or the available memory, whichever is smaller."""
    text = os.environ.get(MAX_BYTES_ENV)
    cap = DEFAULT_MAX_BYTES
    if text:
        try:
            cap = int(float(text))
        except ValueError:
            raise ValueError(
                f"{MAX_BYTES_ENV}: should be a number of bytes, got {text!r}"
            ) from None
        if cap <= 0:
            raise ValueError(f"{MAX_BYTES_ENV}: should be positive, got {text!r}")
    available = available_memory()
    return cap if available is None else min(cap, available)


def check_real(dtype: np.dtype, where: str) -> None:
    """A ``ValueError`` naming ``where`` unless ``dtype`` holds real numbers."""
    if dtype.kind not in REAL_KINDS or dtype.fields is not None:
        what = {"c": "complex numbers", "m": "time deltas", "M": "dates", "O": "Python objects"}
        raise ValueError(
            f"{where}: holds {what.get(dtype.kind, 'values')} of dtype {dtype}; flowforge reads "
            f"real numbers only (integer or float): convert the array first"
        )


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_size(shape: tuple[int, ...], where: str) -> None:
    """A ``ValueError`` naming ``where`` when an array of ``shape``, read as float64, would
    take more than :func:`max_data_bytes`."""
    count = 1
    for n in shape:
        count *= int(n)
    need, cap = 8 * count, max_data_bytes()
    if need > cap:
        raise ValueError(
            f"{where}: declares an array of shape {tuple(shape)}, {_gb(need)} as float64; "
            f"flowforge reads at most {_gb(cap)} (the smaller of {MAX_BYTES_ENV}, default "
            f"{_gb(DEFAULT_MAX_BYTES)}, and the memory available)"
        )


def _header(f: BinaryIO, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the ``.npy`` stream ``f``, from its header alone."""
    if f.read(1) == b"\x80":  # a pickle's first opcode (protocol 2 and later)
        raise ValueError(f"{where}: holds Python objects (refused: loading them could run code)")
    f.seek(0)
    major, _ = np.lib.format.read_magic(f)
    read = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = read(f)
    return tuple(shape), dtype


def check_numpy_file(path: str | Path, key: str | None = None) -> None:
    """Checks the dtype and size of the ``.npy`` file ``path``, or of the ``.npz`` member
    ``key`` (every member without one), from the headers alone; any problem is a
    ``ValueError`` naming the file (and the member)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as f:
                shape, dtype = _header(f, str(path))
                body = f.tell()
            check_real(dtype, str(path))
            check_size(shape, str(path))
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if path.stat().st_size < body + count * dtype.itemsize:
                raise ValueError(
                    f"{path}: truncated: its header declares shape {shape} of {dtype}, "
                    f"{count * dtype.itemsize:,} bytes, and the file is shorter"
                )
            return
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".npy")]
            for name in members:
                if key is not None and name != f"{key}.npy":
                    continue
                where = f"{path}: array {name[:-4]!r}"
                with archive.open(name) as f:
                    shape, dtype = _header(f, where)  # type: ignore[arg-type]
                check_real(dtype, where)
                check_size(shape, where)
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable NumPy file ({e})") from None
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable NumPy file ({e})") from None
