r"""A flow as a Pyro distribution: for ``pyro.sample`` in models (a learned prior) and guides
(an amortised variational posterior, Rezende and Mohamed 2015,
https://arxiv.org/abs/1505.05770).

:class:`FlowDistribution` is :class:`flowforge.flows.FlowDistribution` with Pyro's
``TorchDistributionMixin``: it is callable, ``expand``\ s under ``pyro.plate`` (a context of
shape ``(N, C)`` is a batch of ``N`` conditionals, matching a plate of size ``N``) and has
Pyro's ``to_event``/``mask``. Pyro scores each guide sample right after drawing it; the
log-density of the last ``rsample`` comes from the sampling pass itself,

.. math:: \log q(x) = \log p_Z(z) - \log|\det \partial x / \partial z|, \qquad x = f^{-1}(z),

so that scoring costs no forward pass (which is numerical for planar flows). Like the torch
view, every call evaluates inside :func:`flowforge.flows.batch_independent` (batch norm on its
running statistics, whatever the flow's mode), so the cached value, ``log_prob`` of the same
point later and the torch view's ``log_prob`` agree. A prior flow with batch norm trained
through Pyro's ``obs=`` scores therefore keeps its running statistics where they are; train it
with :meth:`flowforge.flows.Flow.log_prob` (batch statistics) or build it without batch norm.

Usage::

    from flowforge.contrib.pyro import as_pyro

    def guide(x):
        pyro.module("flow", flow)
        pyro.module("encoder", encoder)
        with pyro.plate("data", len(x)):
            pyro.sample("z", as_pyro(flow, context=encoder(x)))
"""

from __future__ import annotations

import numpy as np
import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin
from torch import Tensor

from flowforge.flow_distribution import FlowDistribution as _TorchFlowDistribution
from flowforge.flows import Flow

__all__ = ["FlowDistribution", "as_pyro"]


class FlowDistribution(_TorchFlowDistribution, TorchDistributionMixin):
    """A :class:`~flowforge.flows.Flow` as a Pyro distribution; see the module docstring.

    Arguments: as :class:`flowforge.flows.FlowDistribution` (``flow``, ``context`` of shape
    ``(*batch_shape, context_features)``, ``validate_args``).
    """

    _last: tuple[Tensor, Tensor] | None = None

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Reparameterised draws; their log-density is kept for :meth:`log_prob`."""
        x, log_p = self.rsample_and_log_prob(sample_shape)
        self._last = (x, log_p)
        return x

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Draws without gradients (nothing kept: their log-density would lack gradients)."""
        with torch.no_grad():
            return super().rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        """``log q(value | context)``; for the very tensor the last :meth:`rsample` returned,
        the log-density computed while sampling it."""
        if self._last is not None and value is self._last[0]:
            return self._last[1]
        return super().log_prob(value)


def as_pyro(
    flow: Flow, context: Tensor | np.ndarray | None = None, validate_args: bool | None = None
) -> FlowDistribution:
    """``flow`` as a Pyro distribution, conditioned on ``context`` (``(*batch, C)``)."""
    if not isinstance(flow, Flow):
        raise TypeError(f"'flow' should be a flowforge Flow, got {type(flow).__name__}")
    return FlowDistribution(flow, context, validate_args)
