r"""Generative adversarial networks: an MLP generator and an MLP critic in one module.

The model of the adversarial objectives of :mod:`flowforge.objectives.adversarial`: the GAN of
Goodfellow et al. (2014, https://arxiv.org/abs/1406.2661), the WGAN of Arjovsky et al. (2017,
https://arxiv.org/abs/1701.07875) and the WGAN-GP of Gulrajani et al. (2017,
https://arxiv.org/abs/1704.00028). The generator maps :math:`z \sim \mathcal N(0, I)` of size
``latent`` to data; the critic (the discriminator's logit for the GAN, the Lipschitz critic for
WGANs) maps data to one number. Neither network has batch norm, so a critic's gradient penalty
is per example, as WGAN-GP requires.

A GAN has no likelihood and no encoder: it only samples (:meth:`GAN.sample`). Which of its
parameters the trainer's optimiser updates is the objective's choice (the generator's); the
objective updates the critic itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.nn.mlp import MLP

__all__ = ["GAN"]

OUTPUTS = ("identity", "sigmoid")


class GAN(nn.Module):
    """Generator and critic for vectors of ``data_dim`` features.

    Arguments:
        data_dim: size of a data vector.
        latent: size of the generator's noise :math:`z` (2 for 2-D toy data; the WGAN-GP
            paper's toy experiments use 2-D data and 128-unit, 3-hidden-layer ReLU nets).
        hidden: the generator's hidden sizes.
        critic_hidden: the critic's hidden sizes (default: ``hidden``).
        activation: the generator's activation.
        critic_activation: the critic's activation (``leaky_relu`` as in DCGAN's
            discriminator; WGAN-GP's toy critic uses ``relu``).
        output: ``"identity"`` (real vectors) or ``"sigmoid"`` (intensities in [0, 1]).
    """

    def __init__(
        self,
        data_dim: int,
        latent: int = 2,
        hidden: Sequence[int] = (128, 128, 128),
        critic_hidden: Sequence[int] | None = None,
        activation: str = "relu",
        critic_activation: str = "leaky_relu",
        output: str = "identity",
    ) -> None:
        super().__init__()
        if data_dim < 1 or latent < 1:
            raise ValueError(
                f"'data_dim' and 'latent' should be positive, got {data_dim}, {latent}"
            )
        if output not in OUTPUTS:
            raise ValueError(f"'output' should be one of {list(OUTPUTS)}, got {output!r}")
        critic_hidden = tuple(hidden if critic_hidden is None else critic_hidden)
        self.latent, self.data_dim, self.output = latent, data_dim, output
        self.generator = MLP(latent, data_dim, tuple(hidden), activation, zero_init=False)
        self.critic = MLP(data_dim, 1, critic_hidden, critic_activation, zero_init=False)

    def generate(self, z: Tensor) -> Tensor:
        """The generator's output for noise ``z`` ``(n, latent)``: ``(n, data_dim)``."""
        x = self.generator(z)
        return torch.sigmoid(x) if self.output == "sigmoid" else x

    def score(self, x: Tensor) -> Tensor:
        """The critic's value of each example ``(n, data_dim)``: ``(n,)``."""
        return self.critic(x).squeeze(-1)

    def noise(self, n: int, temperature: float = 1.0) -> Tensor:
        w = self.generator.net[0].weight
        return temperature * torch.randn(n, self.latent, device=w.device, dtype=w.dtype)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` generated vectors from ``z ~ N(0, temperature^2 I)``: ``(n, data_dim)``."""
        if context is not None:
            raise ValueError("a GAN takes no context")
        if n < 1 or not temperature > 0:
            raise ValueError(f"'n' and 'temperature' should be positive, got {n}, {temperature}")
        return self.generate(self.noise(n, temperature))

    def extra_repr(self) -> str:
        return f"latent={self.latent}, data_dim={self.data_dim}, output={self.output}"
