"""Sample-quality measures on known answers (flowforge.metrics)."""

import math

import pytest
import torch

from flowforge.data import load_dataset, toy
from flowforge.data.binarized_mnist import DEFAULT_PATH as MNIST_FILE
from flowforge.data.binarized_mnist import binarize
from flowforge.metrics import (
    KNOWN_MODES,
    class_coverage,
    digit_images,
    digit_quality,
    frechet_distance,
    frechet_distance_gaussians,
    load_digit_classifier,
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


def gaussian(n, mean, cov, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    return mean + z @ torch.linalg.cholesky(cov).T


def test_frechet_distance_of_commuting_gaussians_is_the_closed_form():
    """Diagonal covariances commute: FD = |mu_a - mu_b|^2 + sum_i (sqrt a_i - sqrt b_i)^2."""
    mean_a, mean_b = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    exact = float((mean_a - mean_b).pow(2).sum() + (var_a.sqrt() - var_b.sqrt()).pow(2).sum())
    got = frechet_distance_gaussians(mean_a, var_a.diag(), mean_b, var_b.diag())
    assert got == pytest.approx(exact, rel=1e-12)


def test_frechet_distance_of_non_commuting_gaussians():
    """In 2-D, tr (S_a S_b)^(1/2) = sqrt(tr(S_a S_b) + 2 sqrt(det(S_a S_b))) (the eigenvalues
    of S_a S_b are positive), independent of the eigen-decompositions of the implementation."""
    cov_a = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    cov_b = torch.tensor([[1.0, -0.5], [-0.5, 3.0]], dtype=torch.float64)
    product = cov_a @ cov_b
    trace_sqrt = math.sqrt(product.trace() + 2 * math.sqrt(product.det()))
    zero = torch.zeros(2, dtype=torch.float64)
    exact = float(cov_a.trace() + cov_b.trace()) - 2 * trace_sqrt
    assert frechet_distance_gaussians(zero, cov_a, zero, cov_b) == pytest.approx(exact, rel=1e-12)
    assert frechet_distance_gaussians(zero, cov_b, zero, cov_a) == pytest.approx(exact, rel=1e-12)


def test_frechet_distance_of_samples_estimates_that_of_their_gaussians():
    """200,000 points of two 4-D Gaussians with random means and covariances: the estimate is
    within 2 % of the exact value (its bias and noise are of order d / n)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    cov_a, cov_b = a @ a.T + 0.1 * torch.eye(4), b @ b.T + 0.1 * torch.eye(4)
    mean_a, mean_b = torch.randn(2, 4, generator=g, dtype=torch.float64)
    exact = frechet_distance_gaussians(mean_a, cov_a, mean_b, cov_b)
    x, y = gaussian(200_000, mean_a, cov_a, 1), gaussian(200_000, mean_b, cov_b, 2)
    assert frechet_distance(x, y) == pytest.approx(exact, rel=0.02)


def test_frechet_distance_is_zero_for_identical_sets_symmetric_and_sees_a_shift():
    """A shift ``a`` leaves the covariance as it is: FD(x + a, x) = |a|^2 exactly."""
    x = gaussian(5000, torch.zeros(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64), 3)
    y = x[:, torch.randperm(8, generator=torch.Generator().manual_seed(4))] * 1.5
    assert frechet_distance(x, x.clone()) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)
    assert frechet_distance(x, y) > 0
    shift = torch.arange(8, dtype=torch.float64)
    assert frechet_distance(x + shift, x) == pytest.approx(float(shift.pow(2).sum()), rel=1e-9)


def test_frechet_distance_refuses_mismatched_features():
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError, match="at least 2 points"):
        frechet_distance(torch.randn(1, 3), torch.randn(10, 3))


def one_hot_predictions(labels, confidence=0.9):
    """Probabilities putting ``confidence`` on each label and the rest evenly elsewhere."""
    p = torch.full((len(labels), 10), (1 - confidence) / 9)
    p[torch.arange(len(labels)), labels] = confidence
    return p


@pytest.mark.parametrize("dropped", [0, 1, 3])
def test_dropped_classes_lower_class_coverage_by_exactly_their_share(dropped):
    labels = torch.arange(10).repeat_interleave(100)
    kept = labels[labels >= dropped]
    stats = class_coverage(one_hot_predictions(kept))
    assert stats.classes == 10 and stats.covered == 10 - dropped
    assert stats.coverage == (10 - dropped) / 10
    assert stats.counts == [0] * dropped + [100] * (10 - dropped)
    assert stats.largest_share == pytest.approx(1 / (10 - dropped))
    assert stats.entropy == pytest.approx(math.log(10 - dropped))
    assert stats.confidence == pytest.approx(0.9)


def test_a_class_needs_a_quarter_of_its_fair_share_to_be_covered():
    """n = 1000, fair share 100: 25 samples cover a class, 24 do not."""
    rest = torch.arange(1, 10).repeat_interleave(108)[:975]
    for held, covered in ((25, 10), (24, 9)):
        labels = torch.cat([torch.zeros(held, dtype=torch.long), rest[: 1000 - held]])
        assert class_coverage(one_hot_predictions(labels)).covered == covered
    collapsed = class_coverage(one_hot_predictions(torch.full((500,), 7)))
    assert collapsed.covered == 1 and collapsed.largest_share == 1.0 and collapsed.entropy == 0


def test_digit_images_scale_each_data_set_to_the_unit_interval():
    raw = torch.tensor([[-0.4, 0.0, 127.5, 255.0, 255.4] + [0.0] * 779])
    assert digit_images(raw, "mnist")[0, 0, 0, :5].tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    binary = torch.ones(3, 784)
    assert digit_images(binary, "binarized_mnist").shape == (3, 1, 28, 28)
    assert digit_images(binary, "binarized_mnist").min() == 1.0
    with pytest.raises(ValueError, match="no digit classifier"):
        digit_images(binary, "fashion_mnist")


@pytest.fixture(scope="module")
def mnist_test():
    """The 10,000 MNIST test images in [0, 1] and their labels."""
    if not MNIST_FILE.is_file():
        pytest.skip(f"the MNIST tests need {MNIST_FILE}, which is absent")
    splits = load_dataset("mnist", 0, 0, 10000, data_dir=str(MNIST_FILE.parent))
    return splits.test / 255, torch.from_numpy(splits.info["labels"]["test"])


@torch.no_grad()
def test_the_shipped_classifier_is_as_accurate_as_its_metadata_says(mnist_test):
    """On 2,000 test images, grey and binarized: at least 98 %, and within noise of the
    accuracy on all 10,000 recorded in the file (4 binomial standard errors)."""
    model, meta = load_digit_classifier()
    x, y = mnist_test[0][:2000], mnist_test[1][:2000]
    binary = binarize(x, torch.Generator().manual_seed(1))
    assert meta["features"] == model.features(x[:1]).shape[1]
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    for images, recorded in ((x, "test_accuracy_grey"), (binary, "test_accuracy_binarized")):
        accuracy = float((model(images).argmax(1) == y).double().mean())
        assert accuracy >= 0.98
        p = meta[recorded]
        assert abs(accuracy - p) < 4 * math.sqrt(p * (1 - p) / 2000) + 1e-3, (recorded, accuracy)


def test_digit_measures_on_test_images(mnist_test):
    """Two interleaved halves of the test set: a small FD (about 2) and every class covered;
    with classes 7, 8, 9 removed from one half, a much larger FD (about 80) and a coverage of
    exactly 0.7 (the few images the classifier misreads as 7, 8 or 9 are far below a quarter
    of a fair share)."""
    x, y = mnist_test[0].reshape(10000, -1), mnist_test[1]
    # interleaved halves: the first 5,000 test images and the last come from different writers
    half_a, half_b = x[0::2], x[1::2]
    seven = half_b[y[1::2] < 7][:3000]
    same = digit_quality(half_a[:3000], half_b[:3000], "binarized_mnist")
    fewer = digit_quality(seven, half_a[:3000], "binarized_mnist")
    assert same["classes_coverage"] == 1.0 and same["classes_covered"] == 10
    assert fewer["classes_coverage"] == 0.7
    assert sum(fewer["classes_counts"][7:]) < 0.01 * len(seven)  # the classifier's errors
    assert same["classes_entropy"] > fewer["classes_entropy"]
    assert fewer["fd"] > 10 * same["fd"] > 0
    assert same["classes_confidence"] > 0.95
    raw = digit_quality(half_a[:500] * 255, half_b[:500] * 255, "mnist")
    scaled = digit_quality(half_a[:500], half_b[:500], "binarized_mnist")
    assert raw["fd"] == pytest.approx(scaled["fd"], rel=1e-6)


def test_only_digit_data_get_the_classifier_measures():
    x = torch.rand(300, 784)
    assert "fd" in sample_quality(x, x.flip(0), "mnist")
    for data in ("fashion_mnist", "cifar10", "digits-image", "moons", None):
        out = sample_quality(x, x.flip(0), data)
        assert "fd" not in out and "classes_coverage" not in out
