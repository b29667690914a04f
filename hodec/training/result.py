"""What a training run gives back: FitResult, and FitError when it cannot go on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import HodecError
from .config import FitConfig


class FitError(HodecError):
    """Training could not go on: non-finite values or a solver failure, with where it came from. When raised
    by hodec.fit after some epochs, `partial` holds the FitResult of the best epoch before the failure."""

    def __init__(self, message: str, filename: str = "hodec fit"):
        super().__init__(message, filename)
        self.partial: Optional[FitResult] = None


@dataclass
class FitResult:
    model: torch.nn.Module  # the best model (uncoupled), a copy
    method: str
    best_epoch: int
    best_mse: float
    params: dict  # every trainable spec param at the best epoch
    history: list  # per epoch: epoch, lam, loss, mse, seconds, elapsed
    metrics: dict  # includes "initial": per state, where its initial value came from (data | spec (trains p) | spec)
    status: str  # complete | interrupted
    config: FitConfig
    # with noise models: llh, aic, bic, n_params, n_cells, standard_errors (information.py); None without them, or
    # for a partial result
    likelihood: Optional[dict] = None
