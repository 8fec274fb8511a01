"""The run directory: the one place that creates, opens, locks, reads and writes runs.

Its layout, the names of its files and how they are written (atomically) and read (a torn
last line of ``metrics.jsonl`` left out) are those of :mod:`flowforge.run_files`; commands, the
report, the playground, ``compare`` and the scripts read and write a run through a
:class:`RunDirectory`, never by a file name of their own.
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
from flowforge.run_files import (
    BEST,
    CHECKPOINTS,
    CONFIG,
    LAST,
    LOCK,
    METRICS,
    PLOTS,
    RUN_FILES,
    SUMMARY,
    atomic_write_text,
    is_temporary,
    read_records,
)
from flowforge.train.checkpoint import save_checkpoint

__all__ = ["RunDirectory", "RunLocked", "check_output", "output_path"]


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


def output_path(path: str | Path | None, option: str = "--out") -> Path | None:
    """An output path as given (``None`` stays ``None``), refused as :func:`check_output`
    refuses it."""
    if path is None:
        return None
    check_output(path, option)
    return Path(path)


class RunLocked(ConfigError):
    """Another process is training in this run directory."""


class RunDirectory:
    """A run's directory at ``path`` (its layout: :mod:`flowforge.run_files`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # -- its files ---------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        """``config.yaml``: written before the first step, so a directory without one holds
        no run (or one killed while it started)."""
        return self.path / CONFIG

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    def linked_files(self) -> list[str]:
        """Those of the run's own files (``config.yaml``, ``metrics.jsonl``, ``summary.json``,
        ``checkpoints/`` and its ``last.pt`` and ``best.pt``) that are symbolic links, by
        their names in the run: a reader that shows or serves a run's files refuses them."""
        own = (CONFIG, METRICS, SUMMARY, CHECKPOINTS, *(f"{CHECKPOINTS}/{n}" for n in (LAST, BEST)))
        return [name for name in own if (self.path / name).is_symlink()]

    @staticmethod
    def is_transient(name: str) -> bool:
        """Whether a file named ``name`` is no part of the run's content: its lock file, or
        a temporary file a killed write left (:func:`~flowforge.run_files.is_temporary`)."""
        return name == LOCK or is_temporary(name)

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
        file = self.config_file
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
        atomic_write_text(self.config_file, yaml.safe_dump(config, sort_keys=False))

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_path(self, name: str) -> Path:
        """The file ``name`` in ``checkpoints/`` (:data:`~flowforge.run_files.LAST`,
        :data:`~flowforge.run_files.BEST` or another)."""
        return self.checkpoints / name

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
        """Deletes the temporary files a killed write left behind (named by
        :func:`~flowforge.run_files.atomic_write`: :func:`~flowforge.run_files.is_temporary`;
        any other file is the user's and stays); returns them."""
        orphans = [
            p
            for folder in (self.path, self.checkpoints)
            if folder.is_dir()
            for p in sorted(folder.iterdir())
            if is_temporary(p.name) and p.is_file() and not p.is_symlink()
        ]
        for p in orphans:
            p.unlink(missing_ok=True)
        return orphans

    # -- metrics and summary -----------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """The metrics records; a torn last line (a kill during an append) is left out, a
        corrupt line elsewhere is an error naming it (:func:`~flowforge.run_files.
        read_records`)."""
        return read_records(self.metrics_file)

    def truncate_metrics(self, step: int) -> None:
        """Keeps the records up to ``step`` (a resumed run writes the later ones again),
        rewriting the file atomically."""
        keep = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in keep))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_file, json.dumps(summary, indent=2) + "\n")

    def read_summary(self) -> dict[str, Any] | None:
        """The summary, or ``None`` while the run has not finished."""
        file = self.summary_file
        return json.loads(file.read_text()) if file.is_file() else None

    # -- locking -----------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the directory's lock: a second process that tries to train in it gets a
        :class:`RunLocked` error instead of interleaving its records with ours."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
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
