r"""Variational autoencoders with flow posteriors, trained by the ELBO or the IWAE bound.

Model (Kingma and Welling 2014, https://arxiv.org/abs/1312.6114): prior
:math:`p(z) = \mathcal N(0, I)`, decoder :math:`p(x \mid z)` an MLP giving Bernoulli logits
(binarized images) or Gaussian means. Posterior :math:`q(z \mid x)`: an MLP encoder gives a
diagonal Gaussian :math:`q_0(z_0 \mid x)` and a hidden code ``h(x)``, then ``K`` flow layers
whose parameters are amortised by ``h`` (Rezende and Mohamed 2015,
https://arxiv.org/abs/1505.05770; Kingma et al. 2016, https://arxiv.org/abs/1606.04934):

.. math:: z_K = f_K \circ \dots \circ f_1(z_0), \qquad
    \log q(z_K \mid x) = \log q_0(z_0 \mid x) - \sum_k \log|\det J_{f_k}|.

Posteriors: ``"gaussian"`` (``K = 0``), ``"planar"``, ``"radial"`` (each layer's parameters a
zero-initialised linear function of ``h``, see :mod:`flowforge.transforms.amortized`), and
``"iaf"`` (``K`` IAF steps, each a MADE with two hidden layers of ``4 * latent`` units that also
reads ``h``, the ordering reversed between steps, as in Kingma et al. 2016, section 4). The
layers sit in the sampling direction (``Inverse(layer)``), so drawing ``z`` and its density is
one pass.

With ``k`` samples, log weights :math:`\log w_j = \log p(x, z_j) - \log q(z_j \mid x)` give the
ELBO (their mean) and the IWAE bound :math:`\log \frac1k \sum_j w_j` (Burda et al. 2016,
https://arxiv.org/abs/1509.00519), also the importance-sampled estimate of :math:`\log p(x)`
used for evaluation (a lower bound in expectation, tight as ``k`` grows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowforge.models.iaf import iaf
from flowforge.nn.mlp import MLP, make_activation
from flowforge.transforms import Compose, Inverse, Planar, Radial, Transform

__all__ = ["POSTERIORS", "VAE", "elbo", "iwae_bound"]

_LOG_2PI = math.log(2 * math.pi)


def _check_log_w(log_w: Tensor) -> None:
    if log_w.dim() < 1 or log_w.shape[0] < 1:
        raise ValueError(f"'log_w' should have shape (k, *batch), got {tuple(log_w.shape)}")


def elbo(log_w: Tensor) -> Tensor:
    """The ELBO from log importance weights ``(k, *batch)``: their mean over ``k``."""
    _check_log_w(log_w)
    return log_w.mean(0)


def iwae_bound(log_w: Tensor) -> Tensor:
    """The importance-weighted bound ``log mean_k exp(log_w)`` from ``(k, *batch)`` log weights
    (``k = 1`` is the ELBO; it increases with ``k`` towards ``log p(x)``)."""
    _check_log_w(log_w)
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


#: posterior flow builders ``(latent, layers, context_features) -> Transform`` (sampling
#: direction = ``inverse``); ``"gaussian"`` has no flow.
POSTERIORS: dict[str, Callable[[int, int, int], Transform] | None] = {
    "gaussian": None,
    "planar": lambda d, k, c: Compose([Inverse(Planar(d, c)) for _ in range(k)]),
    "radial": lambda d, k, c: Compose([Inverse(Radial(d, c)) for _ in range(k)]),
    "iaf": lambda d, k, c: iaf(d, k, hidden=(4 * d, 4 * d), context_features=c).transform,
}


def _normal_log_prob(z: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    """Diagonal Gaussian log-density summed over the last dimension."""
    u = (z - loc) * torch.exp(-log_scale)
    return (-0.5 * u.pow(2) - log_scale).sum(-1) - 0.5 * z.shape[-1] * _LOG_2PI


class VAE(nn.Module):
    """A VAE with an MLP encoder and decoder and an optional flow on the posterior.

    Arguments:
        data_dim: size of the (flattened) data vector, e.g. 784.
        latent: latent dimension.
        hidden: hidden sizes of the encoder (the decoder mirrors them); ``()`` gives a linear
            decoder and an encoder that reads ``x`` directly.
        activation: MLP activation.
        posterior: ``"gaussian"``, ``"planar"``, ``"radial"`` or ``"iaf"`` (:data:`POSTERIORS`).
        flow_layers: number of flow layers ``K`` (0 for ``"gaussian"``, positive otherwise).
        likelihood: ``"bernoulli"`` (binary data) or ``"gaussian"`` (fixed scale).
        obs_log_scale: log standard deviation of the Gaussian likelihood.
    """

    #: what maps data to latents (the encoder, an approximate posterior); read by
    #: ``flowforge compare``
    latent_inference: ClassVar[str] = "encoder q(z|x)"

    def __init__(
        self,
        data_dim: int,
        latent: int = 40,
        hidden: Sequence[int] = (300, 300),
        activation: str = "relu",
        posterior: str = "gaussian",
        flow_layers: int = 0,
        likelihood: str = "bernoulli",
        obs_log_scale: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("data_dim", data_dim), ("latent", latent)):
            if value < 1:
                raise ValueError(f"'{name}' should be positive, got {value}")
        if posterior not in POSTERIORS:
            raise ValueError(
                f"'posterior' should be one of {sorted(POSTERIORS)}, got {posterior!r}"
            )
        builder = POSTERIORS[posterior]
        if (builder is None) != (flow_layers == 0) or flow_layers < 0:
            raise ValueError(
                f"'flow_layers' should be 0 for a gaussian posterior and positive for a flow, "
                f"got {flow_layers} with posterior {posterior!r}"
            )
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(
                f"'likelihood' should be 'bernoulli' or 'gaussian', got {likelihood!r}"
            )
        hidden = tuple(hidden)
        self.latent, self.likelihood, self.obs_log_scale = latent, likelihood, float(obs_log_scale)
        self.posterior_name = posterior
        if hidden:
            trunk = MLP(data_dim, hidden[-1], hidden[:-1], activation, zero_init=False)
            self.trunk: nn.Module = nn.Sequential(trunk, make_activation(activation))
        else:
            self.trunk = nn.Identity()
        context = hidden[-1] if hidden else data_dim
        self.head = nn.Linear(context, 2 * latent)
        self.flow = None if builder is None else builder(latent, flow_layers, context)
        self.decoder = MLP(latent, data_dim, hidden[::-1], activation, zero_init=False)

    def posterior_sample(self, x: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        """``k`` reparameterised draws ``z ~ q(z | x)``, ``(k, B, latent)``, and their
        ``log q``, ``(k, B)``."""
        h = self.trunk(x)  # (B, H)
        loc, log_scale = self.head(h).chunk(2, dim=-1)  # (B, D) each
        eps = torch.randn(k, *loc.shape, dtype=loc.dtype, device=loc.device)
        z = loc + eps * torch.exp(log_scale)  # (k, B, D)
        log_q = _normal_log_prob(z, loc, log_scale)  # (k, B)
        if self.flow is not None:
            flat = z.reshape(-1, self.latent)  # (k B, D)
            z, ladj = self.flow.inverse(flat, h.repeat(k, 1))
            z, log_q = z.reshape(k, *loc.shape), log_q - ladj.reshape(k, -1)
        return z, log_q

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x | z)`` for ``x`` ``(B, data_dim)`` and ``z`` ``(k, B, latent)``: ``(k, B)``."""
        out = self.decoder(z.reshape(-1, self.latent)).reshape(*z.shape[:2], -1)
        target = x.expand_as(out)
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(-1)
        return _normal_log_prob(target, out, torch.full_like(out, self.obs_log_scale))

    def log_weights(self, x: Tensor, k: int = 1, beta: float = 1.0) -> Tensor:
        """``log p(x | z_j) + beta (log p(z_j) - log q(z_j | x))`` for ``k`` posterior draws:
        ``(k, B)``; at ``beta = 1`` (the default, and always for evaluation) the log
        importance weights ``log p(x, z_j) - log q(z_j | x)``. ``beta < 1`` is the KL warm-up
        of Sønderby et al. 2016 (https://arxiv.org/abs/1602.02282)."""
        if k < 1:
            raise ValueError(f"'k' should be positive, got {k}")
        if not 0 <= beta <= 1:
            raise ValueError(f"'beta' should be in [0, 1], got {beta}")
        z, log_q = self.posterior_sample(x, k)
        log_prior = _normal_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
        return self.log_likelihood(x, z) + beta * (log_prior - log_q)

    def loss(self, x: Tensor, objective: str = "elbo", k: int = 1, beta: float = 1.0) -> Tensor:
        """The training loss: minus the mean ELBO or IWAE bound over the batch (``k`` samples;
        the ELBO averages its ``k`` terms), the KL part weighted by ``beta`` (warm-up)."""
        log_w = self.log_weights(x, k, beta)
        if objective == "elbo":
            return -elbo(log_w).mean()
        if objective == "iwae":
            return -iwae_bound(log_w).mean()
        raise ValueError(f"'objective' should be 'elbo' or 'iwae', got {objective!r}")

    @torch.no_grad()
    def evaluate(self, x: Tensor, k: int = 1000, batch_size: int = 100) -> dict[str, float]:
        """Per-example means over ``x``: ``elbo`` (from the same ``k`` draws), ``log_px`` (the
        ``k``-sample importance estimate) and its standard error ``log_px_stderr``."""
        elbos, iwaes = [], []
        for chunk in x.split(batch_size):
            log_w = self.log_weights(chunk, k)
            elbos.append(elbo(log_w))
            iwaes.append(iwae_bound(log_w))
        e, w = torch.cat(elbos).double(), torch.cat(iwaes).double()
        return {
            "elbo": float(e.mean()),
            "log_px": float(w.mean()),
            "log_px_stderr": float(w.std() / math.sqrt(len(w))) if len(w) > 1 else 0.0,
            "k": k,
            "n": len(w),
        }

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` draws of the decoder's mean ``E[x | z]`` with ``z ~ N(0, temperature^2 I)``:
        Bernoulli probabilities for binary data, Gaussian means otherwise; ``(n, data_dim)``.
        (The mean, not a noisy draw of ``x``, is what sample figures of VAEs show.)"""
        if context is not None:
            raise ValueError("a VAE takes no context")
        if n < 1 or not temperature > 0:
            raise ValueError(f"'n' and 'temperature' should be positive, got {n}, {temperature}")
        device = self.head.weight.device
        z = temperature * torch.randn(n, self.latent, device=device, dtype=self.head.weight.dtype)
        out = self.decoder(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def extra_repr(self) -> str:
        return (
            f"latent={self.latent}, posterior={self.posterior_name}, likelihood={self.likelihood}"
        )
