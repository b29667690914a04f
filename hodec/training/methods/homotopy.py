"""Homotopy training (Ko, Koh, Park & Jhe, "Homotopy-based training of NeuralODEs for accurate dynamics discovery",
NeurIPS 2023): the generated field gets -lambda k J+ (h(u) - yhat(t)) for every fitted column with k > 0 (see
runtime.coupling), yhat a cubic smoothing spline of the column per trajectory, and lambda steps down from 1 to 0
over `steps` plateaus of `epochs_per_step` epochs. A trajectory with fewer than two values in a column is not
coupled in that column. During lambda > 0 the uncoupled evaluation may fail (an untrained model often diverges on
its own): that epoch's MSE is missing and cannot be the best.

The coupled solves run parallel in time (solvers.parallel, class InTime) where they can: every data interval (in
SPLIT pieces) of every trajectory one member of one batched solve, the states at the nodes found by Newton's method
from the last epoch's; the first solve of a group, and any that does not converge, is the sequential solve."""
from __future__ import annotations

from typing import Optional

import torch

from ... import solvers
from ...errors import HodecError
from ...runtime.coupling import Coupling
from ...solvers.parallel import shoot
from ..groups import Group
from ..problem import Problem
from ..reference import GridCubic
from ..result import FitError
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
        self.in_time = [InTime(problem, g, c) if c is not None and config.parallel_in_time and
                        InTime.applies(problem, g) else None for g, c in zip(problem.groups, self.couplings)]

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
        return self.problem.loss(self.problem.model, "coupled", couplings=self.couplings, lam=lam,
                                 states=lambda k, y0: self._states(k, y0, lam)), None

    def _states(self, k: int, y0: torch.Tensor, lam: float) -> torch.Tensor:
        p, g, in_time = self.problem, self.problem.groups[k], self.in_time[k]
        if in_time is None:
            return p.solve(p.model, g, y0, g.t, "coupled", self.couplings[k], lam)
        return in_time.states(y0, lam)


# Nodes per data interval: a solve costs the steps of its hardest interval, and halving every interval cut the epoch
# by ~25 % on LV black-box and ~45 % on Dandekar at lambda = 1 (4 no better than 2; measured, same Newton iterations).
SPLIT = 2


class InTime:
    """One group's coupled solves parallel in time (solvers.parallel.shoot): member i * B + b of one batched solve
    is trajectory b's interval [t_i, t_(i+1)] between nodes (the data times and SPLIT - 1 equally spaced times
    within each data interval), Newton's method finds the states at the nodes, starting
    from the last solve's (the parameters moved by one optimizer step since: a guess a few Newton steps away).
    Without a last solve, or when Newton does not converge or a member fails, the sequential solve (the method's
    definition, its steps also stopping at the nodes between data times) gives the states and the next guess.
    counts: solves of each kind, and the flow evaluations (Newton iterations)."""

    def __init__(self, problem: Problem, g: Group, coupling: Coupling, split: int = SPLIT):
        fractions = torch.arange(split, dtype=g.t.dtype) / split
        self.grid = torch.cat([(g.t[:-1, None] + fractions * (g.t[1:] - g.t[:-1])[:, None]).reshape(-1), g.t[-1:]])
        self.rows = torch.arange(0, len(self.grid), split)  # the data times' nodes
        K, B = len(self.grid) - 1, g.size
        self.problem, self.group, self.shape = problem, g, (K, B, len(problem.model.state_names))
        self.sequential = coupling
        self.coupling = Coupling(problem.model, coupling.targets, coupling.reference.tiled(K),
                                 coupling.gain.repeat(K, 1))
        self.ts = torch.stack([self.grid[:-1], self.grid[1:]])[:, :, None].expand(2, K, B).reshape(2, K * B)
        self.nodes: Optional[torch.Tensor] = None  # [K + 1, B, n] the last solve's states, detached
        self.counts = dict(parallel=0, sequential=0, fallback=0, evaluations=0)

    @staticmethod
    def applies(problem: Problem, g: Group) -> bool:
        """Whether a group's coupled solve can run parallel in time: hodec's own solvers (per-member grids) without
        compile (the Jacobians' batched backward through a compiled step is untried), at least two data intervals,
        and nothing that differs between the trajectories other than their states (inputs, doses, events,
        conditions, per-sample params would need tiling too)."""
        model, solver = problem.model, problem.solver
        return (solver["method"] in solvers.NAMES and not solver.get("compile") and len(g.t) > 2 and not g.inputs
                and g.doses is None and not model.events_table and not problem.conditions.active
                and model.state_batch(()) == ())

    def states(self, y0: torch.Tensor, lam: float) -> torch.Tensor:
        """The coupled states at the data times [T, B, n] from y0 [B, n]."""
        p, g = self.problem, self.group
        if self.nodes is None:
            self.counts["sequential"] += 1
        else:
            states = self._parallel(y0, lam)
            if states is not None:
                return states
            self.counts["fallback"] += 1
        ys = p.solve(p.model, g, y0, self.grid, "coupled", self.sequential, lam)
        self.nodes = ys.detach()
        return ys[self.rows]

    def _parallel(self, y0: torch.Tensor, lam: float) -> Optional[torch.Tensor]:
        """The states by Newton's method from the last solve's; None where it does not converge or a member's
        solve fails (from its guess: the sequential solve says whether the model does)."""
        p = self.problem
        try:
            shot = shoot(self._flow(lam), y0, self.nodes, p.solver["rtol"], p.solver["atol"])
        except FitError:
            return None
        self.counts["evaluations"] += shot.iterations
        if not shot.converged:
            return None
        self.counts["parallel"] += 1
        self.nodes = shot.nodes
        return shot.states[self.rows]

    def _flow(self, lam: float):
        p, g, (K, B, n) = self.problem, self.group, self.shape

        def flow(starts: torch.Tensor) -> torch.Tensor:  # [K, B, n] -> [K, B, n]
            ys = p.solve(p.model, g, starts.reshape(K * B, n), self.ts, "coupled (parallel in time)", self.coupling,
                         lam)
            return ys[-1].reshape(K, B, n)
        return flow

