"""The integration loop shared by every method: each batch member its own time, step, acceptance and outputs.

The loop body is two pure functions of tensors, `attempt` (one step of every member: the method's step, the error
norm, acceptance, the next step size, the outputs the step passes, stiffness and underflow flags) and `output`
(one dense-output value per member), so that `compile=True` can hand each to torch.compile whole; the Python loop
around them makes one host synchronisation per step, reading back at once how many outputs the step passes and
whether a member needs attention. Outputs are assembled into [T, B, n] at the end by one index_copy
(differentiable).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch

from .base import Method
from .controller import Controller
from .errors import start_failure, state_name, stiffness, too_many_steps, underflow, underflow_not_finite
from .events import FlatEvents, locate

# Hairer's DOPRI5 test (II, IV.2): stiff after this many accepted steps with h·|λ| beyond the stability limit,
# forgiven after this many consecutive ones within it.
STIFF_STEPS, NONSTIFF_STEPS = 15, 6
# ... counting only steps after which the rest of the span, at that step size, would take more than this many steps:
# a solution that settles at its equilibrium also holds an explicit step at the stability limit (a decay or a PK
# model run to t = 200 was 'stiff' at t = 196), and that costs nothing worth a stiff method, let alone an error.
STIFF_REMAINING = 1000


class State(NamedTuple):
    t: torch.Tensor  # [B] each member's time
    y: torch.Tensor  # [B, n]
    h: torch.Tensor  # [B] the step to try next
    cache: Any  # the method's
    nxt: torch.Tensor  # [B] index of the member's next output time
    stiff: torch.Tensor  # [B] stiffness counters (explicit methods)
    calm: torch.Tensor
    rejected: torch.Tensor  # [B] the last attempt was rejected (no growth now)
    accepted: torch.Tensor  # [B] accepted steps so far
    # with events (else None): the next time event (index into events.times) [B]; a located state event's time
    # [B] (+inf: none) and its columns [B, E]; armed [B, E]: the condition was false at the last point
    event: Optional[torch.Tensor] = None
    stop: Optional[torch.Tensor] = None
    pending: Optional[torch.Tensor] = None
    armed: Optional[torch.Tensor] = None


class Attempt(NamedTuple):
    state: State  # after the step (rejected members unchanged)
    step: Any  # the method's Step
    h: torch.Tensor  # [B] the step size tried
    t_new: torch.Tensor  # [B] where accepted members now are
    passed: torch.Tensor  # [B] how many output times the step passes
    underflow: torch.Tensor  # [B] unfinished members whose next step no longer moves their time
    status: torch.Tensor  # [3]: max(passed), members found stiff, members whose step underflows (+ [2] events)
    # with events (else None): accepted members whose step ends at an event time (a time event or a located state
    # event), whose outputs at that time wait for the jump [B]; members whose step passes a crossing not yet
    # located (rejected, to be located) [B, E]; located state events whose condition holds at the step's end [B, E]
    hit: Optional[torch.Tensor] = None
    crossing: Optional[torch.Tensor] = None
    fire: Optional[torch.Tensor] = None


class Loop:
    """The two loop functions for one method, problem and controller, optionally compiled."""

    def __init__(self, method: Method, problem, controller: Controller, grid: torch.Tensor, compile: bool,
                 stop_at_outputs: bool = False, events: Optional[FlatEvents] = None):
        self.method, self.problem, self.controller, self.grid = method, problem, controller, grid
        self.events = events
        # A stiff method's steps grow far beyond the solution's fast scales, where its dense output (a lower-order
        # interpolant the error estimate does not control) errs by up to ~70x rtol (rodas5p, measured): its steps
        # end at every output time instead.
        self.stop_at_outputs = stop_at_outputs or method.stiff
        self.attempt = _Compiled(self._attempt) if compile else self._attempt
        self.output = _Compiled(self._output) if compile else self._output
        self._indices: list = []

    def index(self, k: int):
        """k for output(): a plain int eagerly, a 0-dim tensor when compiled (an int would be a constant of the
        graph, compiled again for every k)."""
        if not isinstance(self.output, _Compiled):
            return k
        while len(self._indices) <= k:
            self._indices.append(torch.tensor(len(self._indices), device=self.grid.device))
        return self._indices[k]

    def _attempt(self, s: State) -> Attempt:
        method, ctl, grid, events = self.method, self.controller, self.grid, self.events
        done = s.nxt >= grid.shape[1]
        # The step ends at the last output time, or with stop_at_outputs at the next one (f may have kinks there),
        # or at the next event (a time event, or a located state event) when that comes first.
        t_end = grid.gather(1, s.nxt.clamp(max=grid.shape[1] - 1)[:, None]).squeeze(-1) if self.stop_at_outputs \
            else grid[:, -1]
        if events is not None:
            t_event = events.times.gather(1, s.event[:, None]).squeeze(-1)
            t_end = torch.where(t_event <= t_end, t_event, t_end)  # at a tie the event time's gradient
            t_end = torch.where(s.stop < t_end, s.stop, t_end)
        remaining = t_end - s.t
        last = (s.h >= remaining) | done
        h = torch.where(last, remaining, s.h)
        step = method.step(self.problem, s.t, s.y, h, s.cache)
        # Step-size control is not differentiated (as in diffrax): gradients are those of the steps taken, and an
        # infinite error of a rejected step cannot reach them through h.
        err = ctl.norm(step.error.detach(), s.y.detach(), step.y1.detach())
        ok = (err <= 1) & ~done
        t_step = torch.where(last, t_end, s.t + h)
        hit = crossing = fire = located = None
        move, armed = ok, s.armed
        if events is not None:
            move, hit, crossing, fire, armed = self._events(s, step, ok, last, t_end, t_event, t_step)
            located = ok & ~move
        t_new = torch.where(move, t_step, s.t)
        reached = torch.searchsorted(grid, t_new[:, None], right=True).squeeze(-1)
        if hit is not None:  # outputs at an event's time are the state after it: recorded after the jump
            reached = torch.where(hit, torch.searchsorted(grid, t_new[:, None]).squeeze(-1), reached)
        passed = (reached - s.nxt) * move
        nxt = s.nxt + passed
        # The next step size is not differentiated either: with the error detached, h_next = h · factor would pass
        # d h/dθ on, times up to 10 per step, where the true controller keeps h_next independent of h (the error
        # grows as h^(q+1)); gradients through a step that ends at an event time then grew ~8x per output interval.
        h_next = ctl.next_step(h.detach(), err, ok, s.rejected, method.order)
        if self.stop_at_outputs or events is not None:  # a step cut short to reach a stop does not shrink the next
            h_next = torch.where(ok & last, torch.maximum(h_next, s.h), h_next)
        if located is not None:  # its step is taken again up to the root
            h_next = torch.where(located, s.h, h_next)
        stiff, calm = s.stiff, s.calm
        if step.stiffness is not None and method.stiff_above is not None:
            costly = grid[:, -1] - t_new > STIFF_REMAINING * h
            beyond = (step.stiffness > method.stiff_above) & costly
            stiff = torch.where(move & beyond, stiff + 1, torch.where(move & (calm + 1 >= NONSTIFF_STEPS), 0, stiff))
            calm = torch.where(move, torch.where(beyond, 0, calm + 1), calm)
        done_new = nxt >= grid.shape[1]
        eps = torch.finfo(s.y.dtype).eps
        underflow = ~done_new & ~(h_next > 4 * eps * t_new.abs())  # t + h == t from here on (NaN included)
        state = State(t_new, torch.where(move[:, None], step.y1, s.y), h_next, method.after(s.cache, step, move),
                      nxt, stiff, calm, ~ok & ~done, s.accepted + move, s.event, s.stop, s.pending, armed)
        counts = [passed.max(), (stiff >= STIFF_STEPS).sum(), underflow.sum()]
        if events is not None:
            counts += [hit.sum(), located.sum()]
        return Attempt(state, step, h, t_new, passed, underflow, torch.stack(counts), hit, crossing, fire)

    def _events(self, s: State, step, ok, last, t_end, t_event, t_step):
        """(members that move, members at an event time, crossings to locate [B, E], located state events that
        fire [B, E], armed [B, E]) for an attempt with events."""
        at_event = ok & last & (t_end == t_event)
        at_stop = ok & last & (t_end == s.stop)
        if not self.events.E:
            return ok, at_event | at_stop, None, None, s.armed
        with torch.no_grad():
            above = self.events.condition(t_step.detach(), step.y1.detach()) > 0
        crossing = s.armed & above & ok[:, None]
        fire = crossing & s.pending & at_stop[:, None]
        crossing = crossing & ~fire  # a root not yet located: this member's step is rejected, to be taken again
        move = ok & ~crossing.any(-1)
        armed = torch.where(move[:, None], ~above, s.armed)
        return move, (at_event | at_stop) & move, crossing, fire, armed

    def _output(self, k, s: State, a: Attempt):
        """The k-th output time each member's step passes: (value [B, n], output index [B], written [B])."""
        write = k < a.passed
        idx = torch.clamp(s.nxt + k, max=self.grid.shape[1] - 1)
        t_out = self.grid.gather(1, idx[:, None]).squeeze(-1)
        positive = a.h > 0
        theta = torch.where(positive, (t_out - s.t) / torch.where(positive, a.h, torch.ones_like(a.h)),
                            torch.ones_like(a.h))
        value = self.method.interpolate(s.t, a.h, s.y, a.step, theta.clamp(0, 1))
        value = torch.where((t_out == a.t_new)[:, None], a.step.y1, value)  # the step's end exactly
        return value, idx, write


class _Compiled:
    """A loop function compiled by torch.compile. From its third call on, its inputs are always tensors made the
    same way (by the previous compiled calls) in one solve: torch.compile's guards, ~0.1 ms a call, as much as a
    small system's whole step, are then skipped."""

    WARM = 2

    def __init__(self, fn):
        self.fn = torch.compile(fn, dynamic=False)
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        with torch.compiler.set_stance(skip_guard_eval_unsafe=self.calls > self.WARM):
            return self.fn(*args)


def integrate(method: Method, problem, y0: torch.Tensor, ts: torch.Tensor, controller: Controller, *,
              max_steps: int, state_names: Optional[Sequence[str]] = None, switch_to: Optional[Callable] = None,
              compile: bool = False, stop_at_outputs: bool = False, stats: Optional[dict] = None,
              direction: float = 1.0, events: Optional[FlatEvents] = None) -> torch.Tensor:
    """y0 [B, n] at ts[0]; ts [T, B], non-decreasing per member. Returns y at ts, [T, B, n].

    events: time and state events (see events.py), in the integration variable.

    direction: the caller's time is direction·t (solve() integrates s = −t for a decreasing grid): errors and stats
    give times in the caller's time.

    switch_to: when an explicit method finds the problem stiff, a factory of the stiff method to go on with (the
    whole batch switches from where each member stands); without it, StiffnessDetected is raised."""
    T, B = ts.shape
    grid = ts.T.contiguous()  # [B, T] for searchsorted
    loop = Loop(method, problem, controller, grid, compile, stop_at_outputs, events)
    t, y = ts[0].clone(), y0
    marks = _start_events(events, t, y) if events is not None else {}
    y = marks.pop("y", y)
    f0 = problem.f(t, y)
    nxt = torch.searchsorted(grid, t[:, None], right=True).squeeze(-1)  # outputs at t0 are y0 (after its events)
    _check_start(direction * t, y, f0, nxt < T, state_names)
    zeros = torch.zeros_like(nxt)
    with torch.no_grad():
        h0 = controller.first_step(problem, t, y, f0, grid[:, -1] - t, method.order)
    s = State(t, y, h0, method.init(problem, t, y, f0), nxt, zeros, zeros, torch.zeros_like(nxt, dtype=torch.bool),
              zeros, **marks)
    records = [(y, torch.full_like(nxt, k), k < nxt) for k in range(int(nxt.max()))]
    steps = 0
    jumps = 0
    while not bool((s.nxt >= T).all()):
        steps += 1
        if steps > max_steps:
            _too_many(s, T, max_steps, direction)
        a = loop.attempt(s)
        n_out, n_stiff, n_underflow, *n_events = a.status.tolist()
        records.extend(loop.output(loop.index(k), s, a) for k in range(n_out))
        if n_underflow:
            _underflow(s, a, state_names, controller, direction)
        before, s = s, a.state
        if n_events and n_events[1]:
            s = _locate(loop, before, a)
        if n_events and n_events[0]:
            s, jumped = _jump(loop, s, a, records)
            jumps += jumped
        if n_stiff:
            if switch_to is None:
                _stiff(loop.method, s, direction)
            loop = Loop(switch_to(), problem, controller, grid, compile, stop_at_outputs, events)
            zeros = torch.zeros_like(s.nxt)
            s = s._replace(cache=loop.method.init(problem, s.t, s.y, problem.f(s.t, s.y)), stiff=zeros, calm=zeros)
            if stats is not None:
                stats["switched_at"] = float(direction * s.t.min())
    if stats is not None:
        # accepted: the most any member took; accepted_each: each member's own count (flat), so that per-member
        # step control can be observed
        stats.update(steps=steps, accepted=int(s.accepted.max()), accepted_each=s.accepted.tolist(), n_f=problem.n_f,
                     n_jac=problem.n_jac, method=loop.method.name)
        if events is not None:
            stats["jumps"] = jumps  # events applied, summed over members (those at the start not counted)
    return _assemble(records, T, B)


def _start_events(events: FlatEvents, t: torch.Tensor, y: torch.Tensor) -> dict:
    """The event fields of the first State, and y after the time events at the start time (state events do not
    fire at the start: a condition already true there is not armed)."""
    B = t.shape[0]
    event = events.start
    y, event, _ = _time_jumps(events, t, y, event, torch.ones_like(event, dtype=torch.bool))
    pending = torch.zeros(B, events.E, dtype=torch.bool, device=t.device)
    armed = ~(events.condition(t, y).detach() > 0) if events.E else pending
    return dict(y=y, event=event, stop=torch.full_like(t, torch.inf), pending=pending, armed=armed)


def _time_jumps(events: FlatEvents, t, y, event, hit):
    """The time events at t of the members in hit, in row order: (y, next event index, members that jumped)."""
    jumped = torch.zeros_like(hit)
    due = hit & (events.times.gather(1, event[:, None]).squeeze(-1) == t)
    while bool(due.any()):
        row = events.order.gather(1, event[:, None]).squeeze(-1)
        for k in row[due].unique().tolist():
            y = torch.where((due & (row == k))[:, None], events.on_time(k, t, y), y)
        jumped = jumped | due
        event = event + due
        due = due & (events.times.gather(1, event[:, None]).squeeze(-1) == t)
    return y, event, jumped


def _locate(loop: Loop, before: State, a: Attempt) -> State:
    """After an attempt whose members passed a crossing: its time located on their step; they stop there next."""
    located = a.crossing.any(-1)
    stop, columns = locate(loop.events, loop.method, before.t, before.y, a.h, a.step, before.t + a.h, a.crossing)
    s = a.state
    return s._replace(stop=torch.where(located, stop, s.stop),
                      pending=torch.where(located[:, None], columns, s.pending))


def _jump(loop: Loop, s: State, a: Attempt, records: list):
    """The state after the events at the end of the members' steps in a.hit (time events, then the located state
    events, then the conditions those jumps made true), their outputs at that time recorded; and how many jumps."""
    events, problem, hit = loop.events, loop.problem, a.hit
    t, y, armed = s.t, s.y, s.armed
    y, event, jumped = _time_jumps(events, t, y, s.event, hit)
    count = int(jumped.sum())
    if events.E:
        fire = a.fire & (hit & ~jumped)[:, None]
        if bool(fire.any()) and torch.is_grad_enabled():
            t, y = _implicit(events, problem, t, y, fire.any(-1), fire.int().argmax(-1))
        # The state events at this time, in column order: the located ones, and those a jump here made true (a
        # located one at a time event's time included); each fires where its condition holds at its turn (an
        # earlier jump at this time may have made it false again: then it does not).
        due = hit[:, None] & (armed | a.fire)
        g = events.condition(t, y).detach()
        for e in range(events.E):
            now = due[:, e] & (g[:, e] > 0)
            if bool(now.any()):
                y = torch.where(now[:, None], events.on_condition(e, t, y), y)
                g = events.condition(t, y).detach()
                count += int(now.sum())
                jumped = jumped | now
        armed = torch.where(hit[:, None], ~(g > 0), armed)
    cache = loop.method.restart(problem, t, y, s.cache, jumped) if bool(jumped.any()) else s.cache
    at = (torch.searchsorted(loop.grid, t[:, None], right=True).squeeze(-1) - s.nxt) * hit
    records.extend((y, torch.clamp(s.nxt + k, max=loop.grid.shape[1] - 1), k < at) for k in range(int(at.max())))
    return s._replace(t=t, y=y, cache=cache, nxt=s.nxt + at, event=event, stop=torch.where(hit, torch.inf, s.stop),
                      pending=s.pending & ~hit[:, None], armed=armed), count


def _implicit(events: FlatEvents, problem, t, y, member, column):
    """t and y at located state events (members in member, condition column), their time differentiable by the
    implicit function theorem: t* − (g(t*, y) − its value) / (dg/dt), y moved along f by that (zero) shift."""
    g = events.condition(t, y).gather(1, column[:, None]).squeeze(-1)
    if not g.requires_grad:  # nothing to differentiate
        return t, y
    f = problem.f(t, y).detach()
    rate = events.rate(t, y, f).gather(1, column[:, None]).squeeze(-1)
    usable = member & torch.isfinite(rate) & (rate != 0)
    shift = torch.where(usable, -(g - g.detach()) / torch.where(usable, rate, torch.ones_like(rate)), 0.0)
    return t + shift, y + f * shift[:, None]


def _assemble(records: list, T: int, B: int) -> torch.Tensor:
    values = torch.stack([r[0] for r in records])  # [K, B, n]
    idx = torch.stack([r[1] for r in records])
    mask = torch.stack([r[2] for r in records])
    members = torch.arange(B, device=idx.device).expand_as(idx)
    position = (idx * B + members)[mask]
    n = values.shape[-1]
    out = values.new_zeros(T * B, n).index_copy(0, position, values[mask])
    return out.reshape(T, B, n)


def _member(mask: torch.Tensor) -> int:
    return int(mask.nonzero()[0, 0])


def _check_start(t, y, f0, todo, state_names):
    """A non-finite initial state or rate would otherwise surface only as a step-size underflow at t0, after
    hundreds of ever smaller steps, blaming the step size."""
    bad = ~(torch.isfinite(y) & torch.isfinite(f0)) & todo[:, None]
    if bool(bad.any()):
        b, j = (int(i) for i in bad.nonzero()[0])
        initial = not bool(torch.isfinite(y[b, j]))
        value = float((y[b, j] if initial else f0[b, j]).detach())  # a number for the message, not a graph node
        raise start_failure(float(t[b]), b, state_name(state_names, j), value, initial)


def _too_many(s: State, T: int, max_steps: int, direction: float):
    unfinished = s.nxt < T
    b = _member(unfinished)
    t = float(direction * s.t[b])
    raise too_many_steps(max_steps, t, b, f", {int(unfinished.sum())} member(s) unfinished", "rodas5p")


def _stiff(method, s: State, direction: float):
    b = _member(s.stiff >= STIFF_STEPS)
    t = float(direction * s.t[b])
    raise stiffness(method.name, STIFF_STEPS, t, b, "rodas5p")


def _underflow(s: State, a: Attempt, state_names, controller: Controller, direction: float):
    new = a.state
    b = _member(a.underflow)
    t = float(direction * s.t[b])
    finite = torch.isfinite(a.step.y1[b]) & torch.isfinite(a.step.error[b])
    if not bool(finite.all()):  # the right-hand side itself fails there: the step size is only the symptom
        raise underflow_not_finite(t, b, float(new.h[b]), state_name(state_names, _member(~finite)))
    ratio = (a.step.error[b] / controller.scale(s.y[b], a.step.y1[b])).abs()
    ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, torch.inf))
    j = int(ratio.argmax())
    raise underflow(t, b, float(new.h[b]), state_name(state_names, j), s.y[b, j].item())
