"""VAEs with flow posteriors: bounds, importance-sampled log p(x), training on an MNIST slice."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from flowforge.data.binarized_mnist import load_binarized_mnist
from flowforge.models.vae import VAE
from flowforge.testing import perturb_parameters
from flowforge.train.objectives import elbo, iwae_bound
from flowforge.train.vae import VAEConfig, train_vae

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
    with pytest.raises(ValueError, match="model.posterior"):
        VAEConfig.from_dict({"model": {"posterior": {"name": "planar", "depth": 3}}})
    with pytest.raises(ValueError, match="train.epochs"):
        VAEConfig.from_dict({"train": {"epochs": 3}})


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
        "data": {"n_train": 300, "n_val": 20, "n_test": 20, "path": str(shared_data / "mnist.npz")},
        "model": {"latent": 4, "hidden": [16], "posterior": {"name": posterior, "layers": layers}},
        "train": {"steps": 60, "batch_size": 50, "lr": 1e-2, "objective": objective, "k": 3},
        "eval": {"k": 10, "n": 20},
    }
    config["train"]["eval_every"] = 20
    summary = train_vae(config, tmp_path)
    records = [line for line in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    # far better than the 784 ln 2 = 543 nats of coin flips, and the bounds are ordered
    assert summary["test_nll"] < 300
    assert -summary["test_nll"] >= summary["test_elbo"]
    assert (tmp_path / "tiny" / "summary.json").is_file()
