"""Data sets and preprocessing. Loaders register in :mod:`flowforge.data.registry`."""

import flowforge.data.binarized_mnist  # noqa: F401  (registers binarized_mnist)
import flowforge.data.files  # noqa: F401  (registers file: the user's own data)
import flowforge.data.known  # noqa: F401  (registers the known-density tasks)
import flowforge.data.moving_mnist  # noqa: F401  (registers moving_mnist: generated video)
import flowforge.data.series  # noqa: F401  (registers series, eu_stocks: forecasting)
import flowforge.data.structured  # noqa: F401  (inpainting, denoising: image contexts)
import flowforge.data.tabular  # noqa: F401  (registers the tabular data sets)
from flowforge.data import images  # noqa: F401  (registers the image data sets)
from flowforge.data.registry import DATASETS, Splits, load_dataset, register_dataset

__all__ = ["DATASETS", "Splits", "load_dataset", "register_dataset"]
