"""Learning-rate schedules, seeding and random states: what makes a step reproducible.

A step's randomness comes from torch's generators (dequantization noise, posterior and
flow samples, binarization) and its batch from ``(seed, step)``; checkpoints keep the
generators' states (:func:`rng_state`), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch

from flowforge.config import TrainConfig

__all__ = ["learning_rate", "rank_seed", "rng_state", "seed_everything", "set_rng_state"]


def learning_rate(t: TrainConfig, step: int) -> float:
    """The scheduled learning rate at ``step``: linear warm-up over ``t.warmup`` steps, then
    constant or a cosine decay to zero at ``t.steps``."""
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    if t.schedule == "cosine":
        progress = (step - t.warmup) / max(1, t.steps - t.warmup)
        return t.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return t.lr


def rng_state() -> dict[str, Any]:
    """Torch's generator states (CPU, and every CUDA device when there is one)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` returned (its byte tensors wherever a checkpoint's
    ``map_location`` put them: generator states are set from CPU tensors)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of a torchrun rank > 0's random stream, distinct per (seed, rank, step)."""
    return (seed * 1_000_003 + rank) * 1_000_033 + step


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seeds Python's, NumPy's and torch's generators; ``deterministic`` asks torch for
    deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
