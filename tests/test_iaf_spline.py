"""IAF with the rational-quadratic spline transformer (``iaf(..., transformer="spline")``): one
pass to sample, its own density equal to the slow direction's, validation, and distillation."""

import warnings

import pytest
import torch

from flowforge.models import iaf, maf
from flowforge.nn.made import MADE
from flowforge.testing import perturb_parameters
from flowforge.transforms import Affine, RationalQuadraticSpline, SlowDirectionWarning
from helpers import distill_run, save_teacher


def test_spline_iaf_samples_in_one_pass_and_scores_its_samples_like_the_slow_direction():
    torch.manual_seed(0)
    flow = iaf(4, layers=2, hidden=(16,), transformer="spline", bins=4, bound=2.0).double()
    splines = [m for m in flow.modules() if isinstance(m, RationalQuadraticSpline)]
    assert [(s.bins, s.bound) for s in splines] == [(4, 2.0), (4, 2.0)]
    assert not any(isinstance(m, Affine) for m in flow.modules())
    perturb_parameters(flow, scale=0.5)  # away from the identity the spline starts at
    passes = []
    for m in flow.modules():
        if isinstance(m, MADE):
            m.register_forward_hook(lambda *_: passes.append(1))
    x, log_q = flow.sample_and_log_prob(64)
    assert len(passes) == 2  # one MADE pass per layer
    assert not torch.allclose(log_q, flow.base.log_prob(x))  # not the identity
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowDirectionWarning)
        log_p = flow.log_prob(x.detach())
    assert torch.allclose(log_q, log_p, atol=1e-8)


def test_affine_stays_the_default_and_an_unknown_transformer_is_named():
    assert not any(isinstance(m, RationalQuadraticSpline) for m in iaf(3).modules())
    with pytest.raises(ValueError, match="'transformer'"):
        iaf(3, transformer="sos")


@pytest.mark.slow
def test_a_spline_student_distills_a_frozen_teacher(tmp_path):
    torch.manual_seed(0)
    teacher = maf(2, layers=2, hidden=(8, 8), batch_norm=False)
    perturb_parameters(teacher, scale=0.5)
    path = save_teacher(teacher, tmp_path / "teacher.pt", [2])
    student = {
        "name": "iaf",
        "layers": 2,
        "hidden": [16, 16],
        "transformer": "spline",
        "bound": 5.0,
    }
    start = distill_run(tmp_path, path, student, steps=1, lr=1e-9, name="start")
    done = distill_run(tmp_path, path, student, steps=100, lr=1e-2, name="done")
    assert done["kl"] < 0.5 * start["kl"], (done["kl"], start["kl"])
