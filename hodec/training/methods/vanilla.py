"""Vanilla training: the loss is the data objective (MSE, or -llh per cell with noise models) of the model's own
(uncoupled) simulation."""
from __future__ import annotations

from .base import Method, uncoupled_loss


class Vanilla(Method):
    name = "vanilla"

    def loss(self, lam: float):
        return uncoupled_loss(self.problem)
