"""The files of a run directory at the byte level: their names, atomic writes, and the reader
of the metrics log that tolerates a torn last line.

Every name a run directory's files have is here, and nowhere else (``tests/test_run_files.py``
scans the source and the scripts for them); :class:`flowforge.runs.RunDirectory` builds a run's
paths from them and is what commands and scripts read and write runs through. This module sits
low in the layers (below ``train``, ``viz`` and ``runs``) so the trainer's checkpoints can use
the same names and the same atomic writes::

    <output_dir>/<name>/
        config.yaml        CONFIG      the resolved config: exactly what resumes the run
        metrics.jsonl      METRICS     one JSON record per evaluation (and per rollback or resume)
        summary.json       SUMMARY     the test numbers and the run's facts
        checkpoints/       CHECKPOINTS last.pt (LAST, the resume point), best.pt (BEST)
        plots/             PLOTS       figures
        .lock              LOCK        held while a process trains in the directory

Every rewrite is atomic (:func:`atomic_write`: a temporary file in the same directory, named
``.NAME.XXXX`` + :data:`TMP_SUFFIX`, fsynced, then renamed), so a kill leaves the old or the new
file, never a torn one; an append to ``metrics.jsonl`` can be torn by a kill, and
:func:`read_records` leaves a torn last line out.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "BEST",
    "CHECKPOINTS",
    "CONFIG",
    "LAST",
    "LOCK",
    "METRICS",
    "PLOTS",
    "RUN_FILES",
    "SUMMARY",
    "TMP_SUFFIX",
    "atomic_write",
    "atomic_write_text",
    "current_umask",
    "is_temporary",
    "read_records",
]

CONFIG, METRICS, SUMMARY = "config.yaml", "metrics.jsonl", "summary.json"
CHECKPOINTS, PLOTS, LOCK = "checkpoints", "plots", ".lock"
#: the resume point written at every evaluation, and the best validation model
LAST, BEST = "last.pt", "best.pt"
#: how :func:`atomic_write`'s temporary files end, so a resume cleans only flowforge's own
TMP_SUFFIX = ".flowforge.tmp"
#: a run's own files (beside its ``checkpoints/``), which no command's output may replace
RUN_FILES = (CONFIG, METRICS, SUMMARY, LOCK)


def is_temporary(name: str) -> bool:
    """Whether the file name ``name`` is one of :func:`atomic_write`'s temporary files
    (``.NAME.XXXX`` + :data:`TMP_SUFFIX`), left behind by a kill; any other is someone's."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells it: the
    ``Umask:`` line of ``/proc/self/status`` (Linux 4.7 and later). Elsewhere it is set to
    ``0o077`` and restored at once, so a file another thread creates in that instant is private
    rather than world-writable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes ``path`` through ``write(file)`` atomically: a temporary file in the same
    directory, flushed and fsynced, renamed over ``path``, and the directory fsynced; a crash
    leaves the old file or the new one, never a torn one (the temporary file is removed on
    any error; a kill leaves it for :meth:`flowforge.runs.RunDirectory.remove_temporary_files`).

    The file gets the mode ``open()`` would give a new file, ``0o666 & ~umask``, not
    ``mkstemp``'s private ``0o600``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, 0o666 & ~current_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def read_records(file: Path) -> list[dict[str, Any]]:
    """The JSON records of the JSON-lines file ``file`` (none when it does not exist); a torn
    last line (a kill during an append) is left out, a corrupt line elsewhere is a
    :class:`~flowforge.config.ConfigError` naming it."""
    from flowforge.config import ConfigError  # not on import: the command's --help names LAST

    if not file.is_file():
        return []
    lines = file.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ConfigError(f"{file}: line {i + 1} is not a JSON record") from None
    return records
