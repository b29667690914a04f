"""Doses given at run time: `model.simulate(ts, doses=Doses(time, amount, state, rate))`, each batch member its own
regimen.

    Doses(time, amount, state, rate=None)   # each [K, *batch] (or [K]: every member the same): K doses at most

A dose with NaN (or infinite) time is padding (a member with fewer doses). A bolus (rate NaN, 0 or None) adds
amount to state `state` (an index into state_names) at its time. A zero-order infusion (rate > 0) adds rate to that
state's derivative over [time, time + amount / rate]: the current infusion rates are extra state components (one
per state any member infuses), derivative 0, changed by jumps at each infusion's start and end, and hidden from
the caller. Gradients flow to times, amounts and rates.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import HodecError


class Doses:
    """Dose records per batch member (see the module's docstring); check() validates them against a model."""

    def __init__(self, time, amount, state, rate=None):
        tensors = [time, amount, state] + ([] if rate is None else [rate])
        shapes = [tuple(torch.as_tensor(x).shape) for x in tensors]
        try:
            shape = torch.broadcast_shapes(*shapes)
        except RuntimeError:
            raise HodecError(f"Doses: time, amount, state and rate have shapes that do not broadcast: {shapes}") \
                from None
        if len(shape) == 0:
            raise HodecError("Doses: time, amount and state need a dose axis first ([K] or [K, *batch])")
        # a tensor's own dtype; numbers, lists and arrays in float64 (simulate converts to the model's dtype: a
        # float32 detour would round dose times and amounts)
        dtype = time.dtype if torch.is_tensor(time) and time.is_floating_point() else torch.float64

        def real(x):
            return torch.as_tensor(x, dtype=dtype).broadcast_to(shape)

        self.time, self.amount = real(time), real(amount)
        state = torch.as_tensor(state)
        if state.is_floating_point():
            if not bool((torch.isnan(state) | (state == state.round())).all()):
                raise HodecError("Doses: state holds indices into state_names; got a non-integer value")
            state = torch.nan_to_num(state, nan=-1)
        self.state = state.to(torch.long).broadcast_to(shape)
        self.rate = real(float("nan") if rate is None else rate)

    @property
    def given(self) -> torch.Tensor:
        """[K, *batch]: the doses that are not padding (finite time)."""
        return torch.isfinite(self.time)

    @property
    def infusion(self) -> torch.Tensor:
        """[K, *batch]: the given doses that are infusions (rate > 0)."""
        return self.given & (self.rate > 0)

    def end(self) -> torch.Tensor:
        """[K, *batch]: each infusion's end time (NaN for a bolus or padding); differentiable."""
        return torch.where(self.infusion, self.time + self.amount / torch.where(self.infusion, self.rate, 1.0),
                           torch.nan)

    def to(self, dtype, device) -> "Doses":
        doses = Doses.__new__(Doses)
        doses.time, doses.amount, doses.rate = (x.to(dtype=dtype, device=device)
                                                for x in (self.time, self.amount, self.rate))
        doses.state = self.state.to(device)
        return doses

    def check(self, state_names: Sequence[str]):
        """HodecError naming the first bad dose: a state index out of range, an amount or rate that is NaN or
        negative (an infusion's amount positive), or two infusions into one state overlapping in time."""
        given, n = self.given, len(state_names)
        bad = given & ((self.state < 0) | (self.state >= n))
        if bool(bad.any()):
            k, where = _first(bad)
            raise HodecError(f"{_dose(self, k, where)}: state index {int(self.state[k][where])} is not a state of "
                             f"the model (0 to {n - 1}: {', '.join(state_names)})")
        for what, bad in (("amount is NaN", torch.isnan(self.amount)), ("rate is negative", self.rate < 0),
                          ("amount of an infusion is not positive", self.infusion & ~(self.amount > 0))):
            bad = bad & given
            if bool(bad.any()):
                k, where = _first(bad)
                raise HodecError(f"{_dose(self, k, where)}: {what} ({_values(self, k, where)})")
        self._check_overlaps(state_names)

    def _check_overlaps(self, state_names):
        infusion = self.infusion
        if not bool(infusion.any()):
            return
        start, end = self.time.detach(), self.end().detach()
        same = (self.state[:, None] == self.state[None, :]) & infusion[:, None] & infusion[None, :]
        overlap = same & (start[:, None] < end[None, :]) & (start[None, :] < end[:, None])
        K = start.shape[0]
        overlap = overlap & ~torch.eye(K, dtype=torch.bool).reshape(K, K, *([1] * (start.dim() - 1)))
        if bool(overlap.any()):
            index = [int(i) for i in overlap.nonzero()[0]]
            i, j, where = index[0], index[1], tuple(index[2:])
            raise HodecError(f"{_dose(self, i, where)} and dose {j}: two infusions into "
                             f"{state_names[int(self.state[i][where])]} overlap in time "
                             f"([{float(start[i][where]):g}, {float(end[i][where]):g}] and "
                             f"[{float(start[j][where]):g}, {float(end[j][where]):g}]); one state takes one "
                             f"infusion at a time")


def _first(mask: torch.Tensor):
    index = [int(i) for i in mask.nonzero()[0]]
    return index[0], tuple(index[1:])


def _dose(doses: Doses, k: int, where: tuple) -> str:
    member = f" of batch member {list(where)}" if where else ""
    return f"dose {k}{member} (t = {float(doses.time[k][where]):g})"


def _values(doses: Doses, k: int, where: tuple) -> str:
    return f"amount {float(doses.amount[k][where]):g}, rate {float(doses.rate[k][where]):g}"


def _member_axes(x: torch.Tensor, batch: tuple) -> torch.Tensor:
    """[K, *dose batch] -> [K, *batch]: the dose batch lines up with the state batch's last axes (as per-sample
    params do); [K] is every member's."""
    lead = len(batch) - (x.dim() - 1)
    return x.reshape(x.shape[0], *([1] * lead), *x.shape[1:]).expand(x.shape[0], *batch)


def per_size(doses: Doses, sizes: torch.Tensor, batch: tuple) -> Doses:
    """The doses [K, *batch] with each amount and rate divided by its target's compartment size (sizes
    [*param batch, n], 1 for a state without one): a dose gives an amount, a state in a compartment is a
    concentration. An infusion's duration, amount / rate, is unchanged."""
    n = sizes.shape[-1]
    sizes = sizes.reshape(*([1] * (len(batch) - (sizes.dim() - 1))), *sizes.shape).expand(*batch, n)
    state = _member_axes(doses.state, batch)
    size = torch.gather(sizes.expand(state.shape[0], *batch, n), -1, state.clamp(0, n - 1)[..., None])[..., 0]
    return Doses(_member_axes(doses.time, batch), _member_axes(doses.amount, batch) / size, state,
                 _member_axes(doses.rate, batch) / size)


class DoseJumps:
    """Doses as the solver's time events over the state [y, r] (r: the infusion rates of the infused states):
    three time rows per dose (the bolus, the infusion's start, its end; NaN where a member's dose is not of that
    kind), and their jumps."""

    def __init__(self, doses: Doses, n: int, batch: tuple, dtype, device):
        doses = doses.to(dtype, device)
        K = doses.time.shape[0]
        try:
            self.time, self.amount, self.state, self.rate = (_member_axes(x, batch) for x in
                                                             (doses.time, doses.amount, doses.state, doses.rate))
        except RuntimeError:
            raise HodecError(f"doses have shape {list(doses.time.shape)}; expected [K] or [K, *batch] with batch "
                             f"{list(batch)} (the state's)") from None
        self.n, self.K = n, K
        infusion = _member_axes(doses.infusion, batch)
        given = torch.isfinite(self.time)
        self.targets = sorted(set(self.state[infusion].tolist()))  # the states with a rate component
        slot = torch.full((n,), -1, dtype=torch.long, device=device)
        slot[self.targets] = torch.arange(len(self.targets), device=device)
        self.slot = slot[self.state.clamp(0, n - 1)]  # [K, *batch]: each dose's rate component
        self.amount = torch.where(given, self.amount, 0.0)
        self.rate = torch.where(infusion, self.rate, 0.0)
        self.end = end = _member_axes(doses.end(), batch)
        bolus = torch.where(given & ~infusion, self.time, torch.nan)
        rows = [bolus] + ([torch.where(infusion, self.time, torch.nan), end] if self.targets else [])
        self.times = torch.cat(rows)  # [3K (or K), *batch]
        # [m, n]: rate component i feeds state targets[i]
        self.spread = torch.nn.functional.one_hot(torch.tensor(self.targets, dtype=torch.long, device=device),
                                                  n).to(dtype)

    @property
    def m(self) -> int:
        """How many rate components the state gains."""
        return len(self.targets)

    def jump(self, k: int, y: torch.Tensor) -> torch.Tensor:
        """The state [*batch, n + m] after the k-th time row's event for every member."""
        kind, row = divmod(k, self.K)
        if kind == 0:
            add = torch.nn.functional.one_hot(self.state[row].clamp(0, self.n - 1), self.n + self.m)
            return y + add.to(y.dtype) * self.amount[row][..., None]
        add = torch.nn.functional.one_hot(self.n + self.slot[row].clamp(min=0), self.n + self.m).to(y.dtype)
        return y + add * (self.rate[row] if kind == 1 else -self.rate[row])[..., None]

    def running(self, t0: torch.Tensor) -> torch.Tensor:
        """The infusion rates [*batch, m] in effect just after t0 (t0 a number or [*batch]): those started at or
        before it and ending after it."""
        on = (self.time <= t0) & (t0 < self.end) & (self.slot >= 0)
        share = torch.nn.functional.one_hot(self.slot.clamp(min=0), self.m).to(self.rate.dtype)
        return (share * torch.where(on, self.rate, 0.0)[..., None]).sum(0)

    def inflow(self, r: torch.Tensor) -> torch.Tensor:
        """The infusion rates r [*batch, m] as additions to the states' derivatives [*batch, n]."""
        return r @ self.spread
