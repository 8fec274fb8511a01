r"""Base distributions of flows: standard normal, learnable diagonal normal, standard logistic.

Each is an ``nn.Module`` over an event shape with ``log_prob(z, context=None) -> (batch,)`` and
``sample(n, context=None, temperature=1.0) -> (n, *event_shape)``. Sampling at temperature
``T`` scales the base noise by ``T`` (Glow, Kingma and Dhariwal 2018, section 6); ``T = 1`` is
the model itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowforge.nn.data_start import has_started, mark_started, track_start
from flowforge.nn.made import MADE

__all__ = ["BaseDistribution", "DiagonalNormal", "StandardLogistic", "StandardNormal"]
__all__ += ["GaussianMixture", "MADEMoG", "Reshaped", "base_distribution"]

_LOG_2PI = math.log(2 * math.pi)


class BaseDistribution(nn.Module):
    """A base density over ``event_shape``; subclasses implement ``log_prob`` and ``sample``."""

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__()
        shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"'event_shape' should be positive sizes, got {event_shape}")
        self.event_shape = torch.Size(shape)
        # Gives the module a device and dtype even when it has no parameters.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def _check(self, z: Tensor) -> None:
        if tuple(z.shape[1:]) != tuple(self.event_shape) or z.dim() != len(self.event_shape) + 1:
            raise ValueError(
                f"'z' should have shape (batch, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(z.shape)}"
            )

    def _noise(self, n: int) -> Tensor:
        return torch.randn(
            n, *self.event_shape, dtype=self._anchor.dtype, device=self._anchor.device
        )

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"


class StandardNormal(BaseDistribution):
    r""":math:`\mathcal{N}(0, I)`: :math:`\log p(z) = -\tfrac12 \|z\|^2 - \tfrac{D}{2}\log 2\pi`."""

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        d = self.event_shape.numel()
        return -0.5 * z.reshape(z.shape[0], -1).pow(2).sum(1) - 0.5 * d * _LOG_2PI

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        return self._noise(n) * temperature


class DiagonalNormal(BaseDistribution):
    r""":math:`\mathcal{N}(\mu, \mathrm{diag}(\sigma^2))` with learned ``loc`` and ``log_scale``."""

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__(event_shape)
        self.loc = nn.Parameter(torch.zeros(self.event_shape))
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        u = (z - self.loc) * torch.exp(-self.log_scale)
        d = self.event_shape.numel()
        flat = (-0.5 * u.pow(2) - self.log_scale).reshape(z.shape[0], -1)
        return flat.sum(1) - 0.5 * d * _LOG_2PI

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        return self.loc + self._noise(n) * temperature * torch.exp(self.log_scale)


class StandardLogistic(BaseDistribution):
    r"""The standard logistic, NICE's prior (Dinh et al. 2014, section 3.4):
    :math:`\log p(z) = -\sum_i \left(\mathrm{softplus}(z_i) + \mathrm{softplus}(-z_i)\right)`."""

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        f = nn.functional.softplus
        return -(f(z) + f(-z)).reshape(z.shape[0], -1).sum(1)

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        shape = (n, *self.event_shape)
        u = torch.rand(shape, dtype=self._anchor.dtype, device=self._anchor.device)
        u = u.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)
        return (torch.log(u) - torch.log1p(-u)) * temperature


class MADEMoG(BaseDistribution):
    r"""MADE MoG: an autoregressive density whose conditionals are mixtures of Gaussians.

    .. math::
        p(z \mid c) = \prod_i \sum_{k=1}^{K} \pi_{ik} \,
        \mathcal{N}\big(z_i; \mu_{ik}, \sigma_{ik}^2\big), \qquad
        (\pi_i, \mu_i, \log\sigma_i) = \mathrm{MADE}(z_{<i}, c)_i

    (Germain et al. 2015, https://arxiv.org/abs/1502.03509; Papamakarios et al. 2017,
    https://arxiv.org/abs/1705.07057, section 3.4, where it is the base of "MAF MoG" with
    ``K = 10``). ``log_prob`` is one MADE pass; ``sample`` draws the dimensions in order with one
    :meth:`~flowforge.nn.made.MADE.sweep` (about one pass of work in ``D`` steps).
    Log-scales are soft-bounded to ``(-scale_bound, scale_bound)``. The output layer starts at
    zero weights with the component means spread over ``[-1, 1]``, so the components differ
    (and receive different gradients) from the first step.

    Arguments:
        features: number of dimensions ``D`` (vectors only).
        components: mixture components ``K`` per dimension.
        hidden: MADE hidden sizes.
        activation: MADE activation.
        order: MADE order (see :func:`flowforge.nn.made.made_order`).
        context_features: size of the conditioning vector (0: unconditional).
        scale_bound: bound on each log-scale.
    """

    def __init__(
        self,
        features: int,
        components: int = 10,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        order: str | Sequence[int] = "natural",
        context_features: int = 0,
        scale_bound: float = 5.0,
    ) -> None:
        super().__init__(features)
        if components < 1:
            raise ValueError(f"'components' should be positive, got {components}")
        if not scale_bound > 0:
            raise ValueError(f"'scale_bound' should be positive, got {scale_bound}")
        self.components, self.scale_bound = components, float(scale_bound)
        self.made = MADE(features, 3 * components, hidden, order, 0, activation, context_features)
        with torch.no_grad():  # bias (D, 3K) = (logits, means, log-scales)
            bias = self.made.output.bias.view(features, 3, components)
            bias[:, 1] = torch.linspace(-1, 1, components) if components > 1 else 0.0

    def _mixture(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """MADE outputs ``(*, 3K)`` -> log-weights, means and log-scales, each ``(*, K)``."""
        out = out.unflatten(-1, (3, self.components))
        log_w = torch.log_softmax(out[..., 0, :], dim=-1)
        log_s = self.scale_bound * torch.tanh(out[..., 2, :] / self.scale_bound)
        return log_w, out[..., 1, :], log_s

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        out = self.made(z, context).unflatten(-1, (self.event_shape[0], -1))  # (B, D, 3K)
        log_w, mu, log_s = self._mixture(out)
        u = (z[..., None] - mu) * torch.exp(-log_s)
        log_n = -0.5 * u.pow(2) - log_s - 0.5 * _LOG_2PI  # (B, D, K)
        return torch.logsumexp(log_w + log_n, dim=-1).sum(1)

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        noise = self._noise(n)  # (n, D)
        z: dict[int, Tensor] = {}  # dimension -> (n,), filled in the order

        def solve(i: int, params: Tensor) -> Tensor:  # params (n, 3K) of dimension i
            log_w, mu, log_s = self._mixture(params)
            k = torch.distributions.Categorical(logits=log_w).sample()[:, None]  # (n, 1)
            scale = torch.exp(log_s.gather(-1, k)[:, 0])
            z[i] = mu.gather(-1, k)[:, 0] + temperature * scale * noise[:, i]
            return z[i]

        self.made.sweep(solve, n, context)  # one network's work for the D conditionals
        return torch.stack([z[i] for i in range(self.event_shape[0])], dim=1)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, components={self.components}"


class Reshaped(BaseDistribution):
    """A base over vectors seen with another event shape: ``log_prob`` flattens ``z`` to the
    inner base's ``(D,)``, ``sample`` reshapes its draws. Puts a vector flow's base (a MADE MoG,
    a mixture) under a flow whose latent keeps the data's shape, such as a vector flow on
    images (:func:`flowforge.models.pixels.on_pixels`).

    Arguments:
        base: the base over ``(D,)``.
        event_shape: the shape it is seen with, of ``D`` entries.
    """

    def __init__(self, base: BaseDistribution, event_shape: Sequence[int]) -> None:
        super().__init__(tuple(event_shape))
        if len(base.event_shape) != 1 or base.event_shape[0] != self.event_shape.numel():
            raise ValueError(
                f"'base' should be over vectors of {self.event_shape.numel()} entries, "
                f"got event shape {tuple(base.event_shape)}"
            )
        self.base = base

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        return self.base.log_prob(z.reshape(z.shape[0], -1), context)

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        return self.base.sample(n, context, temperature).reshape(n, *self.event_shape)


class GaussianMixture(BaseDistribution):
    r"""A mixture of full-covariance Gaussians whose components start from the data.

    .. math::
        p(z) = \sum_{k=1}^{K} \pi_k\, \mathcal N(z;\ \mu_k, L_k L_k^\top)

    A flow with a multimodal base need not tear one Gaussian into clusters (FlowGMM, Izmailov
    et al. 2020, https://arxiv.org/abs/1912.13025, who fix the components; here they are
    learned, :math:`L_k` lower triangular with a positive diagonal). Before its start the
    mixture is :math:`\mathcal N(0, I)`. :meth:`start` fits the components to the latent
    points of the data by EM, for counts :math:`k \le K`. Given held-out points (the
    maximum-likelihood objective passes the validation split's latents before the first step,
    :meth:`~flowforge.objectives.mle.MaximumLikelihood.start`) it keeps the count and the
    covariance kind (full or diagonal) with the highest held-out likelihood, as one would
    validate scikit-learn's ``GaussianMixture`` (the simplest within one standard error of the
    best), so the flow starts as such a baseline. Without
    them (the first ``log_prob`` in training mode) it keeps the full-covariance count with the
    lowest BIC (Schwarz 1978), :math:`-2\log L + (k - 1 + kD + kD(D+1)/2)\log n`. Unused
    components start with a weight of :math:`10^{-6}`. After that all are ordinary parameters.
    The flag lives in the buffer ``initialized``, so a loaded model does not start again; the
    EM is seeded, so a resumed run starts the same way.

    Arguments:
        features: number of dimensions ``D`` (vectors only).
        components: the most components ``K``.
    """

    def __init__(self, features: int, components: int = 8) -> None:
        super().__init__(features)
        if components < 1:
            raise ValueError(f"'components' should be positive, got {components}")
        self.components = components
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.zeros(components, features))
        self.log_diag = nn.Parameter(torch.zeros(components, features))
        self.lower = nn.Parameter(torch.zeros(components, features, features))
        track_start(self)

    def scale_tril(self) -> Tensor:
        """The factors :math:`L_k`, ``(K, D, D)``."""
        return torch.tril(self.lower, -1) + torch.diag_embed(torch.exp(self.log_diag))

    def _log_joint(self, z: Tensor) -> Tensor:
        """``log pi_k + log N(z; mu_k, L_k L_k^T)`` per row and component, ``(B, K)``."""
        r = (z[None] - self.means[:, None]).transpose(1, 2)  # (K, D, B)
        u = torch.linalg.solve_triangular(self.scale_tril(), r, upper=False)
        log_n = -0.5 * (u**2).sum(1).T - self.log_diag.sum(-1) - 0.5 * z.shape[1] * _LOG_2PI
        return torch.log_softmax(self.logits, 0) + log_n

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        if self.training and not has_started(self):
            self.start(z.detach())
        return torch.logsumexp(self._log_joint(z), dim=1)

    @torch.no_grad()
    def start(self, z: Tensor, held_out: Tensor | None = None, patience: int = 3) -> str:
        """Fits the components to ``z`` ``(n, D)`` and returns what it chose, e.g. ``"3
        full-covariance components"``. With ``held_out`` ``(m, D)``: counts are tried upward,
        diagonal and full covariances each, until ``patience`` counts in a row do not improve
        the held-out likelihood; of those the simplest (fewest parameters) within one paired
        standard error of the best is kept (the one-standard-error rule, Breiman et al. 1984),
        so a small validation split does not pick a mixture that fits its noise. Without it,
        the full-covariance count with the lowest BIC (see the class docstring)."""
        z = z.double()
        n, d = z.shape
        if held_out is None:
            per = 1 + d + d * (d + 1) // 2
            fits = [_em(z, k) for k in range(1, min(self.components, max(1, n // (2 * per))) + 1)]
            bic = [-2 * f[3] + (len(f[0]) * per - 1) * math.log(n) for f in fits]
            w, mu, cov, _ = fits[min(range(len(fits)), key=bic.__getitem__)]
            kind = "full"
        else:
            held_out = held_out.double()
            found = []  # (parameters, kind, fit, held-out log-density per row)
            best, since = -math.inf, 0
            for k in range(1, max(1, min(self.components, n // 2)) + 1):
                since += 1
                for kind in ("diag", "full"):
                    w, mu, cov, _ = _em(z, k, diagonal=kind == "diag")
                    rows = _mixture_log_prob(held_out, w, mu, cov)
                    per = 2 * d if kind == "diag" else d + d * (d + 1) // 2
                    found.append((k * per + k - 1, kind, (w, mu, cov), rows))
                    if float(rows.mean()) > best:
                        best, since = float(rows.mean()), 0
                if since >= patience:
                    break
            _, kind, (w, mu, cov), _ = _one_standard_error(found)
        self.set_components(w, mu, cov)
        k = len(w)
        return f"{k} {kind}-covariance component" + ("s" if k > 1 else "")

    @torch.no_grad()
    def set_components(self, weights: Tensor, means: Tensor, covariances: Tensor) -> None:
        """Starts the mixture at ``k <= K`` given components: ``weights`` ``(k,)``, ``means``
        ``(k, D)``, positive definite ``covariances`` ``(k, D, D)``; the other ``K - k`` get a
        weight of :math:`10^{-6}` (renormalised)."""
        w, mu, cov = (
            torch.as_tensor(a, dtype=torch.float64) for a in (weights, means, covariances)
        )
        k, d = mu.shape
        if not (1 <= k <= self.components and d == self.means.shape[1] and w.shape == (k,)):
            raise ValueError(
                f"set_components: at most {self.components} components of {self.means.shape[1]} "
                f"features, got weights {tuple(w.shape)} and means {tuple(mu.shape)}"
            )
        chol = torch.linalg.cholesky(cov)
        values = {
            "logits": torch.full((self.components,), math.log(1e-6), dtype=w.dtype),
            "means": torch.zeros(self.components, d, dtype=w.dtype),
            "log_diag": torch.zeros(self.components, d, dtype=w.dtype),
            "lower": torch.zeros(self.components, d, d, dtype=w.dtype),
        }
        values["logits"][:k] = torch.log(w)
        values["means"][:k] = mu
        values["log_diag"][:k] = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1))
        values["lower"][:k] = torch.tril(chol, -1)
        for name, v in values.items():
            getattr(self, name).copy_(v)
        mark_started(self)

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        k = torch.multinomial(torch.softmax(self.logits, 0), n, replacement=True)
        eps = self._noise(n) * temperature
        return self.means[k] + (self.scale_tril()[k] @ eps.unsqueeze(-1)).squeeze(-1)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, components={self.components}"


def _one_standard_error(found: list[tuple[int, str, Any, Tensor]]) -> tuple[int, str, Any, Tensor]:
    """Of candidates ``(parameters, kind, fit, held-out log-density per row)``, the one with
    the fewest parameters whose mean held-out log-density is within one paired standard error
    of the best's."""
    top = max(found, key=lambda f: float(f[3].mean()))[3]
    for candidate in sorted(found, key=lambda f: f[0]):
        gap = top - candidate[3]  # paired, per held-out row
        se = float(gap.std()) / math.sqrt(len(gap)) if len(gap) > 1 else 0.0
        if float(gap.mean()) <= se:
            return candidate
    raise AssertionError("the best candidate is within zero of itself")


def _mixture_log_prob(z: Tensor, w: Tensor, mu: Tensor, cov: Tensor) -> Tensor:
    """``log sum_k w_k N(z; mu_k, cov_k)`` per row of ``z`` ``(n, D)``, ``(n,)``."""
    return _component_log_probs(z, w, mu, cov).logsumexp(1)


def _component_log_probs(z: Tensor, w: Tensor, mu: Tensor, cov: Tensor) -> Tensor:
    """``log w_k + log N(z; mu_k, cov_k)``, ``(n, k)``."""
    chol = torch.linalg.cholesky(cov)
    u = torch.linalg.solve_triangular(chol, (z[None] - mu[:, None]).transpose(1, 2), upper=False)
    log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return torch.log(w) - 0.5 * (u**2).sum(1).T - log_det - 0.5 * z.shape[1] * _LOG_2PI


def _em(
    z: Tensor, k: int, steps: int = 100, floor: float = 1e-3, diagonal: bool = False
) -> tuple[Tensor, Tensor, Tensor, float]:
    """EM for a ``k``-component Gaussian mixture (full or ``diagonal`` covariances) on ``z``
    ``(n, D)``, started from seeded k-means++ centres; returns weights ``(k,)``, means
    ``(k, D)``, covariances ``(k, D, D)`` (with ``floor`` added to the diagonal) and the
    log-likelihood."""
    n, d = z.shape
    g = torch.Generator().manual_seed(k)
    centres = [z[torch.randint(n, (1,), generator=g)]]
    for _ in range(k - 1):  # k-means++: far points more likely
        dist = torch.cdist(z, torch.cat(centres)).min(1).values ** 2
        centres.append(z[torch.multinomial(dist / dist.sum(), 1, generator=g)])
    mu = torch.cat(centres)
    eye = torch.eye(d, dtype=z.dtype)
    cov = torch.cov(z.T).reshape(d, d)
    cov = (torch.diag(torch.diagonal(cov)) if diagonal else cov) + floor * eye
    cov = cov.expand(k, d, d).clone()
    w = torch.full((k,), 1.0 / k, dtype=z.dtype)
    log_l = -math.inf
    for _ in range(steps):
        log_p = _component_log_probs(z, w, mu, cov)
        total = torch.logsumexp(log_p, 1, keepdim=True)
        new = float(total.sum())
        r = torch.exp(log_p - total)  # (n, k) responsibilities
        nk = r.sum(0).clamp_min(1e-10)
        w, mu = nk / n, (r.T @ z) / nk[:, None]
        centred = z[None] - mu[:, None]  # (k, n, D)
        if diagonal:
            cov = torch.diag_embed(torch.einsum("nk,kni->ki", r, centred**2) / nk[:, None])
        else:
            cov = torch.einsum("nk,kni,knj->kij", r, centred, centred) / nk[:, None, None]
        cov = cov + floor * eye
        if new - log_l < 1e-6 * n:
            break
        log_l = new
    return w, mu, cov, new


def base_distribution(name: str, features: int, components: int = 8) -> BaseDistribution:
    """A recipe's base by name: ``"normal"`` (:class:`StandardNormal`) or ``"mixture"``
    (:class:`GaussianMixture` of at most ``components``, started from the data)."""
    if name == "normal":
        return StandardNormal(features)
    if name == "mixture":
        return GaussianMixture(features, components)
    raise ValueError(f"'base' should be 'normal' or 'mixture', got {name!r}")
