r"""The transform contract: invertible maps that return their log-determinant.

A :class:`Transform` maps **data to latent** in :meth:`Transform.forward` (the normalizing
direction, as in zuko and nflows) and latent to data in :meth:`Transform.inverse`. Both return
a pair ``(output, ladj)`` where ``ladj`` is :math:`\log |\det \partial\,\mathrm{output} /
\partial\,\mathrm{input}|` of the direction called, summed over the event dimensions, with
shape ``(batch,)``. Inputs always have one leading batch dimension followed by the event shape:
``(batch, D)`` for vectors, ``(batch, C, H, W)`` for images.

Change of variables (Dinh et al. 2014, https://arxiv.org/abs/1410.8516):

.. math:: \log p_X(x) = \log p_Z(f(x)) + \log |\det J_f(x)|

Each transform declares which direction costs one pass (``fast_forward`` and
``fast_inverse``); a direction with no closed form raises :class:`InverseNotAvailable` or is
solved numerically with an explicit tolerance and iteration cap, raising
:class:`InverseDidNotConverge` when the cap is reached.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = [
    "Compose",
    "EmptyBatchError",
    "FloatRangeError",
    "Inverse",
    "InverseDidNotConverge",
    "InverseNotAvailable",
    "Transform",
    "check_event",
    "check_inputs",
    "sum_except_batch",
    "takes_context",
]


class InverseNotAvailable(NotImplementedError):
    """Raised by a transform whose requested direction has no closed form or solver."""


class InverseDidNotConverge(RuntimeError):
    """Raised by a numerical inverse that hit its iteration cap before its tolerance."""


class FloatRangeError(OverflowError):
    """Raised where a finite input gives a value outside the floating-point range of its dtype
    (an infinity or a NaN), so that no finite or NaN answer is returned in its place."""


class EmptyBatchError(ValueError):
    """Raised for an input with a batch dimension of size 0."""


def sum_except_batch(x: Tensor) -> Tensor:
    """Sums a tensor of shape ``(batch, *event)`` over the event dimensions: ``(batch,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


class Transform(nn.Module):
    r"""An invertible map with a tractable log-absolute-determinant of its Jacobian.

    Subclasses implement :meth:`forward` (data to latent) and :meth:`inverse` (latent to data),
    each returning ``(output, ladj)`` with ``ladj`` of shape ``(batch,)``. ``context`` is an
    optional conditioning tensor of shape ``(batch, context_features)``; transforms that do not
    use it ignore it.

    Class attributes:
        fast_forward: the forward direction costs one pass of the network.
        fast_inverse: the inverse direction costs one pass of the network.
    """

    fast_forward: bool = True
    fast_inverse: bool = True

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Maps data ``x`` to latent ``z``; returns ``(z, log|det dz/dx|)``."""
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Maps latent ``z`` to data ``x``; returns ``(x, log|det dx/dz|)``."""
        raise InverseNotAvailable(f"{type(self).__name__} has no inverse")


class Compose(Transform):
    r"""Chains transforms: ``Compose([f1, f2])`` maps ``x`` to ``f2(f1(x))``.

    The log-determinants add: :math:`\log|\det J_{f_2 \circ f_1}(x)| = \log|\det J_{f_1}(x)| +
    \log|\det J_{f_2}(f_1(x))|`. The inverse runs the pieces backwards.
    """

    def __init__(self, transforms: Iterable[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        for i, t in enumerate(self.transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"transforms[{i}] should be a Transform, got {type(t).__name__}")

    @property
    def fast_forward(self) -> bool:  # type: ignore[override]
        return all(t.fast_forward for t in self.transforms)

    @property
    def fast_inverse(self) -> bool:  # type: ignore[override]
        return all(t.fast_inverse for t in self.transforms)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, l = t(x, context)
            ladj = ladj + l
        return x, ladj

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj = z.new_zeros(z.shape[0])
        for t in reversed(self.transforms):
            z, l = t.inverse(z, context)
            ladj = ladj + l
        return z, ladj

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]  # type: ignore[return-value]


class Inverse(Transform):
    """Swaps the directions of a transform: ``Inverse(t).forward == t.inverse``.

    This is how IAF is built from a MAF layer, and how maps with only one cheap direction
    (planar, radial) are placed on the sampling side of a flow.
    """

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform

    @property
    def fast_forward(self) -> bool:  # type: ignore[override]
        return self.transform.fast_inverse

    @property
    def fast_inverse(self) -> bool:  # type: ignore[override]
        return self.transform.fast_forward

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(z, context)


def check_event(x: Tensor, event_shape: torch.Size | tuple[int, ...], name: str = "x") -> None:
    """Raises a ``ValueError`` naming ``name`` unless ``x`` has shape ``(batch, *event_shape)``."""
    if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"'{name}' should have shape (batch, {', '.join(map(str, event_shape))}), "
            f"got {tuple(x.shape)}"
        )


def takes_context(module: nn.Module) -> bool:
    """Whether ``module`` or any submodule declares ``context_features > 0`` (the conditioners,
    MADE, Lipschitz networks, CNF dynamics and conditional base distributions all do)."""
    return any(getattr(m, "context_features", 0) for m in module.modules())


def check_inputs(x: Tensor, context: Tensor | None, uses_context: bool, name: str = "x") -> None:
    """The entry-point checks of a flow or transform call (issue 19, item 10).

    Raises :class:`EmptyBatchError` for a batch of size 0 (which otherwise fails deep inside a
    layer, or not at all), and a ``ValueError`` for a ``context`` given to a model that takes
    none (``uses_context``, e.g. :func:`takes_context` of the model computed once), which would
    otherwise be ignored silently.
    """
    if x.dim() == 0 or x.shape[0] == 0:
        raise EmptyBatchError(
            f"'{name}' has no samples (shape {tuple(x.shape)}): the batch dimension must be >= 1"
        )
    if context is not None and not uses_context:
        raise ValueError(
            "'context' was given to a model that takes none (context_features=0); it would be "
            "ignored: build the model with context_features, or pass no context"
        )
