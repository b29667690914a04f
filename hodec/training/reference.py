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
            self.coefficients = torch.cat([left, inner, right], 0)  # row searchsorted(grid, t, right=True)
            self.anchors = torch.cat([grid[:1], grid])
            self.grid = grid.contiguous()
        self.batch_shape = tuple(s0.shape[1:])

    def __call__(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=self.grid.dtype, device=self.grid.device)
        if t.dim() == 0:
            row = torch.searchsorted(self.grid, t.reshape(1), right=True)[0]
            c = self.coefficients[row]
            dt = t - self.anchors[row]
        else:  # t [B]: member b reads its own interval
            row = torch.searchsorted(self.grid, t, right=True)
            c = self.coefficients[row, torch.arange(t.shape[0], device=t.device)]  # [B, m, 4]
            dt = (t - self.anchors[row])[:, None]
        return ((c[..., 3] * dt + c[..., 2]) * dt + c[..., 1]) * dt + c[..., 0]
