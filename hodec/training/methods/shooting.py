"""Multiple shooting: each group's grid is split into `segments` pieces sharing their end points (the intervals
between data times shared out as evenly as numpy.array_split does); segment i > 0 starts at an anchor plus a
trainable correction (zero at first). The anchor of a state is its data value there (states, or observables
identical to a state, with a value at that time), else the initial model's uncoupled simulation. Loss = the data
objective of the joined segments (MSE, or -llh per cell with noise models) + continuity x mean squared jump between
each segment's end and the next one's start. An autonomous model (no t, no inputs) solves all its segments in one
batched call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ...errors import HodecError
from ..groups import Group, union_grid
from .base import Method


@dataclass
class Segments:
    bounds: list  # segment i covers t[bounds[i] .. bounds[i + 1]] (indices into the group's grid)
    anchors: Optional[torch.Tensor] = None  # [S-1, B, n]
    corrections: Optional[torch.nn.Parameter] = None  # [S-1, B, n]


class MultipleShooting(Method):
    name = "multiple_shooting"
    shardable = False  # per-trajectory corrections and a continuity penalty over all segments

    def __init__(self, problem, config):
        super().__init__(problem, config)
        self._check_segments()
        with torch.no_grad():
            self.segments = [self._segments(g) for g in problem.groups]

    def _check_segments(self):
        """A segment spans at least one interval between data times: more segments than a group's intervals is
        refused rather than silently reduced."""
        asked = self.config.segments
        for g in self.problem.groups:
            intervals = len(g.t) - 1
            if asked > max(1, intervals):
                raise HodecError(f"segments: {asked} segments asked for, but the trajectories starting at t = "
                                 f"{float(g.t[0]):g} have {len(g.t)} time points, {intervals} intervals between them "
                                 f"(each segment spans at least one); use segments: {max(1, intervals)} or fewer",
                                 "fit config")

    def _segments(self, g: Group) -> Segments:
        intervals, s = len(g.t) - 1, self.config.segments
        sizes = [intervals // s + (1 if i < intervals % s else 0) for i in range(s)]
        bounds = [0] + [int(b) for b in np.cumsum(sizes)]
        starts = bounds[1:-1]
        if not starts:
            return Segments(bounds)
        p = self.problem
        guess = p.uncoupled_states(p.model, g, g.t, "setup")
        if guess is None:  # the initial model fails on its own: every anchor starts at the initial state
            guess = p.initial(p.model, g).detach().expand(len(starts), g.size, -1).clone()
        else:
            guess = guess[starts]
        for c, j in enumerate(p.state_like):
            if j is not None:
                guess[:, :, j] = torch.where(g.mask[starts, :, c], g.y[starts, :, c], guess[:, :, j])
        return Segments(bounds, guess.detach(), torch.nn.Parameter(torch.zeros_like(guess)))

    def parameters(self) -> list:
        return [s.corrections for s in self.segments if s.corrections is not None]

    def loss(self, lam: float):
        p = self.problem
        total, count, jumps, n_jumps = 0.0, 0, 0.0, 0
        for g, seg in zip(p.groups, self.segments):
            starts = [p.initial(p.model, g)]
            if seg.corrections is not None:
                starts += list(seg.anchors + seg.corrections)
            pieces, ends = [], []
            for i, ys in enumerate(self.solve_segments(g, seg.bounds, starts)):
                pieces.append(ys if i == len(starts) - 1 else ys[:-1])
                ends.append(ys[-1])
            total = total + p.cell_losses(p.model, g, torch.cat(pieces, 0), g.t, "multiple-shooting").sum()
            count += int(g.mask.sum())
            if len(starts) > 1:
                gap = torch.stack(ends[:-1]) - torch.stack(starts[1:])
                jumps = jumps + (gap * gap).sum()
                n_jumps += gap.numel()
        loss = total / count + p.prior_term(p.model)
        if n_jumps:
            loss = loss + self.config.continuity * jumps / n_jumps
        return loss, None

    def solve_segments(self, g: Group, bounds: list, starts: list) -> list:
        """Each segment's states [len, B, n] from its start [B, n]. An autonomous model (no t, no inputs, no
        events or doses, whose times are absolute) solves them as one batch from t = 0 on the union of their grids
        relative to their first times (one solver call instead of one per segment; dense output makes the extra
        output times nearly free). A segment after the first starts after the events at its start time: the
        previous segment's value there, which its start is pulled to, is after them."""
        p = self.problem
        spans = [g.t[bounds[i]:bounds[i + 1] + 1] for i in range(len(starts))]
        timed = p.model.forward_uses_time or g.doses is not None or bool(p.model.events_table)
        if len(starts) < 2 or timed:
            out = [p.solve(p.model, g, y0, s, f"segment {i + 1}", after_events=i > 0)
                   for i, (y0, s) in enumerate(zip(starts, spans))]
        else:
            grid, picks = union_grid([s - s[0] for s in spans])
            y0 = torch.stack(starts)  # [S, B, n]
            ys = p.solve(p.model, g, y0.reshape(-1, y0.shape[-1]), grid, "segments")
            ys = ys.reshape(len(grid), *y0.shape)
            out = [ys[pick, i] for i, pick in enumerate(picks)]
        for i, (ys, s) in enumerate(zip(out, spans)):
            p.check_states(g, ys, s, f"segment {i + 1}")
        return out

    def state(self) -> dict:
        return {"corrections": [None if s.corrections is None else s.corrections.detach() for s in self.segments]}

    def restore(self, state: dict):
        with torch.no_grad():
            for seg, c in zip(self.segments, state.get("corrections") or []):
                if c is not None and seg.corrections is not None:
                    seg.corrections.copy_(c)
