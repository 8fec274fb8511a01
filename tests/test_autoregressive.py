"""Autoregressive layers and recipes: pass counts per direction, the slow-direction warning,
SOS polynomials (monotone, bounded inverse, implicit gradients), conditioning, validation."""

import warnings

import pytest
import torch

from flowforge.distributions import MADEMoG
from flowforge.flows import Flow
from flowforge.models import RECIPES, iaf, maf, nsf, sos
from flowforge.nn.made import MADE
from flowforge.transforms import (
    Affine,
    InverseDidNotConverge,
    MaskedAutoregressive,
    SlowDirectionWarning,
    SumOfSquaresPolynomial,
)

D = 5


def _count_made_calls(module: torch.nn.Module) -> dict[str, list[int]]:
    """Counts, for every MADE inside ``module``, its full passes and its degree sweeps
    (``counts[name] == [passes, sweeps]``); returns the live dict."""
    counts: dict[str, list[int]] = {}
    for name, m in module.named_modules():
        if isinstance(m, MADE):
            counts[name] = [0, 0]

            def hook(mod, args, out, name=name):
                counts[name][0] += 1

            def sweep(*args, name=name, made=m, **kwargs):
                counts[name][1] += 1
                return type(made).sweep(made, *args, **kwargs)

            m.register_forward_hook(hook)
            m.sweep = sweep
    return counts


def _reset(counts: dict[str, list[int]]) -> None:
    for k in counts:
        counts[k] = [0, 0]


def _slow_warnings(caught) -> int:
    return sum(issubclass(w.category, SlowDirectionWarning) for w in caught)


def test_maf_density_is_one_pass_per_layer_and_sampling_one_sweep():
    flow = maf(D, layers=3, hidden=(16,), batch_norm=False)
    counts = _count_made_calls(flow)
    assert len(counts) == 3
    flow.log_prob(torch.randn(8, D))
    assert list(counts.values()) == [[1, 0]] * 3
    _reset(counts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow.sample(4)
    # sampling sweeps each MADE once by degree instead of D full passes
    assert list(counts.values()) == [[0, 1]] * 3
    assert _slow_warnings(caught) == 0  # no gradients: the designed use, nothing to act on


def test_training_through_the_slow_direction_warns_once_per_layer():
    """Gradients through MAF's sampling (a reverse-KL fit) warn, once per layer; the same
    draws without gradients or in eval mode do not."""
    flow = maf(D, layers=3, hidden=(16,), batch_norm=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow.eval()
        flow.rsample(4)
        flow.train()
        with torch.no_grad():
            flow.rsample(4)
        assert _slow_warnings(caught) == 0
        flow.rsample(4).sum().backward()
        flow.rsample(4)
    assert _slow_warnings(caught) == 3
    assert "training through MaskedAutoregressive.inverse: 5 sequential" in str(caught[0].message)


def test_iaf_sampling_and_sample_and_log_prob_are_one_pass_per_layer():
    flow = iaf(D, layers=3, hidden=(16,))
    assert flow.transform.fast_inverse and not flow.transform.fast_forward
    counts = _count_made_calls(flow)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow.sample(6)
        assert list(counts.values()) == [[1, 0]] * 3
        x, logp = flow.sample_and_log_prob(6)
        assert list(counts.values()) == [[2, 0]] * 3
    assert _slow_warnings(caught) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowDirectionWarning)
        assert torch.allclose(logp, flow.log_prob(x.detach()), atol=1e-4)


def test_iaf_density_of_external_points_is_one_sweep_and_warns_once():
    flow = iaf(D, layers=1, hidden=(16,))
    counts = _count_made_calls(flow)
    x = torch.randn(4, D)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow.log_prob(x)
        flow.log_prob(x)
    assert list(counts.values()) == [[0, 2]]
    assert _slow_warnings(caught) == 1
    assert "5 sequential steps" in str(caught[0].message)


def test_masked_autoregressive_declares_its_fast_direction():
    layer = MaskedAutoregressive(3, Affine(), (8,))
    assert layer.fast_forward and not layer.fast_inverse


def test_made_mog_sampling_is_one_sweep_and_density_one_pass():
    base = MADEMoG(D, components=3, hidden=(16,))
    counts = _count_made_calls(base)
    base.log_prob(torch.randn(7, D))
    assert list(counts.values()) == [[1, 0]]
    base.sample(7)
    assert list(counts.values()) == [[1, 1]]


def test_sos_polynomial_is_strictly_monotone_and_identity_at_zero():
    t = SumOfSquaresPolynomial(polynomials=3, degree=3).double()
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    y0, logd0 = t(x, torch.zeros(x.numel(), t.params_per_dim, dtype=torch.float64))
    assert torch.allclose(y0, x, atol=1e-12) and torch.allclose(logd0, torch.zeros_like(x))
    g = torch.Generator().manual_seed(0)
    p = torch.randn(1, t.params_per_dim, generator=g, dtype=torch.float64).expand(x.numel(), -1)
    y, logd = t(x, p)
    assert bool((y[1:] > y[:-1]).all())
    assert bool((logd >= torch.log(torch.tensor(t.min_derivative, dtype=torch.float64))).all())


def test_sos_inverse_gradients_match_the_implicit_function_theorem():
    t = SumOfSquaresPolynomial(polynomials=2, degree=2)
    g = torch.Generator().manual_seed(1)
    p = torch.randn(6, t.params_per_dim, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.linspace(-3, 3, 6, dtype=torch.float64, requires_grad=True)
    x, _ = t.inverse(y, p)
    assert torch.allclose(t(x, p)[0], y, atol=1e-9)
    gy, gp = torch.autograd.grad(x.sum(), (y, p))
    # dx/dy = 1 / T'(x) and dx/dtheta = -(dT/dtheta) / T'(x), from the forward map at x
    xd = x.detach()
    value, logd = t(xd, p)
    (dT_dp,) = torch.autograd.grad(value.sum(), p)
    assert torch.allclose(gy, torch.exp(-logd.detach()), atol=1e-8)
    assert torch.allclose(gp, -dT_dp * torch.exp(-logd.detach())[:, None], atol=1e-8)


def test_sos_inverse_raises_at_the_iteration_cap():
    t = SumOfSquaresPolynomial(degree=2, tol=1e-12, max_iter=5)
    p = torch.randn(4, t.params_per_dim, dtype=torch.float64)
    with pytest.raises(InverseDidNotConverge, match="max_iter=5"):
        t.inverse(torch.linspace(-2, 2, 4, dtype=torch.float64), p)


@pytest.mark.parametrize("name", ["maf", "iaf", "nsf", "sos"])
def test_recipes_learn_conditionals(name):
    """Every recipe takes a context: after a few steps on x ~ N(1.5 c, 0.3^2), p(x | c) uses c."""
    torch.manual_seed(0)
    kw = {"hidden": 16} if name == "nsf" else {"hidden": (16,)}
    flow = RECIPES[name](2, layers=2, context_features=1, **kw)
    opt = torch.optim.Adam(flow.parameters(), lr=2e-2)
    for _ in range(40):
        c = torch.randint(0, 2, (32, 1)).float()
        x = 1.5 * c + 0.3 * torch.randn(32, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SlowDirectionWarning)
            loss = -flow.log_prob(x, c).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    x = torch.full((1, 2), 1.5)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowDirectionWarning)
        right = flow.log_prob(x, torch.ones(1, 1))
        wrong = flow.log_prob(x, torch.zeros(1, 1))
    assert right > wrong + 1


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: maf(3, base="gmm"), "'base'"),
        (lambda: maf(3, order="zigzag"), "'order'"),
        (lambda: nsf(3, kind="planar"), "'kind'"),
        (lambda: nsf(1, kind="coupling"), "'features'"),
        (lambda: sos(3, layers=0), "'layers'"),
        (lambda: iaf(3, hidden=(8, 8), residual_blocks=1), "'hidden'"),
        (lambda: MaskedAutoregressive(3, torch.nn.Identity()), "'transformer'"),
        (lambda: MADEMoG(3, components=0), "'components'"),
    ],
)
def test_validation_names_the_argument(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_recipes_are_registered():
    assert {"maf", "iaf", "nsf", "sos"} <= set(RECIPES)
    assert isinstance(RECIPES["maf"](2, layers=1, hidden=(4,)), Flow)
