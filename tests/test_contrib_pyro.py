"""flowforge.contrib.pyro: a flow in pyro.sample, inside pyro.plate, as a model prior and as
a (amortised) guide whose fit is checked against closed-form conjugate posteriors."""

import math

import pytest
import torch

pyro = pytest.importorskip("pyro", reason="pyro-ppl is in the 'pyro' and 'test' extras")
import pyro.distributions as dist  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402

from flowforge.contrib.pyro import FlowDistribution, as_pyro  # noqa: E402
from flowforge.models import planar, realnvp  # noqa: E402
from flowforge.testing import perturb_parameters  # noqa: E402


def _flow(context_features=0, seed=0):
    torch.manual_seed(seed)
    flow = realnvp(2, couplings=2, hidden=(16,), context_features=context_features)
    return flow


def test_pyro_sample_accepts_the_wrapper_and_plates_match_the_context_batch():
    flow = _flow(3)
    perturb_parameters(flow, 0.2)
    c = torch.randn(4, 3)

    def model():
        with pyro.plate("data", 4):
            return pyro.sample("z", as_pyro(flow, context=c))

    trace = pyro.poutine.trace(model).get_trace()
    trace.compute_log_prob()
    site = trace.nodes["z"]
    assert site["value"].shape == (4, 2) and site["log_prob"].shape == (4,)
    expected = flow.log_prob(site["value"].detach(), c)
    assert torch.allclose(site["log_prob"], expected, atol=1e-4)


def test_unconditional_flow_is_expanded_by_a_plate_and_can_be_observed():
    flow = _flow()
    perturb_parameters(flow, 0.2)
    z_obs = torch.randn(5, 2)

    def model(obs=None):
        with pyro.plate("data", 5):
            return pyro.sample("z", as_pyro(flow), obs=obs)

    trace = pyro.poutine.trace(model).get_trace()
    assert isinstance(trace.nodes["z"]["fn"], FlowDistribution)
    assert trace.nodes["z"]["fn"].batch_shape == (5,) and trace.nodes["z"]["value"].shape == (5, 2)
    # as a model prior on observed values: the trace's log-density is the flow's
    trace = pyro.poutine.trace(model).get_trace(z_obs)
    assert torch.allclose(trace.log_prob_sum(), flow.log_prob(z_obs).sum(), atol=1e-4)


def test_wrong_plate_size_is_an_error():
    flow = _flow(3)

    def model():
        with pyro.plate("data", 5):
            return pyro.sample("z", as_pyro(flow, context=torch.randn(4, 3)))

    with pytest.raises((ValueError, RuntimeError), match="Shape mismatch inside plate"):
        pyro.poutine.trace(model).get_trace()


def test_scores_of_own_samples_come_from_the_sampling_pass():
    flow = _flow()
    perturb_parameters(flow, 0.3)
    d = as_pyro(flow)
    x = d.rsample((6,))
    cached = d.log_prob(x)
    assert torch.allclose(cached, d.log_prob(x.clone()), atol=1e-4)  # clone: recomputed
    assert cached.requires_grad and not d.sample((2,)).requires_grad
    with pytest.raises(TypeError, match="'flow' should be a flowforge Flow"):
        as_pyro(torch.nn.Linear(2, 2))


SIGMA = 0.5
STEPS = 400


def _conjugate_model(x):
    z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z, SIGMA).to_event(1), obs=x)


def _exact_posterior(x):
    """p(z | x_1..N) for z ~ N(0, I), x_i | z ~ N(z, sigma^2 I): precision 1 + N / sigma^2,
    mean (sum_i x_i / sigma^2) / precision (Bishop 2006, eq. 2.141-2.142)."""
    precision = 1 + len(x) / SIGMA**2
    return x.sum(0) / SIGMA**2 / precision, torch.full((2,), precision**-0.5)


def test_svi_guide_recovers_the_conjugate_posterior():
    torch.manual_seed(0)
    x = torch.tensor([1.0, -0.5]) + SIGMA * torch.randn(20, 2)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    flow = planar(2, layers=2)  # diagonal-normal base; its numerical inverse is never needed

    def guide(x):
        pyro.module("flow", flow)
        pyro.sample("z", as_pyro(flow))

    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.03 ** (1 / STEPS)})  # decays to 3%
    # 32 particles in a vectorised plate: the guide's distribution is expanded to (32, 1)
    elbo = Trace_ELBO(num_particles=32, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(_conjugate_model, guide, optim, elbo)
    for _ in range(STEPS):
        svi.step(x)
    z = flow.sample(20000)
    mean, std = _exact_posterior(x)  # std = 1/9
    # tolerances: 0.2 posterior sd on the mean, 10% on the sd (seeds 0-2 reach 0.06 and 3%;
    # the Monte Carlo error of 20000 draws is 0.01 sd)
    assert torch.allclose(z.mean(0), mean, atol=0.2 * std[0].item()), (z.mean(0), mean)
    assert torch.allclose(z.std(0), std, rtol=0.10), (z.std(0), std)


def test_amortised_guide_recovers_per_datum_posteriors():
    # z_i ~ N(0, I), x_i | z_i ~ N(z_i, s^2 I): p(z_i | x_i) = N(x_i / (1 + s^2), s^2 / (1 + s^2))
    s = 1.0
    torch.manual_seed(0)
    x = torch.randn(256, 2) * math.sqrt(1 + s**2)
    encoder = torch.nn.Linear(2, 4)
    flow = _flow(context_features=4)

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, s).to_event(1), obs=x)

    def guide(x):
        pyro.module("flow", flow)
        pyro.module("encoder", encoder)
        with pyro.plate("data", len(x)):
            pyro.sample("z", as_pyro(flow, context=encoder(x)))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    optim = pyro.optim.ClippedAdam({"lr": 0.01, "lrd": 0.1 ** (1 / STEPS)})
    svi = SVI(model, guide, optim, Trace_ELBO())
    for _ in range(STEPS):
        svi.step(x)
    x_new = torch.tensor([[-1.5, 0.5], [0.0, 0.0], [2.0, 1.0]])
    with torch.no_grad():
        z = as_pyro(flow, context=encoder(x_new)).sample((20000,))  # (20000, 3, 2)
    exact_sd = s / math.sqrt(1 + s**2)
    err_mean = (z.mean(0) - x_new / (1 + s**2)).abs().max().item() / exact_sd
    err_sd = (z.std(0) / exact_sd - 1).abs().max().item()
    assert err_mean < 0.15, err_mean  # in posterior standard deviations
    assert err_sd < 0.15, err_sd


def test_a_batch_norm_flow_in_training_mode_scores_alike_in_every_path():
    # The maf recipe's default has batch norm, and a new flow is in training mode: the cached
    # value of a guide's draw, the view's log_prob and as_pyro's uncached log_prob agree, one
    # point scores as in a batch, and the running statistics stay as they were.
    from flowforge.models import maf

    torch.manual_seed(0)
    flow = maf(2, layers=3, hidden=(8, 8), context_features=2)
    perturb_parameters(flow, 0.3)
    with torch.no_grad():
        flow.log_prob(torch.randn(64, 2) * 3 + 1, torch.randn(64, 2))  # move the statistics
    stats = {n: b.clone() for n, b in flow.named_buffers()}
    c = torch.randn(4, 2)
    d = as_pyro(flow, context=c)
    x = d.rsample((20,))
    cached = d.log_prob(x)
    assert torch.allclose(flow.as_distribution(c).log_prob(x), cached, atol=1e-4)
    assert torch.allclose(as_pyro(flow, context=c).log_prob(x.clone()), cached, atol=1e-4)
    assert torch.allclose(
        as_pyro(flow, context=c[:1]).log_prob(x[:1, :1]), cached[:1, :1], atol=1e-4
    )
    assert all(torch.equal(b, stats[n]) for n, b in flow.named_buffers())
    assert flow.training
