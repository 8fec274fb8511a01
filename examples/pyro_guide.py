"""A flowforge flow as the guide of Pyro's stochastic variational inference.

The model: ``z ~ N(0, I_2)``, ``x_i | z ~ N(z, sigma^2 I_2)`` for ``i = 1..N``, whose posterior
is Gaussian and known exactly, so the fitted guide can be checked. The guide is a planar flow
(Rezende and Mohamed 2015) wrapped as a Pyro distribution by
:func:`flowforge.contrib.pyro.as_pyro`, which also keeps the log-density of its own samples:
Pyro scores each guide sample right after drawing it, and the kept value avoids the planar
flow's numerical inverse for those points.

    python examples/pyro_guide.py
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import Tensor

from flowforge.contrib.pyro import as_pyro
from flowforge.flows import Flow
from flowforge.models import planar

SIGMA = 0.5


def model(x: Tensor) -> None:
    z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z, SIGMA).to_event(1), obs=x)


def exact_posterior(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of ``p(z | x)`` (conjugate Gaussian)."""
    precision = 1 + len(x) / SIGMA**2
    return x.sum(0) / SIGMA**2 / precision, torch.full((2,), precision**-0.5)


def fit_guide(
    x: Tensor, steps: int = 1500, lr: float = 0.02, particles: int = 4, seed: int = 0
) -> Flow:
    """Fits a planar-flow guide to the model's posterior by Pyro's SVI (Adam, the learning
    rate decaying to 1% over ``steps``; ``particles`` samples per ELBO estimate)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    flow = planar(2, layers=4)

    def guide(x: Tensor) -> None:
        pyro.module("flow", flow)
        pyro.sample("z", as_pyro(flow))

    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.01 ** (1 / steps)})
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=particles))
    for _ in range(steps):
        svi.step(x)
    return flow


if __name__ == "__main__":
    torch.manual_seed(0)
    data = torch.tensor([1.0, -0.5]) + SIGMA * torch.randn(20, 2)
    fitted = fit_guide(data)
    z = fitted.sample(20000)
    mean, std = exact_posterior(data)
    print(f"guide mean {z.mean(0).tolist()}  exact {mean.tolist()}")
    print(f"guide std  {z.std(0).tolist()}  exact {std.tolist()}")
