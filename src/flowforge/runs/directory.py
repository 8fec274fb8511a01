"""The run directory: the one place that names, creates, writes, locks and opens runs.

::

    <output_dir>/<name>/
        config.yaml        the resolved config: exactly what resumes the run
        metrics.jsonl      one JSON record per evaluation (and per rollback or resume)
        checkpoints/       last.pt (resume point), best.pt (best validation)
        summary.json       the test numbers and the run's facts
        plots/             figures
        .lock              held while a process trains in the directory

Every rewrite is atomic (a temporary file in the same directory, fsynced, then renamed), so
a kill leaves the old or the new file, never a torn one; appends to ``metrics.jsonl`` can be
torn by a kill, and a torn last line is dropped when the run is opened again.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from flowforge.config import ConfigError, read_yaml
from flowforge.train.checkpoint import BEST, LAST, TMP_SUFFIX, atomic_write, save_checkpoint

__all__ = ["RUN_FILES", "RunDirectory", "RunLocked", "atomic_write_text", "check_output"]

CONFIG, METRICS, SUMMARY = "config.yaml", "metrics.jsonl", "summary.json"
CHECKPOINTS, PLOTS, LOCK = "checkpoints", "plots", ".lock"


#: a run's own files (beside its ``checkpoints/``), which no command's output may replace
RUN_FILES = (CONFIG, METRICS, SUMMARY, LOCK)


def check_output(path: str | Path, option: str = "--out") -> Path:
    """``path`` resolved (symlinks followed), refused with a :class:`~flowforge.config.
    ConfigError` naming ``option`` when it is one of a run's own files: ``config.yaml``,
    ``metrics.jsonl``, ``summary.json`` or ``.lock`` of a run directory (a folder holding a
    ``config.yaml``), or anything in a run's ``checkpoints/``."""
    target = Path(path).resolve()
    folder = target.parent
    if target.name in RUN_FILES and (folder / CONFIG).is_file():
        run = folder
    elif folder.name == CHECKPOINTS and (folder.parent / CONFIG).is_file():
        run = folder.parent
    else:
        return target
    raise ConfigError(
        f"{option}: {path} is the file {target.relative_to(run)} of the run {run}; "
        f"write the output elsewhere"
    )


class RunLocked(ConfigError):
    """Another process is training in this run directory."""


def atomic_write_text(path: Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically (:func:`~flowforge.train.checkpoint.
    atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class RunDirectory:
    """A run's directory at ``path`` (see the module docstring for its layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # -- naming and opening ------------------------------------------------------------------
    @classmethod
    def create(cls, output_dir: str | Path, name: str) -> RunDirectory:
        """A new directory ``output_dir/name``, or ``name-2``, ``name-3``, ... when taken
        (created exclusively, so two runs started at once never share one)."""
        parent = Path(output_dir)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"output_dir: cannot create {parent} ({e.strerror})") from None
        k = 1
        while True:
            path = parent / (name if k == 1 else f"{name}-{k}")
            try:
                path.mkdir()
            except FileExistsError:
                k += 1
                continue
            except OSError as e:
                raise ConfigError(f"output_dir: cannot create {path} ({e.strerror})") from None
            return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        """An existing run directory; a missing, empty or unreadable ``config.yaml`` is a
        :class:`~flowforge.config.ConfigError` (never a silent default config)."""
        run = cls(path)
        if not run.path.is_dir():
            raise ConfigError(f"not a run directory: {run.path} does not exist")
        run.read_config()
        return run

    def read_config(self) -> dict[str, Any]:
        """The raw config mapping of ``config.yaml``."""
        file = self.path / CONFIG
        if not file.is_file():
            raise ConfigError(f"not a run directory (no {CONFIG}): {self.path}")
        try:
            raw = read_yaml(file)  # bounded alias expansion, one-line errors
        except UnicodeDecodeError:
            raise ConfigError(f"{file}: not UTF-8 text; the run's config is lost") from None
        if not raw:
            raise ConfigError(f"{file}: empty; the run's config is lost")
        if "train" not in raw or "model" not in raw:
            raise ConfigError(f"{file}: incomplete (no train or model section)")
        return raw

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.path / CONFIG, yaml.safe_dump(config, sort_keys=False))

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_path(self, name: str) -> Path:
        return self.path / CHECKPOINTS / name

    def save_checkpoint(self, name: str, payload: dict[str, Any]) -> Path:
        path = self.checkpoint_path(name)
        save_checkpoint(path, payload)
        return path

    def model_checkpoint(self, name: str = "best") -> Path:
        """``best.pt`` (or ``last.pt`` when the run has not evaluated yet) for ``"best"``,
        ``last.pt`` for ``"last"``, or the file ``name`` in ``checkpoints/``."""
        if name in ("best", "last"):
            path = self.checkpoint_path(BEST if name == "best" else LAST)
            if name == "best" and not path.is_file():
                path = self.checkpoint_path(LAST)
        else:
            path = self.checkpoint_path(name)
        if not path.is_file():
            raise ConfigError(f"{self.path}: no checkpoint {path.name} in {CHECKPOINTS}/")
        return path

    def remove_temporary_files(self) -> list[Path]:
        """Deletes the temporary files a killed write left behind (named ``.NAME.XXXX`` +
        :data:`~flowforge.train.checkpoint.TMP_SUFFIX` by :func:`~flowforge.train.checkpoint.
        atomic_write`; any other file is the user's and stays); returns them."""
        orphans = [
            p
            for folder in (self.path, self.path / CHECKPOINTS)
            if folder.is_dir()
            for p in folder.glob(f".*{TMP_SUFFIX}")
            if p.is_file() and not p.is_symlink()
        ]
        for p in orphans:
            p.unlink(missing_ok=True)
        return orphans

    # -- metrics and summary -----------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """The metrics records; a torn last line (a kill during an append) is left out, a
        corrupt line elsewhere is an error naming it."""
        file = self.path / METRICS
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

    def truncate_metrics(self, step: int) -> None:
        """Keeps the records up to ``step`` (a resumed run writes the later ones again),
        rewriting the file atomically."""
        keep = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in keep))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / SUMMARY, json.dumps(summary, indent=2) + "\n")

    def read_summary(self) -> dict[str, Any] | None:
        file = self.path / SUMMARY
        return json.loads(file.read_text()) if file.is_file() else None

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    # -- locking -----------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the directory's lock: a second process that tries to train in it gets a
        :class:`RunLocked` error instead of interleaving its records with ours."""
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(
                    f"{self.path}: another process is training in this run directory"
                ) from None
            yield
        finally:
            os.close(fd)  # closing releases the lock
