r"""Dequantization of discrete data, as the first transform of an image flow.

Discrete data ``x`` in ``{0, ..., K - 1}^D`` (``K = 256`` for 8-bit images) has a probability
mass, not a density. Dequantization adds noise ``u`` in ``[0, 1)^D`` and rescales to the unit
cube, ``y = (x + u) / K``; for any density ``p`` on ``y`` (Theis et al. 2016,
https://arxiv.org/abs/1511.01844; Ho et al. 2019, https://arxiv.org/abs/1902.00275):

.. math::
    \log P(x) \ge \mathbb{E}_{u \sim q(\cdot|x)}
        \big[\log p\big(\tfrac{x + u}{K}\big) - D \log K - \log q(u \mid x)\big]

Both transforms here return that bracket as their ``ladj`` (with ``log q = 0`` for uniform
noise), so for a flow whose first transform is one of them, ``Flow.log_prob(x)`` of the
**raw** integer data is a one-sample estimate of a lower bound on ``log P(x)``, and
``-log_prob / (D ln 2)`` is directly the bits per dimension of the discrete data. An identity
flow with a uniform base on ``[0, 1]^D`` gives exactly ``log2 K`` bits/dim (8 for 8-bit data).

The inverse maps ``y`` to ``K y - 1/2``, a continuous value within ``1/2`` of the discrete
one: :func:`quantize` rounds it back to ``{0, ..., K - 1}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from flowforge.transforms.base import Compose, Transform, sum_except_batch
from flowforge.transforms.coupling import MaskedCoupling, checkerboard_mask
from flowforge.transforms.elementwise import Sigmoid
from flowforge.transforms.univariate import Affine

__all__ = [
    "UniformDequantization",
    "VariationalDequantization",
    "make_dequantization",
    "quantize",
]

_LOG_2PI = math.log(2 * math.pi)


def quantize(x: Tensor, levels: int = 256) -> Tensor:
    """Rounds continuous values from the inverse direction to integers in ``[0, levels - 1]``:
    ``floor(x + 1/2)``, so ``quantize(inverse(forward(x))) == x`` for integer ``x``."""
    return torch.floor(x + 0.5).clamp(0, levels - 1)


class UniformDequantization(Transform):
    r"""Uniform dequantization and scaling of ``K``-level data to the unit cube.

    .. math::
        y = \frac{x + u}{K}, \quad u \sim \mathcal{U}[0, 1)^D, \qquad
        \log|\det J| = -D \log K

    With ``noise=False`` the noise is replaced by ``u = 1/2`` (the centre of each bin), which
    makes the map deterministic: use it to evaluate continuous data or to test. The inverse is
    ``x = K y - 1/2`` in both cases.

    Arguments:
        levels: the number ``K`` of discrete values (256 for 8-bit data).
        noise: draw ``u`` uniformly (training and evaluation of likelihoods) or use ``1/2``.
    """

    def __init__(self, levels: int = 256, noise: bool = True) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"'levels' should be at least 2, got {levels}")
        self.levels, self.noise = int(levels), bool(noise)

    def _ladj(self, x: Tensor) -> Tensor:
        return x.new_full((x.shape[0],), -x[0].numel() * math.log(self.levels))

    def _check(self, x: Tensor) -> None:
        if not bool(((x >= 0) & (x <= self.levels - 1)).all()):
            raise ValueError(
                f"'x' should hold values in [0, {self.levels - 1}] (raw {self.levels}-level data), "
                f"got min {x.min().item():.4g} and max {x.max().item():.4g}"
            )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        u = torch.rand_like(x) if self.noise else torch.full_like(x, 0.5)
        return (x + u) / self.levels, self._ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z * self.levels - 0.5, -self._ladj(z)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, noise={self.noise}"


class VariationalDequantization(UniformDequantization):
    r"""Variational dequantization (Flow++, Ho et al. 2019, https://arxiv.org/abs/1902.00275).

    The noise comes from a learned conditional flow instead of the uniform:
    :math:`u = \mathrm{sigmoid}(g(\varepsilon; x))`, :math:`\varepsilon \sim \mathcal{N}(0, I)`,
    with ``g`` a stack of checkerboard affine couplings whose conditioners also see the data
    ``x / K - 1/2`` as extra channels. The forward returns

    .. math:: y = \frac{x + u}{K}, \qquad \mathrm{ladj} = -D \log K - \log q(u \mid x)

    with :math:`\log q(u|x) = \log \mathcal{N}(\varepsilon) - \log|\det \partial u / \partial
    \varepsilon|`, so ``Flow.log_prob`` is a one-sample estimate of the variational bound and
    training maximises it over the model and ``q`` together. The ``ladj`` is that bound's
    term, not a Jacobian of ``x``: the forward is stochastic and has no exact inverse; the
    inverse returns ``K y - 1/2`` with ``ladj = D log K`` as the uniform one does.

    Arguments:
        event_shape: ``(C, H, W)`` of the data.
        conditioner: factory ``(in_channels, out_channels, context_channels) -> nn.Module``
            called as ``net(h, context=x_scaled)``; e.g.
            ``lambda i, o, c: ConvNet(i, o, 32, context_features=c)``.
        couplings: number of checkerboard couplings in ``g``.
        levels: the number ``K`` of discrete values.
    """

    #: the noise flow is conditioned on the data inside; the transform takes no outer context
    #: (read by :func:`flowforge.flows.infer_context_features`)
    context_features = 0

    def __init__(
        self,
        event_shape: Sequence[int],
        conditioner: Callable[[int, int, int], nn.Module],
        couplings: int = 4,
        levels: int = 256,
    ) -> None:
        super().__init__(levels, noise=True)
        shape = tuple(int(s) for s in event_shape)
        if len(shape) != 3:
            raise ValueError(f"'event_shape' should be (C, H, W), got {tuple(event_shape)}")
        if couplings < 1:
            raise ValueError(f"'couplings' should be positive, got {couplings}")
        c = shape[0]
        self.noise_flow = Compose(
            [
                *[
                    MaskedCoupling(
                        checkerboard_mask(shape, parity=i % 2),
                        conditioner(c, 2 * c, c),
                        Affine(),
                    )
                    for i in range(couplings)
                ],
                Sigmoid(),
            ]
        )

    def log_q(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Draws ``u ~ q(u | x)``; returns ``u`` ``(B, *event)`` and ``log q(u|x)`` ``(B,)``."""
        eps = torch.randn_like(x)
        u, ladj = self.noise_flow(eps, x / self.levels - 0.5)
        log_normal = -0.5 * sum_except_batch(eps.pow(2))
        log_normal = log_normal - 0.5 * x[0].numel() * _LOG_2PI
        return u, log_normal - ladj

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        u, log_q = self.log_q(x)
        return (x + u) / self.levels, self._ladj(x) - log_q

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


def make_dequantization(
    kind: str,
    event_shape: Sequence[int],
    levels: int = 256,
    conditioner: Callable[[int, int, int], nn.Module] | None = None,
    couplings: int = 4,
) -> UniformDequantization:
    """Builds the recipes' ``dequantization`` option.

    ``"uniform"`` (uniform noise), ``"variational"`` (Flow++; ``conditioner`` and ``couplings``
    are used by this one only, see :class:`VariationalDequantization`), or ``"centre"``: bin
    centres without noise, a deterministic map for tests and for evaluating continuous data.
    """
    if kind == "uniform":
        return UniformDequantization(levels)
    if kind == "centre":
        return UniformDequantization(levels, noise=False)
    if kind == "variational":
        if conditioner is None:
            raise ValueError("'conditioner' is needed for variational dequantization")
        return VariationalDequantization(event_shape, conditioner, couplings, levels)
    raise ValueError(
        f"'dequantization' should be 'uniform', 'variational' or 'centre', got {kind!r}"
    )
