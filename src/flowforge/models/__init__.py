"""Paper recipes: functions that assemble transforms into flows, with the papers' defaults.

:data:`RECIPES` maps the names used in configs (``model.name``) to flow recipes and
:data:`MODELS` adds the other models a run can train (the VAE). A recipe takes the data's
feature count (vectors) or event shape (images) first, then ``context_features`` and its own
keyword options, which configs pass through and validate against its signature.
:func:`build_model` builds one from what a checkpoint stores, so no data is needed.
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from flowforge.flows import Flow
from flowforge.models.cglow import cglow
from flowforge.models.dbm import DBM
from flowforge.models.ffjord import ffjord
from flowforge.models.gan import GAN
from flowforge.models.glow import glow
from flowforge.models.iaf import iaf
from flowforge.models.iresnet import iresnet
from flowforge.models.maf import maf, maf_image
from flowforge.models.nade import NADE
from flowforge.models.nice import nice
from flowforge.models.nice_image import nice_image
from flowforge.models.nsf import nsf
from flowforge.models.pixelcnn import PixelCNN
from flowforge.models.planar_radial import planar, radial
from flowforge.models.rbm import RBM
from flowforge.models.realnvp import realnvp
from flowforge.models.realnvp_image import realnvp_image, realnvp_multiscale
from flowforge.models.resflow import resflow
from flowforge.models.sos import sos
from flowforge.models.vae import VAE
from flowforge.models.videoflow import VideoFlow, videoflow
from flowforge.transforms import Compose, LinearStandardize, Standardize, Transform

RECIPES: dict[str, Callable[..., Flow]] = {
    "nice": nice,
    "realnvp": realnvp,
    "resflow": resflow,
    "iresnet": iresnet,
    "ffjord": ffjord,
    "maf": maf,
    "iaf": iaf,
    "nsf": nsf,
    "sos": sos,
    "planar": planar,
    "radial": radial,
    "nice_image": nice_image,
    "realnvp_image": realnvp_image,
    "maf_image": maf_image,
    "realnvp_multiscale": realnvp_multiscale,
    "glow": glow,
    "cglow": cglow,
    "videoflow": videoflow,
}

#: every model a run can train: the flow recipes, the VAE (``vae(data_dim, latent, ...)``) and
#: the baselines of ``docs/comparison.md``: the GAN's generator and critic (``gan``, trained by
#: the ``gan``, ``wgan`` and ``wgan_gp`` objectives), the RBM (``rbm``, by ``cd``) and NADE
#: (``nade``, by ``likelihood``)
MODELS: dict[str, Callable[..., nn.Module]] = {
    **RECIPES,
    "vae": VAE,
    "gan": GAN,
    "rbm": RBM,
    "dbm": DBM,
    "nade": NADE,
    "pixelcnn": PixelCNN,
}


def build_model(
    name: str,
    options: dict[str, Any],
    event_shape: Sequence[int],
    context_features: int = 0,
    standardize: dict[str, Sequence[float]] | None = None,
) -> nn.Module:
    """Builds model ``name`` for data of ``event_shape`` (``(D,)`` passes ``D``, images pass
    the shape) with ``context_features`` and the recipe's ``options``; ``standardize``
    (``{"loc": [...], "scale": [...]}``) puts a fixed :class:`~flowforge.transforms.Standardize`
    in front of a flow, or a :class:`~flowforge.transforms.LinearStandardize` when ``scale`` is
    a matrix (with ``weight`` for a context). A ``ValueError`` or ``TypeError`` names what the
    recipe refused."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    shape = tuple(int(s) for s in event_shape)
    first = shape[0] if len(shape) == 1 else shape
    kwargs = dict(options)
    if context_features:
        kwargs["context_features"] = int(context_features)
    model = MODELS[name](first, **kwargs)
    if standardize is None:
        return model
    if not isinstance(model, Flow):
        raise ValueError(f"model {name!r} is not a flow: it cannot take a standardisation")
    loc, scale = torch.tensor(standardize["loc"]), torch.tensor(standardize["scale"])
    if scale.dim() >= 2:  # full factors, maybe with context weights: linear-Gaussian
        weight = standardize.get("weight")
        front: Transform = LinearStandardize(
            loc.float(), scale.float(), None if weight is None else torch.tensor(weight).float()
        )
    else:
        front = Standardize(loc, scale)
    return Flow(Compose([front, model.transform]), model.base)


__all__ = [
    "DBM",
    "GAN",
    "MODELS",
    "NADE",
    "PixelCNN",
    "RBM",
    "RECIPES",
    "VAE",
    "VideoFlow",
    "build_model",
    "cglow",
    "ffjord",
    "glow",
    "iaf",
    "iresnet",
    "maf",
    "maf_image",
    "nice",
    "nice_image",
    "nsf",
    "planar",
    "radial",
    "realnvp",
    "realnvp_image",
    "realnvp_multiscale",
    "resflow",
    "sos",
    "videoflow",
]
