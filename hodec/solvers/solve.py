"""solve(): the caller's shapes in and out, method names to method objects, and `auto`.

    ys = solve(f, y0, ts, method="auto", rtol=1e-6, atol=1e-8)   # y0 [*batch, n], ts [T] or [T, *batch]

f(t, y) is called with the caller's own shapes: y [*batch, n] and t [*batch] (each member its own time). `auto`
starts with tsit5 and, when the problem turns out stiff, goes on with rodas5p from where each member stands.
A decreasing time grid integrates backward (s = −t). events=Events(...) adds time and state events with jumps
(events.py).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from ..errors import HodecError
from .controller import Controller
from .errors import bad_tolerances
from .events import Events, FlatEvents
from .explicit import ExplicitRK
from .integrate import integrate
from .problem import Problem
from .rosenbrock import METHODS as ROSENBROCK
from .tableaus import DOPRI5, TSIT5

METHODS: dict = {
    "tsit5": lambda: ExplicitRK(TSIT5),
    "dopri5": lambda: ExplicitRK(DOPRI5),
    **ROSENBROCK,
}
AUTO = ("tsit5", "rodas5p")  # (first, the stiff one it switches to)
NAMES = ("auto", *sorted(METHODS))  # every method name solve() takes: the test for "one of hodec's own"
MAX_STEPS = 100_000


def solve(f: Callable, y0: torch.Tensor, ts, method: str = "auto", rtol: float = 1e-6, atol=1e-8, *,
          jacobian: Optional[Callable] = None, autonomous: bool = False, max_steps: int = MAX_STEPS,
          state_names: Optional[Sequence[str]] = None, compile: bool = False, stop_at_outputs: bool = False,
          stats: Optional[dict] = None, events: Optional[Events] = None) -> torch.Tensor:
    """y at the times ts, [T, *batch, n]. jacobian(t, y) -> [*batch, n, n] (the stiff methods differentiate f
    with torch.func without it); compile: hand the loop's step and dense output to torch.compile (worth it for
    long or many solves of one model: the first call compiles); stop_at_outputs: end a step at every output
    time (for a right-hand side with kinks there, e.g. one driven by a spline through data at those times);
    stats, if given, receives steps, n_f, n_jac and the method used (and jumps, with events); events: time and
    state events with their jumps (see events.py)."""
    first, switch_to = _methods(method)
    _check_state(y0)
    _check_tolerances(rtol, atol)
    batch, n = tuple(y0.shape[:-1]), y0.shape[-1]
    B = math.prod(batch)
    ts = _time_grid(ts, batch, y0)
    sign = _direction(ts)
    problem = Problem(*_flat(f, jacobian, batch, n, sign), autonomous=autonomous)
    controller = Controller(rtol, _absolute_tolerance(atol, batch, n, y0))
    flat_events = None if events is None else FlatEvents(events, batch, n, sign, y0, sign * ts)
    ys = integrate(first, problem, y0.reshape(B, n), sign * ts, controller, max_steps=max_steps,
                   state_names=state_names, switch_to=switch_to, compile=compile,
                   stop_at_outputs=stop_at_outputs, stats=stats, direction=sign, events=flat_events)
    return ys.reshape(ts.shape[0], *batch, n)


def _methods(name: str):
    if name == "auto":
        return METHODS[AUTO[0]](), METHODS.get(AUTO[1])
    if name not in METHODS:
        raise HodecError(f"unknown solver method '{name}'; methods: {', '.join(NAMES)}")
    return METHODS[name](), None


def _check_state(y0: torch.Tensor):
    if y0.dim() == 0:
        raise HodecError("the initial state has shape []; expected [*batch, n] (n states, batch any shape)")
    if y0.numel() == 0:
        raise HodecError(f"the initial state holds no values (shape {list(y0.shape)})")
    if not y0.is_floating_point():
        raise HodecError(f"the initial state must be floating-point (float32 or float64), got "
                         f"{str(y0.dtype).removeprefix('torch.')}")


def _check_tolerances(rtol, atol):
    atol_min = float(torch.as_tensor(atol).min())
    if not (rtol > 0 and math.isfinite(rtol)) or not (atol_min >= 0 and math.isfinite(atol_min)) or \
            rtol < 10 * torch.finfo(torch.float64).eps:
        raise bad_tolerances(rtol, atol)


def _absolute_tolerance(atol, batch: tuple, n: int, y0: torch.Tensor):
    """atol as the controller reads it against [B, n]: a number, or a tensor per state [n] or per member and state
    [*batch, n] (a [*batch, n] one would not broadcast against the flat [B, n] as it is)."""
    if isinstance(atol, (int, float)):
        return atol
    value = torch.as_tensor(atol, dtype=y0.dtype, device=y0.device)
    try:
        return value.broadcast_to(*batch, n).reshape(-1, n)
    except RuntimeError:
        raise HodecError(f"atol has shape {list(value.shape)}; expected a number, [n] (per state) or [*batch, n] "
                         f"(per member and state; the initial state has shape {list(y0.shape)})") from None


def _time_grid(ts, batch: tuple, y0: torch.Tensor) -> torch.Tensor:
    """[T, B]: a shared grid expanded, or a per-member one [T, *batch] flattened."""
    ts = torch.as_tensor(ts, dtype=y0.dtype, device=y0.device)
    B = math.prod(batch)
    if ts.dim() == 1:
        ts = ts[:, None].expand(ts.shape[0], B)
    elif ts.dim() > 1 and tuple(ts.shape[1:]) == batch:  # (a 0-dim ts has no T)
        ts = ts.reshape(ts.shape[0], B)
    else:
        raise HodecError(f"the time grid has shape {list(ts.shape)}; expected [T] or [T, *batch] with batch "
                         f"{list(batch)} (the initial state's)")
    if ts.shape[0] == 0 or not bool(torch.isfinite(ts).all()):
        raise HodecError("the time grid must hold at least one time, all finite")
    return ts


def _direction(ts: torch.Tensor) -> float:
    steps = ts[1:] - ts[:-1]
    if bool((steps >= 0).all()):
        return 1.0
    if bool((steps <= 0).all()):
        return -1.0
    raise HodecError("the output times must be sorted (all increasing, or all decreasing to integrate backward)")


def _flat(f: Callable, jacobian: Optional[Callable], batch: tuple, n: int, sign: float):
    """f and its Jacobian in the solvers' layout (t [B], y [B, n]), in the integration variable s = sign·t. A
    forward solve of a one-dimensional batch is already in that layout: no reshapes and no sign flips (each is a
    tensor operation per evaluation, and a small system's step is made of such operations)."""
    B = math.prod(batch)
    forward, flat = sign > 0, len(batch) == 1

    def caller(s, y):
        t = s if forward else -s
        return (t, y) if flat else (t.reshape(batch), y.reshape(*batch, n))

    def flat_f(s, y):
        dy = f(*caller(s, y))
        if dy.shape != (*batch, n) or dy.dtype != y.dtype:  # named here, not as a failed reshape or stage sum
            raise HodecError(f"f(t, y) returned {str(dy.dtype).removeprefix('torch.')} of shape {list(dy.shape)}; "
                             f"expected {str(y.dtype).removeprefix('torch.')} of shape {[*batch, n]} (y's)")
        dy = dy if flat else dy.reshape(B, n)
        return dy if forward else -dy

    def flat_jacobian(s, y):
        J = jacobian(*caller(s, y))
        J = J if flat else J.reshape(B, n, n)
        return J if forward else -J

    return flat_f, (flat_jacobian if jacobian is not None else None)
