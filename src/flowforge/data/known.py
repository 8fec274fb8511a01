r"""Known-density tasks: data whose true log-density is computable, so a model's test NLL can be
compared with the best possible value.

- ``gmm8``, ``gmm32``: a fixed random mixture of 5 full-covariance Gaussians in 8 and 32
  dimensions (the mixture is drawn once from a fixed seed; ``seed`` only draws the data);
- ``funnel10``: Neal's funnel in 10 dimensions (Neal 2003, "Slice sampling",
  https://arxiv.org/abs/physics/0009028): :math:`v \sim \mathcal{N}(0, 3^2)`,
  :math:`x_{1..9} \mid v \sim \mathcal{N}(0, e^{v} I)`;
- ``teacher8``: samples of a fixed random RealNVP flow (8 dimensions, 4 affine couplings with
  random weights), whose exact ``log_prob`` is the true density;
- ``moons_conditional``: 2-D moons conditioned on the moon (context: one-hot label), with
  :math:`p(x \mid c) = \frac{1}{\pi} \int_0^\pi \mathcal{N}(x; 2 g_c(t) + b, 0.2^2 I)\,dt`
  computed by a 1000-node midpoint rule (error below 1e-4 nats).

Each loader reports, as the data set's ``entropy``, the **true density's NLL on this exact test
set**, :math:`-\frac1n \sum_i \log p(x_i)`: the test NLL of a perfect model, so the gap of a
trained model is ``test NLL - entropy`` on the same points. ``entropy_stderr`` is the standard
error of that average as an estimate of the entropy :math:`H = -\mathbb{E}\log p(x)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from flowforge.data.registry import Splits, register_dataset
from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.nn.mlp import MLP
from flowforge.transforms import Affine, Compose, Coupling, depth_scale_bound, half_mask

__all__ = [
    "TRUE_LOG_PROB",
    "KnownMixture",
    "funnel_log_prob",
    "funnel_sample",
    "moons_conditional_log_prob",
    "random_mixture",
    "teacher_flow",
    "true_log_prob",
]

TASK_SEED = 20190605  # fixes every task's density; the loaders' ``seed`` only draws data
_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class KnownMixture:
    """A mixture of full-covariance Gaussians with known parameters (NumPy; the trainable base is
    :class:`flowforge.distributions.GaussianMixture`): weights ``(K,)``, means ``(K, D)`` and lower
    Cholesky factors ``(K, D, D)`` of the covariances."""

    weights: np.ndarray
    means: np.ndarray
    chols: np.ndarray

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """``log p(x)`` for ``x`` ``(n, D)``: ``(n,)``."""
        d = x.shape[1]
        terms = []
        for w, mu, chol in zip(self.weights, self.means, self.chols, strict=True):
            u = np.linalg.solve(chol, (x - mu).T).T  # (n, D): L^{-1} (x - mu)
            log_det = np.log(np.diag(chol)).sum()
            terms.append(math.log(w) - 0.5 * (u**2).sum(1) - log_det - 0.5 * d * _LOG_2PI)
        stacked = np.stack(terms, 1)  # (n, K)
        top = stacked.max(1, keepdims=True)
        return (top + np.log(np.exp(stacked - top).sum(1, keepdims=True)))[:, 0]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        eps = rng.normal(size=(n, self.means.shape[1]))
        return self.means[k] + np.einsum("nij,nj->ni", self.chols[k], eps)


def random_mixture(dim: int, components: int = 5, seed: int = TASK_SEED) -> KnownMixture:
    """A random mixture: weights ``softmax(N(0, 0.5^2))``, means ``N(0, I)``, covariances
    ``L L^T`` with ``L`` lower triangular, diagonal ``U(0.4, 1.0)`` and off-diagonal
    ``N(0, 0.2^2 / D)`` (so the component shapes stay comparable across dimensions)."""
    if dim < 1 or components < 1:
        raise ValueError(f"'dim' and 'components' should be positive, got {dim}, {components}")
    rng = np.random.default_rng(seed + 1000 * dim)
    logits = rng.normal(scale=0.5, size=components)
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    means = rng.normal(size=(components, dim))
    chols = np.tril(rng.normal(scale=0.2 / math.sqrt(dim), size=(components, dim, dim)), -1)
    idx = np.arange(dim)
    chols[:, idx, idx] = rng.uniform(0.4, 1.0, size=(components, dim))
    return KnownMixture(weights, means, chols)


def funnel_sample(n: int, rng: np.random.Generator, dim: int = 10) -> np.ndarray:
    """Neal's funnel ``(n, dim)``: ``v`` first, then ``dim - 1`` coordinates of sd ``e^{v/2}``."""
    v = rng.normal(scale=3.0, size=(n, 1))
    return np.hstack([v, rng.normal(size=(n, dim - 1)) * np.exp(v / 2)])


def funnel_log_prob(x: np.ndarray) -> np.ndarray:
    r"""``log N(v; 0, 9) + sum_i log N(x_i; 0, e^v)``, shape ``(n,)``."""
    v, rest = x[:, 0], x[:, 1:]
    log_v = -0.5 * (v / 3) ** 2 - math.log(3) - 0.5 * _LOG_2PI
    k = rest.shape[1]
    log_rest = -0.5 * (rest**2).sum(1) * np.exp(-v) - 0.5 * k * v - 0.5 * k * _LOG_2PI
    return log_v + log_rest


def teacher_flow(features: int = 8, seed: int = TASK_SEED) -> Flow:
    """The fixed random teacher: four affine couplings with half masks and MLPs of 2 x 32 ReLU
    units (the layers of ``realnvp(features, couplings=4, hidden=(32, 32), mask="half")``, built
    here from transforms so that data does not import the recipes) with every parameter drawn
    from ``N(0, 0.15^2)`` (so no layer is the identity), in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        bound = depth_scale_bound(2)  # each half is transformed by every other coupling
        couplings = [
            Coupling(
                half_mask(features, first=i % 2 == 0),
                lambda a, b: MLP(a, b, (32, 32), "relu", 0),
                Affine(bound),
            )
            for i in range(4)
        ]
        flow = Flow(Compose(couplings), StandardNormal(features)).double()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in flow.parameters():
                p.copy_(0.15 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return flow.eval()


def _moon_curve(label: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The noiseless moons of :func:`flowforge.data.toy.moons` (scaled by 2 and shifted):
    label 0 the upper moon, label 1 the lower one. ``label`` and ``t`` broadcast."""
    upper = np.stack([np.cos(t), np.sin(t)], -1)
    lower = np.stack([1 - np.cos(t), 1 - np.sin(t) - 0.5], -1)
    curve = np.where(label[..., None] == 0, upper, lower)
    return 2 * curve + np.array([-1.0, -0.2])


MOONS_NOISE = 0.2  # 0.1 noise of scikit-learn's moons, times the scale 2
_MOONS_NODES = 1000


def moons_conditional_sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, 2), label (n,))`` with the label uniform on {0, 1} and ``t ~ U(0, pi)``."""
    label = rng.integers(0, 2, size=n)
    t = rng.uniform(0, math.pi, size=n)
    return _moon_curve(label, t) + rng.normal(scale=MOONS_NOISE, size=(n, 2)), label


def moons_conditional_log_prob(x: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``log p(x | label)`` by the midpoint rule over ``t`` (``_MOONS_NODES`` nodes)."""
    t = (np.arange(_MOONS_NODES) + 0.5) * math.pi / _MOONS_NODES
    out = np.empty(len(x))
    for start in range(0, len(x), 512):
        xs, ls = x[start : start + 512], label[start : start + 512]
        centers = _moon_curve(ls[:, None], t[None, :])  # (b, nodes, 2)
        sq = ((xs[:, None, :] - centers) ** 2).sum(-1) / MOONS_NOISE**2
        log_n = -0.5 * sq - 2 * math.log(MOONS_NOISE) - _LOG_2PI
        top = log_n.max(1, keepdims=True)
        out[start : start + 512] = (top + np.log(np.exp(log_n - top).mean(1, keepdims=True)))[:, 0]
    return out


def true_log_prob(name: str, x: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """The true ``log p(x)`` (or ``log p(x | context)``) of the known-density task ``name``."""
    if name not in TRUE_LOG_PROB:
        raise ValueError(f"'name' should be one of {sorted(TRUE_LOG_PROB)}, got {name!r}")
    return TRUE_LOG_PROB[name](x, context)


def _entropy(neg_log_p: np.ndarray) -> tuple[float, float]:
    return float(neg_log_p.mean()), float(neg_log_p.std(ddof=1) / math.sqrt(len(neg_log_p)))


def _known_loader(
    name: str,
    sample: Callable[[int, np.random.Generator], np.ndarray],
    log_prob: Callable[[np.ndarray], np.ndarray],
    about: str,
) -> None:
    def load(n_train: int, n_val: int, n_test: int, seed: int = 0) -> Splits:
        # three independent seeded streams: the test set never depends on the train size
        parts = [
            sample(n, np.random.default_rng([seed, k, TASK_SEED])).astype(np.float32)
            for k, n in enumerate((n_train, n_val, n_test))
        ]
        # the true NLL of the float32 test points the models see
        h, se = _entropy(-log_prob(parts[2].astype(np.float64)))
        tensors = [torch.from_numpy(p).float() for p in parts]
        info = {"kind": "known density", "about": about, "entropy": "true NLL of the test set"}
        return Splits(*tensors, entropy=h, entropy_stderr=se, info=info)

    load.__doc__ = f"Known-density task {name!r}: {about} (see flowforge.data.known)."
    register_dataset(name)(load)


# name -> log p(x, context) of every known-density task, for paired evaluations of the gap
TRUE_LOG_PROB: dict[str, Callable[[np.ndarray, np.ndarray | None], np.ndarray]] = {}

for _dim in (8, 32):
    _mix = random_mixture(_dim)
    _known_loader(
        f"gmm{_dim}", _mix.sample, _mix.log_prob, f"fixed random 5-component mixture, {_dim}-D"
    )
    TRUE_LOG_PROB[f"gmm{_dim}"] = lambda x, c, m=_mix: m.log_prob(x)

_known_loader(
    "funnel10", lambda n, rng: funnel_sample(n, rng, 10), funnel_log_prob, "Neal's funnel, 10-D"
)
TRUE_LOG_PROB["funnel10"] = lambda x, c: funnel_log_prob(x)


def _teacher_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    noise = torch.from_numpy(rng.normal(size=(n, 8)))
    with torch.no_grad():
        return teacher_flow().transform.inverse(noise)[0].numpy()


def _teacher_log_prob(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return teacher_flow().log_prob(torch.from_numpy(x)).numpy()


_known_loader("teacher8", _teacher_sample, _teacher_log_prob, "fixed random RealNVP teacher, 8-D")
TRUE_LOG_PROB["teacher8"] = lambda x, c: _teacher_log_prob(x)
TRUE_LOG_PROB["moons_conditional"] = lambda x, c: moons_conditional_log_prob(x, c.argmax(1))


@register_dataset("moons_conditional")
def moons_conditional(n_train: int, n_val: int, n_test: int, seed: int = 0) -> Splits:
    """2-D moons conditioned on the moon: context is the one-hot label ``(n, 2)``."""
    xs, cs = [], []
    for k, n in enumerate((n_train, n_val, n_test)):
        x, label = moons_conditional_sample(n, np.random.default_rng([seed, k, TASK_SEED]))
        xs.append(x.astype(np.float32).astype(np.float64))
        cs.append(label)
    h, se = _entropy(-moons_conditional_log_prob(xs[2], cs[2]))
    data = [torch.from_numpy(x).float() for x in xs]
    context = [torch.nn.functional.one_hot(torch.from_numpy(c), 2).float() for c in cs]
    info = {"kind": "known conditional density", "context": "one-hot moon label"}
    return Splits(*data, *context, entropy=h, entropy_stderr=se, info=info, context_classes=2)
