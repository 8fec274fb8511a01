"""Checkpoints written atomically and loaded without executing code.

A checkpoint is a ``torch.save`` of plain tensors and containers, read back with
``torch.load(weights_only=True)``, which refuses any pickle that would run code. Writing goes
to a temporary file in the same directory, is flushed and fsynced, then renamed over the
target, so a crash leaves either the old or the new file, never a torn one. A model whose
parameters are not all finite is never written.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowforge.train.averaging import ParameterAverage

__all__ = [
    "FORMAT",
    "CheckpointError",
    "load_averaged_parameters",
    "load_checkpoint",
    "load_model_state",
    "save_checkpoint",
]

FORMAT = "flowforge-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: the message names the file and the problem."""


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if torch.is_floating_point(v))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically writes ``payload`` (must hold a finite ``"model"`` state dict) to ``path``."""
    path = Path(path)
    if not _all_finite(payload["model"]):
        raise CheckpointError(f"refusing to write {path}: the model has NaN or infinite weights")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a flowforge checkpoint without executing code; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint (not a complete archive)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects that would execute code when "
            f"unpickled ({str(e).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not a flowforge checkpoint (format {found!r}, expected {FORMAT!r})"
        )
    return payload


def load_model_state(path: Path, model: nn.Module, payload: dict[str, Any]) -> None:
    """Loads ``payload["model"]`` into ``model``; a mismatch names the file and the keys."""
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: does not fit this model (from another model or config?): "
            f"{str(e).splitlines()[0]} ..."
        ) from None


def load_averaged_parameters(path: Path, model: nn.Module, payload: dict[str, Any]) -> bool:
    """Puts a training checkpoint's moving average of the parameters (``train.ema``, saved
    under ``"ema"``) into ``model``'s parameters, after :func:`load_model_state` has loaded
    the rest of its state. Returns False, leaving the model as it is, when the checkpoint
    holds no average; a wrong count or shape is a :class:`CheckpointError`."""
    if "ema" not in payload:
        return False
    average = ParameterAverage(model, 0.0)
    try:
        average.load(payload["ema"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    average.copy_to_module()
    return True
