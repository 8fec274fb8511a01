r"""Continuous normalizing flows: FFJORD (Grathwohl et al. 2019, https://arxiv.org/abs/1810.01367).

The map from data to latent is the solution of an ODE :math:`\dot z = f(z, t, c)` from
:math:`z(0) = x` to :math:`z(T)`, and the log-determinant is its integrated trace
(instantaneous change of variables, Chen et al. 2018, https://arxiv.org/abs/1806.07366):

.. math:: \log\left|\det \frac{\partial z(T)}{\partial x}\right| =
    \int_0^T \operatorname{tr}\frac{\partial f}{\partial z}(z(t), t)\, dt.

The trace is estimated by Hutchinson's :math:`\varepsilon^\top (\partial f / \partial z)
\varepsilon` with one probe per solve (one vector-Jacobian product per evaluation) in training,
and computed exactly (``D`` products) in evaluation. The ODE is solved with ``torchdiffeq``;
gradients come from back-propagation through the solver or from the adjoint method
(constant memory). RNODE (Finlay et al. 2020, https://arxiv.org/abs/2002.02798) regularisers
are integrated alongside:

.. math:: \mathcal{K} = \int_0^T \|f\|^2 dt, \qquad
    \mathcal{B} = \int_0^T \|\varepsilon^\top \partial f/\partial z\|^2 dt

and, when their weights are positive, a training-mode forward stores the weighted penalty for
the objective to add (:func:`regularization`). Both directions cost one ODE solve
(``fast_forward = fast_inverse = False``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.nn.mlp import make_activation
from flowforge.transforms.base import Transform
from flowforge.transforms.logdet import NOISES, hutchinson_probe

__all__ = [
    "CNF",
    "ConcatSquashLinear",
    "ConcatSquashMLP",
    "ExactTrace",
    "HutchinsonTrace",
    "regularization",
]

# torchdiffeq's solvers (its public ``odeint`` takes them by name; the library is imported only
# when a CNF integrates, so ``import flowforge.transforms`` does not load it): fixed-step
# methods need a step size. tests/test_continuous.py checks these against torchdiffeq's table.
FIXED_STEP = (
    "euler",
    "midpoint",
    "heun2",
    "heun3",
    "rk4",
    "explicit_adams",
    "implicit_adams",
    "fixed_adams",
)
ADAPTIVE_STEP = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun", "scipy_solver")
SOLVERS = FIXED_STEP + ADAPTIVE_STEP


class ConcatSquashLinear(nn.Module):
    r"""FFJORD's time-conditioned linear layer:
    :math:`y = (W x + b) \odot \sigma(a\,t + a_0) + c\,t`.

    Arguments:
        in_features, out_features: sizes.
        zero_init: zero ``W``, ``b`` and ``c`` so the layer outputs 0 (a CNF at the identity).
    """

    def __init__(self, in_features: int, out_features: int, zero_init: bool = False) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"'in_features' and 'out_features' should be positive, "
                f"got {in_features}, {out_features}"
            )
        self.linear = nn.Linear(in_features, out_features)
        self.gate = nn.Linear(1, out_features)
        self.time_bias = nn.Linear(1, out_features, bias=False)
        if zero_init:
            for p in (self.linear.weight, self.linear.bias, self.time_bias.weight):
                nn.init.zeros_(p)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        # t: () ; x: (B, in) -> (B, out)
        tt = t.reshape(1, 1).to(x)
        return self.linear(x) * torch.sigmoid(self.gate(tt)) + self.time_bias(tt)


class ConcatSquashMLP(nn.Module):
    """The dynamics network ``f(t, z, c)``: concat-squash layers with an activation between
    them; the context is concatenated to ``z``; the last layer starts at zero.

    Arguments:
        features: state size.
        hidden: hidden layer sizes (FFJORD's toy model: ``(64, 64, 64)``).
        activation: activation name (FFJORD: tanh or softplus).
        context_features: size of the context (0: none).
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64, 64),
        activation: str = "tanh",
        context_features: int = 0,
    ) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"'hidden' sizes should be positive, got {list(hidden)}")
        self.context_features = context_features
        sizes = [features + context_features, *hidden, features]
        n = len(sizes) - 1
        self.layers = nn.ModuleList(
            ConcatSquashLinear(a, b, zero_init=i == n - 1)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        )
        self.activations = nn.ModuleList(make_activation(activation) for _ in range(n - 1))

    def forward(self, t: Tensor, z: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError(f"this network expects a 'context' of {self.context_features}")
            z = torch.cat([z, context.expand(z.shape[0], -1)], dim=1)
        for layer, act in zip(self.layers[:-1], self.activations, strict=True):
            z = act(layer(t, z))
        return self.layers[-1](t, z)


def _vjp(out: Tensor, z: Tensor, w: Tensor | None, create_graph: bool) -> Tensor:
    (g,) = torch.autograd.grad(
        out, z, w, create_graph=create_graph, retain_graph=True, materialize_grads=True
    )
    return g


class ExactTrace(nn.Module):
    r""":math:`\operatorname{tr}(\partial f / \partial z) = \sum_i \partial f_i / \partial z_i`,
    one vector-Jacobian product per dimension: for evaluation in low dimensions."""

    needs_probe = False

    def forward(self, dz: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> Tensor:
        total = z.new_zeros(z.shape[0])
        for i in range(z.shape[1]):
            total = total + _vjp(dz[:, i].sum(), z, None, create_graph)[:, i]
        return total


class HutchinsonTrace(nn.Module):
    r"""Hutchinson's estimator :math:`\varepsilon^\top (\partial f/\partial z) \varepsilon`
    with :math:`\varepsilon` Gaussian or Rademacher (lower variance), drawn once per solve
    (FFJORD section 3.1): one vector-Jacobian product per evaluation, unbiased."""

    needs_probe = True

    def __init__(self, noise: str = "gaussian") -> None:
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"'noise' should be one of {NOISES}, got {noise!r}")
        self.noise = noise

    def forward(self, dz: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> Tensor:
        if probe is None:
            raise ValueError("HutchinsonTrace needs a 'probe'")
        return (_vjp(dz, z, probe, create_graph) * probe).sum(1)

    def extra_repr(self) -> str:
        return f"noise={self.noise!r}"


class CNF(Transform):
    r"""A continuous normalizing flow over vectors ``(batch, features)``.

    Arguments:
        dynamics: the network ``f(t, z, context) -> dz/dt`` (e.g. :class:`ConcatSquashMLP`).
        end_time: the integration time ``T``.
        method: a ``torchdiffeq`` solver (``"dopri5"`` adaptive; ``"rk4"``, ``"euler"``...
            fixed-step with ``step_size``).
        atol, rtol: tolerances of adaptive solvers.
        step_size: step of fixed-step solvers (required for them).
        adjoint: gradients by the adjoint method (constant memory) instead of back-propagation
            through the solver.
        estimator: trace in training mode (default: Gaussian :class:`HutchinsonTrace`).
        eval_estimator: trace in eval mode (default: :class:`ExactTrace`).
        kinetic_energy, jacobian_norm: RNODE weights; when positive, training-mode forwards
            store their weighted penalty for :func:`regularization`.
    """

    fast_forward = False
    fast_inverse = False

    def __init__(
        self,
        dynamics: nn.Module,
        end_time: float = 1.0,
        method: str = "dopri5",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        step_size: float | None = None,
        adjoint: bool = False,
        estimator: nn.Module | None = None,
        eval_estimator: nn.Module | None = None,
        kinetic_energy: float = 0.0,
        jacobian_norm: float = 0.0,
    ) -> None:
        super().__init__()
        if end_time <= 0:
            raise ValueError(f"'end_time' should be positive, got {end_time}")
        if method not in SOLVERS:
            raise ValueError(f"'method' should be one of {sorted(SOLVERS)}, got {method!r}")
        if method in FIXED_STEP and (step_size is None or step_size <= 0):
            raise ValueError(f"fixed-step method {method!r} needs a positive 'step_size'")
        if atol <= 0 or rtol <= 0:
            raise ValueError(f"'atol' and 'rtol' should be positive, got {atol}, {rtol}")
        if kinetic_energy < 0 or jacobian_norm < 0:
            raise ValueError(
                f"'kinetic_energy' and 'jacobian_norm' should be >= 0, "
                f"got {kinetic_energy}, {jacobian_norm}"
            )
        self.dynamics = dynamics
        self.end_time, self.method, self.atol, self.rtol = end_time, method, atol, rtol
        self.step_size, self.adjoint = step_size, adjoint
        self.estimator = HutchinsonTrace() if estimator is None else estimator
        self.eval_estimator = ExactTrace() if eval_estimator is None else eval_estimator
        self.kinetic_energy, self.jacobian_norm = kinetic_energy, jacobian_norm
        self.penalty: Tensor | None = None

    def _solve(
        self, x: Tensor, context: Tensor | None, t0: float, t1: float
    ) -> tuple[Tensor, Tensor]:
        if not bool(torch.isfinite(x).all()):
            # an adaptive solver would shrink its step to zero on NaN or inf and fail obscurely
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"CNF: the input holds {bad} NaN or infinite values")
        estimator = self.estimator if self.training else self.eval_estimator
        regularize = (
            self.training
            and torch.is_grad_enabled()
            and (self.kinetic_energy > 0 or self.jacobian_norm > 0)
        )
        probe = None
        if estimator.needs_probe:
            probe = hutchinson_probe(x, estimator.noise)
        elif regularize and self.jacobian_norm > 0:
            probe = torch.randn_like(x)

        def f(t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            differentiable = torch.is_grad_enabled()
            with torch.enable_grad():
                z = state[0]
                z = z if z.requires_grad else z.detach().requires_grad_(True)
                dz = self.dynamics(t, z, context)  # (B, D)
                trace = estimator(dz, z, probe, differentiable)  # (B,)
                out: tuple[Tensor, ...] = (dz, trace)
                if regularize:
                    frob = z.new_zeros(z.shape[0])
                    if self.jacobian_norm > 0:
                        frob = _vjp(dz, z, probe, True).pow(2).sum(1)
                    out = (*out, dz.pow(2).sum(1), frob)
            return out if differentiable else tuple(o.detach() for o in out)

        zeros = x.new_zeros(x.shape[0])
        state0 = (x, zeros, zeros, zeros) if regularize else (x, zeros)
        times = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        kwargs: dict = {"method": self.method, "atol": self.atol, "rtol": self.rtol}
        if self.method in FIXED_STEP:
            kwargs["options"] = {"step_size": self.step_size}
        from torchdiffeq import odeint, odeint_adjoint

        if self.adjoint:
            params = tuple(p for p in self.parameters() if p.requires_grad)
            if context is not None and context.requires_grad:
                params = (*params, context)
            solution = odeint_adjoint(f, state0, times, adjoint_params=params, **kwargs)
        else:
            solution = odeint(f, state0, times, **kwargs)
        final = [s[-1] for s in solution]
        if regularize:
            sign = 1.0 if t1 > t0 else -1.0
            self.penalty = sign * (
                self.kinetic_energy * final[2].mean() + self.jacobian_norm * final[3].mean()
            )
        return final[0], final[1]

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._solve(x, context, 0.0, self.end_time)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._solve(z, context, self.end_time, 0.0)

    def pop_penalty(self) -> Tensor | None:
        """The RNODE penalty of the last training-mode solve (then cleared), or ``None``.

        The stored penalty holds its graph until popped: call :func:`regularization` every
        step when the weights are positive (a module holding one cannot be deep-copied)."""
        penalty, self.penalty = self.penalty, None
        return penalty

    def extra_repr(self) -> str:
        step = f", step_size={self.step_size}" if self.method in FIXED_STEP else ""
        return (
            f"end_time={self.end_time}, method={self.method!r}, atol={self.atol}, "
            f"rtol={self.rtol}{step}, adjoint={self.adjoint}, "
            f"kinetic_energy={self.kinetic_energy}, jacobian_norm={self.jacobian_norm}"
        )


def regularization(module: nn.Module) -> Tensor | None:
    """Sums (and clears) the RNODE penalties stored by every :class:`CNF` inside ``module``
    during its last training-mode forward; ``None`` if there are none. Add it to the loss:
    ``loss = -flow.log_prob(x).mean() + regularization(flow)``."""
    penalties = [m.pop_penalty() for m in module.modules() if isinstance(m, CNF)]
    found = [p for p in penalties if p is not None]
    return torch.stack(found).sum() if found else None
