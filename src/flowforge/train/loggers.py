"""Experiment logs beside ``metrics.jsonl``: TensorBoard, and the adapter point for others.

The trainer hands every evaluation to each configured logger::

    train:
      log: {tensorboard: true}        # or {tensorboard: {histograms: false}}

A logger receives the metrics record (scalars), the model (parameter histograms) and, for
models over images, a grid of samples. :func:`register_logger` adds another backend (MLflow,
Weights & Biases, ...) without touching the trainer: a factory ``(log_dir, **options) ->
RunLogger``; its name becomes a key of ``train.log``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

__all__ = [
    "LOGGERS",
    "RunLogger",
    "TensorBoardLogger",
    "check_log_config",
    "make_loggers",
    "register_logger",
]


class RunLogger(Protocol):
    """What the trainer calls at every evaluation, and once at the end."""

    def log_evaluation(self, step: int, record: dict[str, Any], model: nn.Module) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """Scalars (every number of the metrics record), parameter histograms and, for image
    models, 16 samples at temperature 0.7, written to ``log_dir`` as TensorBoard event files.

    Arguments:
        log_dir: the folder of the event files (``RUN/tensorboard``).
        histograms: log every parameter's histogram.
        images: log sample grids of image models.
    """

    def __init__(self, log_dir: Path, histograms: bool = True, images: bool = True) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(
                "train.log.tensorboard needs the tensorboard package: "
                "pip install 'flowforge[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.histograms, self.images = histograms, images

    def log_evaluation(self, step: int, record: dict[str, Any], model: nn.Module) -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                self.writer.add_scalar(key, value, step)
        if self.histograms:
            for name, p in model.named_parameters():
                self.writer.add_histogram(name, p.detach().float().cpu(), step)
        shape = tuple(getattr(model, "event_shape", ()))
        if self.images and len(shape) == 3 and shape[0] in (1, 3):
            self.writer.add_images("samples_T0.7", _samples(model), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@torch.no_grad()
def _samples(model: nn.Module) -> Tensor:
    """16 samples at temperature 0.7 scaled to [0, 1] for display, with the sampling draws
    taken outside the training's random stream."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        was_training = model.training
        model.eval()
        try:
            x = model.sample(16, None, temperature=0.7).float().cpu()  # type: ignore[operator]
        finally:
            model.train(was_training)
    low, high = x.amin(), x.amax()
    return (x - low) / (high - low).clamp_min(1e-8)


#: logger factories by the name used in ``train.log``
LOGGERS: dict[str, Callable[..., RunLogger]] = {"tensorboard": TensorBoardLogger}


def register_logger(name: str) -> Callable[[Callable[..., RunLogger]], Callable[..., RunLogger]]:
    """Decorator registering a logger factory ``(log_dir, **options) -> RunLogger``."""

    def add(factory: Callable[..., RunLogger]) -> Callable[..., RunLogger]:
        if name in LOGGERS:
            raise ValueError(f"a logger named {name!r} is already registered")
        LOGGERS[name] = factory
        return factory

    return add


def check_log_config(log: dict[str, Any]) -> None:
    """Refuses unknown logger names and options that are neither a bool nor a mapping."""
    for name, options in log.items():
        if name not in LOGGERS:
            raise ValueError(f"train.log.{name}: unknown logger; choose from {sorted(LOGGERS)}")
        if not isinstance(options, (bool, dict)):
            raise ValueError(f"train.log.{name}: should be true, false or a mapping of options")
        try:  # the options against the factory's signature, before any file is written
            inspect.signature(LOGGERS[name]).bind(
                Path("."), **(options if isinstance(options, dict) else {})
            )
        except TypeError as e:
            raise ValueError(f"train.log.{name}: {e}") from None


def make_loggers(log: dict[str, Any], run_dir: Path) -> list[RunLogger]:
    """The loggers ``train.log`` turns on, writing under ``run_dir/<name>/``."""
    check_log_config(log)
    loggers = []
    for name, options in log.items():
        if options is False:
            continue
        kwargs = options if isinstance(options, dict) else {}
        loggers.append(LOGGERS[name](run_dir / name, **kwargs))
    return loggers
