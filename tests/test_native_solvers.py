"""hodec's C solver loops (hodec/solvers/native) on hand-written C models, against scipy's solve_ivp at rtol 1e-12
(Radau, DOP853) and hand formulas; per-member step control, located errors, the build cache."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from hodec.solvers import SolverError, StepSizeUnderflow, StiffnessDetected, TooManySteps, solve
from hodec.solvers.native import NativeUnavailable, build, library, solve_native

pytestmark = pytest.mark.filterwarnings("ignore")  # scipy's Radau at rtol 1e-12: "too small tolerance"


def model(n: int, P: int, U: int, autonomous: int, rhs: str, jac: str, dfdt: str) -> str:
    """A model's C source in the form hodec/codegen/native.py prints (NATIVE.md §1)."""
    unused = "(void)t; (void)y; (void)p; (void)u;"
    return f"""#include <math.h>
#define HODEC_N {n}
#define HODEC_P {P}
#define HODEC_U {U}
#define HODEC_AUTONOMOUS {autonomous}
static void hodec_rhs(double t, const double *y, const double *p, const double *u, double *dy) {{
    {unused} {rhs}
}}
static void hodec_jac(double t, const double *y, const double *p, const double *u, double *J) {{
    {unused} {jac}
}}
static void hodec_dfdt(double t, const double *y, const double *p, const double *u, const double *du, double *df) {{
    {unused} (void)du; {dfdt}
}}
"""


LV = model(2, 4, 0, 1,
           "dy[0] = p[0] * y[0] - p[1] * y[0] * y[1]; dy[1] = p[2] * y[0] * y[1] - p[3] * y[1];",
           "J[0] = p[0] - p[1] * y[1]; J[1] = -p[1] * y[0]; J[2] = p[2] * y[1]; J[3] = p[2] * y[0] - p[3];",
           "df[0] = 0.0; df[1] = 0.0;")
VDP = model(2, 1, 0, 1,
            "dy[0] = y[1]; dy[1] = p[0] * (1.0 - y[0] * y[0]) * y[1] - y[0];",
            "J[0] = 0.0; J[1] = 1.0; J[2] = -2.0 * p[0] * y[0] * y[1] - 1.0; J[3] = p[0] * (1.0 - y[0] * y[0]);",
            "df[0] = 0.0; df[1] = 0.0;")
ROBERTSON = model(
    3, 3, 0, 1,
    "dy[0] = -p[0] * y[0] + p[1] * y[1] * y[2]; dy[1] = p[0] * y[0] - p[1] * y[1] * y[2] - p[2] * y[1] * y[1];"
    " dy[2] = p[2] * y[1] * y[1];",
    "J[0] = -p[0]; J[1] = p[1] * y[2]; J[2] = p[1] * y[1];"
    " J[3] = p[0]; J[4] = -p[1] * y[2] - 2.0 * p[2] * y[1]; J[5] = -p[1] * y[1];"
    " J[6] = 0.0; J[7] = 2.0 * p[2] * y[1]; J[8] = 0.0;",
    "df[0] = 0.0; df[1] = 0.0; df[2] = 0.0;")
# y0' = u (its integral: a hand formula), y1' = -p0 y1 + p1 u
DRIVEN = model(2, 2, 1, 0,
               "dy[0] = u[0]; dy[1] = -p[0] * y[1] + p[1] * u[0];",
               "J[0] = 0.0; J[1] = 0.0; J[2] = 0.0; J[3] = -p[0];",
               "df[0] = du[0]; df[1] = p[1] * du[0];")
# y' = sqrt(1 - t): not finite past t = 1
EDGE = model(1, 0, 0, 0, "dy[0] = sqrt(1.0 - t);", "J[0] = 0.0;", "df[0] = -0.5 / sqrt(1.0 - t);")
BLOWUP = model(1, 1, 0, 1, "dy[0] = p[0] * y[0] * y[0];", "J[0] = 2.0 * p[0] * y[0];", "df[0] = 0.0;")

LV_P = (1.5, 1.0, 3.0, 1.0)
ROBERTSON_P = (0.04, 1e4, 3e7)
STIFF = ("rodas5p", "rodas4", "ros34pw2", "auto")
MAX_STEPS = 100_000


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """A fresh cache folder for this module's libraries."""
    folder = tmp_path_factory.mktemp("native_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HODEC_CACHE", str(folder))
        yield folder


def t64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def reference(f, y0, ts, method="Radau", jac=None) -> np.ndarray:
    sol = solve_ivp(f, (ts[0], ts[-1]), y0, method=method, t_eval=ts, rtol=1e-12, atol=1e-14, jac=jac)
    assert sol.success
    return sol.y.T


def lv_f(t, y, a=1.5, b=1.0, c=3.0, d=1.0):
    return [a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]]


def robertson_f(t, y):
    k1, k2, k3 = ROBERTSON_P
    return [-k1 * y[0] + k2 * y[1] * y[2], k1 * y[0] - k2 * y[1] * y[2] - k3 * y[1] ** 2, k3 * y[1] ** 2]


def robertson_jac(t, y):
    k1, k2, k3 = ROBERTSON_P
    return [[-k1, k2 * y[2], k2 * y[1]], [k1, -k2 * y[2] - 2 * k3 * y[1], -k2 * y[1]], [0, 2 * k3 * y[1], 0]]


def vdp_f(t, y, mu=1000.0):
    return [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]]


def vdp_jac(t, y, mu=1000.0):
    return [[0, 1], [-2 * mu * y[0] * y[1] - 1, mu * (1 - y[0] ** 2)]]


def scaled_error(y: torch.Tensor, ref: np.ndarray, rtol: float, atol: float) -> float:
    """max |y − ref| / (atol + rtol |ref|): the global error in units of the requested tolerance."""
    return float((np.abs(y.numpy() - ref) / (atol + rtol * np.abs(ref))).max())


# ---- library and hodec_eval ----

def test_eval_calls_the_model_functions():
    import ctypes
    lib = library(DRIVEN)
    assert build.dims(lib) == (2, 2, 1, 0)
    D = ctypes.c_double
    dy, J, df = (D * 2)(), (D * 4)(), (D * 2)()
    lib.hodec_eval(0.5, (D * 2)(1.0, 2.0), (D * 2)(3.0, 5.0), (D * 1)(7.0), (D * 1)(11.0), dy, J, df)
    assert list(dy) == [7.0, -3.0 * 2.0 + 5.0 * 7.0]
    assert list(J) == [0.0, 0.0, 0.0, -3.0]
    assert list(df) == [11.0, 55.0]


# ---- each method against scipy ----

@pytest.mark.parametrize("method", ["tsit5", "dopri5", *STIFF])
def test_lotka_volterra_meets_the_tolerance(method):
    """Every output within 30 × (atol + rtol |y|) of DOP853 at rtol 1e-12, as the torch solvers' tests ask (the
    local error is controlled; the global one adds up). Measured: tsit5 4.3, dopri5 10.4, rodas5p 2.2, rodas4 0.8,
    ros34pw2 3.6, auto 4.3 (= tsit5)."""
    ts = np.linspace(0, 6, 61)
    ref = reference(lv_f, [1.0, 1.0], ts, "DOP853")
    rtol, atol = 1e-6, 1e-8
    y = solve_native(library(LV), t64([[1.0, 1.0]]), t64(ts), t64(LV_P), [], method, rtol, atol,
                     max_steps=MAX_STEPS)[:, 0]
    assert y.shape == (61, 2) and torch.equal(y[0], t64([1.0, 1.0]))
    assert scaled_error(y, ref, rtol, atol) < 30


@pytest.mark.parametrize("method", STIFF)
def test_robertson_meets_the_tolerance(method):
    """Within 30 × tolerance of Radau; measured rodas5p 1.9, rodas4 0.13, ros34pw2 2.0, auto 1.9 (switched)."""
    ts = np.concatenate([[0.0], np.logspace(-5, 5, 41)])
    ref = reference(robertson_f, [1.0, 0.0, 0.0], ts, jac=robertson_jac)
    rtol, atol = 1e-6, 1e-12
    stats = {}
    y = solve_native(library(ROBERTSON), t64([[1.0, 0.0, 0.0]]), t64(ts), t64(ROBERTSON_P), [], method, rtol, atol,
                     max_steps=MAX_STEPS, stats=stats)[:, 0]
    assert scaled_error(y, ref, rtol, atol) < 30
    assert stats["n_jac"] > 0
    if method == "auto":
        assert stats["switched"] == 1


@functools.lru_cache(maxsize=None)
def van_der_pol_reference() -> tuple:
    ts = np.linspace(0, 1000, 21)  # the first relaxation jump is near t = 807
    return ts, reference(vdp_f, [2.0, 0.0], ts, jac=vdp_jac)


@pytest.mark.parametrize("method", STIFF)
def test_van_der_pol_stiff_meets_the_tolerance(method):
    """μ = 1000 through the first relaxation jump: within 30 × tolerance of Radau; measured rodas5p 4.9, rodas4 9.4,
    ros34pw2 22.5, auto 4.9."""
    ts, ref = van_der_pol_reference()
    rtol, atol = 1e-6, 1e-8
    y = solve_native(library(VDP), t64([[2.0, 0.0]]), t64(ts), t64([1000.0]), [], method, rtol, atol,
                     max_steps=MAX_STEPS)[:, 0]
    assert scaled_error(y, ref, rtol, atol) < 30


def torch_model(rhs, jac):
    """A numpy-style rhs / jac (y: one member's states) for hodec's torch solvers, members stacked."""
    def f(t, y):
        return torch.stack([torch.stack([torch.as_tensor(v, dtype=y.dtype) for v in rhs(0, row)]) for row in y])

    def jacobian(t, y):
        return torch.stack([t64([[float(v) for v in r] for r in jac(0, row.tolist())]) for row in y])

    return f, jacobian


@pytest.mark.parametrize("problem", ["lotka_volterra", "robertson"])
def test_the_same_steps_as_the_torch_solvers(problem):
    """The C loops take the torch solvers' steps (controller.py, first step, stiffness test, auto's switch): the
    same number of attempts and, for the explicit methods, of f evaluations (the C keeps f(t, y) and J over a
    rejected Rosenbrock step, the torch code evaluates them again), and the same values to rounding."""
    if problem == "lotka_volterra":
        source, params, y0, ts, methods = LV, LV_P, [1.0, 1.0], np.linspace(0, 6, 61), ["tsit5", "dopri5", *STIFF]
        jac = lambda t, y: [[1.5 - y[1], -y[0]], [3.0 * y[1], 3.0 * y[0] - 1.0]]  # noqa: E731
        f, jacobian = torch_model(lv_f, jac)
    else:
        source, params, y0, ts, methods = ROBERTSON, ROBERTSON_P, [1.0, 0.0, 0.0], np.logspace(-5, 5, 11), STIFF
        f, jacobian = torch_model(robertson_f, robertson_jac)
        ts = np.concatenate([[0.0], ts])
    for method in methods:
        ours, theirs = {}, {}
        y = solve_native(library(source), t64([y0]), t64(ts), t64(params), [], method, 1e-6, 1e-10,
                         max_steps=MAX_STEPS, stats=ours)
        expected = solve(f, t64([y0]), t64(ts), method, 1e-6, 1e-10, jacobian=jacobian, autonomous=True,
                         stats=theirs)
        assert ours["steps"] == theirs["steps"], method
        if method in ("tsit5", "dopri5"):
            assert ours["n_f"] == theirs["n_f"], method
        torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-13)


# ---- inputs ----

def _driven(method: str, ts, tables, params=(1.0, 2.0), rtol=1e-10, atol=1e-12, y0=((0.0, 0.0),)):
    return solve_native(library(DRIVEN), t64(y0), t64(ts), t64(params), tables, method, rtol, atol,
                        max_steps=MAX_STEPS)


def integral(knots, values, t, how):
    """∫_0^t u by hand: 'previous' holds each sample up to the next knot, 'linear' is trapezoids; both hold the end
    values outside the samples (knots start at 0 here)."""
    total, x, v = 0.0, list(knots) + [np.inf], list(values)
    for i in range(len(knots)):
        a, b = x[i], min(x[i + 1], t)
        if b <= a:
            break
        if how == "previous" or i == len(knots) - 1:
            total += v[i] * (b - a)
        else:
            slope = (v[i + 1] - v[i]) / (x[i + 1] - a)
            total += (v[i] + 0.5 * slope * (b - a)) * (b - a)
    return total


@pytest.mark.parametrize("how", ["linear", "previous"])
@pytest.mark.parametrize("method", ["tsit5", "dopri5", "rodas5p", "rodas4"])
def test_an_input_table_reads_as_a_signal(method, how):
    knots, values = [0.0, 1.0, 2.5, 4.0], [1.0, 3.0, -2.0, 0.5]
    ts = np.linspace(0, 6, 25)  # beyond the last sample: its value held
    y = _driven(method, ts, [(t64(knots), t64(values), how)])[:, 0, 0]
    expected = [integral(knots, values, t, how) for t in ts]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-7, atol=1e-8)


def test_an_input_table_drives_the_states_as_scipy_says():
    """Within 30 × rtol of the trajectory's scale: the input's kinks at its samples are stepped over (as the torch
    solvers do), where the error estimate does not see them."""
    knots, values = [0.0, 1.0, 2.5, 4.0], [1.0, 3.0, -2.0, 0.5]
    ts = np.linspace(0, 6, 25)

    def f(t, y):
        u = np.interp(t, knots, values)
        return [u, -1.0 * y[1] + 2.0 * u]

    sol = solve_ivp(f, (0, 6), [0.0, 0.0], method="DOP853", t_eval=ts, rtol=1e-12, atol=1e-14,
                    first_step=1e-3, max_step=0.05)
    for method in ("tsit5", "rodas5p"):  # measured: 1.4 and 0.003 × rtol · scale
        y = _driven(method, ts, [(t64(knots), t64(values), "linear")], rtol=1e-8)[:, 0]
        assert np.abs(y.numpy() - sol.y.T).max() < 30 * 1e-8 * np.abs(sol.y).max(), method


def test_the_input_rate_reaches_the_rosenbrock_stages():
    """u = 2 + 3t, y' = u: with the input's slope in ∂f/∂t a Rosenbrock step integrates it exactly (y = 2t + 1.5t²)
    whatever its size; without it, each step errs by ~h²."""
    ts = np.linspace(0, 10, 6)
    for method in ("rodas5p", "rodas4"):
        y = _driven(method, ts, [(t64([0.0, 10.0]), t64([2.0, 32.0]), "linear")], rtol=1e-3, atol=1e-3)[:, 0, 0]
        np.testing.assert_allclose(y.numpy(), 2 * ts + 1.5 * ts ** 2, rtol=1e-12, atol=1e-12)


def test_input_columns_per_member():
    knots = t64([0.0, 1.0, 2.0])
    values = t64([[1.0, -1.0], [2.0, 0.0], [4.0, 5.0]])  # [K, B]
    ts = np.linspace(0, 3, 7)
    y = _driven("tsit5", ts, [(knots, values, "linear")], y0=((0.0, 0.0), (0.0, 0.0)))[:, :, 0]
    for b in range(2):
        expected = [integral(knots.tolist(), values[:, b].tolist(), t, "linear") for t in ts]
        np.testing.assert_allclose(y[:, b].numpy(), expected, rtol=1e-8, atol=1e-9)


# ---- per member ----

def test_each_member_solved_as_if_alone():
    """A batch mixing an easy (μ = 1) and a stiff (μ = 1000) Van der Pol member, each its own grid: every member
    equals its own solve bit for bit (its own step sizes, and with `auto` its own switch to rodas5p)."""
    lib = library(VDP)
    y0 = t64([[2.0, 0.0], [2.0, 0.0], [1.0, 1.0]])
    params = t64([[1.0], [1000.0], [3.0]])
    ts = t64(np.stack([np.linspace(0, 10, 11), np.linspace(0, 1000, 11), np.linspace(0, 5, 11)], 1))  # [T, B]
    for method in ("auto", "rodas5p", "tsit5"):
        members = [0, 2] if method == "tsit5" else [0, 1, 2]
        stats = {}
        batch = solve_native(lib, y0[members], ts[:, members], params[members], [], method, 1e-6, 1e-8,
                             max_steps=MAX_STEPS, stats=stats)
        if method == "auto":
            assert stats["switched"] == 1  # the stiff member only
        for i, b in enumerate(members):
            alone = solve_native(lib, y0[b:b + 1], ts[:, b], params[b], [], method, 1e-6, 1e-8, max_steps=MAX_STEPS)
            assert torch.equal(batch[:, i], alone[:, 0]), (method, b)


def test_per_member_parameters_and_grids_against_scipy():
    params = t64([[1.5, 1.0, 3.0, 1.0], [1.0, 0.5, 2.0, 0.8]])
    y0 = t64([[1.0, 1.0], [2.0, 0.5]])
    ts = t64(np.stack([np.linspace(0, 6, 13), np.linspace(1, 4, 13)], 1))
    y = solve_native(library(LV), y0, ts, params, [], "tsit5", 1e-8, 1e-10, max_steps=MAX_STEPS)
    for b in range(2):
        ref = reference(lambda t, x: lv_f(t, x, *params[b].tolist()), y0[b].tolist(), ts[:, b].numpy(), "DOP853")
        assert scaled_error(y[:, b], ref, 1e-8, 1e-10) < 10


def test_other_dtypes_layouts_and_atol_forms_give_the_same_solve():
    """float32 / integer / non-contiguous arguments are converted to contiguous float64 (the same numbers, the same
    solve); atol as one number, a 0-d tensor or [n] of that number are one tolerance."""
    lib = library(LV)
    ts = t64(np.linspace(0, 6, 13))
    expected = solve_native(lib, t64([[1.0, 1.0]]), ts, t64(LV_P), [], "tsit5", 1e-6, 1e-8, max_steps=MAX_STEPS)
    wide = t64([[1.0, 7.0, 1.0]])[:, ::2]  # non-contiguous
    grid = torch.stack([ts, ts], 1)[:, 0]  # non-contiguous
    variants = [(torch.ones(1, 2, dtype=torch.float32), ts, torch.tensor(LV_P, dtype=torch.float32), 1e-8),
                (wide, grid, t64(LV_P), torch.tensor(1e-8, dtype=torch.float64)),
                (torch.ones(1, 2, dtype=torch.int64), ts.tolist(), list(LV_P), t64([1e-8, 1e-8]))]
    for y0, grid, params, atol in variants:
        y = solve_native(lib, y0, grid, params, [], "tsit5", 1e-6, atol, max_steps=MAX_STEPS)
        assert torch.equal(y, expected)


# ---- located errors ----

def test_a_blow_up_is_a_located_step_size_underflow():
    with pytest.raises(StepSizeUnderflow, match=r"t = (0\.99|1\.00)\d* \(batch member 1\): the step fell to .*; x "):
        solve_native(library(BLOWUP), t64([[1.0], [1.0]]), t64([0.0, 2.0]), t64([[0.1], [1.0]]), [], "tsit5",
                     1e-6, 1e-8, max_steps=MAX_STEPS, state_names=["x"])


@pytest.mark.parametrize("method", ["tsit5", "rodas5p"])
def test_a_right_hand_side_that_stops_being_finite_is_located(method):
    with pytest.raises(StepSizeUnderflow, match=r"t = (0\.99\d*|1\.?\d*) \(batch member 0\): every step tried from "
                                                r"there, down to .*, gives a value of x that is not finite"):
        solve_native(library(EDGE), t64([[0.0]]), t64([0.0, 2.0]), t64([]), [], method, 1e-6, 1e-8,
                     max_steps=MAX_STEPS, state_names=["x"])


def test_too_many_steps_names_the_member():
    with pytest.raises(TooManySteps, match=r"more than 20 steps .* \(batch member 0\).*'rodas5p'"):
        solve_native(library(LV), t64([[1.0, 1.0]]), t64([0.0, 60.0]), t64(LV_P), [], "tsit5", 1e-8, 1e-10,
                     max_steps=20)


def test_an_explicit_method_on_robertson_names_the_stiff_method():
    for method in ("tsit5", "dopri5"):
        with pytest.raises(StiffnessDetected, match=rf"{method} .* \(batch member 0\).*method 'rodas5p'"):
            solve_native(library(ROBERTSON), t64([[1.0, 0.0, 0.0]]), t64([0.0, 1e5]), t64(ROBERTSON_P), [],
                         method, 1e-6, 1e-10, max_steps=MAX_STEPS)


def test_a_non_finite_start_names_member_and_state():
    lib = library(LV)
    with pytest.raises(SolverError, match=r"cannot start at t = 0 \(batch member 1\): the initial value of prey"):
        solve_native(lib, t64([[1.0, 1.0], [float("nan"), 1.0]]), t64([0.0, 1.0]), t64(LV_P), [], "rodas5p",
                     1e-6, 1e-8, max_steps=MAX_STEPS, state_names=["prey", "predator"])
    with pytest.raises(SolverError, match=r"the rate of predator \(f at the initial state\) is inf"):
        solve_native(lib, t64([[1.0, 1.0]]), t64([0.0, 1.0]), t64([1.5, 1.0, float("inf"), 1.0]), [], "tsit5",
                     1e-6, 1e-8, max_steps=MAX_STEPS, state_names=["prey", "predator"])


@pytest.mark.parametrize("call, message", [
    (dict(method="bdf"), "unknown native solver method 'bdf'"),
    (dict(y0=[[1.0, 1.0, 1.0]]), r"initial state has shape \[1, 3\]; expected \[B, 2\]"),
    (dict(ts=[0.0, 2.0, 1.0]), r"output times of batch member 0 must be finite and non-decreasing \(time 2\)"),
    (dict(ts=[[0.0, 0.0], [1.0, float("nan")]], y0=[[1.0, 1.0], [1.0, 1.0]]), "batch member 1 .* \\(time 1\\)"),
    (dict(atol=[1e-8, -1.0]), "tolerances"),
    (dict(params=[1.0, 2.0]), r"parameters have shape \[2\]; expected \[4\]"),
    (dict(rtol=0.0), "tolerances"),
    (dict(atol=[1e-8, 1e-8, 1e-8]), r"atol has shape \[3\]"),
    (dict(inputs=[([0.0], [1.0], "linear")]), r"reads 0 input\(s\); 1 table\(s\) given"),
    (dict(inputs=[([0.0, 0.0], [1.0, 2.0], "linear")], lib=DRIVEN, params=[1.0, 2.0]),
     r"input 0: its times must be finite and strictly increasing \(time 1\)"),
    (dict(inputs=[([0.0, 1.0], [[1.0, 2.0]], "linear")], lib=DRIVEN, params=[1.0, 2.0]),
     r"input 0: times of shape \[2\] and values of shape \[1, 2\]"),
    (dict(inputs=[([0.0, 1.0], [1.0, 2.0], "cubic")], lib=DRIVEN, params=[1.0, 2.0]), "'linear' or 'previous'"),
])
def test_bad_arguments_are_named(call, message):
    args = dict(y0=[[1.0, 1.0]], ts=[0.0, 1.0], params=LV_P, inputs=[], method="tsit5", rtol=1e-6, atol=1e-8,
                lib=LV)
    args.update(call)
    with pytest.raises(Exception, match=message) as info:
        solve_native(library(args.pop("lib")), t64(args.pop("y0")), t64(args.pop("ts")), t64(args.pop("params")),
                     args.pop("inputs"), **args, max_steps=MAX_STEPS)
    assert type(info.value).__name__ == "HodecError"


# ---- the build cache ----

def test_a_cached_library_is_not_built_again(cache):
    source = LV.replace("#include <math.h>", "#include <math.h>\n/* cache test */")
    builds = build.builds
    library(source)
    assert build.builds == builds + 1
    built = {p: p.stat().st_mtime_ns for p in Path(cache).glob("*.so")}
    build._loaded.clear()  # as in a new process: only the disk cache remains
    build._by_source.clear()
    lib = library(source)
    assert build.builds == builds + 1
    assert {p: p.stat().st_mtime_ns for p in Path(cache).glob("*.so")} == built
    y = solve_native(lib, t64([[1.0, 1.0]]), t64([0.0, 1.0]), t64(LV_P), [], "tsit5", 1e-6, 1e-8,
                     max_steps=MAX_STEPS)
    assert torch.isfinite(y).all()


SOLVE_LV = ("import sys, torch; from hodec.solvers.native import library, solve_native; "
            "exec(open(sys.argv[1]).read()); "
            "y = solve_native(library(LV), torch.ones(1, 2, dtype=torch.float64), torch.tensor([0.0, 1.0], "
            "dtype=torch.float64), torch.tensor(LV_P, dtype=torch.float64), [], 'tsit5', 1e-6, 1e-8, "
            "max_steps=1000); print(float(y[-1, 0, 0]))")


def _models(folder: Path) -> str:
    models = folder / "models.py"
    models.write_text(f"LV = {LV!r}\nLV_P = {LV_P!r}\n")
    return str(models)


@pytest.mark.slow  # two fresh processes importing hodec
def test_two_processes_building_at_once_both_succeed(tmp_path):
    env = dict(os.environ, HODEC_CACHE=str(tmp_path / "cache"))
    models = _models(tmp_path)
    runs = [subprocess.Popen([sys.executable, "-c", SOLVE_LV, models], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert len(list((tmp_path / "cache").glob("*.so"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp"))


@pytest.mark.slow  # two fresh processes importing hodec
def test_a_broken_cached_file_is_built_again(tmp_path):
    """A cached file that does not load (cut short by a full disk, say) is built again, in a new process (this one
    keeps what it loaded)."""
    env = dict(os.environ, HODEC_CACHE=str(tmp_path / "cache"))
    models = _models(tmp_path)
    assert subprocess.run([sys.executable, "-c", SOLVE_LV, models], env=env, capture_output=True).returncode == 0
    [path] = (tmp_path / "cache").glob("*.so")
    path.unlink()
    path.write_bytes(b"not a library")
    run = subprocess.run([sys.executable, "-c", SOLVE_LV, models], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert path.stat().st_size > 1000


def test_a_cache_folder_that_cannot_be_written_is_native_unavailable(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("HODEC_CACHE", str(blocker / "cache"))  # below a file: cannot be created
    with pytest.raises(NativeUnavailable, match="cannot write the native cache folder .* HODEC_CACHE"):
        library(LV.replace("#include <math.h>", "#include <math.h>\n/* unwritable cache test */"))


def test_the_solver_source_compiles_without_warnings(tmp_path):
    """The solver loops with a model, by the build's compiler under -Wall -Wextra -Werror (the unit's static
    coefficient arrays are each used, its casts explicit)."""
    source = tmp_path / "unit.c"
    for model_source in (LV, DRIVEN):
        source.write_text(build.translation_unit(model_source))
        run = subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-o",
                              str(tmp_path / "unit.so"), str(source), "-lm"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr


def test_a_broken_compiler_is_native_unavailable(monkeypatch):
    monkeypatch.setenv("CC", "false")
    with pytest.raises(NativeUnavailable, match="the C compiler 'false' does not run"):
        library(LV)
    monkeypatch.setenv("CC", "no-such-compiler-hodec")
    with pytest.raises(NativeUnavailable, match="no C compiler: cannot run 'no-such-compiler-hodec'"):
        library(LV)


def test_a_compile_error_quotes_the_compiler():
    with pytest.raises(NativeUnavailable,
                       match=r"(?s)failed \(exit status 1\) on .*error: .hodec_rhs_typo. undeclared"):
        library(LV.replace("dy[0] = p[0]", "hodec_rhs_typo; dy[0] = p[0]"))


def test_a_failed_build_is_not_tried_again():
    """A model whose build fails raises the same NativeUnavailable on every later call without running the compiler
    again (simulate then falls back to the torch solvers at no compiler cost per solve)."""
    broken = LV.replace("dy[0] = p[0]", "hodec_rhs_typo_again; dy[0] = p[0]")
    with pytest.raises(NativeUnavailable) as first:
        library(broken)
    before = build.builds
    with pytest.raises(NativeUnavailable) as second:
        library(broken)
    assert build.builds == before and second.value is first.value
