"""Probabilistic forecasts of a multivariate series by a conditional flow (Rasul et al. 2021):
ancestral forecast paths (:mod:`~flowforge.forecast.paths`), the CRPS and CRPS-sum
(:mod:`~flowforge.forecast.crps`), the Gaussian VAR baseline (:mod:`~flowforge.forecast.var`)
and the paired comparison of a run's summary (:mod:`~flowforge.forecast.compare`). The data
are :mod:`flowforge.data.series`'s (window, next value) pairs; see ``docs/flows-over-time.md``.
"""

from flowforge.forecast.compare import forecast_comparison
from flowforge.forecast.crps import crps_gaussian, crps_samples
from flowforge.forecast.paths import sample_paths, window_of
from flowforge.forecast.var import GaussianVAR, fit_var, select_var

__all__ = [
    "GaussianVAR",
    "crps_gaussian",
    "crps_samples",
    "fit_var",
    "forecast_comparison",
    "sample_paths",
    "select_var",
    "window_of",
]
