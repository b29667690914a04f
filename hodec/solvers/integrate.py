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
from .errors import SolverError, StepSizeUnderflow, StiffnessDetected, TooManySteps

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


class Attempt(NamedTuple):
    state: State  # after the step (rejected members unchanged)
    step: Any  # the method's Step
    h: torch.Tensor  # [B] the step size tried
    t_new: torch.Tensor  # [B] where accepted members now are
    passed: torch.Tensor  # [B] how many output times the step passes
    underflow: torch.Tensor  # [B] unfinished members whose next step no longer moves their time
    status: torch.Tensor  # [3]: max(passed), members found stiff, members whose step underflows


class Loop:
    """The two loop functions for one method, problem and controller, optionally compiled."""

    def __init__(self, method: Method, problem, controller: Controller, grid: torch.Tensor, compile: bool,
                 stop_at_outputs: bool = False):
        self.method, self.problem, self.controller, self.grid = method, problem, controller, grid
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
        method, ctl, grid = self.method, self.controller, self.grid
        done = s.nxt >= grid.shape[1]
        # The step ends at the last output time, or with stop_at_outputs at the next one (f may have kinks there).
        t_end = grid.gather(1, s.nxt.clamp(max=grid.shape[1] - 1)[:, None]).squeeze(-1) if self.stop_at_outputs \
            else grid[:, -1]
        remaining = t_end - s.t
        last = (s.h >= remaining) | done
        h = torch.where(last, remaining, s.h)
        step = method.step(self.problem, s.t, s.y, h, s.cache)
        # Step-size control is not differentiated (as in diffrax): gradients are those of the steps taken, and an
        # infinite error of a rejected step cannot reach them through h.
        err = ctl.norm(step.error.detach(), s.y.detach(), step.y1.detach())
        ok = (err <= 1) & ~done
        t_new = torch.where(ok, torch.where(last, t_end, s.t + h), s.t)
        reached = torch.searchsorted(grid, t_new[:, None], right=True).squeeze(-1)
        passed = (reached - s.nxt) * ok
        nxt = s.nxt + passed
        h_next = ctl.next_step(h, err, ok, s.rejected, method.order)
        if self.stop_at_outputs:  # a step cut short to reach an output does not shrink the next one
            h_next = torch.where(ok & last, torch.maximum(h_next, s.h), h_next)
        stiff, calm = s.stiff, s.calm
        if step.stiffness is not None and method.stiff_above is not None:
            costly = grid[:, -1] - t_new > STIFF_REMAINING * h
            beyond = (step.stiffness > method.stiff_above) & costly
            stiff = torch.where(ok & beyond, stiff + 1, torch.where(ok & (calm + 1 >= NONSTIFF_STEPS), 0, stiff))
            calm = torch.where(ok, torch.where(beyond, 0, calm + 1), calm)
        done_new = nxt >= grid.shape[1]
        eps = torch.finfo(s.y.dtype).eps
        underflow = ~done_new & ~(h_next > 4 * eps * t_new.abs())  # t + h == t from here on (NaN included)
        state = State(t_new, torch.where(ok[:, None], step.y1, s.y), h_next, method.after(s.cache, step, ok), nxt,
                      stiff, calm, ~ok & ~done, s.accepted + ok)
        status = torch.stack([passed.max(), (stiff >= STIFF_STEPS).sum(), underflow.sum()])
        return Attempt(state, step, h, t_new, passed, underflow, status)

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
              direction: float = 1.0) -> torch.Tensor:
    """y0 [B, n] at ts[0]; ts [T, B], non-decreasing per member. Returns y at ts, [T, B, n].

    direction: the caller's time is direction·t (solve() integrates s = −t for a decreasing grid): errors and stats
    give times in the caller's time.

    switch_to: when an explicit method finds the problem stiff, a factory of the stiff method to go on with (the
    whole batch switches from where each member stands); without it, StiffnessDetected is raised."""
    T, B = ts.shape
    grid = ts.T.contiguous()  # [B, T] for searchsorted
    loop = Loop(method, problem, controller, grid, compile, stop_at_outputs)
    t, y = ts[0].clone(), y0
    f0 = problem.f(t, y)
    nxt = torch.searchsorted(grid, t[:, None], right=True).squeeze(-1)  # outputs at t0 are y0
    _check_start(direction * t, y, f0, nxt < T, state_names)
    zeros = torch.zeros_like(nxt)
    with torch.no_grad():
        h0 = controller.first_step(problem, t, y, f0, grid[:, -1] - t, method.order)
    s = State(t, y, h0,
              method.init(problem, t, y, f0), nxt, zeros, zeros, torch.zeros_like(nxt, dtype=torch.bool), zeros)
    records = [(y0, torch.full_like(nxt, k), k < nxt) for k in range(int(nxt.max()))]
    steps = 0
    while not bool((s.nxt >= T).all()):
        steps += 1
        if steps > max_steps:
            _too_many(s, T, max_steps, direction)
        a = loop.attempt(s)
        n_out, n_stiff, n_underflow = a.status.tolist()
        records.extend(loop.output(loop.index(k), s, a) for k in range(n_out))
        if n_underflow:
            _underflow(s, a, state_names, controller, direction)
        s = a.state
        if n_stiff:
            if switch_to is None:
                _stiff(loop.method, s, direction)
            loop = Loop(switch_to(), problem, controller, grid, compile, stop_at_outputs)
            zeros = torch.zeros_like(s.nxt)
            s = s._replace(cache=loop.method.init(problem, s.t, s.y, problem.f(s.t, s.y)), stiff=zeros, calm=zeros)
            if stats is not None:
                stats["switched_at"] = float(direction * s.t.min())
    if stats is not None:
        # accepted: the most any member took; accepted_each: each member's own count (flat), so that per-member
        # step control can be observed
        stats.update(steps=steps, accepted=int(s.accepted.max()), accepted_each=s.accepted.tolist(), n_f=problem.n_f,
                     n_jac=problem.n_jac, method=loop.method.name)
    return _assemble(records, T, B)


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


def _state(state_names, j: int) -> str:
    return state_names[j] if state_names else f"state {j}"


def _check_start(t, y, f0, todo, state_names):
    """A non-finite initial state or rate would otherwise surface only as a step-size underflow at t0, after
    hundreds of ever smaller steps, blaming the step size."""
    bad = ~(torch.isfinite(y) & torch.isfinite(f0)) & todo[:, None]
    if bool(bad.any()):
        b, j = (int(i) for i in bad.nonzero()[0])
        name = _state(state_names, j)
        what = (f"the initial value of {name} is {float(y[b, j])}" if not torch.isfinite(y[b, j]) else
                f"the rate of {name} (f at the initial state) is {float(f0[b, j])}")
        raise SolverError(f"the solve cannot start at t = {float(t[b]):.9g} (batch member {b}): {what}")


def _too_many(s: State, T: int, max_steps: int, direction: float):
    unfinished = s.nxt < T
    b = _member(unfinished)
    t = float(direction * s.t[b])
    raise TooManySteps(f"the solver took more than {max_steps} steps (max_steps) and stopped at t = "
                       f"{t:.6g} (batch member {b}, {int(unfinished.sum())} member(s) unfinished): the "
                       f"model may be stiff (method 'rodas5p' or 'auto'), or raise max_steps")


def _stiff(method, s: State, direction: float):
    b = _member(s.stiff >= STIFF_STEPS)
    t = float(direction * s.t[b])
    raise StiffnessDetected(
        f"the problem is stiff: {method.name} held its step at its stability limit for {STIFF_STEPS} steps by "
        f"t = {t:.6g} (batch member {b}); use a stiff method (method 'rodas5p'), or 'auto', which "
        f"switches to it by itself")


def _underflow(s: State, a: Attempt, state_names, controller: Controller, direction: float):
    new = a.state
    b = _member(a.underflow)
    t = float(direction * s.t[b])
    finite = torch.isfinite(a.step.y1[b]) & torch.isfinite(a.step.error[b])
    if not bool(finite.all()):  # the right-hand side itself fails there: the step size is only the symptom
        j = _member(~finite)
        raise StepSizeUnderflow(
            f"step size underflow at t = {t:.9g} (batch member {b}): every step tried from there, down "
            f"to {float(new.h[b]):.3g}, gives a value of {_state(state_names, j)} that is not finite (nan or inf): "
            f"the right-hand side is not finite just past that time (a division by zero, a log or square root of a "
            f"negative number, an overflow?)")
    ratio = (a.step.error[b] / controller.scale(s.y[b], a.step.y1[b])).abs()
    ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, torch.inf))
    j = int(ratio.argmax())
    name = _state(state_names, j)
    raise StepSizeUnderflow(
        f"step size underflow at t = {t:.9g} (batch member {b}): the step fell to {float(new.h[b]):.3g};"
        f" {name} (= {s.y[b, j].item():.6g}) has the largest error estimate there: the model may blow up or be "
        f"singular at that point (check its params), or be too stiff for the method")
