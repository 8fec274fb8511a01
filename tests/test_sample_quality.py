"""Sample-quality measures on known answers (flowforge.metrics)."""

import math

import pytest
import torch

from flowforge.data import toy
from flowforge.metrics import (
    KNOWN_MODES,
    median_bandwidth,
    mmd,
    mode_statistics,
    sample_quality,
    sliced_wasserstein,
)


def eight(n, seed):
    return torch.from_numpy(toy.sample("8gaussians", n, seed=seed))


def test_identical_samples_give_zero():
    x = eight(2000, 0)
    assert mmd(x, x.clone()).value == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(x, x.clone()) == 0.0


def test_two_draws_of_one_distribution_are_close_and_a_shift_is_not():
    x, y = eight(2000, 0), eight(2000, 1)
    same = mmd(x, y)
    assert abs(same.value) < 3 * same.stderr + 1e-4
    shifted = mmd(x + torch.tensor([1.0, 0.0], dtype=x.dtype), y)
    assert shifted.value > 5 * shifted.stderr and shifted.value > 10 * abs(same.value)
    assert shifted.bandwidth == same.bandwidth == pytest.approx(median_bandwidth(y))


def test_sliced_wasserstein_of_a_shift():
    """Shifting by a moves every projection on direction u by a.u: in 2-D, SW_2 = |a| / sqrt 2."""
    x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    a = torch.tensor([3.0, 4.0])
    assert sliced_wasserstein(x + a, x, projections=2000) == pytest.approx(
        5 / math.sqrt(2), rel=0.03
    )


def test_data_covers_every_mode_with_the_gaussian_share_off_manifold():
    """True samples of the 25gaussians data set (modes far apart): all 25 modes, each with its
    fair share, and the off-manifold share is P(chi2_2 > 9) = exp(-4.5). On 8gaussians the
    3-sigma discs nearly touch, so a sample beyond its own disc may land in a neighbour's: the
    share there is a little lower."""
    centers, sigma = KNOWN_MODES["25gaussians"]
    n = 100_000
    x = torch.from_numpy(toy.sample("25gaussians", n, seed=3)).double()
    stats = mode_statistics(x, centers, sigma)
    assert stats.covered == 25 and stats.coverage == 1.0
    expected = math.exp(-4.5)
    assert abs(stats.off_manifold - expected) < 4 * math.sqrt(expected / n)
    fair = (1 - expected) * n / 25
    assert all(abs(c - fair) < 5 * math.sqrt(fair) for c in stats.counts)
    centers, sigma = KNOWN_MODES["8gaussians"]
    stats = mode_statistics(eight(20_000, 3), centers, sigma)
    assert stats.covered == 8 and stats.off_manifold < expected


@pytest.mark.parametrize("dropped", [1, 3])
def test_dropped_modes_lower_coverage_by_exactly_their_share(dropped):
    centers, sigma = KNOWN_MODES["8gaussians"]
    x = eight(20_000, 4)
    nearest = torch.cdist(x.double(), centers).argmin(1)
    kept = x[nearest >= dropped]  # modes 0 .. dropped-1 gone
    stats = mode_statistics(kept, centers, sigma)
    assert stats.covered == 8 - dropped and stats.coverage == (8 - dropped) / 8
    assert all(stats.counts[i] == 0 for i in range(dropped))


@pytest.mark.parametrize("name, half_width", [("8gaussians", 4.5), ("25gaussians", 5.0)])
def test_off_manifold_share_of_uniform_noise_is_the_area_outside_the_discs(name, half_width):
    """Uniform noise on a square holding every 3-sigma disc (disjoint): the off-manifold share is
    1 - K pi (3 sigma)^2 / (2 L)^2."""
    centers, sigma = KNOWN_MODES[name]
    g = torch.Generator().manual_seed(5)
    n = 200_000
    noise = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * half_width
    expected = 1 - len(centers) * math.pi * (3 * sigma) ** 2 / (2 * half_width) ** 2
    stats = mode_statistics(noise, centers, sigma)
    se = math.sqrt(expected * (1 - expected) / n)
    assert abs(stats.off_manifold - expected) < 4 * se


def test_sample_quality_reports_every_measure_that_applies():
    x, y = eight(500, 0), eight(500, 1)
    out = sample_quality(x, y, "8gaussians")
    assert {"mmd", "mmd_stderr", "mmd_bandwidth", "swd", "modes_coverage"} <= set(out)
    assert "modes_coverage" not in sample_quality(x, y, "moons")
