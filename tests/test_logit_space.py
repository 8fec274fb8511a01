"""Vector flows on images in logit space (MAF, MADE MoG and RealNVP as in the MAF paper's MNIST
experiments) and the logit-space NLL the ``mle`` objective reports beside bits/dim."""

import math

import pytest
import torch

from flowforge.config import parse_config
from flowforge.distributions import MADEMoG, Reshaped, StandardNormal
from flowforge.models import build_model, glow, maf, maf_image, nice_image, realnvp_image
from flowforge.models.pixels import on_pixels
from flowforge.objectives.mle import (
    MaximumLikelihood,
    bits_per_dim,
    logit_split,
    per_example_logit_nll,
    per_example_nll,
)
from flowforge.objectives.results import read_evaluation
from flowforge.runs import train_run
from flowforge.testing import perturb_parameters

SHAPE = (1, 4, 4)
D = 16


def _pixels(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), generator=g).float()


def _trained_looking(flow):
    """``flow`` with perturbed parameters and batch-norm statistics from one batch, in eval."""
    torch.manual_seed(0)
    perturb_parameters(flow, scale=0.1)
    flow.train()
    with torch.no_grad():
        flow.log_prob(_pixels(32, seed=1))
    return flow.eval()


@pytest.mark.parametrize(
    "make",
    [
        lambda: maf_image(SHAPE, layers=2, hidden=(16,)),
        lambda: maf_image(SHAPE, layers=0, hidden=(16,), base="mog", components=3),
        lambda: realnvp_image(SHAPE, couplings=2, hidden=(8,)),
    ],
    ids=["maf", "made_mog", "realnvp"],
)
def test_logit_space_nll_plus_the_logit_jacobian_is_the_unit_cube_nll(make):
    """Oracle: from the same dequantization noise ``u``, ``log p(y) = log p(v) + log|det dv/dy|``
    with ``y = (x + u) / 256`` and ``v = logit(a + (1 - 2a) y)``; the Jacobian by autograd, row
    by row, and ``log p(y)`` from the flow's own ``log_prob`` of the raw pixels (which adds the
    dequantization's ``-D log 256``)."""
    flow = _trained_looking(make())
    x = _pixels()
    torch.manual_seed(7)
    nll_x, nll_v = per_example_logit_nll(flow, x)
    torch.manual_seed(7)
    u = torch.rand_like(x)  # the draw the dequantization made
    y = (x + u) / 256
    torch.manual_seed(7)
    # one pass gives the usual NLL too (up to float32 rounding: the sum is in another order)
    assert torch.allclose(nll_x, per_example_nll(flow, x), rtol=1e-6, atol=0)
    a = 1e-6

    def logit(row):
        s = a + (1 - 2 * a) * row
        return torch.log(s) - torch.log1p(-s)

    for i in range(3):
        jac = torch.autograd.functional.jacobian(logit, y[i].double().flatten())  # (D, D)
        log_det = torch.linalg.slogdet(jac)[1]
        log_p_y = -nll_x[i] + D * math.log(256)
        assert abs(float(-nll_v[i] + log_det - log_p_y)) < 1e-3 * D
        # the closed form of the brief and the paper's code (experiments.evaluate_logprob)
        s = a + (1 - 2 * a) * y[i].double()
        closed = D * math.log(1 - 2 * a) - torch.log(s * (1 - s)).sum()
        assert abs(float(closed - log_det)) < 1e-6 * D
    # the paper's bits/pixel from its logit-space number: 8 - log p(y) / (D ln 2)
    log_p_y = -nll_v + torch.stack([_closed(y[i], a) for i in range(len(y))])
    assert torch.allclose(8 - log_p_y / (D * math.log(2)), nll_x / (D * math.log(2)), atol=1e-4)


def _closed(y, a):
    s = a + (1 - 2 * a) * y.double()
    return y.numel() * math.log(1 - 2 * a) - torch.log(s * (1 - s)).sum()


def test_only_a_flow_that_starts_with_dequantization_and_logit_is_split():
    assert logit_split(maf_image(SHAPE, layers=1, hidden=(8,), alpha=0.05))[2] == 0.05
    assert logit_split(glow(SHAPE, scales=1, depth=1, hidden_channels=4, alpha=0.05)) is not None
    assert logit_split(glow(SHAPE, scales=1, depth=1, hidden_channels=4)) is None  # no logit
    assert logit_split(nice_image(SHAPE, hidden=(8,))) is None
    assert logit_split(maf(4, layers=1, hidden=(8,))) is None
    with pytest.raises(ValueError, match="dequantization and a logit"):
        per_example_logit_nll(maf(4, layers=1, hidden=(8,)), torch.zeros(2, 4))


def test_maf_image_defaults_are_the_papers_mnist_maf_and_made_mog_is_zero_layers_on_mog():
    flow = maf_image((1, 28, 28))
    made = [m for m in flow.modules() if type(m).__name__ == "MADE"]
    assert len(made) == 5 and all(m.output.weight.shape[1] == 1024 for m in made)
    assert flow.transform[1].alpha == 1e-6
    made_mog = maf_image(SHAPE, layers=0, hidden=(8, 8), base="mog", components=10)
    assert isinstance(made_mog.base, Reshaped) and isinstance(made_mog.base.base, MADEMoG)
    assert made_mog.base.base.components == 10
    assert sum(p.numel() for p in made_mog.parameters()) == sum(
        p.numel() for p in made_mog.base.parameters()
    )
    with pytest.raises(ValueError, match="0 with base 'mog' or 'mixture'"):
        maf(4, layers=0)
    # built by name from a spec, as a checkpoint is loaded
    spec_built = build_model("maf_image", {"layers": 0, "base": "mog", "hidden": [8]}, SHAPE)
    assert isinstance(spec_built.base.base, MADEMoG)


@pytest.mark.parametrize("base", ["normal", "mog"])
def test_samples_and_latents_keep_the_image_shape(base):
    flow = maf_image(SHAPE, layers=1, hidden=(8,), base=base, components=2).eval()
    s = flow.sample(3)
    assert s.shape == (3, *SHAPE) and float(s.min()) >= -0.5 and float(s.max()) <= 255.5
    assert flow.transform_to_latent(_pixels(2)).shape == (2, *SHAPE)


def test_on_pixels_and_the_reshaped_base_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="vectors of 16 entries"):
        on_pixels(maf(15, layers=1, hidden=(8,)), SHAPE)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        on_pixels(maf(16, layers=1, hidden=(8,)), (16,))
    with pytest.raises(ValueError, match="vectors of 16 entries"):
        Reshaped(StandardNormal((4, 4)), SHAPE)


def test_results_show_the_logit_space_nll_beside_bits_per_dim():
    numbers = {
        "test_nll": 1000.0,
        "test_stderr": 1.0,
        "test_bpd": bits_per_dim(1000.0, 784),
        "test_bpd_stderr": bits_per_dim(1.0, 784),
        "test_logit_nll": 1300.5,
        "test_logit_nll_stderr": 0.85,
        "logit_alpha": 1e-6,
    }
    ev = MaximumLikelihood.results(numbers)
    assert ev.headline.unit == "bits/dim"
    (logit,) = ev.measures
    assert (logit.name, logit.value, logit.stderr) == ("test NLL in logit space", 1300.5, 0.85)
    assert "a = 1e-06" in logit.how and "test NLL in logit space 1300.5000" in ev.line()
    del numbers["test_logit_nll"]
    assert MaximumLikelihood.results(numbers).measures == ()


def test_a_tiny_maf_on_mnist_reports_finite_logit_space_numbers(tmp_path, shared_data):
    cfg = parse_config(
        {
            "name": "tiny-maf-mnist",
            "output_dir": str(tmp_path),
            "seed": 0,
            "data": {"name": "mnist", "n_train": 300, "n_val": 100, "n_test": 100},
            "model": {"name": "maf_image", "layers": 2, "hidden": [32]},
            "train": {"steps": 6, "batch_size": 100, "lr": 1e-3, "eval_every": 3},
        }
    )
    summary = train_run(cfg, progress=False, plots=False).summary
    for key in ("test_logit_nll", "test_logit_nll_stderr", "test_bpd", "test_bpd_stderr"):
        assert math.isfinite(summary[key]) and summary[key] > 0, key
    assert summary["logit_alpha"] == 1e-6
    ev = read_evaluation(summary)
    assert [m.name for m in ev.measures] == ["test NLL in logit space"]
    assert ev.measures[0].stderr == summary["test_logit_nll_stderr"] > 0
    assert not ev.not_finite()
