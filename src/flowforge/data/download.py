"""Fetching a data file over the network, atomically and checked against its published MD5.

Nothing here knows a data set: :mod:`flowforge.data.image_readers` names the files, their
checksums and mirrors, and calls :func:`download_idx` when a loader is given ``download=True``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CACHE_DIR", "download_file", "download_idx"]

#: where downloads go when no ``data_dir`` is given (one folder per data set)
CACHE_DIR = Path.home() / ".cache" / "flowforge"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Downloads ``url`` to ``dest`` atomically and checks its MD5.

    Skips the download if ``dest`` exists with the right checksum. Raises ``ValueError`` on a
    checksum mismatch (the partial file is removed) and lets network errors propagate.
    """
    dest = Path(dest)
    if dest.is_file() and _md5(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # opened like any new file, so it gets the umask's mode (mkstemp's would be 0o600)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
        got = _md5(Path(tmp))
        if got != md5:
            raise ValueError(f"checksum mismatch for {url}: MD5 {got}, expected {md5}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def download_idx(root: Path, files: dict[str, str], mirrors: Sequence[str]) -> Path:
    """Downloads the IDX files ``{name: md5}`` into ``root``, trying each mirror in turn."""
    root = Path(root)
    for name, md5 in files.items():
        errors = []
        for mirror in mirrors:
            try:
                download_file(mirror.rstrip("/") + "/" + name, root / name, md5)
                break
            except (OSError, ValueError) as e:
                errors.append(f"{mirror}: {e}")
        else:
            raise RuntimeError(f"could not download {name}:\n  " + "\n  ".join(errors))
    return root
