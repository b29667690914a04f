"""The data cut into forecast windows. A trajectory's windows start at t0 = its first time + k stride (k = 0, 1,
...); a window's history is the trajectory's time points in [t0, t0 + history), its origin the last of them, its
horizon the time points in (origin, origin + horizon]. A window is kept only when it is whole: its horizon ends at or
before the trajectory's last time (a window whose horizon runs past the data is dropped, not kept with a short
horizon, so every window asks the same forecast of the model), and it has a data cell in its history and one in
its horizon. A trajectory shorter than history + horizon has no window. Missing cells (NaN) are masked; the model's
inputs at the history times are read from the problem's signals (the data's input columns interpolated, or the
caller's signals), so a window sees exactly the inputs training feeds the model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ...errors import HodecError
from .pool import Pool, pairs

TOLERANCE = 1e-9  # of a trajectory's time span: times closer than this to a window's edge count as on it


@dataclass
class Windows:
    """W windows; history and horizon padded to the longest (padding repeats the last time), masks say what is
    data."""
    trajectory: torch.Tensor  # [W] long: index into data.trajectories
    t0: torch.Tensor  # [W] window start (absolute time)
    origin: torch.Tensor  # [W] absolute time of the last history sample
    hist_t: torch.Tensor  # [Th, W] absolute times of the history samples (padded: repeat the last)
    hist_y: torch.Tensor  # [Th, W, m] fitted columns (0 where missing)
    hist_mask: torch.Tensor  # [Th, W, m] bool
    hist_u: torch.Tensor  # [Th, W, n_inputs] the model's inputs at hist_t (0 columns if none)
    horizon_t: torch.Tensor  # [Tf, W] absolute times of the horizon samples (> origin)
    horizon_y: torch.Tensor  # [Tf, W, m]
    horizon_mask: torch.Tensor  # [Tf, W, m]
    columns: tuple  # the fitted column names (m)
    pool: Optional[Pool] = None  # forecast.pool: the earlier histories each window's params are pooled over

    @property
    def size(self) -> int:
        return int(self.trajectory.numel())

    @property
    def hist_len(self) -> torch.Tensor:
        """[W] long: each window's history samples (the rows after them are padding)."""
        return (self.hist_t < self.origin).sum(0) + 1

    def select(self, index: torch.Tensor) -> "Windows":
        """The windows of `index` [W'] (long), in its order."""
        pick = {"trajectory": 0, "t0": 0, "origin": 0, "hist_t": 1, "hist_y": 1, "hist_mask": 1, "hist_u": 1,
                "horizon_t": 1, "horizon_y": 1, "horizon_mask": 1}
        return Windows(**{name: getattr(self, name).index_select(dim, index) for name, dim in pick.items()},
                       columns=self.columns, pool=None if self.pool is None else self.pool.select(index))


@dataclass
class Cut:
    """One window as index ranges into its trajectory's time points (`hodec forecast` makes its own: a history
    and the forecast's times, which have no data)."""
    trajectory: int
    t0: float
    history: range
    horizon: range


def make_windows(problem, trajectories: Optional[Sequence[int]] = None, *, history: float, horizon: float,
                 stride: float, pool: Optional[float] = None) -> Windows:
    """The windows of the problem's trajectories (indices into problem.data.trajectories; None: all), in
    trajectory order, then by start time; pool (forecast.pool): with the Pool of each window's histories of the
    last `pool` time units (pool.py)."""
    for name, value in (("history", history), ("horizon", horizon), ("stride", stride)):
        if not value > 0:
            raise HodecError(f"forecast.{name} must be > 0, got {value:g}", "fit config")
    data = problem.data
    indices = range(len(data.trajectories)) if trajectories is None else [int(i) for i in trajectories]
    cuts = [cut for i in indices for cut in _cuts(data.trajectories[i], i, history, horizon, stride)]
    if not cuts:
        raise HodecError(f"no forecast window fits the data: each needs history {history:g} + horizon {horizon:g} "
                         f"time units with data in both, and the longest trajectory spans "
                         f"{max(float(data.trajectories[i].t[-1] - data.trajectories[i].t[0]) for i in indices):g}",
                         data.source)
    windows = assemble(problem, cuts)
    if pool is None:
        return windows
    last = {c.trajectory: c.history[-1] for c in cuts}  # per trajectory its last scored origin's row (time order)
    context = [cut for i, end in last.items()
               for cut in _starts(Histories(data.trajectories[i], i, history), stride)
               if cut.history[-1] <= end]  # no window pools a later history
    place = {(c.trajectory, c.t0): k for k, c in enumerate(context)}
    return pooled(problem, windows, context, [place[(c.trajectory, c.t0)] for c in cuts], pool)


def pooled(problem, windows: Windows, context: list, own: list, span: float) -> Windows:
    """The windows with their Pool: the context cuts (history only), each window's own among them, and which
    context windows each pools over (those of its trajectory with an origin in [origin - span, origin])."""
    histories = assemble(problem, context)
    member, source = pairs(windows.trajectory, windows.origin, histories.trajectory, histories.origin, span)
    return dataclasses.replace(windows, pool=Pool(histories, torch.tensor(own, dtype=torch.long), member, source))


class Histories:
    """A trajectory's window histories: the cut of a window start t0 is its rows in [t0, t0 + history), kept when
    it holds a data cell (the one place a history is cut: make_windows' forward walk and `hodec forecast`'s backward
    walk over the stride starts both use it)."""

    def __init__(self, tr, index: int, history: float):
        self.t, self.finite, self.index, self.history = tr.t, np.isfinite(tr.y).any(1), index, history
        self.tol = TOLERANCE * max(1.0, float(self.t[-1] - self.t[0]))

    def at(self, t0: float, stop: Optional[int] = None) -> Optional[Cut]:
        """The history-only cut of the window start t0 (no row at or after `stop`); None without a data cell."""
        first, end = np.searchsorted(self.t, t0 - self.tol), np.searchsorted(self.t, t0 + self.history - self.tol)
        end = end if stop is None else min(end, stop)
        if end > first and self.finite[first:end].any():
            return Cut(self.index, t0, range(first, end), range(end, end))
        return None


def earlier_cuts(tr, cut: Cut, start: float, history: float, stride: float, span: float) -> list:
    """The histories `cut` pools over when it is a trajectory's only window (`hodec forecast`): its own, then the
    window starts every stride before its t0, down to `start` (the history's first time) and to an origin `span`
    before its own, those with a data cell in their history (each cut at the cut's origin)."""
    cutter, stop = Histories(tr, cut.trajectory, history), cut.history.stop
    out = [Cut(cut.trajectory, cut.t0, cut.history, range(stop, stop))]
    k = 1
    while cut.t0 - k * stride >= start - cutter.tol:
        earlier = cutter.at(cut.t0 - k * stride, stop)
        if earlier is not None:
            if cutter.t[earlier.history[-1]] < cutter.t[stop - 1] - span - cutter.tol:
                break  # this origin and every earlier one lie before the span
            out.append(earlier)
        k += 1
    return out


def _starts(cutter: Histories, stride: float):
    """The history-only cut of each window start t0 = first time + k stride with a data cell in its history."""
    t = cutter.t
    for k in range(int(np.floor((t[-1] - t[0]) / stride + TOLERANCE)) + 1):
        cut = cutter.at(float(t[0] + k * stride))
        if cut is not None:
            yield cut


def _cuts(tr, index: int, history: float, horizon: float, stride: float) -> list:
    cutter = Histories(tr, index, history)
    t, out = cutter.t, []
    for cut in _starts(cutter, stride):
        origin = t[cut.history[-1]]
        if origin + horizon > t[-1] + cutter.tol:
            break  # this window's horizon and every later one's run past the data
        stop = cut.history.stop
        end = np.searchsorted(t, origin + horizon + cutter.tol, side="right")
        if cutter.finite[stop:end].any():
            out.append(dataclasses.replace(cut, horizon=range(stop, end)))
    return out


def assemble(problem, cuts: list) -> Windows:
    """The windows' tensors from their cuts: padded, the inputs read at the history times."""
    data, dtype = problem.data, problem.dtype
    Th, Tf = max(len(c.history) for c in cuts), max(len(c.horizon) for c in cuts)

    def padded(rows: list, length: int, source) -> np.ndarray:
        """[length, W, ...] of source(trajectory)[rows], each window's last row repeated as padding."""
        return np.stack([source(data.trajectories[c.trajectory])[list(r) + list(r[-1:]) * (length - len(r))]
                         for c, r in zip(cuts, rows)], 1)

    def valid(rows: list, length: int) -> np.ndarray:
        return np.stack([np.arange(length) < len(r) for r in rows], 1)

    hist_rows, horizon_rows = [c.history for c in cuts], [c.horizon for c in cuts]
    hist_t, horizon_t = padded(hist_rows, Th, lambda tr: tr.t), padded(horizon_rows, Tf, lambda tr: tr.t)
    hist_y, horizon_y = padded(hist_rows, Th, lambda tr: tr.y), padded(horizon_rows, Tf, lambda tr: tr.y)
    hist_mask = np.isfinite(hist_y) & valid(hist_rows, Th)[:, :, None]
    horizon_mask = np.isfinite(horizon_y) & valid(horizon_rows, Tf)[:, :, None]
    trajectory = torch.tensor([c.trajectory for c in cuts], dtype=torch.long)
    as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=float), dtype=dtype)  # noqa: E731
    hist_t = as_t(hist_t)
    return Windows(trajectory, as_t([c.t0 for c in cuts]), hist_t[[len(r) - 1 for r in hist_rows],
                                                                  range(len(cuts))],
                   hist_t, as_t(np.where(hist_mask, hist_y, 0.0)), torch.as_tensor(hist_mask),
                   inputs_at(problem, trajectory, hist_t), as_t(horizon_t),
                   as_t(np.where(horizon_mask, horizon_y, 0.0)), torch.as_tensor(horizon_mask), problem.columns)


def inputs_at(problem, trajectory: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The model's inputs [T, W, n_inputs] at times t [T, W], window w reading its trajectory's signals (those
    of the problem's group that holds it)."""
    names = problem.model.input_names
    out = torch.zeros(*t.shape, len(names), dtype=t.dtype)
    if not names:
        return out
    where = member_of(problem)
    for w, i in enumerate(trajectory.tolist()):
        g, b = where[i]
        for q, name in enumerate(names):
            values = torch.as_tensor(g.inputs[name](t[:, w].contiguous()), dtype=t.dtype)
            out[:, w, q] = values[:, b] if values.dim() > 1 else values
    return out


def member_of(problem) -> dict:
    """Trajectory index -> (its group, its position in the group)."""
    return {i: (g, b) for g in problem.groups for b, i in enumerate(g.members)}
