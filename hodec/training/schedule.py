"""Homotopy parameter schedule of Ko et al. (NeurIPS 2023).

Training blends the data-driven smoothing spline into the model's own dynamics
through lambda, stepping down from 1 to 0 over `steps` plateaus. The drops
follow a geometric (power-law) profile: plateau k has

    lambda_k = sum_{j=k}^{steps-2} kappa**j / sum_{j=0}^{steps-2} kappa**j,

so the decrement after plateau j is kappa**j / sum_i kappa**i. kappa < 1 takes
large steps first and refines near lambda = 0, where training is hardest.
"""
from __future__ import annotations

import math

__all__ = ["homotopy_schedule"]


def homotopy_schedule(steps: int, kappa: float = 0.6) -> list[float]:
    """lambda for each of `steps` plateaus: starts at 1.0, ends at exactly 0.0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    if not (math.isfinite(kappa) and kappa > 0):
        raise ValueError(f"kappa must be finite and > 0, got {kappa!r}")
    weights = [kappa**j for j in range(steps - 1)]
    total = math.fsum(weights)
    # tail sums make lambda_0 = total/total == 1.0 and the last plateau exactly 0.0
    return [math.fsum(weights[k:]) / total for k in range(steps)]
