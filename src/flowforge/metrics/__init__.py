"""Sample-quality measures for any generative model, likelihood or not.

One module per job, every name re-exported here:

- :mod:`flowforge.metrics.distances`: distances between two point sets (the MMD with its
  standard error, the sliced Wasserstein distance, the Fréchet distance);
- :mod:`flowforge.metrics.coverage`: how many modes of a mixture with known centres
  (8gaussians, 25gaussians) or classes of a classifier the samples cover;
- :mod:`flowforge.metrics.digit_classifier`: the shipped MNIST classifier
  (``mnist_classifier.npz`` beside it, trained by ``scripts/train_mnist_classifier.py``) and
  the Fréchet distance and class coverage it gives for MNIST digits;
- :mod:`flowforge.metrics.quality`: :func:`sample_quality`, every measure that applies to a
  data set's samples.
"""

from flowforge.metrics.coverage import (
    KNOWN_MODES,
    ClassCoverage,
    ModeStatistics,
    class_coverage,
    mode_statistics,
)
from flowforge.metrics.digit_classifier import (
    DIGIT_CLASSIFIER_FILE,
    DIGIT_IMAGE_DATA,
    DigitClassifier,
    digit_images,
    digit_quality,
    load_digit_classifier,
)
from flowforge.metrics.distances import (
    MMD,
    frechet_distance,
    frechet_distance_gaussians,
    median_bandwidth,
    mmd,
    sliced_wasserstein,
)
from flowforge.metrics.quality import sample_quality

__all__ = [
    "DIGIT_CLASSIFIER_FILE",
    "DIGIT_IMAGE_DATA",
    "KNOWN_MODES",
    "MMD",
    "ClassCoverage",
    "DigitClassifier",
    "ModeStatistics",
    "class_coverage",
    "digit_images",
    "digit_quality",
    "frechet_distance",
    "frechet_distance_gaussians",
    "load_digit_classifier",
    "median_bandwidth",
    "mmd",
    "mode_statistics",
    "sample_quality",
    "sliced_wasserstein",
]
