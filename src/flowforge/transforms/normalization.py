r"""Normalisation layers as flows.

Batch normalisation (Dinh et al. 2016, https://arxiv.org/abs/1605.08803, section 3.7; used
between MAF layers by Papamakarios et al. 2017) standardises each feature of dimension 1:

.. math::
    z = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} e^{\gamma} + \beta, \qquad
    \log|\det J| = n_{pos} \textstyle\sum_i \left(\gamma_i - \tfrac12 \log(\sigma_i^2 +
    \epsilon)\right)

In training mode ``mu`` and ``sigma^2`` are the batch statistics, treated as constants in the
log-determinant (as in the paper), and update running averages; in eval mode the running
averages are used, so the map is a fixed affine function with an exact inverse.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowforge.nn.data_start import has_started, mark_started, track_start
from flowforge.transforms.base import Transform
from flowforge.transforms.elementwise import feature_std

__all__ = ["BatchNorm"]


class BatchNorm(Transform):
    """Batch normalisation as an invertible transform over dimension 1.

    Arguments:
        features: size of dimension 1.
        momentum: weight of the current batch in the running averages.
        eps: added to the variance.

    The inverse always uses the running statistics: in training mode it is the inverse of the
    eval-mode map, since the batch statistics of the data are unknown from the latent side.
    """

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"'momentum' should be in (0, 1], got {momentum}")
        self.momentum, self.eps = float(momentum), float(eps)
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.reshape(1, -1, *([1] * (x.dim() - 2)))

    def _ladj(self, var: Tensor, x: Tensor) -> Tensor:
        per_feature = self.log_gamma - 0.5 * torch.log(var + self.eps)
        return (per_feature.sum() * math.prod(x.shape[2:])).expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training:
            if x.shape[0] * math.prod(x.shape[2:]) < 2:
                raise ValueError("BatchNorm in training mode needs more than one value per feature")
            dims = [0, *range(2, x.dim())]
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        z = (x - self._view(mean, x)) * self._view(torch.rsqrt(var + self.eps), x)
        z = z * self._view(torch.exp(self.log_gamma), x) + self._view(self.beta, x)
        return z, self._ladj(var, x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, var = self.running_mean, self.running_var
        x = (z - self._view(self.beta, z)) * self._view(torch.exp(-self.log_gamma), z)
        x = x * self._view(torch.sqrt(var + self.eps), z) + self._view(mean, z)
        return x, -self._ladj(var, z)

    def extra_repr(self) -> str:
        return f"features={self.log_gamma.numel()}, momentum={self.momentum}, eps={self.eps}"


def actnorm_start(x: Tensor, name: str, eps: float) -> tuple[Tensor, Tensor]:
    """Actnorm's data-dependent start (Kingma and Dhariwal 2018): per channel of ``x``
    ``(B, C, *)`` the bias ``-mean`` and log-scale ``-log(std + eps)`` that give the batch zero
    mean and unit variance; ``name`` is the layer's, for the error on a constant channel."""
    std = feature_std(x, name)
    return -x.mean(dim=[0, *range(2, x.dim())]), -torch.log(std + eps)


class ActNorm(Transform):
    r"""Activation normalisation with data-dependent initialisation (Glow, section 3.1).

    .. math::
        z = (x + b) \, e^{s}, \qquad \log|\det J| = n_{pos} \textstyle\sum_i s_i

    per feature of dimension 1 (channels of an image, shared by the ``n_pos = H W`` pixels).
    The first forward pass in training mode sets ``b = -mean`` and ``s = -log(std + eps)`` of
    the batch, so that the output has zero mean and unit variance per channel (Kingma and
    Dhariwal 2018, https://arxiv.org/abs/1807.03039); after that ``b`` and ``s`` are ordinary
    parameters. The flag lives in the buffer ``initialized``, so a loaded model does not
    re-initialise. Before initialisation the map is the identity.

    Arguments:
        features: size of dimension 1.
        eps: added to the standard deviation at initialisation.
    """

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        if not eps > 0:
            raise ValueError(f"'eps' should be positive, got {eps}")
        self.eps = float(eps)
        self.bias = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        track_start(self)

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.reshape(1, -1, *([1] * (x.dim() - 2)))

    def _ladj(self, x: Tensor) -> Tensor:
        return (self.log_scale.sum() * math.prod(x.shape[2:])).expand(x.shape[0])

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Sets ``b`` and ``s`` from the statistics of the batch ``x`` ``(B, C, *)``."""
        bias, log_scale = actnorm_start(x, "ActNorm", self.eps)
        self.bias.copy_(bias)
        self.log_scale.copy_(log_scale)
        mark_started(self)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not has_started(self):
            self.initialize(x)
        z = (x + self._view(self.bias, x)) * self._view(torch.exp(self.log_scale), x)
        return z, self._ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = z * self._view(torch.exp(-self.log_scale), z) - self._view(self.bias, z)
        return x, -self._ladj(z)

    def extra_repr(self) -> str:
        return f"features={self.bias.numel()}, initialized={bool(self.initialized)}"
