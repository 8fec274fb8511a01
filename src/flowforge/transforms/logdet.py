r"""Estimators of :math:`\log\det(I + J_g(x))` for invertible residual blocks :math:`x + g(x)`.

Each estimator is a small module called as ``estimator(g, x, context) -> (g(x), logdet)`` with
``logdet`` of shape ``(batch,)``; it evaluates ``g`` itself because it needs the graph of
``g(x)`` for vector-Jacobian products. Under ``torch.no_grad()`` the results are detached;
otherwise they are differentiable with respect to ``x``, ``context`` and the parameters of
``g``. With :math:`\mathrm{Lip}(g) < 1` the series

.. math:: \log\det(I + J) = \sum_{k \ge 1} \frac{(-1)^{k+1}}{k} \operatorname{tr}(J^k)

converges, and each trace is estimated with Hutchinson's :math:`\operatorname{tr}(A) =
\mathbb{E}_v[v^\top A v]` for :math:`\mathbb{E}[vv^\top] = I`, computing :math:`v^\top J^k`
by ``k`` vector-Jacobian products.

- :class:`ExactLogDet`: the brute-force Jacobian (one backward pass per dimension), for small
  dimensions, tests and evaluation;
- :class:`PowerSeriesLogDet`: the series truncated at ``n`` terms (i-ResNet, Behrmann et al. 2019,
  https://arxiv.org/abs/1811.00995), biased;
- :class:`RouletteLogDet`: the unbiased Russian-roulette estimator (Residual Flows, Chen et al.
  2019, https://arxiv.org/abs/1906.02735, theorem 1), differentiated through the series;
- :class:`NeumannLogDet`: the same unbiased value with the Neumann-series gradient (theorem 2),
  which does not differentiate through the series, so memory does not grow with the number of
  terms;
- :class:`BackwardInForward`: wraps an estimator and computes its gradients during the forward
  pass (section 3.3), freeing the estimator's graph at once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "BackwardInForward",
    "ExactLogDet",
    "NeumannLogDet",
    "PowerSeriesLogDet",
    "RouletteLogDet",
    "hutchinson_probe",
    "rowwise_jacobian",
]

NOISES = ("gaussian", "rademacher")


def hutchinson_probe(like: Tensor, noise: str) -> Tensor:
    """A probe ``v`` shaped like ``like`` with :math:`\\mathbb{E}[vv^\\top] = I`: standard
    normal (``"gaussian"``) or random signs (``"rademacher"``)."""
    if noise == "gaussian":
        return torch.randn_like(like)
    if noise == "rademacher":
        return torch.randint_like(like, 0, 2) * 2 - 1
    raise ValueError(f"'noise' should be one of {NOISES}, got {noise!r}")


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product of ``(B, *event)`` tensors: ``(B,)``."""
    return (a * b).reshape(a.shape[0], -1).sum(1)


def _tracked(x: Tensor) -> Tensor:
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _vjp(gx: Tensor, x: Tensor, w: Tensor, create_graph: bool) -> Tensor:
    """:math:`w^\\top J_g(x)`, shape of ``x``."""
    (out,) = torch.autograd.grad(
        gx, x, w, create_graph=create_graph, retain_graph=True, materialize_grads=True
    )
    return out


def _finish(gx: Tensor, logdet: Tensor, differentiable: bool) -> tuple[Tensor, Tensor]:
    if differentiable:
        return gx, logdet
    return gx.detach(), logdet.detach()


def _check_noise(noise: str) -> None:
    if noise not in NOISES:
        raise ValueError(f"'noise' should be one of {NOISES}, got {noise!r}")


class ExactLogDet(nn.Module):
    """:math:`\\log|\\det(I + J_g(x))|` from the full Jacobian, for small dimensions (2-D and
    tabular data, tests, evaluation): ``D^2`` memory per sample. A ``g`` with a
    ``forward_with_jacobian(x, context) -> (g(x), J)`` method (``LipschitzMLP``) gives ``J`` in
    its forward pass; any other ``g`` has it built row by row with one backward pass per
    dimension (:func:`rowwise_jacobian`)."""

    def forward(
        self, g: nn.Module, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        differentiable = torch.is_grad_enabled()
        if hasattr(g, "forward_with_jacobian"):
            gx, jac = g.forward_with_jacobian(x, context)
        else:
            gx, jac = rowwise_jacobian(g, x, context, differentiable)
        eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
        logdet = torch.linalg.slogdet(eye + jac)[1]
        return _finish(gx, logdet, differentiable)


def rowwise_jacobian(
    g: nn.Module, x: Tensor, context: Tensor | None, create_graph: bool
) -> tuple[Tensor, Tensor]:
    """``g(x)`` and its Jacobian ``(B, D, D)`` (``d g_i / d x_j``, ``D`` the event size) from
    one backward pass per output dimension; ``create_graph`` keeps it differentiable."""
    with torch.enable_grad():
        x = _tracked(x)
        gx = g(x, context)
        b, d = x.shape[0], x[0].numel()
        flat = gx.reshape(b, d)
        rows = []
        for i in range(d):
            (row,) = torch.autograd.grad(
                flat[:, i].sum(),
                x,
                create_graph=create_graph,
                retain_graph=True,
                materialize_grads=True,
            )
            rows.append(row.reshape(b, d))
    return gx, torch.stack(rows, 1)


class PowerSeriesLogDet(nn.Module):
    r"""The i-ResNet estimator: the series truncated after ``n_terms`` terms, each trace by
    Hutchinson with ``n_probes`` probes, differentiated through (Behrmann et al. 2019,
    https://arxiv.org/abs/1811.00995, section 3.2).

    .. math:: \widehat{\log\det} = \frac{1}{m}\sum_{p=1}^{m} \sum_{k=1}^{n}
        \frac{(-1)^{k+1}}{k} v_p^\top J^k v_p

    Biased: it omits the tail :math:`\sum_{k>n}`, of size up to
    :math:`D\,\mathrm{Lip}(g)^{n+1} / ((n+1)(1-\mathrm{Lip}(g)))`.
    """

    def __init__(self, n_terms: int = 5, n_probes: int = 1, noise: str = "gaussian") -> None:
        super().__init__()
        if n_terms < 1:
            raise ValueError(f"'n_terms' should be positive, got {n_terms}")
        if n_probes < 1:
            raise ValueError(f"'n_probes' should be positive, got {n_probes}")
        _check_noise(noise)
        self.n_terms, self.n_probes, self.noise = n_terms, n_probes, noise

    def forward(
        self, g: nn.Module, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():
            x = _tracked(x)
            gx = g(x, context)
            total = x.new_zeros(x.shape[0])
            for _ in range(self.n_probes):
                v = hutchinson_probe(x, self.noise)
                w = v
                for k in range(1, self.n_terms + 1):
                    w = _vjp(gx, x, w, differentiable)  # v^T J^k
                    total = total + (-1) ** (k + 1) / k * _dot(w, v)
        return _finish(gx, total / self.n_probes, differentiable)

    def extra_repr(self) -> str:
        return f"n_terms={self.n_terms}, n_probes={self.n_probes}, noise={self.noise!r}"


class _Roulette(nn.Module):
    r"""The Russian-roulette truncation shared by the unbiased estimators: ``N = n_exact_terms
    + G`` terms with :math:`G \sim \mathrm{Geometric}(p)` on :math:`\{0, 1, \dots\}`, one draw
    per call, and term ``k`` reweighted by :math:`1 / P(N \ge k)`, which is 1 for
    :math:`k \le` ``n_exact_terms`` and :math:`(1 - p)^{-(k - n_{exact})}` after. Then
    :math:`\mathbb{E}_N[\sum_{k \le N} a_k / P(N \ge k)] = \sum_k a_k` for any absolutely
    convergent series. Expected number of terms: ``n_exact_terms + (1 - p) / p``."""

    def __init__(self, n_exact_terms: int = 2, p: float = 0.5, noise: str = "gaussian") -> None:
        super().__init__()
        if n_exact_terms < 0:
            raise ValueError(f"'n_exact_terms' should be >= 0, got {n_exact_terms}")
        if not 0.0 < p < 1.0:
            raise ValueError(f"'p' should be in (0, 1), got {p}")
        _check_noise(noise)
        self.n_exact_terms, self.p, self.noise = n_exact_terms, p, noise

    def sample_terms(self) -> int:
        """Draws the number of terms ``N`` (uses the global torch RNG)."""
        u = torch.rand(()).item()
        # inverse CDF of the geometric law: P(G >= j) = (1 - p)^j
        extra = int(torch.floor(torch.log1p(torch.tensor(-u)) / torch.log1p(torch.tensor(-self.p))))
        return self.n_exact_terms + extra

    def weight(self, k: int) -> float:
        """:math:`1 / P(N \\ge k)`."""
        return (1.0 - self.p) ** -max(k - self.n_exact_terms, 0)

    def extra_repr(self) -> str:
        return f"n_exact_terms={self.n_exact_terms}, p={self.p}, noise={self.noise!r}"


class RouletteLogDet(_Roulette):
    r"""The unbiased Russian-roulette estimator of Residual Flows (Chen et al. 2019,
    https://arxiv.org/abs/1906.02735, theorem 1), differentiated through the series:

    .. math:: \widehat{\log\det} = \sum_{k=1}^{N} \frac{(-1)^{k+1}}{k}
        \frac{v^\top J^k v}{P(N \ge k)}

    Memory grows with ``N``; :class:`NeumannLogDet` gives the same value with a cheaper
    gradient. With ``n_exact_terms=20`` it is the paper's evaluation estimator.
    """

    def forward(
        self, g: nn.Module, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        differentiable = torch.is_grad_enabled()
        n = self.sample_terms()
        with torch.enable_grad():
            x = _tracked(x)
            gx = g(x, context)
            v = hutchinson_probe(x, self.noise)
            w, total = v, x.new_zeros(x.shape[0])
            for k in range(1, n + 1):
                w = _vjp(gx, x, w, differentiable)  # v^T J^k
                total = total + (-1) ** (k + 1) / k * self.weight(k) * _dot(w, v)
        return _finish(gx, total, differentiable)


class NeumannLogDet(_Roulette):
    r"""The Russian-roulette value with the Neumann-series gradient (Residual Flows, Chen et
    al. 2019, https://arxiv.org/abs/1906.02735, theorem 2):

    .. math:: \frac{\partial}{\partial\theta}\log\det(I + J) =
        \mathbb{E}_{N,v}\Big[\Big(\sum_{k=0}^{N-1} \frac{(-1)^k}{P(N \ge k+1)}
        v^\top J^k\Big) \frac{\partial J}{\partial\theta} v\Big]

    The powers :math:`v^\top J^k` are computed without a graph; the gradient comes from the
    surrogate :math:`u^\top J v` with :math:`u` the (constant) bracket, one double-backward
    product. The returned log-det has the roulette value and that gradient (with respect to the
    parameters, ``x`` and ``context`` alike).
    """

    def forward(
        self, g: nn.Module, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        differentiable = torch.is_grad_enabled()
        n = self.sample_terms()
        with torch.enable_grad():
            x = _tracked(x)
            gx = g(x, context)
            v = hutchinson_probe(x, self.noise)
            w, neumann = v, torch.zeros_like(v)
            value = x.new_zeros(x.shape[0])
            for k in range(n):
                neumann = neumann + (-1) ** k * self.weight(k + 1) * w  # += c_k v^T J^k
                w = _vjp(gx, x, w, False)  # v^T J^(k+1)
                value = value + (-1) ** k / (k + 1) * self.weight(k + 1) * _dot(w, v)
            if not differentiable:
                return gx.detach(), value
            surrogate = _dot(_vjp(gx, x, neumann, True), v)  # u^T J v, u constant
            logdet = value + surrogate - surrogate.detach()
        return gx, logdet


class _BackwardInForwardFn(torch.autograd.Function):
    """Runs an estimator, takes its gradients at once, keeps only the graph of ``g(x)``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        estimator: nn.Module,
        g: nn.Module,
        x: Tensor,
        context: Tensor | None,
        *params: Tensor,
    ) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(x.requires_grad)
            c_ = None if context is None else context.detach().requires_grad_(context.requires_grad)
            inputs = [t for t in (x_, c_, *params) if t is not None and t.requires_grad]
            gx, logdet = estimator(g, _tracked(x_), c_)
            grads = torch.autograd.grad(
                logdet.sum(), inputs, retain_graph=True, materialize_grads=True
            )
        ctx.gx, ctx.inputs = gx, inputs  # the graph of g(x) only; the estimator's is freed
        ctx.grads = grads
        ctx.needs = [t is not None and t.requires_grad for t in (x, context, *params)]
        return gx.detach(), logdet.detach()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_gx: Tensor, grad_logdet: Tensor
    ) -> tuple[Tensor | None, ...]:
        # the parameters' precomputed gradient is of logdet.sum(): exact only when every
        # sample's log-det gets the same upstream gradient (a mean or sum over the batch)
        if not bool(torch.allclose(grad_logdet, grad_logdet[:1].expand_as(grad_logdet))):
            raise ValueError(
                "BackwardInForward needs the same upstream gradient for every sample's "
                "log-det (a loss that averages or sums over the batch)"
            )
        with torch.enable_grad():
            from_g = torch.autograd.grad(ctx.gx, ctx.inputs, grad_gx, materialize_grads=True)
        out: list[Tensor | None] = []
        i = 0
        for k, need in enumerate(ctx.needs):
            if not need:
                out.append(None)
                continue
            pre = ctx.grads[i]
            if k == 0:  # x: per-sample factor
                scale = grad_logdet.reshape(-1, *([1] * (pre.dim() - 1)))
            else:
                scale = grad_logdet[0]
            out.append(from_g[i] + pre * scale)
            i += 1
        ctx.gx = ctx.inputs = ctx.grads = None
        return (None, None, *out)


class BackwardInForward(nn.Module):
    """Computes a log-det estimator's gradients during the forward pass and keeps only the
    graph of ``g(x)`` (Residual Flows, Chen et al. 2019, https://arxiv.org/abs/1906.02735,
    section 3.3), so memory does not add up over blocks. The loss must weight every sample's
    log-det equally (a batch mean or sum), which the backward pass checks.

    Arguments:
        estimator: the wrapped estimator, e.g. :class:`NeumannLogDet`.
    """

    def __init__(self, estimator: nn.Module) -> None:
        super().__init__()
        self.estimator = estimator

    def forward(
        self, g: nn.Module, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if not torch.is_grad_enabled():
            return self.estimator(g, x, context)
        params = [p for p in g.parameters() if p.requires_grad]
        return _BackwardInForwardFn.apply(self.estimator, g, x, context, *params)
