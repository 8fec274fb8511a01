"""2-D toy data: generators, the entropy table and the estimator of scripts/toy_entropy.py."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flowforge.data import toy

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "toy_entropy.py"


@pytest.fixture(scope="module")
def te():
    spec = importlib.util.spec_from_file_location("toy_entropy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_entropy"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    del sys.modules["toy_entropy"]


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
@pytest.mark.parametrize("n", [2, 3, 7, 1000])
def test_shape_dtype_finite(name, n):
    x = toy.sample(name, n, seed=1)
    assert x.shape == (n, 2)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_one_point(name):
    assert toy.sample(name, 1).shape == (1, 2)


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_seeded(name):
    a, b, c = toy.sample(name, 500, seed=3), toy.sample(name, 500, seed=3), toy.sample(name, 500)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'banana'.*moons"):
        toy.sample("banana", 10)


@pytest.mark.parametrize("n", [0, -4])
def test_bad_n(n):
    with pytest.raises(ValueError, match="'n' should be positive"):
        toy.sample("moons", n)


def test_entropy_table_covers_every_set():
    assert set(toy.ENTROPY) == set(toy.DATASETS)
    assert toy.ENTROPY["checkerboard"].value == pytest.approx(math.log(32), abs=1e-12)
    assert toy.ENTROPY["parabola"].value == pytest.approx(math.log(8 * math.pi * math.e), abs=1e-12)
    for name, h in toy.ENTROPY.items():
        assert (h.stderr == 0) == (name in ("checkerboard", "parabola", "25gaussians")), name
        assert 0 <= h.stderr < 1e-3, name


def test_grid_entropy_is_the_separated_closed_form_by_quadrature():
    """25gaussians: -integral of p log p over the centre mode's Voronoi cell (the full mixture
    density, midpoint rule, step sd / 20), times 25 cells: ln 25 + ln(2 pi e sd^2) to 1e-12.
    The cell edges are 20 sd out, where the Gaussian's mass is below 1e-88."""
    centers, sd = toy.MODES["25gaussians"]
    h = sd / 20
    g = np.arange(-1 + h / 2, 1, h)
    x = np.stack(np.meshgrid(g, g), -1).reshape(-1, 1, 2)
    log_p = np.log(
        np.exp(-((x - centers) ** 2).sum(-1) / (2 * sd**2)).sum(1) / (25 * 2 * math.pi * sd**2)
    )
    entropy = -25 * (np.exp(log_p) * log_p).sum() * h * h
    assert entropy == pytest.approx(toy.ENTROPY["25gaussians"].value, abs=1e-12)
    assert toy.ENTROPY["25gaussians"].value == math.log(25) + math.log(2 * math.pi * math.e * sd**2)


def test_closed_forms_agree_with_monte_carlo_of_the_generators(te):
    """-mean log p over draws of toy.sample, for each closed form (scripts/toy_entropy.py)."""
    rows = te.exact_rows(4000, seed=11)
    assert {r.name for r in rows} == {"checkerboard", "parabola", "25gaussians"}
    for row in rows:
        assert abs(row.mc - row.value) < 4 * row.mc_se + 1e-6, row.name  # + rounding


def test_ring_quadrature_matches_bessel_closed_form(te):
    # one circle of radius r blurred by N(0, s^2 I): p = exp(-(rho - r)^2 / 2s^2) i0e(rho r / s^2)
    # / (2 pi s^2); the script gets it by Gauss-Legendre quadrature over the angle
    r, s = 1.5, 0.08
    model = te.NoisyLatent([te._circle(r, 1.0)], te.Gaussian(s))
    rho = torch.linspace(0.5, 2.5, 41, dtype=torch.float64)
    x = torch.stack([rho * math.cos(0.3), rho * math.sin(0.3)], 1)
    exact = (
        -((rho - r) ** 2) / (2 * s**2)
        + torch.special.i0e(rho * r / s**2).log()
        - math.log(2 * math.pi * s**2)
    )
    torch.testing.assert_close(model.density(x, 4.0).log(), exact, rtol=0, atol=1e-9)


def test_grid_entropy_of_separated_gaussians(te):
    # 8 Gaussians whose overlap is e^-50: H = ln 8 + ln(2 pi e s^2) up to that overlap
    s = 0.1
    centres = te.eight_gaussians().atoms[0]
    model = te.NoisyLatent([], te.Gaussian(s), (centres, np.full(8, 1 / 8)))
    h, mass = te.grid_entropy(model, 4.0)
    assert mass == pytest.approx(1, abs=1e-12)
    assert h == pytest.approx(math.log(8) + math.log(2 * math.pi * math.e * s**2), abs=1e-9)


def test_pinwheel_density_finds_the_generating_preimage(te):
    # away from the origin the other arms' preimages carry under 1e-6 of the density, so it is
    # the change of variables of the point's own latent: N(f) / |1 + 0.25 e^f0 f1| / 5 / 2^2
    wheel = te.Pinwheel()
    g = torch.Generator().manual_seed(0)
    f = torch.randn(300, 2, generator=g, dtype=torch.float64) * torch.tensor([0.3, 0.1])
    f[:, 0] += 1.0
    f = f[f.norm(dim=1) > 1.0]
    arm = torch.randint(0, 5, (len(f),), generator=g)
    angle = 2 * math.pi * arm.double() / 5 + 0.25 * torch.exp(f[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    x = 2 * torch.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], 1)
    own = (
        torch.exp(-0.5 * (((f[:, 0] - 1) / 0.3) ** 2 + (f[:, 1] / 0.1) ** 2))
        / (2 * math.pi * 0.03)
        / (1 + 0.25 * torch.exp(f[:, 0]) * f[:, 1]).abs()
        / 20
    )
    torch.testing.assert_close(wheel.density(x), own, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["8gaussians", "moons", "rings", "2spirals", "pinwheel"])
def test_stored_entropy_matches_generator(te, name):
    # the stored value against -mean log p over fresh draws of toy.sample: fails if the
    # generator changed without re-running the script, or if the density model is wrong
    model = te.MODELS[name]()
    mc, se = te.mc_entropy(lambda x: model.density(x, 3.0).log(), name, 4000, seed=77)
    assert abs(mc - toy.ENTROPY[name].value) < 4 * se
