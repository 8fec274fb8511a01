r"""A :class:`~flowforge.flows.Flow` seen as a ``torch.distributions.Distribution``.

With a context ``c`` of shape ``(*batch_shape, C)`` the view is the batch of conditionals
:math:`p(x \mid c_b)`, one per leading index ``b`` (Papamakarios et al. 2021, "Normalizing
Flows for Probabilistic Modeling and Inference", https://arxiv.org/abs/1912.02762, section 7.2);
shapes follow torch's convention (``torch.distributions`` docs, "shape semantics"):

.. math::
    \texttt{sample(S)} \in \mathbb{R}^{S \times B \times E}, \qquad
    \texttt{log\_prob}(x)_{s,b} = \log p(x_{s,b} \mid c_b)

with ``S`` the sample shape, ``B`` the batch shape and ``E`` the flow's event shape; values of
``log_prob`` broadcast against the batch shape. Samples are reparameterised (``rsample``), so
the view serves as a variational family.

Every call evaluates inside :func:`flowforge.flows.batch_independent`: batch norm uses its
running statistics and data-dependent starts do not run, whatever the flow's mode, so
``log_prob`` of a point is the same alone or among others, one point is enough, the flow's
buffers are left as they are, and ``log_prob`` of a draw equals the value
``rsample_and_log_prob`` returned with it (up to float error).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from flowforge.transforms.normalization import BatchNorm

if TYPE_CHECKING:
    from flowforge.flows import Flow

__all__ = ["FlowDistribution", "batch_dependent_layers", "batch_independent"]


def batch_dependent_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers inside ``module`` (named) whose training-mode forward reads the batch:
    normalisation layers that standardise with batch statistics (flowforge's
    :class:`~flowforge.transforms.BatchNorm`, torch's batch and instance norms) and layers with
    a data-dependent start, flagged by their own buffer ``initialized`` (actnorm, a mixture
    base). In eval mode each of them is a fixed function of its input row."""
    return [
        (name, m)
        for name, m in module.named_modules()
        if isinstance(m, (BatchNorm, _NormBase))
        or "initialized" in dict(m.named_buffers(recurse=False))
    ]


@contextmanager
def batch_independent(module: nn.Module) -> Iterator[None]:
    """Evaluates ``module`` with the layers of :func:`batch_dependent_layers` in eval mode (each
    layer's own flag, not its children's), then restores each one's mode, also on an error.

    Inside, a row's output depends on that row only, and the running statistics and the
    ``initialized`` flags are left as they are; parameters still get gradients. Nothing else
    changes mode (a residual flow's estimator, a continuous flow's trace keep theirs).

    Raises:
        ValueError: a torch batch norm built with ``track_running_stats=False``, which uses the
            batch's statistics even in eval mode (named, with its path in ``module``).
    """
    layers = batch_dependent_layers(module)
    for name, m in layers:
        if isinstance(m, _BatchNorm) and not m.track_running_stats:
            raise ValueError(
                f"layer {name!r} ({type(m).__name__}, track_running_stats=False) normalises "
                "with the statistics of the batch even in eval mode, so a density under it "
                "depends on the other points of the call; build it with track_running_stats=True"
            )
    modes = [m.training for _, m in layers]
    for _, m in layers:
        m.training = False
    try:
        yield
    finally:
        for (_, m), mode in zip(layers, modes, strict=True):
            m.training = mode


class FlowDistribution(Distribution):
    """A :class:`Flow` as a ``torch.distributions.Distribution`` (reparameterisable).

    Arguments:
        flow: the flow.
        context: ``None`` for an unconditional flow; otherwise ``(*batch_shape, C)`` with
            ``C == flow.context_features`` (``(C,)`` gives ``batch_shape == ()``). A NumPy
            array is converted to the flow's dtype.
        validate_args: torch's argument validation (``None``: torch's global default). When on,
            ``log_prob`` checks its value's shape and support and the context is checked finite.

    Raises:
        ValueError: the context does not fit the flow (missing, unexpected, wrong width).
    """

    has_rsample = True
    arg_constraints: dict[str, constraints.Constraint] = {}

    def __init__(
        self,
        flow: Flow,
        context: Tensor | np.ndarray | None = None,
        validate_args: bool | None = None,
    ) -> None:
        context = flow.as_tensor("context", context)
        flow.check_context(context)
        batch_shape = torch.Size() if context is None else context.shape[:-1]
        self.flow, self.context = flow, context
        super().__init__(batch_shape, flow.event_shape, validate_args=validate_args)
        if self._validate_args and context is not None and not bool(torch.isfinite(context).all()):
            raise ValueError("'context' has non-finite values (NaN or inf)")

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        """Real vectors (or arrays) of the event shape: ``independent(real, len(event_shape))``."""
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: FlowDistribution | None = None
    ) -> FlowDistribution:
        """The same conditionals broadcast to ``batch_shape`` (torch's ``expand`` rules: sizes
        1 or equal, new dimensions on the left); no copy of the context is made."""
        batch_shape = torch.Size(batch_shape)
        try:
            fits = torch.broadcast_shapes(self.batch_shape, batch_shape) == batch_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"cannot expand batch_shape {tuple(self.batch_shape)} to {tuple(batch_shape)}"
            )
        new = self._get_checked_instance(FlowDistribution, _instance)
        new.flow = self.flow
        new.context = None
        if self.context is not None:
            new.context = self.context.expand(*batch_shape, self.context.shape[-1])
        super(FlowDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _flat_context(self, n: int) -> Tensor | None:
        """The context of each of ``n`` draws per batch element, sample-major: ``(n * B, C)``."""
        if self.context is None:
            return None
        flat = self.context.reshape(-1, self.context.shape[-1])
        return flat.repeat(n, 1)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Reparameterised draws, shape ``(*sample_shape, *batch_shape, *event_shape)``."""
        return self._draw(torch.Size(sample_shape), with_log_prob=False)[0]

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Draws without gradients; see :meth:`rsample`."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def rsample_and_log_prob(
        self, sample_shape: torch.Size | tuple[int, ...] = ()
    ) -> tuple[Tensor, Tensor]:
        """Reparameterised draws and their log-density from the same inverse pass (no forward
        pass: the case of variational inference, and of flows whose forward is numerical)."""
        x, log_p = self._draw(torch.Size(sample_shape), with_log_prob=True)
        assert log_p is not None
        return x, log_p

    def _draw(self, sample_shape: torch.Size, with_log_prob: bool) -> tuple[Tensor, Tensor | None]:
        n, batch = sample_shape.numel(), self.batch_shape.numel()
        shape = self._extended_shape(sample_shape)
        if n * batch == 0:
            anchor = self.flow.base._anchor
            empty = anchor.new_zeros(shape)
            return empty, anchor.new_zeros(shape[: len(shape) - len(self.event_shape)])
        context = self._flat_context(n)
        with batch_independent(self.flow):
            if with_log_prob:
                x, log_p = self.flow.sample_and_log_prob(n * batch, context)
                return x.reshape(shape), log_p.reshape(sample_shape + self.batch_shape)
            return self.flow.rsample(n * batch, context).reshape(shape), None

    def log_prob(self, value: Tensor) -> Tensor:
        """``log p(value | context)``; ``value`` is ``(*sample, *batch, *event)`` where the
        leading dimensions broadcast against ``batch_shape``; the result has their shape.

        Raises:
            ValueError: ``value`` does not end in the event shape or does not broadcast.
        """
        if not isinstance(value, Tensor):
            raise TypeError(f"'value' should be a torch.Tensor, got {type(value).__name__}")
        if self._validate_args:
            self._validate_sample(value)
        e = len(self.event_shape)
        lead = value.shape[: value.dim() - e]
        if value.dim() < e or value.shape[value.dim() - e :] != self.event_shape:
            raise ValueError(
                f"'value' should end in the event shape {tuple(self.event_shape)}, "
                f"got shape {tuple(value.shape)}"
            )
        try:
            shape = torch.broadcast_shapes(lead, self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"'value' of shape {tuple(value.shape)} does not broadcast against batch_shape "
                f"{tuple(self.batch_shape)} (event_shape {tuple(self.event_shape)})"
            ) from None
        n = shape.numel()
        if n == 0:
            return value.new_zeros(shape)
        flat = value.expand(*shape, *self.event_shape).reshape(n, *self.event_shape)
        context = None
        if self.context is not None:
            context = self.context.expand(*shape, self.context.shape[-1]).reshape(n, -1)
        with batch_independent(self.flow):
            return self.flow.log_prob(flat, context).reshape(shape)
