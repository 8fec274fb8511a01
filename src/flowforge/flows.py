r"""A flow is a transform plus a base distribution.

.. math:: \log p(x \mid c) = \log p_Z(f(x; c) \mid c) + \log|\det J_f(x; c)|

``f`` is ``transform.forward`` (data to latent). Sampling draws ``z`` from the base and runs
``transform.inverse``. Conditioning on a context ``c`` of shape ``(batch, context_features)`` is
the same call with ``context=``: there is no separate conditional class.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from flowforge.distributions import BaseDistribution
from flowforge.transforms.base import Transform

__all__ = ["Flow", "FlowDistribution"]


class Flow(nn.Module):
    """A normalizing flow: ``transform`` (data to latent) and ``base`` (latent density).

    Arguments:
        transform: the transform, data to latent.
        base: the base distribution over the latent event shape.
    """

    def __init__(self, transform: Transform, base: BaseDistribution) -> None:
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(f"'transform' should be a Transform, got {type(transform).__name__}")
        if not isinstance(base, BaseDistribution):
            raise TypeError(f"'base' should be a BaseDistribution, got {type(base).__name__}")
        self.transform = transform
        self.base = base

    @property
    def event_shape(self) -> torch.Size:
        return self.base.event_shape

    def _check_input(self, x: Tensor, context: Tensor | None) -> None:
        shape = tuple(self.event_shape)
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"'x' should have shape (batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
            )
        if context is not None and (context.dim() != 2 or context.shape[0] != x.shape[0]):
            raise ValueError(
                f"'context' should have shape ({x.shape[0]}, context_features), "
                f"got {tuple(context.shape)}"
            )
        anchor = self.base._anchor  # the flow's device and floating dtype
        for name, t in (("x", x), ("context", context)):
            if t is None:
                continue
            if t.device != anchor.device:
                raise ValueError(f"'{name}' is on {t.device} but the flow is on {anchor.device}")
            if t.dtype != anchor.dtype:
                raise ValueError(
                    f"'{name}' has dtype {t.dtype} but the flow has {anchor.dtype}; "
                    f"convert with .to({anchor.dtype})"
                )

    def _sample_context(self, n: int, context: Tensor | None) -> Tensor | None:
        if isinstance(n, bool) or not hasattr(n, "__index__") or n < 1:
            raise ValueError(f"'n' should be a positive int (number of samples), got {n!r}")
        if context is None:
            return None
        if context.dim() == 1:
            return context.unsqueeze(0).expand(n, -1)
        if context.dim() != 2 or context.shape[0] != n:
            raise ValueError(
                f"'context' should have shape (context_features,) or ({n}, context_features), "
                f"got {tuple(context.shape)}"
            )
        return context

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density of ``x`` (``(batch, *event)``), shape ``(batch,)``."""
        self._check_input(x, context)
        z, ladj = self.transform(x, context)
        return self.base.log_prob(z, context) + ladj

    def transform_to_latent(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Maps data to the latent space: ``z = f(x)``."""
        self._check_input(x, context)
        return self.transform(x, context)[0]

    def rsample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """Draws ``n`` samples with gradients flowing to the parameters (reparameterised).

        ``context`` is ``(context_features,)`` (shared) or ``(n, context_features)``.
        """
        context = self._sample_context(n, context)
        z = self.base.sample(n, context, temperature)
        return self.transform.inverse(z, context)[0]

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """Draws ``n`` samples without gradients; see :meth:`rsample`."""
        return self.rsample(n, context, temperature)

    def sample_and_log_prob(self, n: int, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draws ``n`` reparameterised samples and their log-density in one inverse pass.

        ``log p(x) = log p_Z(z) - log|det dx/dz|``: the case variational inference needs, one
        pass even for IAF.
        """
        context = self._sample_context(n, context)
        z = self.base.sample(n, context)
        x, ladj = self.transform.inverse(z, context)
        return x, self.base.log_prob(z, context) - ladj

    def as_distribution(self, context: Tensor | None = None) -> FlowDistribution:
        """A ``torch.distributions.Distribution`` view, for use inside torch or Pyro code."""
        return FlowDistribution(self, context)


class FlowDistribution(Distribution):
    """A :class:`Flow` seen as a ``torch.distributions.Distribution`` (reparameterisable).

    ``sample_shape`` may have any number of dimensions; a context, if given, is shared by all
    samples.
    """

    has_rsample = True
    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real

    def __init__(self, flow: Flow, context: Tensor | None = None) -> None:
        self.flow, self.context = flow, context
        super().__init__(
            batch_shape=torch.Size(), event_shape=flow.event_shape, validate_args=False
        )

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = torch.Size(sample_shape)
        x = self.flow.rsample(max(shape.numel(), 1), self.context)
        return x.reshape(*shape, *self.event_shape)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        batch = value.shape[: value.dim() - len(self.event_shape)]
        flat = value.reshape(-1, *self.event_shape)
        context = None
        if self.context is not None:
            context = self.context.reshape(1, -1).expand(flat.shape[0], -1)
        return self.flow.log_prob(flat, context).reshape(batch)
