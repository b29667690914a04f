"""Trajectories grouped for batched solves: trajectories with the same start time form one group, solved together
on the union of their time grids (each trajectory's loss uses only its own cells). Different start times make
separate groups. A trajectory shorter than its group is simulated to the group's end."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import HodecError
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

    @property
    def size(self) -> int:
        return self.y.shape[1]


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
                 _signals(data, trs, grid, model, dtype, extra_inputs))


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


def union_grid(grids: list) -> tuple:
    """The sorted union of increasing time grids (values closer than 1e-9 of the span merged) and, per grid, the
    indices of its times in it."""
    values = torch.cat(grids).sort().values
    tol = 1e-9 * float(values[-1] - values[0])
    keep = torch.ones_like(values, dtype=torch.bool)
    keep[1:] = values.diff() > tol
    union = values[keep]
    return union, [torch.searchsorted(union, grid - tol) for grid in grids]
