"""The data-set registry used by configs and the command line.

A loader returns :class:`Splits` (train, validation and test tensors, optional context, and the
data's true entropy where known). Register a loader with :func:`register_dataset`; its keyword
arguments become the config's ``data:`` options, validated against its signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from flowforge.data import toy

__all__ = ["DATASETS", "Splits", "load_dataset", "register_dataset"]


@dataclass
class Splits:
    """Train, validation and test data of one data set.

    Attributes:
        train, val, test: ``(n, *event_shape)`` float tensors.
        train_context, val_context, test_context: ``(n, context_features)`` or ``None``; or
            context images ``(n, C_c, H, W)`` (structured output, :mod:`flowforge.data.
            structured`), whose ``context_features`` is ``C_c``.
        entropy: true entropy (nats per point) where known, the best test NLL possible.
        entropy_stderr: its standard error (0 when exact).
        unit: ``"nats"`` for continuous data, ``"bits/dim"`` for 8-bit images.
        info: free-form facts about the data (source, preprocessing).
        context_classes: when the context is a one-hot class label, the number of classes
            (so ``flowforge sample --class K`` knows it may build one); 0 otherwise.
        binarize_train: the training split holds intensities in [0, 1] to be binarized afresh
            per batch (dynamic binarization); validation and test are binary already.
        standardization: a fixed standardisation fitted on the training split, to sit inside
            the model (the tensors stay in the data's units): the tensors of
            :func:`~flowforge.data.standardization.fit_standardization` (``loc``, ``scale``
            and, for a linear one on a context, ``weight``).
        train_context_sampler: draws each training batch's contexts afresh, ``sampler(rows,
            generator) -> contexts``, from the batch's rows and a generator the objective
            seeds from the run's seed and the step (fresh inpainting masks, :class:`~flowforge.
            data.structured.FreshMasks`); ``None``: the batch takes its rows of
            ``train_context``.
    """

    train: Tensor
    val: Tensor
    test: Tensor
    train_context: Tensor | None = None
    val_context: Tensor | None = None
    test_context: Tensor | None = None
    entropy: float | None = None
    entropy_stderr: float | None = None
    unit: str = "nats"
    info: dict = field(default_factory=dict)
    context_classes: int = 0
    binarize_train: bool = False
    standardization: dict[str, Tensor] | None = None
    train_context_sampler: Callable[[Tensor, torch.Generator], Tensor] | None = None

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def context_features(self) -> int:
        return 0 if self.train_context is None else int(self.train_context.shape[1])

    @property
    def context_shape(self) -> tuple[int, ...]:
        """Shape of one context: ``(context_features,)``, ``(C_c, H, W)`` for an image
        context, ``()`` without one."""
        return () if self.train_context is None else tuple(self.train_context.shape[1:])

    def check_finite(self, name: str) -> None:
        """Raises a ``ValueError`` naming the split and count if any value is NaN or inf."""
        for split in ("train", "val", "test"):
            for suffix in ("", "_context"):
                t = getattr(self, split + suffix)
                if t is not None and not bool(torch.isfinite(t).all()):
                    bad = int((~torch.isfinite(t)).sum())
                    raise ValueError(
                        f"data set {name!r}: {bad} NaN or infinite values in the "
                        f"{split}{suffix} split"
                    )


DATASETS: dict[str, Callable[..., Splits]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., Splits]], Callable[..., Splits]]:
    """Decorator registering a loader ``(n_train, n_val, n_test, seed, **options) -> Splits``."""

    def add(loader: Callable[..., Splits]) -> Callable[..., Splits]:
        if name in DATASETS:
            raise ValueError(f"a data set named {name!r} is already registered")
        DATASETS[name] = loader
        return loader

    return add


def dataset_options(name: str) -> dict[str, inspect.Parameter]:
    """The options a data set's loader accepts beyond the split sizes and seed."""
    fixed = {"n_train", "n_val", "n_test", "seed"}
    params = inspect.signature(DATASETS[name]).parameters
    return {k: p for k, p in params.items() if k not in fixed}


def load_dataset(
    name: str, n_train: int, n_val: int, n_test: int, seed: int = 0, **options: object
) -> Splits:
    """Loads the registered data set ``name``; errors name unknown data sets and options."""
    if name not in DATASETS:
        raise ValueError(f"data.name: unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    allowed = dataset_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"data: unknown option(s) {unknown} for data set {name!r}; allowed: {sorted(allowed)}"
        )
    splits = DATASETS[name](n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, **options)
    splits.check_finite(name)
    return splits


def _toy_loader(toy_name: str) -> Callable[..., Splits]:
    def load(n_train: int, n_val: int, n_test: int, seed: int = 0) -> Splits:
        # three independent seeded streams: the test set never depends on the train size
        parts = [
            torch.from_numpy(toy.sample(toy_name, n, seed=seed * 3 + k))
            for k, n in enumerate((n_train, n_val, n_test))
        ]
        h = toy.ENTROPY[toy_name]
        return Splits(*parts, entropy=h.value, entropy_stderr=h.stderr, info={"kind": "toy 2-D"})

    load.__doc__ = f"2-D toy data set {toy_name!r} (see flowforge.data.toy)."
    return load


for _name in toy.DATASETS:
    register_dataset(_name)(_toy_loader(_name))
