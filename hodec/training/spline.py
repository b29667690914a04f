"""Batched, differentiable cubic smoothing splines (Reinsch / Green & Silverman).

For knots t_0 < ... < t_{n-1} and data y the smoothing spline g minimises

    sum_i (y_i - g(t_i))**2 + alpha * integral g''(t)**2 dt.

With h_i = t_{i+1} - t_i, the second-difference matrix Q (n x (n-2)) and the
tridiagonal R ((n-2) x (n-2), R_ii = (h_{i-1}+h_i)/3, R_{i,i+1} = h_i/6), the
second derivatives at interior knots solve (R + alpha Q^T Q) gamma = Q^T y, the
fitted knot values are g = y - alpha Q gamma, and gamma = 0 at both end knots
(natural boundary). alpha = 0 is the natural interpolating cubic spline.
alpha is not scale-free: it carries units of time**3 relative to the data.

Design
------
* Layout. Trailing batch dims of y are flattened to B columns; coefficients are
  stored column-major as [B, n_max] buffers so `torch.searchsorted` can search
  every column's own knots in one batched call.
* Missing data. Each column keeps only its observed points, compacted to the
  front (order preserved). Knot arrays are padded with +inf, so they stay
  sorted and padding is never selected; the interval index is clamped to each
  column's own last interval. In the linear system padded unknowns become
  identity rows with zero right-hand side, so every column - whatever its mask
  or alpha - is fitted by one batched solve and the result is one object.
* Solver. R + alpha Q^T Q is symmetric positive definite and pentadiagonal, so
  a banded Cholesky without pivoting is stable. It is vectorised over columns
  and loops over knots in Python: O(n B) work and memory, where a dense solve
  would need one n x n matrix per column (columns may differ in alpha/mask).
  The fit runs once, in __init__, and is built from differentiable torch ops:
  gradients reach y (the fit is linear in y) and a tensor alpha.
* Precision. The fit runs in float64 (then casts back) for lower-precision y:
  for large alpha the system's condition number grows like n**4, which breaks
  float32 Cholesky long before float64. Non-finite fits raise ValueError.
* Extrapolation. Outside [t_first, t_last] of a column the spline continues as
  the straight line with the end value and slope (natural boundary: g'' = 0
  there). This differs from scipy's CubicSpline, which extends the end cubic.
* Coefficient buffers keep the autograd graph to y, so training can
  backpropagate into the data; detach y first if that is not wanted.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SmoothingSpline"]


class SmoothingSpline(torch.nn.Module):
    """Cubic smoothing spline of ``y`` [n, *batch] at knots ``t`` [n].

    alpha: scalar or tensor broadcastable to the batch shape (per-column
    smoothing). mask: bool [n, *batch], True where y is observed; when None,
    NaN entries of y count as missing. Each column needs >= 2 observed points.
    """

    knots: Tensor
    values: Tensor
    second: Tensor
    n_points: Tensor

    def __init__(self, t: Tensor, y: Tensor, alpha: float | Tensor = 0.0, mask: Tensor | None = None):
        super().__init__()
        y = torch.as_tensor(y)
        if not y.is_floating_point():
            y = y.to(torch.get_default_dtype())
        t = torch.as_tensor(t).to(dtype=y.dtype, device=y.device)
        _check_knots(t, y)
        self.batch_shape = tuple(y.shape[1:])
        n, B = y.shape[0], math.prod(self.batch_shape)
        mask = ~torch.isnan(y) if mask is None else torch.as_tensor(mask, dtype=torch.bool, device=y.device)
        if mask.shape != y.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} must equal y shape {tuple(y.shape)}")
        alpha = torch.as_tensor(alpha, dtype=y.dtype, device=y.device)
        if torch.any(alpha < 0) or not torch.all(torch.isfinite(alpha)):
            raise ValueError("alpha must be finite and >= 0")
        alpha = alpha.broadcast_to(self.batch_shape).reshape(B, 1)

        tc, yc, n_pts = _compact(t, y.reshape(n, B).T, mask.reshape(n, B).T)
        valid = torch.arange(tc.shape[1], device=y.device) < n_pts[:, None]
        work = _work_dtype(y)
        values, second = _fit(tc.to(work), yc.to(work), valid, alpha.to(work))
        if not (torch.all(torch.isfinite(values)) and torch.all(torch.isfinite(second))):
            raise ValueError("spline fit is not finite: y has non-finite observed values or the system is singular")
        self.register_buffer("knots", torch.where(valid, tc, torch.inf))
        self.register_buffer("values", values.to(y.dtype))
        self.register_buffer("second", second.to(y.dtype))
        self.register_buffer("n_points", n_pts)

    def forward(self, tq: Tensor) -> Tensor:
        """Spline values at query times tq (scalar or [m]) -> [*batch] or [m, *batch]."""
        return self._evaluate(tq, 0)

    def derivative(self, tq: Tensor, order: int = 1) -> Tensor:
        """First or second time derivative at tq, same shapes as forward."""
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        return self._evaluate(tq, order)

    def _evaluate(self, tq: Tensor, order: int) -> Tensor:
        tq = torch.as_tensor(tq, dtype=self.knots.dtype, device=self.knots.device)
        if tq.dim() > 1:
            raise ValueError(f"tq must be a scalar or 1-D, got shape {tuple(tq.shape)}")
        B = self.knots.shape[0]
        x = tq.reshape(1, -1).expand(B, -1).contiguous()
        last = (self.n_points - 1)[:, None]
        lo, hi = self.knots[:, :1], self.knots.gather(1, last)
        # clamping into the data range and adding the end tangent gives linear extrapolation
        xc = torch.clamp(x, lo, hi)
        k = torch.searchsorted(self.knots, xc.detach(), right=True) - 1
        k = torch.minimum(k.clamp(min=0), last - 1)
        s, ds, d2s = self._cubic(xc, k)
        out = (s + (x - xc) * ds, ds, d2s)[order]
        return out.T.reshape(tq.shape + self.batch_shape)

    def _cubic(self, x: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        def at(buf: Tensor, idx: Tensor) -> Tensor:
            return buf.gather(1, idx)

        ta, tb = at(self.knots, k), at(self.knots, k + 1)
        ga, gb = at(self.values, k), at(self.values, k + 1)
        ca, cb = at(self.second, k), at(self.second, k + 1)
        h = tb - ta
        a, b = (tb - x) / h, (x - ta) / h
        s = a * ga + b * gb + ((a**3 - a) * ca + (b**3 - b) * cb) * h**2 / 6
        ds = (gb - ga) / h + ((1 - 3 * a**2) * ca + (3 * b**2 - 1) * cb) * h / 6
        d2s = a * ca + b * cb
        return s, ds, d2s


def _work_dtype(y: Tensor) -> torch.dtype:
    # R + alpha Q^T Q has condition number ~ n**4 for large alpha: too much for float32
    if y.dtype.itemsize < 8 and y.device.type != "mps":
        return torch.float64
    return y.dtype


def _check_knots(t: Tensor, y: Tensor) -> None:
    if t.dim() != 1:
        raise ValueError(f"t must be 1-D, got shape {tuple(t.shape)}")
    if y.dim() < 1 or y.shape[0] != t.shape[0]:
        raise ValueError(f"y must have shape [n, *batch] with n = len(t) = {t.shape[0]}, got {tuple(y.shape)}")
    if t.shape[0] < 2:
        raise ValueError(f"need at least 2 knots, got {t.shape[0]}")
    if not torch.all(torch.diff(t) > 0):
        raise ValueError("knots t must be strictly increasing (and finite)")


def _compact(t: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Move each column's observed points to the front; y, mask are [B, n]."""
    n_pts = mask.sum(dim=1)
    if torch.any(n_pts < 2):
        bad = torch.nonzero(n_pts < 2).flatten().tolist()
        raise ValueError(f"every column needs >= 2 observed points; columns (flattened) {bad} do not")
    # stable sort on "is missing" keeps observed points in time order
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    n_max = int(n_pts.max())
    order = order[:, :n_max]
    # zero-fill first so NaNs in unobserved slots cannot leak into values or gradients
    y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
    tc = t.expand(y.shape[0], -1).gather(1, order)
    return tc, y.gather(1, order), n_pts


def _fit(t: Tensor, y: Tensor, valid: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Reinsch fit per column; returns knot values g and second derivatives gamma, [B, n]."""
    n = t.shape[1]
    if n < 3:
        return y, torch.zeros_like(y)
    one = torch.ones((), dtype=t.dtype, device=t.device)
    h = torch.where(valid[:, 1:], t[:, 1:] - t[:, :-1], one)  # harmless spacing in the padding
    r = 1 / h
    # column k of Q (interior knot k+1) has entries q0, q1, q2 in rows k, k+1, k+2
    q0, q2 = r[:, :-1], r[:, 1:]
    q1 = -(q0 + q2)
    inner = valid[:, 2:]
    diag = (h[:, :-1] + h[:, 1:]) / 3 + alpha * (q0**2 + q1**2 + q2**2)
    off1 = h[:, 1:-1] / 6 + alpha * (q1[:, :-1] * q0[:, 1:] + q2[:, :-1] * q1[:, 1:])
    off2 = alpha * q2[:, :-2] * q0[:, 2:]
    diag = torch.where(inner, diag, one)
    off1 = torch.where(inner[:, 1:], off1, 0 * one)
    off2 = torch.where(inner[:, 2:], off2, 0 * one)
    rhs = torch.where(inner, q0 * y[:, :-2] + q1 * y[:, 1:-1] + q2 * y[:, 2:], 0 * one)
    gamma = _solve_penta(diag, off1, off2, rhs)
    pad = torch.nn.functional.pad
    q_gamma = pad(q0 * gamma, (0, 2)) + pad(q1 * gamma, (1, 1)) + pad(q2 * gamma, (2, 0))
    values = torch.where(valid, y - alpha * q_gamma, 0 * one)
    return values, pad(gamma, (1, 1))


def _solve_penta(d0: Tensor, d1: Tensor, d2: Tensor, rhs: Tensor) -> Tensor:
    """Solve A x = rhs for SPD pentadiagonal A (diagonals d0, d1, d2), batched over rows.

    Banded Cholesky A = L L^T; entries are kept in Python lists, not written in
    place, so autograd can differentiate through the recursion.
    """
    m = d0.shape[1]
    l0: list[Tensor] = []
    l1: list[Tensor] = []
    l2: list[Tensor] = []
    zero = torch.zeros_like(d0[:, 0])
    for i in range(m):
        c2 = d2[:, i - 2] / l0[i - 2] if i >= 2 else zero
        c1 = (d1[:, i - 1] - c2 * l1[i - 1]) / l0[i - 1] if i >= 1 else zero
        l2.append(c2)
        l1.append(c1)
        l0.append(torch.sqrt(d0[:, i] - c1**2 - c2**2))
    z: list[Tensor] = []
    for i in range(m):
        acc = rhs[:, i]
        if i >= 1:
            acc = acc - l1[i] * z[i - 1]
        if i >= 2:
            acc = acc - l2[i] * z[i - 2]
        z.append(acc / l0[i])
    x: list[Tensor] = [zero] * m
    for i in reversed(range(m)):
        acc = z[i]
        if i + 1 < m:
            acc = acc - l1[i + 1] * x[i + 1]
        if i + 2 < m:
            acc = acc - l2[i + 2] * x[i + 2]
        x[i] = acc / l0[i]
    return torch.stack(x, dim=1)
