"""Explicit Runge–Kutta methods with an embedded error estimate (tsit5, dopri5): any ExplicitTableau.

Each stage combination is one matmul over the stacked stages ([B, n, i] @ [i]), so a step costs the same number
of tensor operations whatever the size of the batch. First-same-as-last: the last stage is f(t + h, y1) and starts
the next step. Stiffness is estimated as Hairer does for DOPRI5 (Hairer & Wanner II, IV.2): the last two stages are
both at t + h, so h·‖k_s − k_(s−1)‖ / ‖y_s − y_(s−1)‖ approximates h·|λ| of the dominant eigenvalue.
"""
from __future__ import annotations

import torch

from .base import Method, Step, combine
from .tableaus import ExplicitTableau


class ExplicitRK(Method):
    stiff = False

    def __init__(self, tableau: ExplicitTableau):
        assert tableau.fsal and tableau.c[-1] == tableau.c[-2] == 1.0
        super().__init__(tableau)
        self.stiff_above = tableau.stiff_above

    def _tables(self, as_tensor) -> dict:
        tab = self.tableau
        return dict(a=[as_tensor(row) for row in tab.a], e=as_tensor(tab.e), dense=as_tensor(tab.dense))

    def step(self, problem, t, y, h, cache) -> Step:
        k, tab = self._tensors(y), self.tableau
        hh = h[:, None]
        stages = [cache]
        inputs = [y]
        for c, a, weights in zip(tab.c, tab.a, k["a"]):
            yi = y + hh * combine(stages, a, weights)
            inputs.append(yi)
            stages.append(problem.f(t + c * h, yi))
        error = hh * combine(stages, tab.e, k["e"])
        y1 = inputs[-1]
        dk = (stages[-1] - stages[-2]).norm(dim=-1)
        dy = (inputs[-1] - inputs[-2]).norm(dim=-1)
        stiffness = h * dk / torch.where(dy > 0, dy, torch.ones_like(dy))
        return Step(y1, error, tuple(stages), stages[-1], stiffness)

    def after(self, cache, step: Step, accepted):
        return torch.where(accepted[:, None], step.f1, cache)

    def interpolate(self, t, h, y, step: Step, theta):
        dense = self._tensors(y)["dense"]  # [s, d]
        powers = torch.stack([theta ** (d + 1) for d in range(dense.shape[1])], -1)  # [B, d]
        weights = powers @ dense.T  # [B, s]
        if torch.compiler.is_compiling():
            combined = sum(weights[:, i, None] * k for i, k in enumerate(step.dense))
        else:
            combined = (torch.stack(step.dense, -1) @ weights[:, :, None]).squeeze(-1)
        return y + h[:, None] * combined
