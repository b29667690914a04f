"""Forecasts: the model run from each window's estimated state at its origin over its horizon."""
from __future__ import annotations

import torch

from .base import Estimator
from .windows import Windows


def forecast(model, estimator: Estimator, windows: Windows, problem) -> torch.Tensor:
    """[Tf, W, m]: the predictions of the fitted columns at windows.horizon_t."""
    raise NotImplementedError
