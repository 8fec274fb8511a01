"""Opening a run: ``flowforge.load(run)`` gives its model without touching the data set.

A checkpoint carries the model's spec (recipe, options, event shape, context size; see
:mod:`flowforge.runs.build`), so :func:`load` rebuilds the model and loads the weights with
``weights_only`` loading on any device. :class:`Run` adds what the commands need: the config,
the summary, and the objective (which reads the data only when asked, e.g. for a test NLL).
Checkpoints written before specs existed rebuild the spec from the config, which reads the data.
A spec is trusted no further than the weights beside it: the model it describes may create at
most a few times the stored tensors' bytes (:func:`build_budget`) before its state is checked
against them, so a spec edited to ask for a huge layer is refused without allocating it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowforge.config import ConfigError, RunConfig, parse_config
from flowforge.data.columns import DataWarning
from flowforge.objectives import Objective
from flowforge.runs.build import (
    build_within,
    check_spec,
    load_data,
    make_objective,
    model_spec,
    resolve_device,
)
from flowforge.runs.directory import RunDirectory
from flowforge.train.checkpoint import load_checkpoint, load_model_state

__all__ = ["Run", "load", "open_run"]


@dataclass
class Run:
    """An opened run directory: its config, the model's spec and the files."""

    directory: RunDirectory
    config: RunConfig
    spec: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.directory.path

    def model(self, checkpoint: str = "best", device: str | torch.device = "cpu") -> nn.Module:
        """The model of ``checkpoint`` (``"best"``, ``"last"`` or a file name in
        ``checkpoints/``), in eval mode on ``device``."""
        return _load_file(self.directory.model_checkpoint(checkpoint), device, self.spec)

    def objective(self, device: str | torch.device = "cpu") -> Objective:
        """The run's objective; reads the data set when the objective uses one (without
        repeating the warnings about its file, given when the run trained)."""
        dev = resolve_device(str(device))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            data = load_data(self.config)
        return make_objective(self.config, dev, data, load_model=load)

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.directory.read_summary()

    @property
    def threads(self) -> int:
        """The CPU threads the run computed with (its summary's count, else its config's
        ``train.threads``, 0 for automatic): evaluating with as many repeats its numbers to
        the last digit (a reduction split over another count of threads rounds otherwise)."""
        summary = self.summary or {}
        recorded = summary.get("threads")
        return recorded if isinstance(recorded, int) and recorded > 0 else self.config.train.threads


def open_run(path: str | Path) -> Run:
    """Opens a run directory (validated: see :meth:`RunDirectory.open`)."""
    directory = RunDirectory.open(path)
    cfg = parse_config(directory.read_config(), check_data=False)
    payload = load_checkpoint(directory.model_checkpoint("best"))
    spec = payload.get("spec") or _spec_from_config(cfg)
    check_spec(spec)
    return Run(directory, cfg, spec)


def load(
    run: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu"
) -> nn.Module:
    """The trained model of a run directory (its ``best.pt``, else ``last.pt``; or
    ``checkpoint`` ``"last"`` or a file name in ``checkpoints/``), or of one checkpoint file,
    in eval mode on ``device``. Needs no data set.

    >>> flow = flowforge.load("runs/realnvp-moons")          # doctest: +SKIP
    >>> flow.sample(1000, temperature=0.8)                    # doctest: +SKIP
    """
    path = Path(run)
    if path.is_dir():
        return open_run(path).model(checkpoint, device)
    if not path.is_file():
        raise ConfigError(f"no run directory or checkpoint at {path}")
    return _load_file(path, device)


def _load_file(
    path: Path, device: str | torch.device, spec: dict[str, Any] | None = None
) -> nn.Module:
    device = resolve_device(str(device))
    payload = load_checkpoint(path, map_location=device)
    if spec is None:
        spec = payload.get("spec")
    if spec is None:  # a checkpoint from before specs: the config knows how to rebuild it
        if not isinstance(payload.get("config"), dict):
            raise ConfigError(f"{path}: holds neither a model spec nor a config")
        spec = _spec_from_config(parse_config(payload["config"], check_data=False))
    model = build_within(spec, build_budget(payload["model"])).to(device)
    load_model_state(path, model, payload)
    return model.eval()


def build_budget(state: dict[str, torch.Tensor]) -> int:
    """The tensor bytes a model rebuilt from a checkpoint's spec may create: four times the
    weights the checkpoint stores (recipes build their masks and initial values beside the
    parameters) and 64 MiB. A spec that asks for more cannot fit the stored weights (the
    model state's check would refuse it) and is refused before it allocates."""
    stored = sum(t.numel() * t.element_size() for t in state.values())
    return 4 * stored + 64 * 2**20


def _spec_from_config(cfg: RunConfig) -> dict[str, Any]:
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg), load_model=load)
    return model_spec(cfg, objective)
