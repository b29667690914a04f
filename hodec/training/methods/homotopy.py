"""Homotopy training (Ko, Koh, Park & Jhe, "Homotopy-based training of NeuralODEs for accurate dynamics discovery",
NeurIPS 2023): the generated field gets -lambda k J+ (h(u) - yhat(t)) for every fitted column with k > 0 (see
runtime.coupling), yhat a cubic smoothing spline of the column per trajectory, and lambda steps down from 1 to 0
over `steps` plateaus of `epochs_per_step` epochs. A trajectory with fewer than two values in a column is not
coupled in that column. During lambda > 0 the uncoupled evaluation may fail (an untrained model often diverges on
its own): that epoch's MSE is missing and cannot be the best."""
from __future__ import annotations

import torch

from ...errors import HodecError
from ...runtime.coupling import Coupling
from ..reference import GridCubic
from ..schedule import homotopy_schedule
from ..spline import SmoothingSpline
from .base import Method, uncoupled_loss


class Homotopy(Method):
    name = "homotopy"
    scheduled = True

    def __init__(self, problem, config):
        super().__init__(problem, config)
        self.schedule = homotopy_schedule(config.steps, config.kappa)
        coupled = [c for c, k in enumerate(problem.gains) if k > 0]
        if not coupled:
            raise HodecError("method homotopy needs a coupling gain k > 0 for at least one fitted column", "fit config")
        self.couplings = [self._coupling(g, coupled) for g in problem.groups]  # None: a group of one time point

    def _coupling(self, g, coupled: list):
        p = self.problem
        if g.y.shape[0] < 2:
            return None
        y = g.y[:, :, coupled].clone()
        mask = g.mask[:, :, coupled].clone()
        gain = torch.tensor([p.gains[c] for c in coupled], dtype=p.dtype).expand(g.size, -1).clone()
        few = mask.sum(0) < 2  # [B, m']: cannot be splined: not coupled there
        if few.any():
            gain[few] = 0
            y[:, few] = 0
            mask[:2, few] = True
        alpha = torch.tensor([p.alphas[c] for c in coupled], dtype=p.dtype)
        spline = SmoothingSpline(g.t, torch.where(mask, y, torch.nan), alpha, mask)
        return Coupling(p.model, [p.columns[c] for c in coupled], GridCubic(spline, g.t), gain)

    def lam_at(self, epoch: int) -> float:
        return self.schedule[min((epoch - 1) // self.config.epochs_per_step, len(self.schedule) - 1)]

    def loss(self, lam: float):
        if lam == 0:
            return uncoupled_loss(self.problem)
        return self.problem.loss(self.problem.model, "coupled", couplings=self.couplings, lam=lam), None
