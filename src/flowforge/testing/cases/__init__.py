"""Conformance cases, one module per family; importing this package registers them all."""

import flowforge.testing.cases.autoregressive  # noqa: F401
import flowforge.testing.cases.conditional  # noqa: F401
import flowforge.testing.cases.continuous  # noqa: F401
import flowforge.testing.cases.images  # noqa: F401
import flowforge.testing.cases.planar_radial  # noqa: F401
import flowforge.testing.cases.residual  # noqa: F401
import flowforge.testing.cases.temporal  # noqa: F401
from flowforge.testing.cases import core  # noqa: F401
