"""Paper recipes: functions that assemble transforms into flows, with the papers' defaults.

:data:`RECIPES` maps the names used in configs (``model.name``) to recipes. A recipe takes the
data's feature count (vectors) or event shape (images) first, then ``context_features`` and
its own keyword options, which configs pass through and validate against its signature.
"""

from collections.abc import Callable

from flowforge.flows import Flow
from flowforge.models.ffjord import ffjord
from flowforge.models.glow import glow
from flowforge.models.iaf import iaf
from flowforge.models.iresnet import iresnet
from flowforge.models.maf import maf
from flowforge.models.nice import nice
from flowforge.models.nice_image import nice_image
from flowforge.models.nsf import nsf
from flowforge.models.planar_radial import planar, radial
from flowforge.models.realnvp import realnvp
from flowforge.models.realnvp_image import realnvp_image, realnvp_multiscale
from flowforge.models.resflow import resflow
from flowforge.models.sos import sos

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
    "realnvp_multiscale": realnvp_multiscale,
    "glow": glow,
}

__all__ = [
    "RECIPES",
    "ffjord",
    "glow",
    "iaf",
    "iresnet",
    "maf",
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
]
