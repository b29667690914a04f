"""Events: time events (each batch member its own event times) and state events (a root function), each with a
jump that gives the state after it.

    events = Events(times=tau, on_time=jump_k, condition=g, on_condition=jump_e)
    ys = solve(f, y0, ts, events=events)

- times [K, *batch] (or [K], shared): the event times of each member, NaN or ±inf where a member has fewer; they
  may require grad (a step ends exactly at each, so the solution is differentiable in them). on_time(k, t, y) ->
  the state after the event of row k. Events at the start time apply before the first step.
- condition(t, y) -> [*batch, E]: state event e fires when column e goes from <= 0 to > 0 (not at the start when
  already > 0); on_condition(e, t, y) -> the state after it. The crossing is bracketed by the step's dense output
  and located to the time's floating-point resolution (Illinois' regula falsi), then the step is taken again to
  end exactly there. Its time is differentiable by the implicit function theorem: t* = t*_detached −
  (g(t*, y(t*)) − its value) / (dg/dt), the gradient flowing through g (as torchdiffeq's odeint_event).

Jumps are called with every member and the caller's shapes (t [*batch], y [*batch, n]) and return every member's
state [*batch, n]; the loop keeps the new state only for the members that hit the event. Several events at one
time apply in order: time events by row, then state events by column, each state event only where its condition
holds at its turn (a jump at that time that makes a condition true fires it; one that makes a located one false
again cancels it). Outputs at an event's time report the state after it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..errors import HodecError

# Illinois steps between two bisections (a bisection every few steps bounds the bracket's shrinking from below).
BISECT_EVERY = 4
MAX_LOCATE = 200


@dataclass(frozen=True)
class Events:
    """Time events (times and on_time) and state events (condition and on_condition) for solve()."""

    times: Optional[torch.Tensor] = None
    on_time: Optional[Callable] = None
    condition: Optional[Callable] = None
    on_condition: Optional[Callable] = None


class FlatEvents:
    """Events in the solvers' layout (t [B], y [B, n], integration variable s = sign·t): the time events sorted per
    member with a sentinel +inf column ([B, K + 1]), each with its row index; the jumps and the condition flat."""

    def __init__(self, events: Events, batch: tuple, n: int, sign: float, y0: torch.Tensor, ts: torch.Tensor):
        B = math.prod(batch)
        self.batch, self.n, self.sign = batch, n, sign
        self._events = events
        s = sign * _event_times(events, batch, y0)  # [K, B]
        s = torch.where(torch.isfinite(s), s, torch.full_like(s, torch.inf))
        s = torch.cat([s, s.new_full((1, B), torch.inf)])
        self.times, self.order = torch.sort(s.T, dim=1, stable=True)  # [B, K + 1]; ties keep row order
        self.start = (self.times < ts[0][:, None]).sum(1)  # events before the start never apply
        self.E = 0 if events.condition is None else int(self.condition(ts[0], y0.reshape(B, n)).shape[-1])
        if self.E and events.on_condition is None:
            raise HodecError("events: a condition needs on_condition(e, t, y), the state after state event e")

    def _caller(self, s, y):
        t = s if self.sign > 0 else -s
        return t.reshape(self.batch), y.reshape(*self.batch, self.n)

    def _flat(self, y_new, what: str) -> torch.Tensor:
        if y_new.shape != (*self.batch, self.n):
            raise HodecError(f"events: {what} returned shape {list(y_new.shape)}; expected "
                             f"{[*self.batch, self.n]} (y's)")
        return y_new.reshape(-1, self.n)

    def on_time(self, k: int, s, y) -> torch.Tensor:
        return self._flat(self._events.on_time(k, *self._caller(s, y)), f"on_time({k}, t, y)")

    def on_condition(self, e: int, s, y) -> torch.Tensor:
        return self._flat(self._events.on_condition(e, *self._caller(s, y)), f"on_condition({e}, t, y)")

    def condition(self, s, y) -> torch.Tensor:
        g = self._events.condition(*self._caller(s, y))
        if g.shape[:-1] != self.batch or g.dim() != len(self.batch) + 1:
            raise HodecError(f"events: condition(t, y) returned shape {list(g.shape)}; expected "
                             f"{[*self.batch, 'E']} (E state events)")
        return g.reshape(-1, g.shape[-1])

    def rate(self, s, y, direction) -> torch.Tensor:
        """dg/ds [B, E] along the solution (direction = f(s, y)), detached: the implicit function theorem's
        denominator."""
        with torch.no_grad():
            return torch.func.jvp(self.condition, (s.detach(), y.detach()),
                                  (torch.ones_like(s), direction.detach()))[1]


def _event_times(events: Events, batch: tuple, y0: torch.Tensor) -> torch.Tensor:
    """[K, B]: the caller's [K] or [K, *batch] event times, flattened."""
    if events.times is None:
        return y0.new_zeros(0, math.prod(batch))
    if events.on_time is None:
        raise HodecError("events: times need on_time(k, t, y), the state after time event k")
    times = torch.as_tensor(events.times, dtype=y0.dtype, device=y0.device)
    if times.dim() == 1:
        return times[:, None].expand(times.shape[0], math.prod(batch))
    if tuple(times.shape[1:]) != batch:
        raise HodecError(f"events: times have shape {list(times.shape)}; expected [K] or [K, *batch] with batch "
                         f"{list(batch)} (the initial state's)")
    return times.reshape(times.shape[0], -1)


def locate(events: FlatEvents, method, t: torch.Tensor, y: torch.Tensor, h: torch.Tensor, step, t_end,
           crossing: torch.Tensor):
    """The first root in the step from (t, y) of size h of each member's crossing columns ([B, E]: <= 0 at t,
    > 0 at t_end), bracketed on the step's dense output: (time [B], the columns whose root is there [B, E]).
    The time returned is the bracket's upper end (the condition holds there), never the step's start."""
    with torch.no_grad():
        t, y, h, t_end = t.detach(), y.detach(), h.detach(), t_end.detach()
        g0 = events.condition(t, y)
        g1 = events.condition(t_end, step.y1.detach())
        span = h.abs()
        tol = 4 * torch.finfo(y.dtype).eps * torch.maximum(t.abs(), t_end.abs()).clamp(min=1e-300)
        roots = torch.full_like(crossing, torch.inf, dtype=t.dtype)
        for e in range(crossing.shape[1]):
            if bool(crossing[:, e].any()):
                upper = _illinois(events, method, t, y, h, step, e, g0[:, e], g1[:, e], crossing[:, e],
                                  tol / torch.where(span > 0, span, torch.ones_like(span)))
                roots[:, e] = torch.where(crossing[:, e], t + upper * h, torch.inf)
        first = roots.min(1).values
        first = torch.maximum(first, torch.nextafter(t, torch.full_like(t, torch.inf)))
        return first, crossing & (roots <= first[:, None] + tol[:, None])


def _illinois(events, method, t, y, h, step, e: int, g_lo, g_hi, active, tol):
    """θ in (0, 1] per member where column e of the condition on the dense output first exceeds 0, to tol."""
    lo, hi = torch.zeros_like(t), torch.ones_like(t)
    side = torch.zeros_like(t)  # +1: hi moved last, −1: lo moved last
    for i in range(MAX_LOCATE):
        todo = active & (hi - lo > tol)
        if not bool(todo.any()):
            break
        middle = (lo + hi) / 2
        if i % BISECT_EVERY == BISECT_EVERY - 1:
            theta = middle
        else:
            falsi = lo - g_lo * (hi - lo) / (g_hi - g_lo)
            theta = torch.where(torch.isfinite(falsi) & (falsi > lo) & (falsi < hi), falsi, middle)
        theta = torch.where(todo, theta, hi)
        g = events.condition(t + theta * h, method.interpolate(t, h, y, step, theta))[:, e]
        up = todo & (g > 0)
        down = todo & ~(g > 0)
        # Illinois: an end kept twice in a row has its value halved, which pulls the next secant point across.
        g_lo = torch.where(up & (side > 0), g_lo / 2, g_lo)
        g_hi = torch.where(down & (side < 0), g_hi / 2, g_hi)
        hi, g_hi = torch.where(up, theta, hi), torch.where(up, g, g_hi)
        lo, g_lo = torch.where(down, theta, lo), torch.where(down, g, g_lo)
        side = torch.where(up, 1.0, torch.where(down, -1.0, side))
    return hi
