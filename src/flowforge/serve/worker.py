"""The training process of the playground: ``train_run`` (the CLI's trainer, nothing else),
its outcome written to a small status file the server reads.

Run in a separate process (``spawn``), so a crash of the model, of torch or of the process
itself loses nothing beyond the run's last checkpoint, and the server stays up. SIGTERM (the
page's stop button) makes the trainer save ``last.pt`` and stop, as Ctrl-C does in a terminal.
A worker whose server is gone (killed with SIGKILL, so it could not stop its workers) stops
itself the same way (:func:`watch_parent`).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["read_status", "train_worker", "watch_parent", "write_status"]

GRACE_SECONDS = 30.0  # after the stop signal, how long a worker may take to save and stop


def write_status(path: Path, **status: Any) -> None:
    from flowforge.run_files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**status, "time": time.time()}))


def read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def watch_parent(parent: int, interval: float = 0.5) -> threading.Thread:
    """Stops this process once its parent ``parent`` (the server) is gone, as the stop button
    does: SIGTERM to itself, so the trainer saves ``last.pt`` and stops; if it has not ended
    :data:`GRACE_SECONDS` later, it exits. The parent is gone when this process has been
    handed to another one (``os.getppid()`` changes: POSIX gives an orphan to init or a
    subreaper), which a server killed with SIGKILL cannot prevent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE_SECONDS)
        os._exit(1)

    thread = threading.Thread(target=watch, name="flowforge-watch-server", daemon=True)
    thread.start()
    return thread


def train_worker(
    status: str,
    raw: dict[str, Any] | None,
    resume: str | None,
    overrides: list[str],
    threads: int = 1,
    parent: int | None = None,
) -> None:
    """Trains the config ``raw``, or resumes the run ``resume`` with ``overrides``; records
    ``training``, then ``finished``, ``stopped`` or ``error`` (with its message) in ``status``.
    With ``parent`` (the server's process id), stops when that process is gone."""
    if parent is not None:
        watch_parent(parent)
    import torch

    from flowforge.config import ConfigError, parse_config
    from flowforge.run_files import LAST
    from flowforge.runs import train_run
    from flowforge.train.checkpoint import CheckpointError
    from flowforge.train.trainer import TrainingDiverged, TrainingInterrupted

    torch.set_num_threads(threads)
    path = Path(status)
    write_status(path, state="training", pid=os.getpid())
    try:
        if resume is not None:
            result = train_run(resume=resume, overrides=overrides, progress=False)
        else:
            assert raw is not None
            result = train_run(parse_config(raw), progress=False)
        write_status(path, state="finished", summary=result.summary)
    except TrainingInterrupted:
        write_status(path, state="stopped", message=f"stopped; resume continues from {LAST}")
    except (ConfigError, CheckpointError, TrainingDiverged, OSError) as e:
        write_status(path, state="error", message=str(e))
    except Exception as e:  # the page shows it; the traceback goes to the server's log
        traceback.print_exc()
        write_status(path, state="error", message=f"{type(e).__name__}: {e}")
