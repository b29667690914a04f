"""The coupling's reference yhat(t): a SmoothingSpline re-expressed as one cubic per interval of a shared grid.

The vector field evaluates the reference at every solver stage, so this is the hot path of homotopy training.
Every column's knots lie on the group's union time grid, so on each grid interval every column is one cubic;
its Taylor coefficients at the interval's left end (value, first, second derivative from the spline, third from
the change of the second, which is continuous) let one searchsorted, one gather and a Horner step evaluate all
trajectories and columns at once. Outside the grid the spline is linear (natural boundary), as SmoothingSpline.
"""
from __future__ import annotations

import torch

from .spline import SmoothingSpline


class GridCubic:
    """yhat(t) [B, m] for a scalar t, or for one time per trajectory t [B] (hodec's solvers step each batch
    member on its own); values equal spline(t) up to rounding."""

    def __init__(self, spline: SmoothingSpline, grid: torch.Tensor):
        with torch.no_grad():
            grid = grid.to(dtype=spline.values.dtype)
            s0, s1, s2 = spline(grid), spline.derivative(grid, 1), spline.derivative(grid, 2)  # [T, *batch]
            h = (grid[1:] - grid[:-1]).reshape(-1, *([1] * (s0.dim() - 1)))
            c3 = (s2[1:] - s2[:-1]) / (6 * h)
            zero = torch.zeros_like(s0[:1])
            inner = torch.stack([s0[:-1], s1[:-1], s2[:-1] / 2, c3], -1)  # [T-1, *batch, 4]
            left = torch.stack([s0[:1], s1[:1], zero, zero], -1)  # t < grid[0]: the end tangent
            right = torch.stack([s0[-1:], s1[-1:], zero, zero], -1)  # t >= grid[-1]
            coefficients = torch.cat([left, inner, right], 0)  # row searchsorted(grid, t, right=True)
            # [rows * members, 4, m]: one index_select picks member b's cubic at row r (entry r * members + b), and
            # unbind gives its four coefficients as views (each a few microseconds less than gathers per stage)
            self.coefficients = coefficients.movedim(-1, -2).reshape(-1, 4, coefficients.shape[-2]).contiguous()
            self.anchors = torch.cat([grid[:1], grid])
            self.grid = grid.contiguous()
        self.batch_shape = tuple(s0.shape[1:])
        self.members = coefficients[0, ..., 0].numel() // coefficients.shape[-2]
        self._own = torch.arange(self.members, device=grid.device)  # member b's offset within a row

    def confined(self, intervals: torch.Tensor) -> "Confined":
        """The reference of len(intervals) batches of the trajectories side by side, batch i confined to grid
        interval intervals[i] ([grid[j], grid[j + 1]]; member i * B + b reads trajectory b's spline there):
        parallel-in-time solves, one member per piece of a data interval, need no search per stage."""
        rows = torch.as_tensor(intervals, dtype=torch.long, device=self.grid.device) + 1  # row 0: before the grid
        index = (rows[:, None] * self.members + self._own).reshape(-1)
        return Confined(self.coefficients[index], self.anchors[rows.repeat_interleave(self.members)])

    def __call__(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=self.grid.dtype, device=self.grid.device)
        if t.dim() == 0:
            row = torch.searchsorted(self.grid, t.reshape(1), right=True)
            index = (row * self.members + self._own).reshape(-1)  # every member's cubic at the one time
        else:  # t [B]: member b reads its own interval
            row = torch.searchsorted(self.grid, t, right=True)
            index = row * self.members + self._own
        value = horner(self.coefficients.index_select(0, index), t - self.anchors[row])
        return value.reshape(self.batch_shape) if t.dim() == 0 else value


class Confined:
    """yhat(t) [M, m] of M members each on one cubic (GridCubic.confined), at a scalar t or one time per member
    t [M]: one Horner step, no search; equal to the spline at the member's interval, ends included, up to
    rounding."""

    def __init__(self, coefficients: torch.Tensor, anchors: torch.Tensor):
        self.coefficients = coefficients.contiguous()  # [M, 4, m]
        self.anchors = anchors  # [M] each member's interval's left end

    def __call__(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=self.anchors.dtype, device=self.anchors.device)
        return horner(self.coefficients, t - self.anchors)


def horner(coefficients: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """[M, m]: the cubics with Taylor coefficients [M, 4, m] (unbind gives them as views) at offsets dt [M]."""
    c0, c1, c2, c3 = coefficients.unbind(-2)
    dt = dt.unsqueeze(-1)
    return torch.addcmul(c0, torch.addcmul(c1, torch.addcmul(c2, c3, dt), dt), dt)
