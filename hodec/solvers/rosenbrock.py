"""Rosenbrock methods (rodas5p, rodas4, ros34pw2): linearly implicit, L-stable, for stiff problems.

A step evaluates the Jacobian J once (problem.jacobian: the generated symbolic one, else autodiff of f), factorises
I/(hγ) − J once per member (one batched LU, each member with its own h) and reuses the factors for every stage, so
it never iterates a nonlinear solve. ∂f/∂t comes from problem.time_derivative (skipped for autonomous problems).
Every operation is differentiable (lu_factor and lu_solve included) and nothing is updated in place, so gradients
can flow back through the steps. Stage combinations go through base.combine, as in explicit.py.
"""
from __future__ import annotations

import torch

from .base import Method, Step, combine
from .rosenbrock_tableaus import RODAS4, RODAS5P, ROS34PW2


class Rosenbrock(Method):
    stiff = True

    def _tables(self, as_tensor) -> dict:
        tab = self.tableau
        return dict(a=[as_tensor(row) for row in tab.a], C=[as_tensor(row) for row in tab.C], b=as_tensor(tab.b),
                    e=as_tensor(tab.e), H=[as_tensor(row) for row in tab.H])

    def after(self, cache, step: Step, accepted):
        return None  # f(t, y) came with the first step only; later steps evaluate their own (none is f(t + h, y1))

    def step(self, problem, t, y, h, cache) -> Step:
        # A member already at its end (h = 0) stays where it is; its stages are computed with a tiny h instead, so
        # they stay finite (stages near f(t, y)) and cannot turn its zero gradient into NaN in the backward pass.
        zero = h == 0
        h = torch.where(zero, torch.finfo(y.dtype).eps ** 0.5 * t.abs().clamp(min=1), h)
        tab, k = self.tableau, self._tensors(y)
        eye = torch.eye(y.shape[-1], dtype=y.dtype, device=y.device)
        matrix = eye / (tab.gamma * h)[:, None, None] - problem.jacobian(t, y)
        lu, pivots, _ = torch.linalg.lu_factor_ex(matrix)  # a singular matrix gives non-finite stages: rejected
        f_t = None if problem.autonomous else problem.time_derivative(t, y)
        inv_h = (1 / h)[:, None]
        stages: list = []
        for i, d in enumerate(tab.d):
            if i == 0:
                rhs = problem.f(t, y) if cache is None else cache
            else:
                rhs = problem.f(t + tab.c[i - 1] * h, y + combine(stages, tab.a[i - 1], k["a"][i - 1]))
                rhs = rhs + inv_h * combine(stages, tab.C[i - 1], k["C"][i - 1])
            if f_t is not None and d != 0.0:
                rhs = rhs + (d * h)[:, None] * f_t
            stages.append(torch.linalg.lu_solve(lu, pivots, rhs[..., None])[..., 0])
        stages = [torch.where(zero[:, None], 0.0, stage) for stage in stages]
        dense = tuple(combine(stages, row, weights) for row, weights in zip(tab.H, k["H"]))
        return Step(y + combine(stages, tab.b, k["b"]), combine(stages, tab.e, k["e"]), dense)

    def interpolate(self, t, h, y, step: Step, theta):
        """Rodas' own dense output: (1 − θ) y + θ y1 + θ (1 − θ) Σ_m θ^(m−1) D_m (step.dense: D_1, D_2, ...)."""
        theta = theta[:, None]
        correction = step.dense[-1]
        for d in reversed(step.dense[:-1]):  # Horner
            correction = d + theta * correction
        return (1 - theta) * y + theta * (step.y1 + (1 - theta) * correction)


METHODS = {  # solve()'s names
    "rodas5p": lambda: Rosenbrock(RODAS5P),
    "rodas4": lambda: Rosenbrock(RODAS4),
    "ros34pw2": lambda: Rosenbrock(ROS34PW2),
}
