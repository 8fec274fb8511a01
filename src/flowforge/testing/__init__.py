"""The conformance kit: independent checks that any transform or flow must pass, public for
users writing their own transforms and the backbone of flowforge's own test suite.

- :mod:`flowforge.testing.conformance`: the checks (round trip, log-determinant against the
  brute-force Jacobian, gradients, ``state_dict``, a 2-D flow's normalisation and sampling);
- :mod:`flowforge.testing.registry`: the cases (every transform and recipe with inputs in its
  domain), defined in :mod:`flowforge.testing.cases`, one module per family;
- :mod:`flowforge.testing.stress`: every case under hard parameters, large inputs and low
  precision, with the Jacobian's conditioning.

The checks are re-exported here.
"""

from flowforge.testing.conformance import (
    CheckResult,
    assert_conforms,
    brute_force_ladj,
    check_flow_2d,
    check_transform,
    perturb_parameters,
)

__all__ = [
    "CheckResult",
    "assert_conforms",
    "brute_force_ladj",
    "check_flow_2d",
    "check_transform",
    "perturb_parameters",
]
