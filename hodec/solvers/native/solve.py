"""solve_native(): a compiled library's solve (build.py) with the caller's tensors, checked, and its failures
worded as the torch solvers word them (hodec/solvers/errors.py), with member, time and state.

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
from ..errors import (SolverError, bad_tolerances, start_failure, state_name, stiffness, too_many_steps, underflow,
                      underflow_not_finite)
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
    rejected, n_f, n_jac and switched (members that `auto` moved to the stiff method), summed over members.

    Each member is solved on its own, one after another (its own steps; max_steps counts each member's attempts).
    The stiff methods factorise a dense n×n matrix per step (fine to n ≈ 200; the cost grows as n³).

    Shapes are checked here, values (finite, sorted times; atol) in C, where a pass over them costs nothing: a
    small model's whole solve takes microseconds, as long as a few tensor operations."""
    n, P, U, _ = dims(lib)
    number = _method(method)
    y0 = _float64(y0, "the initial state")
    if y0.dim() != 2 or y0.shape[1] != n or y0.shape[0] == 0:
        raise HodecError(f"the initial state has shape {list(y0.shape)}; expected [B, {n}] (B >= 1 members)")
    B = y0.shape[0]
    ts = _float64(ts, "the time grid")
    if not (ts.dim() == 1 or (ts.dim() == 2 and ts.shape[1] == B)) or ts.shape[0] == 0:
        raise HodecError(f"the time grid has shape {list(ts.shape)}; expected [T] or [T, {B}] (T >= 1)")
    p = _float64(params if params is not None else _EMPTY, "the parameters")
    if p.shape != (P,) and p.shape != (B, P):
        raise HodecError(f"the parameters have shape {list(p.shape)}; expected [{P}] (shared) or [{B}, {P}] "
                         f"(per member)")
    rtol, tolerance, stride = _tolerances(rtol, atol, n)
    times, values, info = _tables(inputs, U, B) if U or inputs else _NO_TABLES
    T = ts.shape[0]
    out = torch.empty(T, B, n, dtype=torch.float64)
    counts = (ctypes.c_long * 8)()  # stats (5), then the failing (member, state, method)
    fail = (ctypes.c_double * 3)()
    status = lib.hodec_solve(number, B, T, ts.data_ptr(), 1 if ts.dim() == 1 else B, 0 if ts.dim() == 1 else 1,
                             y0.data_ptr(), p.data_ptr(), P if p.dim() == 2 else 0, times.data_ptr(),
                             values.data_ptr(), info.data_ptr(), rtol, _pointer(tolerance), stride,
                             int(max_steps), out.data_ptr(), counts, fail, ctypes.byref(counts, 5 * _LONG))
    if stats is not None:
        stats.update(steps=counts[0], rejected=counts[1], switched=counts[2], n_f=counts[3], n_jac=counts[4])
    if status:
        raise _failure(FAILURES[status - 1], tuple(fail), tuple(counts[5:]), max_steps, state_names, rtol, atol)
    return out


_EPS = torch.finfo(torch.float64).eps
_LONG = ctypes.sizeof(ctypes.c_long)
_EMPTY = torch.zeros(0, dtype=torch.float64)
_NO_TABLES = (_EMPTY, _EMPTY, torch.zeros(0, dtype=torch.long))


def _method(name: str) -> int:
    if name == "auto":
        return AUTO_METHOD
    if name not in METHODS:
        raise HodecError(f"unknown native solver method '{name}'; methods: {', '.join(NAMES)}")
    return METHODS.index(name)


def _float64(x, what: str) -> torch.Tensor:
    """x as a contiguous float64 CPU tensor: itself when it is one already (no copy, no tensor operation)."""
    if isinstance(x, torch.Tensor) and x.dtype == torch.float64 and x.device.type == "cpu" and x.is_contiguous():
        return x
    x = torch.as_tensor(x)
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise HodecError(f"{what} must hold real numbers, got {str(x.dtype).removeprefix('torch.')}")
    return x.detach().to(device="cpu", dtype=torch.float64).contiguous()


def _tolerances(rtol, atol, n: int) -> tuple:
    """(rtol, atol as a ctypes array or a tensor, its stride): one number for all states (stride 0) or [n] (stride
    1). atol's values are checked in C."""
    try:
        rtol = float(rtol)
    except (TypeError, ValueError):
        rtol = math.nan
    if not 10 * _EPS <= rtol < math.inf:
        raise bad_tolerances(rtol, atol)
    if isinstance(atol, (int, float)):
        return rtol, (ctypes.c_double * 1)(atol), 0
    tolerance = _float64(atol, "atol")
    if tolerance.dim() == 0:
        return rtol, tolerance, 0
    if tolerance.shape != (n,):
        raise HodecError(f"atol has shape {list(tolerance.shape)}; expected a number or [{n}] (per state)")
    return rtol, tolerance, 1


def _pointer(x):
    return x.data_ptr() if isinstance(x, torch.Tensor) else x


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
        if x.dim() != 1 or x.numel() == 0 or not (v.shape == x.shape or v.shape == (x.shape[0], B)):
            raise HodecError(f"input {k}: times of shape {list(x.shape)} and values of shape {list(v.shape)}; "
                             f"expected times [K] (K >= 1) and values [K] or [K, {B}] (one column per member)")
        info.append([t_offset, x.numel(), v_offset, 1 if v.dim() == 1 else B, INTERPOLATION.index(how)])
        times.append(x)
        values.append(v.reshape(-1))
        t_offset += x.numel()
        v_offset += v.numel()
    return torch.cat(times), torch.cat(values), torch.tensor(info, dtype=torch.long).reshape(-1)


def _failure(kind: str, fail: tuple, fail_at: tuple, max_steps: int, state_names, rtol, atol) -> HodecError:
    """The exception of the first failing member, worded as the torch loop words it, or of a bad argument value."""
    t, h, value = fail
    b, j, method = fail_at
    name = state_name(state_names, j)
    if kind == "bad_grid":
        return HodecError(f"the output times of batch member {b} must be finite and non-decreasing (time {j}); the "
                          f"native solvers integrate forward only (the torch solvers also backward)")
    if kind == "bad_atol":
        return bad_tolerances(rtol, atol)
    if kind == "bad_table":
        return HodecError(f"input {b}: its times must be finite and strictly increasing (time {j})")
    if kind in ("start_value", "start_rate"):
        return start_failure(t, b, name, value, kind == "start_value")
    if kind == "underflow_nonfinite":
        return underflow_not_finite(t, b, h, name)
    if kind == "underflow":
        return underflow(t, b, h, name, value)
    if kind == "too_many_steps":
        return too_many_steps(max_steps, t, b, "", AUTO[1])
    if kind == "stiff":
        return stiffness(METHODS[method], STIFF_STEPS, t, b, AUTO[1])
    return SolverError("the native solver could not allocate its work arrays (out of memory)")
