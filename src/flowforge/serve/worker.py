"""The training process of the playground: ``train_run`` (the CLI's trainer, nothing else),
its outcome written to a small status file the server reads.

Run in a separate process (``spawn``), so a crash of the model, of torch or of the process
itself loses nothing beyond the run's last checkpoint, and the server stays up. SIGTERM (the
page's stop button) makes the trainer save ``last.pt`` and stop, as Ctrl-C does in a terminal.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["read_status", "train_worker", "write_status"]


def write_status(path: Path, **status: Any) -> None:
    from flowforge.runs.directory import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**status, "time": time.time()}))


def read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def train_worker(
    status: str,
    raw: dict[str, Any] | None,
    resume: str | None,
    overrides: list[str],
    threads: int = 1,
) -> None:
    """Trains the config ``raw``, or resumes the run ``resume`` with ``overrides``; records
    ``training``, then ``finished``, ``stopped`` or ``error`` (with its message) in ``status``."""
    import torch

    from flowforge.config import ConfigError, parse_config
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
        write_status(path, state="stopped", message="stopped; resume continues from last.pt")
    except (ConfigError, CheckpointError, TrainingDiverged, OSError) as e:
        write_status(path, state="error", message=str(e))
    except Exception as e:  # the page shows it; the traceback goes to the server's log
        traceback.print_exc()
        write_status(path, state="error", message=f"{type(e).__name__}: {e}")
