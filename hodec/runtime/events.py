"""The events simulate() applies: the spec's (`at` and `when`, from the generated event methods) and run-time
doses (dosing.py), as hodec.solvers Events over the model's state, extended by the infusion rates when doses
infuse (hidden from the caller).

Order at one time: the spec's time events in spec order, then the doses (bolus, infusion start, infusion end,
each by dose row), then the state events.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import solvers
from .dosing import DoseJumps, Doses, per_size


class SimulationEvents:
    """A model's spec events and a run's doses for one state batch: the solver's Events, and the right-hand side,
    Jacobian, initial state and tolerances of the state [y, r] (r: the infusion rates, m of them; m = 0 without
    infusions, where the state is the model's own).

    `after` (the start time, a number or [*batch]): the initial state is already the one after the events at that
    time (a multiple-shooting segment continuing another): none of them applies again, and the infusions running
    then start running."""

    def __init__(self, model, doses: Optional[Doses], batch: tuple, like: torch.Tensor,
                 after: Optional[torch.Tensor] = None):
        self.model, self.batch, self.after = model, batch, after
        self.n = len(model.state_names)
        self.spec_times = _spec_times(model, batch, like)
        if doses is not None:
            doses.check(model.state_names)
            if model.compartments_table:  # amounts into concentrations
                doses = per_size(doses.to(like.dtype, like.device), model.compartment_sizes(), batch)
        self.doses = None if doses is None else DoseJumps(doses, self.n, batch, like.dtype, like.device)
        self.m = 0 if self.doses is None else self.doses.m

    def events(self) -> solvers.Events:
        times = self.spec_times if self.doses is None else torch.cat([self.spec_times, self.doses.times])
        if self.after is not None:  # the initial state is after these already
            times = torch.where(times == self.after, torch.nan, times)
        conditions = bool(self.model.state_events)
        return solvers.Events(times=times if times.shape[0] else None, on_time=self._on_time,
                              condition=self._condition if conditions else None,
                              on_condition=self._on_condition if conditions else None)

    def _on_time(self, k: int, t, z):
        K = self.spec_times.shape[0]
        return self._assign(self.model.time_events[k], t, z) if k < K else self.doses.jump(k - K, z)

    def _condition(self, t, z):
        return self.model.event_conditions(t, z[..., :self.n])

    def _on_condition(self, e: int, t, z):
        return self._assign(self.model.state_events[e], t, z)

    def _assign(self, index: int, t, z):
        if not self.m:
            return self.model.event_assign(index, t, z)
        return torch.cat([self.model.event_assign(index, t, z[..., :self.n]), z[..., self.n:]], -1)

    # ---------------------------------------------------------------- the state with infusion rates
    def rhs(self):
        """The right-hand side the solver integrates: the model itself without infusions."""
        if not self.m:
            return self.model
        n = self.n

        def f(t, z):
            r = z[..., n:]
            return torch.cat([self.model(t, z[..., :n]) + self.doses.inflow(r), torch.zeros_like(r)], -1)
        return f

    def jacobian(self, jacobian):
        """The Jacobian of rhs() from the model's (None stays None: the solver differentiates rhs)."""
        if not self.m or jacobian is None:
            return jacobian
        n, m = self.n, self.m

        def extended(t, z):
            J = jacobian(t, z[..., :n])
            inflow = self.doses.spread.T.expand(*J.shape[:-2], n, m)
            return torch.cat([torch.cat([J, inflow], -1), z.new_zeros(*J.shape[:-2], m, n + m)], -2)
        return extended

    def initial(self, y0: torch.Tensor) -> torch.Tensor:
        if not self.m:
            return y0
        rates = y0.new_zeros(*y0.shape[:-1], self.m) if self.after is None else self.doses.running(self.after)
        return torch.cat([y0, rates.expand(*y0.shape[:-1], self.m).to(y0.dtype)], -1)

    def atol(self, atol):
        """atol over [y, r]: a tensor one (per state, or per member and state) gains the rates' (their error
        estimate is exactly 0: any value serves)."""
        if not self.m or isinstance(atol, (int, float)):
            return atol
        atol = torch.as_tensor(atol)
        return torch.cat([atol, atol.new_ones(*atol.shape[:-1], self.m)], -1)

    def state_names(self) -> tuple:
        names = tuple(self.model.state_names)
        return names + tuple(f"the infusion rate into {names[i]}" for i in self.doses.targets) if self.m else names

    def visible(self, ys: torch.Tensor) -> torch.Tensor:
        return ys[..., :self.n] if self.m else ys


def _spec_times(model, batch: tuple, like: torch.Tensor) -> torch.Tensor:
    """The spec's event times [K, *batch] (per-sample params: each member its own)."""
    if not model.time_events:
        return like.new_zeros(0, *batch)
    times = model.event_times().to(like.dtype)
    lead = len(batch) - (times.dim() - 1)
    return times.reshape(times.shape[0], *([1] * lead), *times.shape[1:]).expand(times.shape[0], *batch)
