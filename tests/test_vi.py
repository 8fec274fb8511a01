"""Reverse-KL variational inference: targets, objectives and the fitting loop."""

import math

import pytest
import torch

from flowforge.config import parse_config
from flowforge.distributions import DiagonalNormal
from flowforge.flows import Flow
from flowforge.models import maf
from flowforge.models.vae import elbo, iwae_bound
from flowforge.objectives.base import anneal_beta
from flowforge.objectives.reverse_kl import estimate_kl, reverse_kl
from flowforge.runs import load, train_run
from flowforge.targets import Target, banana, energy, funnel, grid_log_z, make_target
from flowforge.testing import perturb_parameters
from flowforge.transforms import Compose
from helpers import distill_run, save_teacher


def test_u1_log_z_by_grid_matches_the_reference():
    assert energy("U1").log_z == pytest.approx(1.8775, abs=2e-4)


@pytest.mark.parametrize("name, box_log_z", [("U2", 2.082), ("U3", 2.642), ("U4", 2.685)])
def test_improper_energies_match_the_reference_on_the_box(name, box_log_z):
    # inside [-4, 4]^2 the strip's edge is inactive: the reference values on that box
    target = energy(name)
    assert grid_log_z(target, bounds=(4.0, 4.0)) == pytest.approx(box_log_z, abs=2e-3)
    # the strip makes the density proper: log Z barely moves when the grid grows
    assert grid_log_z(target, bounds=(6.0, 8.0)) == pytest.approx(target.log_z, abs=1e-4)


@pytest.mark.parametrize(
    "target, bounds",
    [(banana(), (8.0, 16.0)), (funnel(2, scale=1.0), (5.0, 8.0))],
    ids=["banana", "funnel"],
)
def test_normalised_targets_integrate_to_one(target, bounds):
    assert target.log_z == 0.0
    assert grid_log_z(target, n=600, bounds=bounds) == pytest.approx(0.0, abs=2e-3)


def test_anneal_schedule_is_the_papers():
    assert anneal_beta(0) == pytest.approx(0.01)
    assert anneal_beta(4900) == pytest.approx(0.5)
    assert anneal_beta(9900) == 1.0 and anneal_beta(50000) == 1.0


def test_iwae_bound_lies_between_elbo_and_its_limit():
    torch.manual_seed(0)
    log_w = torch.randn(50, 7) * 2
    assert torch.allclose(iwae_bound(log_w[:1]), elbo(log_w[:1]))
    assert bool((elbo(log_w) <= iwae_bound(log_w)).all())
    assert bool((iwae_bound(log_w[:5]) <= iwae_bound(log_w).max() + 10).all())
    with pytest.raises(ValueError, match="'log_w'"):
        elbo(torch.empty(0, 3))


def _gaussian_flow(dim=2):
    return Flow(Compose([]), DiagonalNormal(dim))


def test_reverse_kl_estimate_matches_the_closed_form():
    torch.manual_seed(0)
    q = _gaussian_flow()
    with torch.no_grad():
        q.base.loc.copy_(torch.tensor([0.5, -1.0]))
        q.base.log_scale.copy_(torch.tensor([0.2, -0.3]))
    mu, sigma, log_z = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.5]), 3.0
    # unnormalised N(mu, sigma^2) times e^{log_z}
    log_norm = -torch.log(sigma).sum() - math.log(2 * math.pi)
    target = Target(
        "gauss", lambda z: -0.5 * (((z - mu) / sigma) ** 2).sum(1) + log_norm + log_z, 2, log_z
    )
    s_q, m_q = q.base.log_scale.exp(), q.base.loc
    exact = (torch.log(sigma / s_q) + (s_q**2 + (m_q - mu) ** 2) / (2 * sigma**2) - 0.5).sum()
    loss, stderr, kl = estimate_kl(q, target, n=40000)
    assert kl == pytest.approx(float(exact), abs=4 * stderr + 1e-9)
    assert float(reverse_kl(q, target, 40000).detach()) + log_z == pytest.approx(
        float(exact), abs=0.05
    )


def _fit(tmp_path, target, model, steps, lr, batch=128, name="q", **objective):
    """A reverse-KL run through the one trainer; returns its summary."""
    cfg = parse_config(
        {
            "name": name,
            "output_dir": str(tmp_path),
            "objective": {
                "name": "reverse_kl",
                "target": target,
                "eval_samples": 5000,
                **objective,
            },
            "model": model,
            "train": {
                "steps": steps,
                "batch_size": batch,
                "lr": lr,
                "grad_clip": 0,
                "eval_every": steps,
            },
        }
    )
    return train_run(cfg, progress=False).summary


@pytest.mark.slow
def test_eight_planar_layers_beat_one_on_u1(tmp_path):
    one = _fit(tmp_path, "U1", {"name": "planar", "layers": 1}, 300, 2e-2, name="one")
    flow = _fit(tmp_path, "U1", {"name": "planar", "layers": 8}, 400, 1e-2, name="p")
    assert flow["kl"] < one["kl"] - 0.2, (flow["kl"], one["kl"])
    assert flow["kl"] >= -4 * flow["loss_stderr"]  # a KL is never negative beyond noise


def test_a_registered_target_is_fitted_and_bad_options_are_named(tmp_path):
    from flowforge.config import ConfigError
    from flowforge.targets import TARGETS, register_target

    @register_target("shifted-gaussian-3d")
    def _shifted() -> Target:
        return Target("shifted", lambda z: -0.5 * (z - 1).pow(2).sum(1), 3)

    try:
        summary = _fit(
            tmp_path, "shifted-gaussian-3d", {"name": "realnvp", "couplings": 2}, 300, 2e-2
        )
        assert (
            summary["kl"] is None and abs(summary["loss"] + 3 * 0.5 * math.log(2 * math.pi)) < 0.1
        )
        q = load(tmp_path / "q")
        assert torch.allclose(q.sample(4000).mean(0), torch.ones(3), atol=0.15)
        with pytest.raises(ValueError, match="already registered"):
            register_target("shifted-gaussian-3d")(_shifted)
    finally:
        del TARGETS["shifted-gaussian-3d"]
    with pytest.raises(ConfigError, match="unknown target 'U9'"):
        _fit(tmp_path, "U9", {"name": "planar"}, 1, 1e-2)
    with pytest.raises(ConfigError, match="reads no data set"):
        parse_config(
            {"objective": {"name": "reverse_kl", "target": "U1"}, "data": {"name": "moons"}}
        )
    with pytest.raises(ValueError, match="unknown"):
        make_target("U9")


@pytest.mark.slow
def test_distillation_moves_the_student_towards_a_frozen_teacher(tmp_path):
    from flowforge.config import ConfigError

    torch.manual_seed(0)
    teacher = maf(2, layers=2, hidden=(8, 8), batch_norm=False)
    perturb_parameters(teacher, scale=0.5)
    path = save_teacher(teacher, tmp_path / "teacher.pt", [2])
    before = path.read_bytes()
    student = {"name": "iaf", "layers": 2, "hidden": [16, 16]}
    start = distill_run(tmp_path, path, student, steps=1, lr=1e-9, name="start")
    done = distill_run(tmp_path, path, student, steps=300, lr=1e-2, name="done")
    assert done["kl"] < 0.5 * start["kl"], (done["kl"], start["kl"])
    assert path.read_bytes() == before  # the teacher is read, never written
    with pytest.raises(ConfigError, match="no run directory or checkpoint"):
        distill_run(tmp_path, tmp_path / "absent", student, steps=1, lr=1e-2, name="bad")
