"""Trajectories grouped for batched solves: trajectories with the same start time form one group, solved together
on the union of their time grids (each trajectory's loss uses only its own cells). Different start times make
separate groups. A trajectory shorter than its group is simulated to the group's end. A group carries its
members' doses (a runtime Doses, [K, B], padded with NaN times) and their per-trajectory param values."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..errors import HodecError
from ..runtime.dosing import Doses
from ..runtime.signals import Signal
from .data import Dataset, interpolate_input


@dataclass
class Group:
    members: list  # dataset trajectory indices
    ids: list
    t: torch.Tensor  # [T] union grid
    y: torch.Tensor  # [T, B, m] data, 0 where missing
    mask: torch.Tensor  # [T, B, m] bool
    first: torch.Tensor  # [B, m] values at the group's first time (0 where missing)
    first_mask: torch.Tensor  # [B, m]
    inputs: dict  # name -> Signal over the group's trajectories
    doses: Optional[Doses] = None  # [K, B], NaN times where a member has fewer; None: no member has a dose
    params: dict = field(default_factory=dict)  # param name -> [B]: each member's value (the data's param columns)

    @property
    def size(self) -> int:
        return self.y.shape[1]

    def members_only(self, index: torch.Tensor) -> dict:
        """The per-member fields (doses, params) of some members (index [B'] into the group's)."""
        doses = None if self.doses is None else Doses(
            *(x.index_select(1, index) for x in (self.doses.time, self.doses.amount, self.doses.state,
                                                  self.doses.rate)))
        return {"doses": doses, "params": {name: v.index_select(0, index) for name, v in self.params.items()}}


def make_groups(data: Dataset, model, dtype: torch.dtype, extra_inputs: dict) -> list:
    """One Group per distinct start time, in the data's order of first appearance."""
    by_start: dict = {}
    for index, tr in enumerate(data.trajectories):
        by_start.setdefault(float(tr.t[0]), []).append(index)
    return [_group(data, members, model, dtype, extra_inputs) for members in by_start.values()]


def _group(data: Dataset, members: list, model, dtype, extra_inputs: dict) -> Group:
    trs = [data.trajectories[i] for i in members]
    grid = np.unique(np.concatenate([tr.t for tr in trs]))
    y = np.full((len(grid), len(trs), len(data.columns)), np.nan)
    for b, tr in enumerate(trs):
        y[np.searchsorted(grid, tr.t), b, :] = tr.y
    mask = np.isfinite(y)
    as_t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return Group(members, [tr.id for tr in trs], as_t(grid), as_t(np.nan_to_num(y)), torch.as_tensor(mask),
                 as_t(np.nan_to_num(y[0])), torch.as_tensor(mask[0]),
                 _signals(data, trs, grid, model, dtype, extra_inputs), _doses(trs, dtype),
                 {name: as_t([tr.params[name] for tr in trs]) for name in trs[0].params})


def _doses(trs: list, dtype) -> Optional[Doses]:
    """The members' doses as one Doses [K, B] (K: the most any member has; the others padded with NaN times)."""
    K = max(len(tr.doses) for tr in trs)
    if not K:
        return None
    time, amount, rate = (np.full((K, len(trs)), fill) for fill in (np.nan, 0.0, 0.0))
    state = np.zeros((K, len(trs)), dtype=np.int64)
    for b, tr in enumerate(trs):
        k = len(tr.doses)
        time[:k, b], amount[:k, b], state[:k, b], rate[:k, b] = (tr.doses.time, tr.doses.amount, tr.doses.state,
                                                                 tr.doses.rate)
    return Doses(*(torch.as_tensor(x, dtype=dtype) for x in (time, amount)), torch.as_tensor(state),
                 torch.as_tensor(rate, dtype=dtype))


def _signals(data: Dataset, trs: list, grid, model, dtype, extra_inputs: dict) -> dict:
    """Each model input as a Signal over the group: its data column interpolated onto the grid, else the
    caller's signal."""
    signals = {}
    for name in model.input_names:
        if name in data.inputs:
            q = data.inputs.index(name)
            values = np.stack([interpolate_input(grid, tr.t, tr.u[:, q]) for tr in trs], 1)
            signals[name] = Signal(torch.as_tensor(grid, dtype=dtype), torch.as_tensor(values, dtype=dtype))
        elif name in extra_inputs:
            signals[name] = extra_inputs[name]
        else:
            raise HodecError(f"input '{name}' of {type(model).__name__} has no column in the data {data.source} "
                             f"(add a '{name}' column)", "hodec fit")
    return signals


def time_at(ts: torch.Tensor, k: int, b: int) -> float:
    """Time k of member b, on a shared grid ts [T] or per-member grids [T, B] (forecast windows)."""
    return float(ts[k] if ts.dim() == 1 else ts[k, b])


def union_grid(grids: list) -> tuple:
    """The sorted union of increasing time grids (values closer than 1e-9 of the span merged) and, per grid, the
    indices of its times in it."""
    values = torch.cat(grids).sort().values
    tol = 1e-9 * float(values[-1] - values[0])
    keep = torch.ones_like(values, dtype=torch.bool)
    keep[1:] = values.diff() > tol
    union = values[keep]
    return union, [torch.searchsorted(union, grid - tol) for grid in grids]
