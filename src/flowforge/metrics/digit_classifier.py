r"""The shipped MNIST classifier and the image measures it gives.

For MNIST digits (:data:`DIGIT_IMAGE_DATA`: ``mnist``, ``binarized_mnist``), the Fréchet
distance and the class coverage of samples read the **shipped classifier**
(:class:`DigitClassifier`, :func:`load_digit_classifier`): a small convolutional network
trained by ``scripts/train_mnist_classifier.py`` on grey and binarized MNIST training images,
whose test accuracies travel in its file's metadata (``mnist_classifier.npz``, beside this
module). The FD (:func:`~flowforge.metrics.distances.frechet_distance`) uses its 128
penultimate-layer features, the coverage
(:func:`~flowforge.metrics.coverage.class_coverage`) its predicted classes
(:func:`digit_quality`). Other image data (Fashion-MNIST, CIFAR-10, the 8x8 digits) get
neither: the classifier knows 28x28 digits only.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flowforge.metrics.coverage import class_coverage
from flowforge.metrics.distances import frechet_distance

__all__ = [
    "DIGIT_CLASSIFIER_FILE",
    "DIGIT_IMAGE_DATA",
    "DigitClassifier",
    "digit_images",
    "digit_quality",
    "load_digit_classifier",
]


class DigitClassifier(nn.Module):
    """A small convolutional classifier of 28x28 digits in ``[0, 1]``, whose penultimate layer
    is the feature space of :func:`frechet_distance` on MNIST.

    Three blocks of 3x3 convolution, ReLU and 2x2 max-pooling (16, 32, 64 channels:
    28 -> 14 -> 7 -> 3 pixels), a fully connected ReLU layer of ``features`` units and a linear
    layer to the 10 class logits; about 98,000 parameters for ``features = 128``.
    """

    def __init__(self, features: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, features),
            nn.ReLU(),
        )
        self.head = nn.Linear(features, classes)

    def features(self, x: Tensor) -> Tensor:
        """The penultimate layer's ``(n, features)`` activations of images ``(n, 1, 28, 28)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(n, classes)``."""
        return self.head(self.body(x))


#: the shipped weights and metadata of :class:`DigitClassifier`, written by
#: ``scripts/train_mnist_classifier.py``: an ``.npz`` of float32 arrays named as the module's
#: ``state_dict`` plus ``meta``, a JSON string (test accuracies, seed, command, torch version)
DIGIT_CLASSIFIER_FILE = Path(__file__).resolve().parent / "mnist_classifier.npz"


@functools.cache
def load_digit_classifier(
    path: Path = DIGIT_CLASSIFIER_FILE,
) -> tuple[DigitClassifier, dict[str, Any]]:
    """The shipped MNIST classifier (or the one written to ``path``), in eval mode, float32,
    on the CPU, and its metadata.

    Read with ``numpy.load(allow_pickle=False)``: the file holds arrays and one JSON string,
    never code. Cached: every call with the same ``path`` returns the same module.
    """
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        state = {k: torch.from_numpy(f[k]) for k in f.files if k != "meta"}
    model = DigitClassifier(features=int(meta["features"]))
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model, meta


#: data sets of 28x28 MNIST digits the shipped classifier reads, and the value of a white pixel
#: in their units (samples and test images are divided by it): ``mnist`` holds raw pixel values
#: 0..255 (flowforge's image loaders leave dequantization and scaling to the model, whose
#: samples come back in the same units), ``binarized_mnist`` binary pixels (its models' samples
#: are Bernoulli means in [0, 1] or binary draws)
DIGIT_IMAGE_DATA: dict[str, float] = {"mnist": 255.0, "binarized_mnist": 1.0}


def digit_images(x: Tensor, data: str) -> Tensor:
    """Samples or test points of the digit data set ``data`` as the classifier's input: images
    ``(n, 1, 28, 28)`` in ``[0, 1]`` (divided by :data:`DIGIT_IMAGE_DATA` ``[data]``, then
    clamped, since a flow's samples may stray a little outside the pixel range)."""
    if data not in DIGIT_IMAGE_DATA:
        raise ValueError(
            f"no digit classifier for data set {data!r}; one of {list(DIGIT_IMAGE_DATA)}"
        )
    x = x.detach().float().cpu()
    if x[0].numel() != 28 * 28:
        raise ValueError(f"digit images are 28x28, got points of {x[0].numel()} values")
    return (x.reshape(len(x), 1, 28, 28) / DIGIT_IMAGE_DATA[data]).clamp(0, 1)


@torch.no_grad()
def digit_quality(
    samples: Tensor, reference: Tensor, data: str, batch_size: int = 1000
) -> dict[str, Any]:
    """The image measures of samples of an MNIST data set (:data:`DIGIT_IMAGE_DATA`), both in
    the shipped classifier's terms (:func:`load_digit_classifier`): ``fd``, the Fréchet
    distance between the penultimate-layer features of ``samples`` and ``reference``
    (:func:`frechet_distance`), and the samples' class coverage (:func:`class_coverage`) as
    ``classes_classes``, ``classes_covered``, ``classes_coverage``, ``classes_largest_share``,
    ``classes_entropy``, ``classes_confidence`` and ``classes_counts``."""
    model, _ = load_digit_classifier()

    def features(x: Tensor) -> Tensor:
        images = digit_images(x, data)
        return torch.cat([model.features(b) for b in images.split(batch_size)])

    f_samples, f_reference = features(samples), features(reference)
    probabilities = torch.softmax(model.head(f_samples), 1)
    coverage = asdict(class_coverage(probabilities))
    return {
        "fd": frechet_distance(f_samples, f_reference),
        **{f"classes_{k}": v for k, v in coverage.items()},
    }
