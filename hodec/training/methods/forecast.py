"""Forecast training: the data cut into windows (forecast/windows.py), each window's state at its origin estimated
from its history by the estimator (forecast.estimator: an encoder trained with the model, or a filter), the model
run from there over the window's horizon, all windows in one batched solve per group; the loss is the data objective
(the squared error, or -llh per cell with noise models: Problem.cell_losses) averaged over the horizon cells of all
windows, plus the priors' term. It is also the epoch's evaluation (the best epoch's), so the best model and the
best estimator are those of one epoch: the estimator's weights are kept with the model's best state (snapshot,
keep_best) and are Method.state()["estimator"]; "estimator_last" holds the last epoch's for --resume."""
from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch

from ..forecast import make_estimator, make_windows
from ..forecast.params import applied
from ..forecast.predict import horizon_states, inferred, window_groups
from ..result import FitError
from .base import Method


class Forecast(Method):
    name = "forecast"
    shardable = False  # windows of a trajectory may sit in other shards' groups: not shared out (yet)
    evaluated_by = "forecast"  # on other data: its windows' horizons, forecast by the carried estimator

    def __init__(self, problem, config):
        super().__init__(problem, config)
        self.options = config.forecast_options
        self.windows = make_windows(problem, history=self.options.history, horizon=self.options.horizon,
                                    stride=self.options.stride, pool=self.options.pool)
        self.groups = window_groups(problem, self.windows)
        self.estimator = make_estimator(problem, self.options)
        self.estimator.setup(problem, self.windows)
        self.best = None  # the estimator's state_dict at the best epoch
        self.active = None  # with forecast.batch, the step's (windows, their groups): steps()

    def parameters(self) -> list:
        return [p for p in self.estimator.parameters() if p.requires_grad]

    def steps(self, epoch: int):
        """forecast.batch: the epoch's steps, each on one minibatch of a random partition of the windows (seeded by
        the seed and the epoch, so a resumed run draws the same); else one step on every window."""
        batch = self.options.batch
        if batch is None or batch >= self.windows.size:
            yield
            return
        try:
            for index in self._minibatches(batch, torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)):
                windows = self.windows.select(index)
                self.active = (windows, window_groups(self.problem, windows))
                yield
        finally:
            self.active = None

    def _minibatches(self, batch: int, draw: torch.Generator) -> list:
        """Window indices per step: `batch` windows at random; with forecast.pool whole trajectories at random, about
        `batch` windows a step (a window's pool reads its trajectory's earlier histories: a step over a few
        trajectories encodes a few trajectories' histories, random windows would encode nearly all of them)."""
        if self.windows.pool is None:
            return list(torch.randperm(self.windows.size, generator=draw).split(batch))
        owner = self.windows.trajectory
        days = owner.unique()
        steps, current = [], []
        for i in days[torch.randperm(len(days), generator=draw)].tolist():
            current.append((owner == i).nonzero().squeeze(1))
            if sum(len(c) for c in current) >= batch:
                steps.append(torch.cat(current))
                current = []
        return steps + ([torch.cat(current)] if current else [])

    def cell_losses(self, model, phase: str, check: bool = True, squared: bool = False, part=None) -> list:
        """Per window group: (its windows' indices, the loss of each horizon cell [1 + Tf, W', m], 0 where
        masked), of every window or of part = (windows, their groups)."""
        p = self.problem
        windows, groups = part or (self.windows, self.groups)
        y0, tables = inferred(p, model, self.estimator, windows, groups)
        out = []
        for (index, g), table, ys in zip(groups, tables, horizon_states(p, model, y0, groups, tables, phase, check)):
            with applied(model, table):
                out.append((index, p.cell_losses(model, g, ys, g.t, phase, check=check, squared=squared)))
        return out

    def objective(self, model, phase: str, check: bool = True, part=None) -> torch.Tensor:
        """The mean loss over the horizon cells of every window (or of part's), plus the priors' term."""
        total = sum(cells.sum() for _, cells in self.cell_losses(model, phase, check, part=part))
        windows = (part or (self.windows,))[0]
        return total / int(windows.horizon_mask.sum()) + self.problem.prior_term(model)

    def loss(self, lam: float):
        """The objective of the step's windows; with minibatches not the epoch's MSE (None: the loop evaluates)."""
        loss = self.objective(self.problem.model, "forecast", part=self.active)
        return loss, None if self.active else float(loss.detach())

    @torch.no_grad()
    def evaluate(self, model) -> float:
        try:
            value = float(self.objective(model, "forecast evaluation", check=False))
        except FitError:
            return math.inf
        return value if math.isfinite(value) else math.inf

    @torch.no_grad()
    def trajectory_errors(self, model):
        """The horizon cells' squared errors summed per trajectory (over its windows) and their count per trajectory
        (numpy arrays in the data's trajectory order); None if a simulation fails."""
        n = len(self.problem.data.trajectories)
        sse, cells = np.zeros(n), np.zeros(n)
        try:
            parts = self.cell_losses(model, "forecast evaluation", check=False, squared=True)
        except FitError:
            return None
        owner = self.windows.trajectory.numpy()
        for index, sq in parts:
            np.add.at(sse, owner[index.numpy()], sq.sum(dim=(0, 2)).double().numpy())
        np.add.at(cells, owner, self.windows.horizon_mask.sum(dim=(0, 2)).numpy())
        return sse, cells

    def snapshot(self):
        return {k: v.detach().clone() for k, v in self.estimator.state_dict().items()}

    def keep_best(self, snapshot):
        self.best = snapshot

    def carry(self, best: bool = False):
        """The estimator (its best epoch's with best) and the model's state names its state rows are for."""
        state = self.best if best and self.best is not None else self.snapshot()
        return {"state": state, "states": tuple(self.problem.model.state_names)}

    def take(self, carried):
        if carried is not None:
            self.estimator.transfer(carried["state"], carried["states"], tuple(self.problem.model.state_names))

    def state(self) -> dict:
        options = asdict(self.options)
        return {"estimator": {"options": options, "state": self.best if self.best is not None else self.snapshot()},
                "estimator_last": {"options": options, "state": self.snapshot()}}

    def restore(self, state: dict):
        last = state.get("estimator_last")
        if last is not None:
            self.estimator.load_state_dict(last["state"])
        self.best = (state.get("estimator") or {}).get("state")
