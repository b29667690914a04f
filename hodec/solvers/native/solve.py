"""solve_native(): a compiled library's solve (build.py) with the caller's tensors, checked, and its failures
worded as the torch solvers word them (hodec/solvers/integrate.py), with member, time and state.

    ys = solve_native(library(source), y0, ts, params, inputs, "auto", 1e-6, 1e-8, max_steps=100_000,
                      state_names=("x", "y"))   # y0 [B, n]; ts [T] or [T, B] → ys [T, B, n] float64

Everything is float64 in C: tensors of another floating dtype are converted (a copy), as are non-contiguous
ones; torch's data pointers are handed to C, so no numpy is needed.
"""
from __future__ import annotations

import ctypes
import math
from typing import Optional, Sequence

import torch

from ...errors import HodecError
from ..errors import SolverError, StepSizeUnderflow, StiffnessDetected, TooManySteps
from ..integrate import STIFF_STEPS
from ..solve import AUTO
from .build import dims
from .coefficients import AUTO_METHOD, FAILURES, METHODS

NAMES = ("auto", *METHODS)  # the methods solve_native takes
INTERPOLATION = ("linear", "previous")


def solve_native(lib: ctypes.CDLL, y0: torch.Tensor, ts, params, inputs: Sequence, method: str, rtol: float,
                 atol, *, max_steps: int, state_names: Optional[Sequence[str]] = None,
                 stats: Optional[dict] = None) -> torch.Tensor:
    """y at the times ts, [T, B, n] float64. params [P] (shared) or [B, P]; inputs: one (times [K], values [K] or
    [K, B], 'linear' | 'previous') per model input; atol a number or [n]; stats, if given, receives steps (attempts),
    rejected, n_f, n_jac and switched (members that `auto` moved to the stiff method), summed over members."""
    n, P, U, _ = dims(lib)
    number = _method(method)
    y0 = _float64(y0, "the initial state")
    if y0.dim() != 2 or y0.shape[1] != n or y0.shape[0] == 0:
        raise HodecError(f"the initial state has shape {list(y0.shape)}; expected [B, {n}] (B >= 1 members)")
    B = y0.shape[0]
    ts, ts_time, ts_member = _grid(ts, B)
    p, p_stride = _params(params, B, P)
    tolerance = _tolerances(rtol, atol, n)
    times, values, info = _tables(inputs, U, B)
    T = ts.shape[0]
    out = torch.empty(T, B, n, dtype=torch.float64)
    counts = (ctypes.c_long * 5)()
    fail = (ctypes.c_double * 3)()
    fail_at = (ctypes.c_long * 3)()
    status = lib.hodec_solve(number, B, T, ts.data_ptr(), ts_time, ts_member, y0.data_ptr(), p.data_ptr(), p_stride,
                             times.data_ptr(), values.data_ptr(), info.data_ptr(), float(rtol), tolerance.data_ptr(),
                             int(max_steps), out.data_ptr(), counts, fail, fail_at)
    if stats is not None:
        stats.update(steps=counts[0], rejected=counts[1], switched=counts[2], n_f=counts[3], n_jac=counts[4])
    if status:
        raise _failure(FAILURES[status - 1], tuple(fail), tuple(fail_at), max_steps, state_names)
    return out


def _method(name: str) -> int:
    if name == "auto":
        return AUTO_METHOD
    if name not in METHODS:
        raise HodecError(f"unknown native solver method '{name}'; methods: {', '.join(NAMES)}")
    return METHODS.index(name)


def _float64(x, what: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise HodecError(f"{what} must hold real numbers, got {str(x.dtype).removeprefix('torch.')}")
    return x.detach().to(device="cpu", dtype=torch.float64).contiguous()


def _grid(ts, B: int) -> tuple:
    """(grid, stride between times, stride between members): a shared [T] grid or a per-member [T, B] one."""
    ts = _float64(ts, "the time grid")
    if not (ts.dim() == 1 or (ts.dim() == 2 and ts.shape[1] == B)) or ts.shape[0] == 0:
        raise HodecError(f"the time grid has shape {list(ts.shape)}; expected [T] or [T, {B}] (T >= 1)")
    if not bool(torch.isfinite(ts).all()):
        raise HodecError("the time grid must hold finite times")
    if not bool((ts[1:] >= ts[:-1]).all()):
        raise HodecError("the output times must be non-decreasing (native solvers integrate forward only; the "
                         "torch solvers integrate backward)")
    return (ts, 1, 0) if ts.dim() == 1 else (ts, B, 1)


def _params(params, B: int, P: int) -> tuple:
    p = _float64(params if params is not None else [], "the parameters")
    if p.shape == (P,):
        return (p if P else torch.zeros(1, dtype=torch.float64)), 0
    if p.shape == (B, P):
        return (p if P else torch.zeros(1, dtype=torch.float64)), P
    raise HodecError(f"the parameters have shape {list(p.shape)}; expected [{P}] (shared) or [{B}, {P}] "
                     f"(per member)")


def _tolerances(rtol, atol, n: int) -> torch.Tensor:
    """atol as [n]; rtol and atol checked as solve() checks them."""
    tolerance = _float64(atol, "atol")
    if tolerance.dim() == 0:
        tolerance = tolerance.expand(n).contiguous()
    if tolerance.shape != (n,):
        raise HodecError(f"atol has shape {list(tolerance.shape)}; expected a number or [{n}] (per state)")
    if not (rtol > 0 and math.isfinite(rtol) and rtol >= 10 * torch.finfo(torch.float64).eps) or \
            not bool((torch.isfinite(tolerance) & (tolerance >= 0)).all()):
        raise HodecError(f"solver tolerances must be finite with rtol > 1e-15 and atol >= 0; got rtol={rtol}, "
                         f"atol={atol}")
    return tolerance


def _tables(inputs: Sequence, U: int, B: int) -> tuple:
    """The input tables concatenated: (times, values, info [U, 5]: times offset, K, values offset, columns,
    'previous')."""
    inputs = list(inputs or ())
    if len(inputs) != U:
        raise HodecError(f"the model reads {U} input(s); {len(inputs)} table(s) given")
    times, values, info = [], [], []
    t_offset = v_offset = 0
    for k, table in enumerate(inputs):
        if not (isinstance(table, (tuple, list)) and len(table) == 3):
            raise HodecError(f"input {k}: expected (times, values, method), got {type(table).__name__}")
        x, v, how = _float64(table[0], f"input {k}'s times"), _float64(table[1], f"input {k}'s values"), table[2]
        if how not in INTERPOLATION:
            raise HodecError(f"input {k}: interpolation method must be 'linear' or 'previous', not {how!r}")
        if x.dim() != 1 or x.numel() == 0 or not bool(torch.isfinite(x).all()) or bool((x[1:] <= x[:-1]).any()):
            raise HodecError(f"input {k}: the times must be [K] (K >= 1), finite and strictly increasing")
        if not (v.shape == x.shape or v.shape == (x.shape[0], B)):
            raise HodecError(f"input {k}: values of shape {list(v.shape)}; expected [{x.shape[0]}] or "
                             f"[{x.shape[0]}, {B}] (one column per member)")
        info.append([t_offset, x.numel(), v_offset, 1 if v.dim() == 1 else B, INTERPOLATION.index(how)])
        times.append(x)
        values.append(v.reshape(-1))
        t_offset += x.numel()
        v_offset += v.numel()
    empty = [torch.zeros(1, dtype=torch.float64)]
    return (torch.cat(times or empty), torch.cat(values or empty),
            torch.tensor(info or [[0] * 5], dtype=torch.long).reshape(-1).contiguous())


def _state(state_names, j: int) -> str:
    return state_names[j] if state_names else f"state {j}"


def _failure(kind: str, fail: tuple, fail_at: tuple, max_steps: int, state_names) -> HodecError:
    """The exception of the first failing member, worded as integrate.py words it."""
    t, h, value = fail
    b, j, method = fail_at
    name = _state(state_names, j)
    if kind in ("start_value", "start_rate"):
        what = (f"the initial value of {name} is {value}" if kind == "start_value" else
                f"the rate of {name} (f at the initial state) is {value}")
        return SolverError(f"the solve cannot start at t = {t:.9g} (batch member {b}): {what}")
    if kind == "underflow_nonfinite":
        return StepSizeUnderflow(
            f"step size underflow at t = {t:.9g} (batch member {b}): every step tried from there, down to {h:.3g}, "
            f"gives a value of {name} that is not finite (nan or inf): the right-hand side is not finite just past "
            f"that time (a division by zero, a log or square root of a negative number, an overflow?)")
    if kind == "underflow":
        return StepSizeUnderflow(
            f"step size underflow at t = {t:.9g} (batch member {b}): the step fell to {h:.3g}; {name} "
            f"(= {value:.6g}) has the largest error estimate there: the model may blow up or be singular at that "
            f"point (check its params), or be too stiff for the method")
    if kind == "too_many_steps":
        return TooManySteps(f"the solver took more than {max_steps} steps (max_steps) and stopped at t = {t:.6g} "
                            f"(batch member {b}): the model may be stiff (method '{AUTO[1]}' or 'auto'), or raise "
                            f"max_steps")
    if kind == "stiff":
        return StiffnessDetected(
            f"the problem is stiff: {METHODS[method]} held its step at its stability limit for {STIFF_STEPS} steps "
            f"by t = {t:.6g} (batch member {b}); use a stiff method (method '{AUTO[1]}'), or 'auto', which switches "
            f"to it by itself")
    return SolverError("the native solver could not allocate its work arrays (out of memory)")
