"""From a config to the objects of a run: device, data, objective, model.

The model is built from a **spec**, the part of a checkpoint that rebuilds it without the
data::

    {"name": "glow", "options": {...}, "event_shape": [1, 28, 28],
     "context_features": 10, "context_classes": 10}

Every error here is a :class:`~flowforge.config.ConfigError` raised before a run directory
is written.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flowforge.config import ConfigError, RunConfig
from flowforge.data.registry import Splits, load_dataset
from flowforge.models import build_model
from flowforge.objectives import OBJECTIVES, Objective, ObjectiveError, Setting

__all__ = ["build_from_spec", "load_data", "make_objective", "model_spec", "resolve_device"]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` picks CUDA when available; an unavailable device is a config error. A plain
    ``"cuda"`` is GPU ``local_rank`` (the process's GPU under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available here")
        try:
            index = local_rank if name == "cuda" else int(name.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"device: should be 'cuda' or 'cuda:N', got {name!r}") from None
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r}, but there are {torch.cuda.device_count()} GPUs")
        return torch.device("cuda", index)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' requested but MPS is not available here")
    return torch.device(name)


def load_data(cfg: RunConfig) -> Splits | None:
    """The configured data set, or ``None`` for objectives that read no data."""
    if not cfg.uses_data:
        return None
    d = cfg.data
    seed = cfg.seed if d.seed is None else d.seed
    try:
        splits = load_dataset(d.name, d.n_train, d.n_val, d.n_test, seed, **d.options)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"data: {e}") from None
    for split in ("train", "val", "test"):
        if getattr(splits, split).shape[0] < 1:
            raise ConfigError(f"data: the {split} split of {d.name!r} is empty")
    return splits


def make_objective(
    cfg: RunConfig,
    device: torch.device,
    data: Splits | None,
    load_model: Any = None,
) -> Objective:
    """The configured objective over ``data``; ``load_model(run_dir)`` opens other runs."""
    setting = Setting(
        seed=cfg.seed,
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        device=device,
        data=data,
        load_model=load_model,
    )
    try:
        return OBJECTIVES[cfg.objective.name](setting, **cfg.objective.options)
    except (ObjectiveError, FileNotFoundError) as e:
        raise ConfigError(f"objective: {e}") from None


def model_spec(cfg: RunConfig, objective: Objective) -> dict[str, Any]:
    """What rebuilds the configured model without the data (see the module docstring)."""
    return {
        "name": cfg.model.name,
        "options": dict(cfg.model.options),
        "context_classes": 0,
        **objective.model_inputs(),
    }


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The model a spec describes, with freshly initialised parameters."""
    try:
        return build_model(
            spec["name"],
            spec["options"],
            spec["event_shape"],
            spec.get("context_features", 0),
            spec.get("standardize"),
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model: {spec['name']!r} cannot be built: {e}") from None
    except KeyError as e:
        raise ConfigError(f"model spec without {e}") from None
