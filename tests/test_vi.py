"""Reverse-KL variational inference: targets, objectives and the fitting loop."""

import math

import pytest
import torch

from flowforge.distributions import DiagonalNormal
from flowforge.flows import Flow
from flowforge.models import iaf, maf
from flowforge.models.planar_radial import planar
from flowforge.targets import Target, banana, energy, funnel, grid_log_z, make_target
from flowforge.testing import perturb_parameters
from flowforge.train.objectives import anneal_beta, elbo, iwae_bound, reverse_kl
from flowforge.train.variational import distill, estimate_kl, fit_target
from flowforge.transforms import Compose


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


@pytest.mark.slow
def test_small_planar_flow_beats_the_best_gaussian_on_u1():
    target = make_target("U1")
    gauss = fit_target(_gaussian_flow(), target, steps=300, batch_size=128, lr=2e-2, seed=0)
    flow = fit_target(planar(2, layers=8), target, steps=400, batch_size=128, lr=1e-2, seed=0)
    assert gauss.kl is not None and flow.kl is not None
    assert flow.kl < gauss.kl - 0.2, (flow.kl, gauss.kl)
    assert flow.kl >= -4 * flow.loss_stderr  # a KL is never negative beyond noise


def test_fit_target_accepts_a_plain_function_and_validates():
    q = _gaussian_flow(3)
    result = fit_target(q, lambda z: -0.5 * (z - 1).pow(2).sum(1), steps=200, lr=5e-2, seed=0)
    assert result.kl is None
    assert torch.allclose(q.base.loc, torch.ones(3), atol=0.15)
    with pytest.raises(ValueError, match="'steps'"):
        fit_target(q, lambda z: -z.pow(2).sum(1), steps=0)
    with pytest.raises(ValueError, match="dimension"):
        fit_target(q, make_target("U1"), steps=1)
    with pytest.raises(ValueError, match="unknown"):
        make_target("U9")


@pytest.mark.slow
def test_distillation_moves_the_student_towards_a_frozen_teacher():
    torch.manual_seed(0)
    teacher = maf(2, layers=2, hidden=(8, 8), batch_norm=False)
    perturb_parameters(teacher, scale=0.5)
    before = [p.detach().clone() for p in teacher.parameters()]
    student = iaf(2, layers=2, hidden=(16, 16))
    teacher_target = Target("teacher", lambda x: teacher.log_prob(x), 2, 0.0)
    kl_start = estimate_kl(student, teacher_target, n=5000)[2]
    result = distill(student, teacher, steps=300, batch_size=128, lr=1e-2, seed=0)
    assert result.kl < 0.5 * kl_start, (result.kl, kl_start)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))
    with pytest.raises(ValueError, match="event shape"):
        distill(iaf(3, layers=1), teacher, steps=1)
