"""The Moving-MNIST generator (issue 28, item 1): the mechanics on synthetic square "digits",
then the registered data set on the team's MNIST file (skipped where it is absent)."""

from pathlib import Path

import numpy as np
import pytest

from flowforge.data import DATASETS, load_dataset
from flowforge.data.moving_mnist import STEP, bouncing_sequences, render, trajectories

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"
needs_mnist = pytest.mark.skipif(
    not MNIST.is_file(), reason=f"Moving MNIST is drawn from MNIST digits; {MNIST} is absent"
)


def squares(m=5, d=4):
    """``m`` synthetic digits: full squares of side ``d`` at grey levels 51, 102, ..."""
    return np.stack([np.full((d, d), 51 * (i + 1), np.uint8) for i in range(m)])


def test_trajectories_stay_in_the_square_and_bounce():
    p = trajectories(200, 2, 40, np.random.default_rng(0))
    assert p.shape == (200, 2, 40, 2)
    assert p.min() >= 0 and p.max() <= 1
    steps = np.linalg.norm(np.diff(p, axis=2), axis=-1)
    # a free step moves exactly STEP; a bounce folds it, so it moves at most STEP
    assert steps.max() <= STEP + 1e-12 and np.isclose(np.median(steps), STEP)
    # over 40 frames of 0.1 every digit has met an edge: some coordinate changed direction
    direction = np.sign(np.diff(p, axis=2))
    turned = (direction[:, :, 1:] * direction[:, :, :-1] < 0).any(axis=(2, 3))
    assert turned.all()


def test_a_digit_stays_whole_inside_the_frame():
    x = bouncing_sequences(squares(1, 5), 50, 20, 12, 1, np.random.default_rng(1))
    assert x.shape == (50, 20, 1, 12, 12) and x.dtype == np.uint8
    # one 5x5 square of level 51 in every frame: never clipped by an edge
    assert ((x == 51).sum(axis=(2, 3, 4)) == 25).all()
    assert set(np.unique(x)) == {0, 51}


def test_two_digits_overlay_by_the_maximum():
    images = np.stack([squares(2, 3)])  # (1, 2, 3, 3): levels 51 and 102
    frame = render(images, np.zeros((1, 2, 1, 2)), 6)  # both at the top-left corner
    assert frame[0, 0, :3, :3].tolist() == [[102] * 3] * 3 and frame.sum() == 9 * 102
    apart = render(images, np.array([[[[0.0, 0.0]], [[1.0, 1.0]]]]), 6)
    assert (apart[0, 0, :3, :3] == 51).all() and (apart[0, 0, 3:, 3:] == 102).all()


def test_the_generator_is_seeded():
    a = bouncing_sequences(squares(), 8, 6, 10, 2, np.random.default_rng(3))
    b = bouncing_sequences(squares(), 8, 6, 10, 2, np.random.default_rng(3))
    c = bouncing_sequences(squares(), 8, 6, 10, 2, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="d <= 4"):
        bouncing_sequences(squares(d=5), 1, 2, 4, 1, np.random.default_rng(0))


def test_the_data_kind_is_registered_and_checks_its_options():
    assert "moving_mnist" in DATASETS
    for option, bad in (("frames", 0), ("size", 2.5), ("digits", -1)):
        with pytest.raises(ValueError, match=f"data.{option}"):
            load_dataset("moving_mnist", 2, 2, 2, **{option: bad})
    with pytest.raises(ValueError, match="digit_size"):
        load_dataset("moving_mnist", 2, 2, 2, size=16, digit_size=16)


@needs_mnist
def test_moving_mnist_splits_from_the_mnist_file():
    s = load_dataset("moving_mnist", 6, 3, 4, seed=0, frames=5, size=32, data_dir=str(MNIST.parent))
    assert s.train.shape == (6, 5, 1, 32, 32) and s.val.shape == (3, 5, 1, 32, 32)
    assert s.test.shape == (4, 5, 1, 32, 32) and s.unit == "bits/dim"
    assert s.info["levels"] == 256 and s.info["digit_size"] == 14
    for x in (s.train, s.val, s.test):
        assert x.min() == 0 and x.max() <= 255 and (x == x.round()).all()
    again = load_dataset("moving_mnist", 6, 3, 4, seed=0, frames=5, data_dir=str(MNIST.parent))
    assert (again.train == s.train).all() and (again.test == s.test).all()
    # the test sequences do not depend on the other splits' sizes; a new seed draws anew
    more = load_dataset("moving_mnist", 9, 1, 4, seed=0, frames=5, data_dir=str(MNIST.parent))
    assert (more.test == s.test).all()
    other = load_dataset("moving_mnist", 6, 3, 4, seed=1, frames=5, data_dir=str(MNIST.parent))
    assert not (other.train == s.train).all()
