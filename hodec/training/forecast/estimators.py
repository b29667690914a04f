"""The state estimators by name (FIT.yaml forecast.estimator): learned encoders (encoders.py) and filters
(filters.py)."""
from __future__ import annotations

from ...errors import HodecError
from .base import Estimator
from .encoders import ENCODERS
from .filters import FILTERS
from .pool import pooled_states

ESTIMATORS: dict = {**ENCODERS, **FILTERS}  # name -> class(problem, options)


def make_estimator(problem, options) -> Estimator:
    """The estimator options.estimator names (options: the ForecastConfig), in the problem's dtype."""
    if options.estimator not in ESTIMATORS:
        raise HodecError(f"forecast.estimator: {options.estimator} is not available (available: "
                         f"{', '.join(ESTIMATORS)})", "fit config")
    pooled_states(problem.model, options)  # forecast.pool_states names states of the model
    if options.anchor and options.estimator not in ENCODERS:
        raise HodecError(f"forecast.anchor: only the encoders ({', '.join(ENCODERS)}) take it; {options.estimator} "
                         "weighs the last sample by its noise", "fit config")
    return ESTIMATORS[options.estimator](problem, options).to(problem.dtype)


__all__ = ["ESTIMATORS", "Estimator", "make_estimator"]
