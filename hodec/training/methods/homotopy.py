"""Homotopy training (Ko, Koh, Park & Jhe, "Homotopy-based training of NeuralODEs for accurate dynamics discovery",
NeurIPS 2023): the generated field gets -lambda k J+ (h(u) - yhat(t)) for every fitted column with k > 0 (see
runtime.coupling), yhat a cubic smoothing spline of the column per trajectory, and lambda steps down from 1 to 0
over `steps` plateaus of `epochs_per_step` epochs. A trajectory with fewer than two values in a column is not
coupled in that column. During lambda > 0 the uncoupled evaluation may fail (an untrained model often diverges on
its own): that epoch's MSE is missing and cannot be the best.

The coupled solves run parallel in time (solvers.parallel, class InTime) where they can: every data interval (in
SPLIT pieces) of every trajectory one member of one batched solve, the states at the nodes found by Newton's method
from the last two epochs' (extrapolated); the first solve of a group, and any that does not converge, is the
sequential solve. The data intervals whose pieces take many steps are cut finer as training goes (InTime._refine)."""
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


# Nodes per data interval at the start: a solve costs the steps of its hardest interval (halving every interval cut
# the epoch by ~25 % on LV black-box and ~45 % on Dandekar at lambda = 1, measured).
SPLIT = 2
# Then a data interval whose piece took more than TARGET_STEPS accepted steps in the last solve is halved again (up to
# MAX_SPLIT pieces): the batch steps until its hardest member is done, and extra members cost little next to steps.
# Dandekar at lambda = 1 (its members take 4-13 steps at split 2; ~3 is a member's floor): median epoch over 25 epochs
# 2.6x a vanilla one without refinement, 1.3x with TARGET_STEPS 3 (472 members), 1.5-1.7x with 4 (360), 1.5x with 2
# (736). Only where the tolerance is at least RESOLVED machine epsilons: below, the controller steers by rounding and
# a member's step count says nothing about its interval (LV black-box, float32 at rtol 1e-7 ~ 1 eps: its members
# took 3-8 steps at random, refining grew the batch to 350 members and Newton then stalled at the rounding level,
# 8 fallbacks to the sequential solve in 60 epochs against 1, 3.8x a vanilla epoch against 1.9x; measured).
# MAX_MEMBERS bounds the batch (the Jacobians' backward holds n rows of every member's steps).
TARGET_STEPS = 3
RESOLVED = 1000
MAX_SPLIT = 16
MAX_MEMBERS = 8192


class InTime:
    """One group's coupled solves parallel in time (solvers.parallel.shoot): member i * B + b of one batched solve
    is trajectory b's interval [t_i, t_(i+1)] between nodes (the data times and equally spaced times within each
    data interval: `splits` pieces each, refined where a piece is hard, see TARGET_STEPS), Newton's method finds the
    states at the nodes, starting from the last two solves' extrapolated (the parameters moved by one optimizer step
    since: a guess a few Newton steps away). Without a last solve, or when Newton does not converge or a member
    fails, the sequential solve (the method's definition, its steps also stopping at the nodes between data times)
    gives the states and the next guess. counts: solves of each kind, the flow evaluations (Newton iterations) and
    the refinements."""

    def __init__(self, problem: Problem, g: Group, coupling: Coupling, split: int = SPLIT):
        self.problem, self.group, self.sequential = problem, g, coupling
        self.splits = torch.full((len(g.t) - 1,), split)
        self._lay_nodes()
        self.nodes: Optional[torch.Tensor] = None  # [K + 1, B, n] the last solve's states, detached
        self.previous: Optional[torch.Tensor] = None  # the solve's before, on the same nodes and lambda (else None)
        self.lam: Optional[float] = None  # the last solve's lambda
        self.accepted: Optional[torch.Tensor] = None  # [K, B] each member's accepted steps in the last flow
        self.counts = dict(parallel=0, sequential=0, fallback=0, evaluations=0, refinements=0)

    def _lay_nodes(self):
        """The grid of nodes from `splits`, and what depends on it: the data times' rows, the members' time spans,
        their coupling (each member reads its own trajectory's spline)."""
        g = self.group
        pieces = [g.t[j] + torch.arange(s, dtype=g.t.dtype) / s * (g.t[j + 1] - g.t[j])
                  for j, s in enumerate(self.splits.tolist())]
        self.grid = torch.cat([*pieces, g.t[-1:]])
        self.rows = torch.cat([torch.zeros(1, dtype=torch.long), self.splits.cumsum(0)])  # the data times' nodes
        K, B = len(self.grid) - 1, g.size
        self.shape = (K, B, len(self.problem.model.state_names))
        self.owner = torch.repeat_interleave(torch.arange(len(self.splits)), self.splits)  # [K] each piece's interval
        self.coupling = self._tiled(torch.arange(K))
        self.ts = torch.stack([self.grid[:-1], self.grid[1:]])[:, :, None].expand(2, K, B).reshape(2, K * B)

    def _tiled(self, pieces: torch.Tensor) -> Coupling:
        """The coupling of a solve of len(pieces) x B members, member i * B + b reading trajectory b's spline on the
        data interval of piece pieces[i]."""
        c = self.sequential
        return Coupling(self.problem.model, c.targets, c.reference.confined(self.owner[pieces]),
                        c.gain.repeat(len(pieces), 1))

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
        self.nodes, self.previous, self.lam = ys.detach(), None, lam
        return ys[self.rows]

    def _parallel(self, y0: torch.Tensor, lam: float) -> Optional[torch.Tensor]:
        """The states by Newton's method from the last solve's, extrapolated (see guess); None where it does not
        converge or a member's solve fails (the sequential solve then says whether the model does)."""
        p = self.problem
        try:
            shot = shoot(self._flow(lam), y0, self.guess(lam), p.solver["rtol"], p.solver["atol"])
        except FitError:
            return None
        self.counts["evaluations"] += shot.iterations
        if not shot.converged:
            return None
        self.counts["parallel"] += 1
        self.nodes, self.previous = shot.nodes, self.nodes if lam == self.lam else None
        self.lam = lam
        states = shot.states[self.rows]
        self._refine(lam)
        return states

    def guess(self, lam: float) -> torch.Tensor:
        """The nodes' states extrapolated linearly from the last two solves (on the same nodes, at this lambda):
        successive AdamW steps are alike (momentum), so the states move alike too; a step of lambda moves them
        otherwise. Newton iterations per solve over 40 epochs: LV black-box 2.6 -> 2.2 at lambda = 1, 2.9 -> 2.0 at
        0.306 (the epoch 1.48x -> 1.12x a vanilla one); Dandekar 3.5 -> 3.4 (measured)."""
        if self.previous is None or lam != self.lam:
            return self.nodes
        return 2 * self.nodes - self.previous

    def _flow(self, lam: float):
        p, g, (K, B, n) = self.problem, self.group, self.shape

        def flow(starts: torch.Tensor) -> torch.Tensor:  # [K, B, n] -> [K, B, n]
            stats: dict = {}
            ys = p.solve(p.model, g, starts.reshape(K * B, n), self.ts, "coupled (parallel in time)", self.coupling,
                         lam, stats=stats)
            self.accepted = torch.tensor(stats["accepted_each"]).reshape(K, B)
            return ys[-1].reshape(K, B, n)
        return flow

    @torch.no_grad()
    def _refine(self, lam: float):
        """Halve every piece of the data intervals whose hardest piece took more than TARGET_STEPS in the last flow
        (within MAX_SPLIT and MAX_MEMBERS, and where the tolerance is resolved, see RESOLVED); the new nodes' states
        by one solve of the halved pieces from their converged starts, with the midpoint as an extra output (a guess
        as good as the converged nodes)."""
        K, B, n = self.shape
        if self.problem.solver["rtol"] < RESOLVED * torch.finfo(self.nodes.dtype).eps:
            return
        hard = torch.zeros(len(self.splits), dtype=torch.bool)
        hard[self.owner[self.accepted.amax(1) > TARGET_STEPS]] = True
        hard &= self.splits < MAX_SPLIT
        halved = hard[self.owner]  # [K] the pieces to halve
        if not halved.any() or (K + int(halved.sum())) * B > MAX_MEMBERS:
            return
        old_grid, old_nodes = self.grid, self.nodes
        self.splits = torch.where(hard, 2 * self.splits, self.splits)
        self._lay_nodes()
        present = torch.stack([torch.ones_like(halved), halved], 1).reshape(-1)  # [2K]: (start, midpoint) per piece
        at = (present.cumsum(0) - 1).reshape(K, 2)  # where each start and midpoint lands in the new grid
        mids = at[halved, 1]
        k = len(mids)
        ts = torch.stack([old_grid[:-1][halved], self.grid[mids], old_grid[1:][halved]])[:, :, None].expand(3, k, B)
        coupling = self._tiled(at[halved, 0])  # the halved pieces' first halves: their intervals
        p = self.problem
        ys = p.solve(p.model, self.group, old_nodes[:-1][halved].reshape(k * B, n), ts.reshape(3, k * B),
                     "coupled (parallel in time)", coupling, lam)
        nodes = old_nodes.new_empty(len(self.grid), B, n)
        nodes[at[:, 0]] = old_nodes[:-1]
        nodes[mids] = ys[1].reshape(k, B, n)
        nodes[-1] = old_nodes[-1]
        self.nodes, self.previous = nodes, None
        self.counts["refinements"] += 1
