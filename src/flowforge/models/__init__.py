"""Paper recipes: functions that assemble transforms into flows, with the papers' defaults."""

from flowforge.models.nice import nice
from flowforge.models.realnvp import realnvp

__all__ = ["nice", "realnvp"]
