"""Where a playground run's data comes from: a toy data set, points drawn on the page, or the
user's own 2-D file (uploaded, or a path typed in).

Each becomes the ``data:`` section of the run's config. A file gets exactly the checks of
``flowforge train --data FILE``: it is read by :func:`flowforge.data.files.read_table`, its
section is :func:`flowforge.runs.shorthand.data_file_config`'s (80/10/10 split), and its
splits are loaded once by the file loader before any worker starts, so a file that training
would refuse (missing, unknown format, a text column, NaN rows, a constant column, too few
rows) is refused on the page with the same message. The playground adds two limits of its
own: a file of two feature columns, and at most :data:`MAX_FILE_BYTES`.

Only the file the user named is read, and nothing of it is served back but the points drawn
on the page; an uploaded file is kept in the workspace's ``.data`` folder under a random name
that the page sends back to train on it (a typed path is copied there, under such a name, when
its run starts: a run trains only on files of the playground's own).
"""

from __future__ import annotations

import math
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowforge.config import ConfigError
from flowforge.data import toy
from flowforge.data.files import FORMATS, read_table
from flowforge.data.registry import load_dataset
from flowforge.runs.shorthand import data_file_config

__all__ = [
    "MAX_FILE_BYTES",
    "PlaygroundError",
    "check_points",
    "file_section",
    "json_rounded",
    "preview",
    "save_upload",
    "toy_section",
    "too_large",
    "uploaded",
]


class PlaygroundError(ValueError):
    """Bad input from the page: its message is shown there."""


TOY = sorted(toy.DATASETS)
MAX_POINTS = 20000
MIN_POINTS = 30
MAX_ABS = 1e3
MAX_FILE_BYTES = 20 * 2**20
PREVIEW_POINTS = 1000
UPLOAD = re.compile(r"^upload-[0-9a-f]{16}(\.csv|\.tsv|\.npy|\.npz)$")


def toy_section(name: Any) -> dict[str, Any]:
    """The data section of the toy data set ``name``."""
    if name not in TOY:
        choices = ", ".join(TOY)
        raise PlaygroundError(f"unknown data set {str(name)[:40]!r}; choose one of {choices}")
    return {"name": name, "n_train": 10000, "n_val": 2000, "n_test": 5000}


def check_points(points: Any) -> np.ndarray:
    """Points drawn on the page as an ``(n, 2)`` array, or a :class:`PlaygroundError`."""
    if not isinstance(points, list) or not points:
        raise PlaygroundError("the drawing is empty: draw some points (or pick a data set)")
    if len(points) > MAX_POINTS:
        raise PlaygroundError(f"too many points: {len(points)} (at most {MAX_POINTS})")
    try:
        x = np.array(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise PlaygroundError("points: should be pairs of numbers [x, y]") from None
    if x.ndim != 2 or x.shape[1] != 2:
        raise PlaygroundError(f"points: should be pairs [x, y], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise PlaygroundError("points: some are NaN or infinite")
    if np.abs(x).max() > MAX_ABS:
        raise PlaygroundError(f"points: values up to {MAX_ABS:g} in size, got {np.abs(x).max():g}")
    if len(x) < MIN_POINTS:
        raise PlaygroundError(f"the drawing has {len(x)} points: draw at least {MIN_POINTS}")
    if (x.std(0) < 1e-3).any():
        raise PlaygroundError("the points lie on a line: draw a cloud with some spread")
    return x.astype(np.float32)


def points_section(n: int) -> dict[str, Any]:
    """The data section of ``n`` drawn points (saved to a ``.npy`` file, ``path`` added)."""
    n_val = n_test = max(3, n // 10)
    return {"name": "file", "n_train": n - n_val - n_test, "n_val": n_val, "n_test": n_test}


def file_section(path: Any) -> dict[str, Any]:
    """The data section of the user's file ``path`` (``flowforge train --data``'s), after
    checking that training will accept it and that it holds two columns."""
    if not isinstance(path, str) or not path.strip() or "\0" in path or len(path) > 4096:
        raise PlaygroundError("the path: type the path of a .csv, .tsv, .npy or .npz file")
    file = Path(path.strip()).expanduser().resolve()
    try:
        size = file.stat().st_size if file.is_file() else None
    except OSError:
        size = None
    if size is None:
        raise PlaygroundError(f"file not found: {file}")
    if size > MAX_FILE_BYTES:
        raise PlaygroundError(
            f"{file}: {size / 2**20:.1f} MiB; the playground reads files up to "
            f"{MAX_FILE_BYTES / 2**20:g} MiB (train larger ones with `flowforge train --data`)"
        )
    try:
        _, names = read_table(file)  # the reader of --data, with its errors
        if len(names) != 2:
            raise PlaygroundError(
                f"{file.name}: the playground fits 2-D data, and this file has {len(names)} "
                f"column{'s' * (len(names) != 1)} ({', '.join(names)[:120]}); keep two, or "
                f"train it with `flowforge train --data {file.name}`"
            )
        section = data_file_config(str(file))["data"]
        _load(section)  # NaN rows, constant columns, too few rows: the loader's own checks
    except (ValueError, ConfigError) as e:
        if isinstance(e, PlaygroundError):
            raise
        raise PlaygroundError(str(e).removeprefix("--data: ")) from None
    return section


def too_large(filename: Any) -> PlaygroundError:
    return PlaygroundError(
        f"{str(filename)[:60]}: over {MAX_FILE_BYTES / 2**20:g} MiB, the playground's limit "
        f"(train larger files with `flowforge train --data FILE`)"
    )


def save_upload(folder: Path, filename: Any, content: bytes) -> str:
    """Saves an uploaded file's ``content`` under a random name in ``folder``; returns that
    name (the page's handle on it). The suffix of ``filename`` picks the reader."""
    suffix = Path(str(filename)).suffix.lower()
    if suffix not in FORMATS:
        raise PlaygroundError(
            f"{str(filename)[:60]}: unknown format {suffix!r}; the playground reads "
            f"{', '.join(FORMATS)}"
        )
    if len(content) > MAX_FILE_BYTES:
        raise too_large(filename)
    if not content:
        raise PlaygroundError(f"{str(filename)[:60]}: the file is empty")
    name = f"upload-{secrets.token_hex(8)}{suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return name


def uploaded(folder: Path, name: Any) -> Path:
    """The uploaded file the page calls ``name`` (one saved by :func:`save_upload`)."""
    if not isinstance(name, str) or not UPLOAD.match(name) or not (folder / name).is_file():
        raise PlaygroundError(f"no uploaded file {str(name)[:40]!r}: upload it again")
    return folder / name


def _load(section: dict[str, Any], seed: int = 0) -> Any:
    """The splits of a data section (as :func:`flowforge.runs.build.load_data` loads them)."""
    sizes = ("name", "n_train", "n_val", "n_test", "seed")
    options = {k: v for k, v in section.items() if k not in sizes}
    if section.get("seed") is not None:
        seed = section["seed"]
    return load_dataset(
        section["name"], section["n_train"], section["n_val"], section["n_test"], seed, **options
    )


def json_rounded(x: torch.Tensor | np.ndarray) -> list:
    """``x`` as nested lists for the page, rounded to 5 significant digits of its largest
    value (a JSON event half the size; invisible on a 300-pixel canvas at any scale), with
    ``None`` for a value that is not finite (JSON has no NaN)."""
    a = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(a)
    top = float(np.abs(a[finite]).max(initial=0.0))
    digits = 5 - math.ceil(math.log10(top)) if top > 0 else 5
    rounded = np.round(np.where(finite, a, 0.0), max(0, digits)).astype(object)
    rounded[~finite] = None
    return rounded.tolist()


def preview(section: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """What the page draws before training: a seeded random subset of the training split
    (at most :data:`PREVIEW_POINTS` points), its box, its row count and the data set's true
    entropy (``None`` when unknown)."""
    from flowforge.viz.run_figures import box_of

    try:
        train = _load(section, seed).train
    except (ValueError, FileNotFoundError) as e:
        raise PlaygroundError(f"the data cannot be read any more: {e}") from None
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(99))
    points = train[order[:PREVIEW_POINTS]].float()
    h = toy.ENTROPY.get(section["name"])
    return {
        "points": json_rounded(points),
        "box": box_of(points, 0.15),
        "rows": int(section["n_train"] + section["n_val"] + section["n_test"]),
        "entropy": None if h is None or not math.isfinite(h.value) else h.value,
    }
