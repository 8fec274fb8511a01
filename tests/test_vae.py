"""VAEs with flow posteriors: bounds, importance-sampled log p(x), training on an MNIST slice."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from flowforge.config import ConfigError, parse_config
from flowforge.data.binarized_mnist import load_binarized_mnist
from flowforge.models.vae import VAE, elbo, iwae_bound
from flowforge.objectives.base import anneal_beta
from flowforge.runs import train_run
from flowforge.testing import perturb_parameters

SIGMA = 0.5


def _linear_gaussian(posterior: str, layers: int) -> VAE:
    torch.manual_seed(0)
    vae = VAE(
        3,
        latent=2,
        hidden=(),
        posterior=posterior,
        flow_layers=layers,
        likelihood="gaussian",
        obs_log_scale=math.log(SIGMA),
    ).double()
    perturb_parameters(vae, scale=0.3)
    with torch.no_grad():  # q_0 wider than the prior: bounded weights, finite variance
        vae.head.weight[2:].zero_()
        vae.head.bias[2:].fill_(math.log(1.5))
    return vae


def _exact_log_px(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """log N(x; b, W W^T + sigma^2 I): the linear decoder integrated over the prior exactly."""
    lin = vae.decoder.net[-1]
    cov = lin.weight @ lin.weight.T + SIGMA**2 * torch.eye(3, dtype=torch.float64)
    return MultivariateNormal(lin.bias, cov).log_prob(x)


@pytest.mark.parametrize(
    "posterior, layers", [("gaussian", 0), ("planar", 3), ("radial", 2), ("iaf", 2)]
)
def test_importance_weights_are_unbiased_for_p_of_x(posterior, layers):
    # E_q[p(x, z) / q(z | x)] = p(x) holds only if log q (with the flow's log-det) is right
    vae = _linear_gaussian(posterior, layers)
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        w = vae.log_weights(x, 40000).exp()  # (k, B)
        ratio = w / _exact_log_px(vae, x).exp()
    mean, stderr = ratio.mean(0), ratio.std(0) / math.sqrt(ratio.shape[0])
    assert bool(((mean - 1).abs() < 4 * stderr + 1e-3).all()), (mean, stderr)


@pytest.mark.parametrize("posterior, layers", [("planar", 4), ("radial", 3), ("iaf", 2)])
def test_log_q_is_log_q0_minus_autograd_log_det(posterior, layers):
    # change of variables with the flow's Jacobian from autograd, not from its own log-det
    torch.manual_seed(0)
    vae = VAE(5, latent=3, hidden=(7,), posterior=posterior, flow_layers=layers).double()
    perturb_parameters(vae, scale=0.5)  # also the zero-initialised amortisation maps
    x = torch.rand(4, 5, dtype=torch.float64).bernoulli()
    torch.manual_seed(1)
    z, log_q = vae.posterior_sample(x, 1)
    with torch.no_grad():
        h = vae.trunk(x)
        loc, log_scale = vae.head(h).chunk(2, dim=-1)
    torch.manual_seed(1)
    z0 = loc + torch.randn(1, *loc.shape, dtype=torch.float64)[0] * log_scale.exp()
    for i in range(4):

        def f(v, i=i):
            return vae.flow.inverse(v[None], h[i : i + 1])[0][0]

        jac = torch.autograd.functional.jacobian(f, z0[i])
        log_q0 = -0.5 * (((z0[i] - loc[i]) / log_scale[i].exp()) ** 2).sum()
        log_q0 = log_q0 - log_scale[i].sum() - 1.5 * math.log(2 * math.pi)
        expected = log_q0 - torch.linalg.slogdet(jac)[1]
        assert torch.allclose(f(z0[i]), z[0, i].detach(), atol=1e-10)
        assert torch.allclose(log_q[0, i].detach(), expected, atol=1e-8), (i, log_q, expected)


def test_amortised_planar_posterior_starts_at_the_gaussian():
    torch.manual_seed(0)
    vae = VAE(10, latent=3, hidden=(8,), posterior="planar", flow_layers=5)
    x = torch.rand(6, 10).bernoulli()
    torch.manual_seed(1)
    z, log_q = vae.posterior_sample(x, 2)
    vae.flow = None  # the bare diagonal Gaussian with the same noise
    torch.manual_seed(1)
    z0, log_q0 = vae.posterior_sample(x, 2)
    assert torch.allclose(z, z0) and torch.allclose(log_q, log_q0)


def test_kl_warmup_weights_only_the_prior_and_posterior_terms():
    torch.manual_seed(0)
    vae = VAE(10, latent=3, hidden=(8,), posterior="planar", flow_layers=2)
    perturb_parameters(vae, scale=0.3)
    x = torch.rand(6, 10).bernoulli()
    with torch.no_grad():
        torch.manual_seed(1)
        full = vae.log_weights(x, 3)
        torch.manual_seed(1)
        z, _ = vae.posterior_sample(x, 3)
        log_lik = vae.log_likelihood(x, z)
        torch.manual_seed(1)
        warm = vae.log_weights(x, 3, beta=0.25)
    assert torch.allclose(warm, log_lik + 0.25 * (full - log_lik), atol=1e-5)
    with pytest.raises(ValueError, match="'beta'"):
        vae.log_weights(x, 3, beta=1.5)


def _vae_config(tmp_path, mnist, **objective):
    return {
        "name": "tiny",
        "output_dir": str(tmp_path),
        "objective": {"name": "elbo", "eval_k": 2, "eval_n": 10, **objective},
        "data": {
            "name": "binarized_mnist",
            "n_train": 50,
            "n_val": 10,
            "n_test": 10,
            "path": str(mnist),
        },
        "model": {
            "name": "vae",
            "latent": 2,
            "hidden": [8],
            "posterior": "planar",
            "flow_layers": 1,
        },
        "train": {"steps": 4, "batch_size": 10, "eval_every": 1, "grad_clip": 0},
    }


def test_the_elbo_objective_follows_the_warmup_schedule(shared_data, tmp_path, monkeypatch):
    from flowforge.models import vae as vae_module

    betas = []
    loss = vae_module.VAE.loss
    monkeypatch.setattr(
        vae_module.VAE,
        "loss",
        lambda self, x, o, k, beta: betas.append(float(beta)) or loss(self, x, o, k, beta),
    )
    mnist = shared_data / "mnist.npz"
    train_run(parse_config(_vae_config(tmp_path, mnist, kl_warmup=100)), progress=False)
    assert betas == pytest.approx([anneal_beta(t, 0.01, 100) for t in range(4)])
    assert betas == pytest.approx([0.01, 0.02, 0.03, 0.04])
    betas.clear()
    cfg = _vae_config(tmp_path, mnist)
    cfg["name"] = "plain"
    train_run(parse_config(cfg), progress=False)
    assert betas == [1.0] * 4
    with pytest.raises(ConfigError, match="kl_warmup: should be >= 0"):
        train_run(parse_config(_vae_config(tmp_path, mnist, kl_warmup=-1)), progress=False)


def test_elbo_below_iwae_below_exact_log_px_on_average():
    vae = _linear_gaussian("planar", 2)
    x = torch.randn(1, 3, dtype=torch.float64).expand(4000, 3)  # one point, many replicates
    with torch.no_grad():
        log_w = vae.log_weights(x, 10)  # (10, 4000)
    exact = float(_exact_log_px(vae, x[:1]).detach())
    e, w10 = float(elbo(log_w[:1]).mean()), float(iwae_bound(log_w).mean())
    sem = float(iwae_bound(log_w).std()) / math.sqrt(4000)
    assert e < w10 < exact + 3 * sem, (e, w10, exact)
    assert exact - w10 < exact - e  # more samples, tighter bound


def test_shapes_and_validation():
    vae = VAE(10, latent=3, hidden=(8,), posterior="planar", flow_layers=2)
    x = torch.rand(5, 10).bernoulli()
    z, log_q = vae.posterior_sample(x, 7)
    assert z.shape == (7, 5, 3) and log_q.shape == (7, 5)
    assert vae.log_weights(x, 7).shape == (7, 5)
    assert vae.loss(x, "iwae", 3).shape == ()
    with pytest.raises(ValueError, match="'flow_layers'"):
        VAE(10, posterior="planar", flow_layers=0)
    with pytest.raises(ValueError, match="'posterior'"):
        VAE(10, posterior="nice")
    with pytest.raises(ValueError, match="'objective'"):
        vae.loss(x, "mle")
    with pytest.raises(ValueError, match="model.depth: unknown option"):
        parse_config({"objective": {"name": "elbo"}, "model": {"name": "vae", "depth": 3}})
    with pytest.raises(ValueError, match="objective.epochs"):
        parse_config({"objective": {"name": "elbo", "epochs": 3}, "model": {"name": "vae"}})


def test_binarized_mnist_splits(shared_data):
    splits = load_binarized_mnist(50, 20, 30, path=str(shared_data / "mnist.npz"))
    assert splits.train.shape == (50, 784) and splits.test.shape == (30, 784)
    assert 0 <= float(splits.train.min()) and float(splits.train.max()) == 1.0
    assert set(splits.test.unique().tolist()) <= {0.0, 1.0}  # fixed binarization
    again = load_binarized_mnist(50, 20, 30, path=str(shared_data / "mnist.npz"))
    assert torch.equal(again.test, splits.test)


@pytest.mark.slow
@pytest.mark.parametrize(
    "posterior, layers, objective", [("planar", 2, "elbo"), ("gaussian", 0, "iwae")]
)
def test_tiny_vae_trains_on_an_mnist_slice(shared_data, tmp_path, posterior, layers, objective):
    config = {
        "name": "tiny",
        "output_dir": str(tmp_path),
        "objective": {"name": objective, "k": 3, "eval_k": 10, "eval_n": 20},
        "data": {
            "name": "binarized_mnist",
            "n_train": 300,
            "n_val": 20,
            "n_test": 20,
            "path": str(shared_data / "mnist.npz"),
        },
        "model": {
            "name": "vae",
            "latent": 4,
            "hidden": [16],
            "posterior": posterior,
            "flow_layers": layers,
        },
        "train": {"steps": 60, "batch_size": 50, "lr": 1e-2, "eval_every": 20, "grad_clip": 0},
    }
    summary = train_run(parse_config(config), progress=False).summary
    records = [line for line in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    # far better than the 784 ln 2 = 543 nats of coin flips, and the bounds are ordered
    assert summary["test_nll"] < 300
    assert -summary["test_nll"] >= summary["test_elbo"]
    assert (tmp_path / "tiny" / "summary.json").is_file()
