"""Forecasts: the model run from each window's estimated state at its origin over its horizon, in one batched solve
per group of the problem (its trajectories share one input grid): the windows are the batch members, each with its
own time grid ts [1 + Tf, W] (the origin, then the horizon times), so inputs, t-dependent terms and each
trajectory's own param values (data columns, conditions) are those of its absolute times."""
from __future__ import annotations

import torch

from ...errors import HodecError
from ...runtime.signals import Signal
from ..groups import Group
from .base import Estimator
from .params import applied, window_tables
from .pool import pooled_infer
from .windows import Windows


def window_groups(problem, windows: Windows) -> list:
    """Per problem group holding some windows: (the windows' indices [W'], a Group whose members are those windows:
    t [1 + Tf, W'] (origin, horizon times), y and mask the horizon's data after an all-masked origin row, the
    group's inputs and param values column by column)."""
    out = []
    trajectory = windows.trajectory.tolist()
    for g in problem.groups:
        position = {i: b for b, i in enumerate(g.members)}
        index = torch.tensor([w for w, i in enumerate(trajectory) if i in position], dtype=torch.long)
        if not len(index):
            continue
        if g.doses is not None:
            raise HodecError("method forecast does not take dose records (evid 1) yet: give doses as an input "
                             "column", problem.data.source)
        sub = windows.select(index)
        members = torch.tensor([position[i] for i in sub.trajectory.tolist()], dtype=torch.long)
        blank = torch.zeros_like(sub.horizon_y[:1])
        out.append((index, Group(
            sub.trajectory.tolist(), [g.ids[b] for b in members.tolist()],
            torch.cat([sub.origin.unsqueeze(0), sub.horizon_t]), torch.cat([blank, sub.horizon_y]),
            torch.cat([blank.bool(), sub.horizon_mask]), blank[0], blank[0].bool(),
            {name: _columns(signal, members, g.size) for name, signal in g.inputs.items()}, None,
            {name: values.index_select(0, members) for name, values in g.params.items()})))
    return out


def _columns(signal, members: torch.Tensor, size: int):
    """A group's input signal for the windows: its members' columns, one per window (a signal shared by every
    member as it is)."""
    if isinstance(signal, Signal) and signal.values.dim() == 2 and signal.values.shape[1] == size:
        return Signal(signal.times, signal.values.index_select(1, members), signal.method)
    return signal


def inferred(problem, model, estimator: Estimator, windows: Windows, groups: list) -> tuple:
    """The estimator's state at the windows' origins [W, n] and, per window group, the parameter table its solves
    read (None: the model's own params; forecast.estimate: params.py; pooled over earlier histories with
    forecast.pool: pool.py)."""
    y0, scale = pooled_infer(estimator, model, windows)
    return y0, window_tables(problem, model, estimator.columns, scale, groups)


def horizon_states(problem, model, y0: torch.Tensor, groups: list, tables: list, phase: str,
                   check: bool = True) -> list:
    """Per window group: the states [1 + Tf, W', n] from y0 [W, n] (all windows) at the group's origin and horizon
    times, under the group's parameter table (inferred)."""
    out = []
    for (index, g), table in zip(groups, tables):
        with applied(model, table):
            ys = problem.solve(model, g, y0.index_select(0, index), g.t, phase)
        if check:
            problem.check_states(g, ys, g.t, phase)
        out.append(ys)
    return out


def forecast(model, estimator: Estimator, windows: Windows, problem) -> torch.Tensor:
    """[Tf, W, m]: the predictions of the fitted columns at windows.horizon_t (padding rows: the last time's)."""
    groups = window_groups(problem, windows)
    y0, tables = inferred(problem, model, estimator, windows, groups)
    out = windows.horizon_y.new_zeros(windows.horizon_y.shape)
    states = horizon_states(problem, model, y0, groups, tables, "forecast", check=False)
    for (index, g), table, ys in zip(groups, tables, states):
        with applied(model, table):
            out[:, index] = problem.predict(model, g, ys, g.t)[1:]
    return out
