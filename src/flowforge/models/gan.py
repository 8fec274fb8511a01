r"""Generative adversarial networks: an MLP generator and an MLP critic in one module.

The model of the adversarial objectives of :mod:`flowforge.objectives.gan`: the GAN of
Goodfellow et al. (2014, https://arxiv.org/abs/1406.2661), the WGAN of Arjovsky et al. (2017,
https://arxiv.org/abs/1701.07875) and the WGAN-GP of Gulrajani et al. (2017,
https://arxiv.org/abs/1704.00028). The generator maps :math:`z \sim \mathcal N(0, I)` of size
``latent`` to data; the critic (the discriminator's logit for the GAN, the Lipschitz critic for
WGANs) maps data to one number. Neither network has batch norm, so a critic's gradient penalty
is per example, as WGAN-GP requires.

``architecture: dcgan`` (28 x 28 images, flattened to 784) swaps both MLPs for DCGAN-style
convolutional nets (Radford et al. 2016, https://arxiv.org/abs/1511.06434): the generator a
linear layer to ``channels[1] x 7 x 7``, then two stride-2 transposed 4 x 4 convolutions with
batch norm and ReLU between; the critic two stride-2 4 x 4 convolutions with leaky ReLU (no
batch norm, for the gradient penalty) and a linear layer.

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
ARCHITECTURES = ("mlp", "dcgan")


class _DCGANGenerator(nn.Module):
    def __init__(self, latent: int, channels: tuple[int, int]) -> None:
        super().__init__()
        c1, c2 = channels
        self.c2 = c2
        self.net = nn.Sequential(  # net[0] is the first linear layer, as an MLP's
            nn.Linear(latent, c2 * 7 * 7),
            nn.Unflatten(1, (c2, 7, 7)),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.ConvTranspose2d(c2, c1, 4, 2, 1),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.ConvTranspose2d(c1, 1, 4, 2, 1),
            nn.Flatten(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def _dcgan_critic(channels: tuple[int, int]) -> nn.Module:
    c1, c2 = channels
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, c1, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(c1, c2, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(c2 * 7 * 7, 1),
    )


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
        architecture: ``"mlp"``, or ``"dcgan"`` for 28 x 28 images (module docstring; then
            ``hidden``, ``critic_hidden`` and the activations are unused).
        channels: the DCGAN's two convolution widths (DCGAN on MNIST-sized images: 64, 128).
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
        architecture: str = "mlp",
        channels: Sequence[int] = (64, 128),
    ) -> None:
        super().__init__()
        if data_dim < 1 or latent < 1:
            raise ValueError(
                f"'data_dim' and 'latent' should be positive, got {data_dim}, {latent}"
            )
        if output not in OUTPUTS:
            raise ValueError(f"'output' should be one of {list(OUTPUTS)}, got {output!r}")
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"'architecture' should be one of {list(ARCHITECTURES)}, got {architecture!r}"
            )
        self.latent, self.data_dim, self.output = latent, data_dim, output
        self.architecture = architecture
        if architecture == "dcgan":
            if data_dim != 784 or len(channels) != 2 or min(channels) < 1:
                raise ValueError(
                    f"the dcgan architecture takes 28 x 28 images (784 features) and two "
                    f"positive channel counts, got {data_dim} and {list(channels)}"
                )
            self.generator: nn.Module = _DCGANGenerator(latent, (channels[0], channels[1]))
            self.critic: nn.Module = _dcgan_critic((channels[0], channels[1]))
            return
        critic_hidden = tuple(hidden if critic_hidden is None else critic_hidden)
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
        w = self.generator.net[0].weight  # type: ignore[index]
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
        return (
            f"latent={self.latent}, data_dim={self.data_dim}, output={self.output}, "
            f"architecture={self.architecture}"
        )
