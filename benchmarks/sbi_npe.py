"""NPE with flowforge recipes against sbi's built-in estimators, on two simulators whose
posterior is known exactly, at the same simulation budget.

    python benchmarks/sbi_npe.py [--simulations 2000] [--epochs 100] [--observations 3]

Simulators (both have closed-form posteriors and exact posterior samplers):

- ``linear_gaussian``: theta ~ N(0, I_3), x = A theta + N(0, 0.3^2 I_4) with a fixed A;
  the posterior is Gaussian with precision I + A^T A / 0.3^2 (Bishop 2006, eq. 2.116).
- ``normal_gamma``: theta = (mu, log sigma^2) with sigma^2 ~ InvGamma(3, 2),
  mu | sigma^2 ~ N(0, sigma^2 / 1); x = 8 draws of N(mu, sigma^2). The posterior is
  normal-inverse-gamma (Murphy 2007, "Conjugate Bayesian analysis of the Gaussian
  distribution", eqs. 85-89): skewed in log sigma^2, Student-t in mu.

For each observation x_o (drawn from the prior predictive with a fixed seed) and estimator it
reports, against the exact posterior: the error of the mean in posterior standard deviations
(max over dimensions), the error of the covariance (Frobenius norm of the difference after
scaling by the exact standard deviations), C2ST accuracy (sbi.utils.metrics.c2st, 0.5 is
perfect) on 2000 samples, the training time and the epochs sbi's early stopping ran. Averages
over observations are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import time
import warnings

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

NOISE = 0.3
_A = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, -0.5], [0.3, 0.0, 1.0], [0.5, -0.5, 0.5]])  # (4, 3)
A0, B0, K0, M0, N_DRAWS = 3.0, 2.0, 1.0, 0.0, 8


# --- linear Gaussian ----------------------------------------------------------------------


def linear_gaussian_prior() -> Distribution:
    return torch.distributions.MultivariateNormal(torch.zeros(3), torch.eye(3))


def linear_gaussian_simulator(theta: Tensor) -> Tensor:
    return theta @ _A.T + NOISE * torch.randn(theta.shape[0], 4)


def linear_gaussian_posterior(x: Tensor) -> torch.distributions.MultivariateNormal:
    """p(theta | x): precision P = I + A^T A / s^2, mean P^-1 A^T x / s^2."""
    precision = torch.eye(3) + _A.T @ _A / NOISE**2
    cov = torch.linalg.inv(precision)
    return torch.distributions.MultivariateNormal(cov @ _A.T @ x / NOISE**2, cov)


# --- normal with unknown mean and variance (normal-inverse-gamma prior) -------------------


class NormalLogInvGamma(Distribution):
    """(mu, v = log sigma^2) with sigma^2 ~ InvGamma(a, b), mu | sigma^2 ~ N(m, sigma^2 / k).

    log p(v) = a log b - lgamma(a) - a v - b e^{-v} (the InvGamma density times e^v)."""

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, a: float, b: float, k: float, m: float) -> None:
        self.a, self.b, self.k, self.m = a, b, k, m
        super().__init__(torch.Size(), torch.Size([2]), validate_args=False)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = torch.Size(sample_shape)
        v = -torch.log(torch.distributions.Gamma(self.a, self.b).sample(shape))
        mu = self.m + torch.exp(0.5 * v) / math.sqrt(self.k) * torch.randn(shape)
        return torch.stack([mu, v], dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        mu, v = value[..., 0], value[..., 1]
        log_v = (
            self.a * math.log(self.b) - math.lgamma(self.a) - self.a * v - self.b * torch.exp(-v)
        )
        var = torch.exp(v) / self.k
        log_mu = -0.5 * (mu - self.m) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)
        return log_v + log_mu

    @property
    def mean(self) -> Tensor:
        return torch.tensor([self.m, math.log(self.b) - torch.digamma(torch.tensor(self.a)).item()])

    @property
    def stddev(self) -> Tensor:
        return self.covariance().diagonal().sqrt()

    def covariance(self) -> Tensor:
        """Cov(mu, v) = 0; Var(mu) = E[sigma^2] / k; Var(v) = trigamma(a)."""
        var_mu = self.b / (self.a - 1) / self.k
        var_v = torch.polygamma(1, torch.tensor(self.a)).item()
        return torch.diag(torch.tensor([var_mu, var_v]))


def normal_gamma_prior() -> NormalLogInvGamma:
    return NormalLogInvGamma(A0, B0, K0, M0)


def normal_gamma_simulator(theta: Tensor) -> Tensor:
    mu, v = theta[:, :1], theta[:, 1:]
    return mu + torch.exp(0.5 * v) * torch.randn(theta.shape[0], N_DRAWS)


def normal_gamma_posterior(x: Tensor) -> NormalLogInvGamma:
    """Conjugate update (Murphy 2007, eqs. 85-89): k_n = k + n, m_n = (k m + n xbar) / k_n,
    a_n = a + n/2, b_n = b + S/2 + k n (xbar - m)^2 / (2 k_n), S = sum (x_i - xbar)^2."""
    n, xbar = x.numel(), x.mean().item()
    s = ((x - xbar) ** 2).sum().item()
    kn = K0 + n
    bn = B0 + s / 2 + K0 * n * (xbar - M0) ** 2 / (2 * kn)
    return NormalLogInvGamma(A0 + n / 2, bn, kn, (K0 * M0 + n * xbar) / kn)


SIMULATORS = {
    "linear_gaussian": (
        linear_gaussian_prior,
        linear_gaussian_simulator,
        linear_gaussian_posterior,
    ),
    "normal_gamma": (normal_gamma_prior, normal_gamma_simulator, normal_gamma_posterior),
}


def exact_moments(posterior: Distribution) -> tuple[Tensor, Tensor]:
    if isinstance(posterior, NormalLogInvGamma):
        return posterior.mean, posterior.covariance()
    return posterior.mean, posterior.covariance_matrix


def moment_errors(samples: Tensor, posterior: Distribution) -> tuple[float, float]:
    """(max |mean error| / sd, ||D^-1/2 (C_hat - C) D^-1/2||_F) against the exact posterior."""
    mean, cov = exact_moments(posterior)
    sd = cov.diagonal().sqrt()
    err_mean = ((samples.mean(0) - mean).abs() / sd).max().item()
    scaled = (torch.cov(samples.T) - cov) / (sd[:, None] * sd[None, :])
    return err_mean, torch.linalg.matrix_norm(scaled).item()


def observations(name: str, count: int, seed: int = 1) -> Tensor:
    prior, simulator, _ = SIMULATORS[name]
    torch.manual_seed(seed)
    return simulator(prior().sample((count,)))


def simulate(name: str, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    prior, simulator, _ = SIMULATORS[name]
    torch.manual_seed(seed)
    theta = prior().sample((n,))
    return theta, simulator(theta)


class NullTracker:
    """sbi's ``Tracker`` protocol, logging nothing (the default writes TensorBoard files to
    ``./sbi-logs``)."""

    log_dir = ""

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        pass

    def log_params(self, params: dict) -> None:
        pass

    def add_figure(self, name: str, figure: object, step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass


def run_npe(
    name: str, builder: object, theta: Tensor, x: Tensor, epochs: int, seed: int = 0
) -> tuple[object, float, int]:
    """Single-round NPE with sbi; returns the posterior, the training time in seconds and the
    number of epochs trained."""
    from sbi.inference import NPE

    prior = SIMULATORS[name][0]()
    torch.manual_seed(seed)
    inference = NPE(
        prior=prior, density_estimator=builder, show_progress_bars=False, tracker=NullTracker()
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # sbi's "converged after N epochs" line
        inference.append_simulations(theta, x).train(max_num_epochs=epochs)
    seconds = time.perf_counter() - start
    return inference.build_posterior(), seconds, int(inference._summary["epochs_trained"][-1])


def estimators() -> dict[str, object]:
    from sbi.neural_nets import posterior_nn

    from flowforge.contrib.sbi import flowforge_nn

    return {
        "flowforge maf": flowforge_nn("maf", layers=5, hidden=(50, 50), batch_norm=False),
        "flowforge nsf": flowforge_nn("nsf", layers=5, hidden=50, residual_blocks=1),
        "sbi maf (nflows)": posterior_nn(model="maf"),
        "sbi nsf (nflows)": posterior_nn(model="nsf"),
        "sbi zuko_maf": posterior_nn(model="zuko_maf"),
        "sbi zuko_nsf": posterior_nn(model="zuko_nsf"),
    }


def main() -> None:
    from sbi.utils.metrics import c2st

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulations", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--observations", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(
        f"{args.simulations} simulations, at most {args.epochs} epochs, "
        f"{args.observations} observations, {args.samples} posterior samples each\n"
    )
    print("| simulator | estimator | mean error (sd) | cov error | C2ST | train s | epochs |")
    print("|---|---|---|---|---|---|---|")
    for name in SIMULATORS:
        theta, x = simulate(name, args.simulations)
        x_obs = observations(name, args.observations)
        for label, builder in estimators().items():
            posterior, seconds, epochs = run_npe(name, builder, theta, x, args.epochs)
            rows = []
            for i, x_o in enumerate(x_obs):
                exact = SIMULATORS[name][2](x_o)
                torch.manual_seed(100 + i)
                q = posterior.sample((args.samples,), x=x_o, show_progress_bars=False)
                truth = exact.sample((args.samples,))
                rows.append((*moment_errors(q, exact), c2st(q, truth).item()))
            m, c, a = (sum(r[j] for r in rows) / len(rows) for j in range(3))
            row = f"| {name} | {label} | {m:.3f} | {c:.3f} | {a:.3f} | {seconds:.1f} | {epochs} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
