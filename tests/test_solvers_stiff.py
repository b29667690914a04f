"""The stiff solvers (hodec/solvers/rosenbrock.py): rodas5p and rodas4 against scipy's Radau at rtol 1e-12 on stiff
and non-stiff problems, their orders measured on fixed steps, per-member step control, gradients against finite
differences, one Jacobian and one LU factorisation per step, and the stiff benchmark specs."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import hodec
from hodec.solvers import solve
from hodec.solvers.problem import Problem
from hodec.solvers.rosenbrock import Rosenbrock
from hodec.solvers.rosenbrock_tableaus import RODAS4, RODAS5P, ROS34PW2

SPECS = Path(__file__).resolve().parent.parent / "benchmarks" / "specs"
ORDER = {"rodas5p": 5, "rodas4": 4, "ros34pw2": 3}
TABLEAU = {"rodas5p": RODAS5P, "rodas4": RODAS4, "ros34pw2": ROS34PW2}
F64 = torch.float64


# Tiny batched matrices: one intra-op thread (under load, a thread-pool wake-up in a batched tril of lu_solve's
# backward cost 3-17 ms, measured, against 1 µs on one thread).
pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------- problems, written out by hand
# Each right-hand side is written once on its components, so the same lines serve torch (the solvers) and numpy
# (the scipy reference, which would spend most of its time in torch's per-call overhead).
def robertson_rhs(y, k=(0.04, 3e7, 1e4)):
    (a, b, c), (k1, k2, k3) = y, k
    return [-k1 * a + k3 * b * c, k1 * a - k3 * b * c - k2 * b * b, k2 * b * b]


def van_der_pol_rhs(y, mu=1000.0):
    x, v = y
    return [v, mu * (1 - x * x) * v - x]


ENZYME = dict(kon1=1e5, koff1=1e4, kcat1=2.0, kon2=2e5, koff2=3e4, kcat2=1.0, kon3=5e4, koff3=1e4, kcat3=0.5,
              kdeg=0.01)
ENZYME_Y0 = [1.0, 0, 0, 0, 0.05, 0.02, 0.05, 0, 0, 0]  # S0..S3, E1..E3, C1..C3


def enzyme_cascade_rhs(y, p=ENZYME):
    s0, s1, s2, s3, e1, e2, e3, c1, c2, c3 = y
    v1, v2, v3 = p["kon1"] * e1 * s0 - p["koff1"] * c1, p["kon2"] * e2 * s1 - p["koff2"] * c2, \
        p["kon3"] * e3 * s2 - p["koff3"] * c3
    w1, w2, w3 = p["kcat1"] * c1, p["kcat2"] * c2, p["kcat3"] * c3
    return [-v1, w1 - v2, w2 - v3, w3 - p["kdeg"] * s3, w1 - v1, w2 - v2, w3 - v3, v1 - w1, v2 - w2, v3 - w3]


def lotka_volterra_rhs(y):
    x, z = y
    return [1.5 * x - x * z, -3 * z + x * z]


def in_torch(rhs, *args):
    """f(t, y) for the solvers: y [..., n] -> [..., n]."""
    return lambda t, y: torch.stack(torch.broadcast_tensors(*rhs(y.unbind(-1), *args)), -1)


def robertson_jacobian(k=(0.04, 3e7, 1e4)):
    k1, k2, k3 = k

    def jacobian(t, y):
        a, b, c = y.unbind(-1)
        zero = torch.zeros_like(a)
        return torch.stack([torch.stack([zero - k1, k3 * c, k3 * b], -1),
                            torch.stack([zero + k1, -k3 * c - 2 * k2 * b, -k3 * b], -1),
                            torch.stack([zero, 2 * k2 * b, zero], -1)], -2)
    return jacobian


PROBLEMS = {  # name: (rhs, y0, output times); all autonomous
    "robertson": (robertson_rhs, [1.0, 0.0, 0.0], np.concatenate([[0], np.logspace(-5, 5, 21)])),
    "van_der_pol": (van_der_pol_rhs, [2.0, 0.0], np.linspace(0, 1000, 11)),  # a slow phase and a jump (t ≈ 807)
    "enzyme_cascade": (enzyme_cascade_rhs, ENZYME_Y0, np.linspace(0, 200, 21)),
    "lotka_volterra": (lotka_volterra_rhs, [1.0, 1.0], np.linspace(0, 10, 21)),
}


@functools.lru_cache(maxsize=None)
def reference(name: str) -> np.ndarray:
    """scipy Radau at rtol 1e-12, [T, n]."""
    rhs, y0, ts = PROBLEMS[name]
    sol = solve_ivp(lambda t, y: rhs(y), (ts[0], ts[-1]), y0, method="Radau", rtol=1e-12, atol=1e-16, t_eval=ts)
    assert sol.success
    return sol.y.T


def solve_problem(name: str, method: str, rtol=1e-6, atol=1e-10, **kw):
    rhs, y0, ts = PROBLEMS[name]
    return solve(in_torch(rhs), torch.tensor(y0, dtype=F64), torch.tensor(ts, dtype=F64), method=method, rtol=rtol,
                 atol=atol, autonomous=True, **kw)


def weighted_error(ys: torch.Tensor, ref: np.ndarray, rtol: float, atol: float) -> float:
    """max |y − ref| / (atol + rtol |ref|): 1 means an error of the size asked for."""
    return float((np.abs(ys.detach().numpy() - ref) / (atol + rtol * np.abs(ref))).max())


# ---------------------------------------------------------------- the tableaus: orders measured on fixed steps
def fixed_steps(method, problem, y0, t0: float, t1: float, n: int):
    """A private fixed-step loop: y(t1) of n equal steps, the embedded solution, and the last step's dense output."""
    t = torch.full((y0.shape[0],), t0, dtype=F64)
    h = torch.full_like(t, (t1 - t0) / n)
    y = y0
    for _ in range(n):
        y_start, step = y, method.step(problem, t, y, h, None)
        y, t = step.y1, t + h
    return y, y - step.error, y_start, step


def slope(errors) -> float:
    """The order from the last two errors of a halving sequence."""
    return math.log2(errors[-2] / errors[-1])


def nonlinear():
    """y' = −2 t y², y(0) = 1: y = 1 / (1 + t²) (non-autonomous, so ∂f/∂t and the d coefficients count)."""
    return Problem(lambda t, y: -2 * t[:, None] * y * y), torch.ones(1, 1, dtype=F64), lambda t: 1 / (1 + t * t)


def linear():
    """y' = A (y − φ(t)) + φ'(t), y(0) = φ(0): y = φ = (sin t, cos 2t), A with eigenvalues −1 ± 2i."""
    A = torch.tensor([[-1.0, 2.0], [-2.0, -1.0]], dtype=F64)
    phi = lambda t: torch.stack([torch.sin(t), torch.cos(2 * t)], -1)  # noqa: E731
    dphi = lambda t: torch.stack([torch.cos(t), -2 * torch.sin(2 * t)], -1)  # noqa: E731
    problem = Problem(lambda t, y: (y - phi(t)) @ A.T + dphi(t), jacobian=lambda t, y: A.expand(len(t), 2, 2))
    return problem, phi(torch.zeros(1, dtype=F64)), lambda t: phi(torch.tensor([t], dtype=F64))


@pytest.mark.parametrize("name", ["rodas5p", "rodas4", "ros34pw2"])
@pytest.mark.parametrize("make", [nonlinear, linear])
def test_order_of_solution_and_embedded_estimate(name, make):
    """Global errors of n = 4..32 steps to t = 2 fall as h^p (p = 5 for rodas5p, 4 for rodas4) and those of the
    embedded solution y1 − error as h^(p−1): the tableau meets its order conditions, the error weights theirs."""
    method = Rosenbrock(TABLEAU[name])
    errors, embedded = [], []
    for n in (4, 8, 16, 32):
        problem, y0, exact = make()
        y, y_hat, _, _ = fixed_steps(method, problem, y0, 0.0, 2.0, n)
        errors.append(float((y - exact(2.0)).abs().max()))
        embedded.append(float((y_hat - exact(2.0)).abs().max()))
    p = ORDER[name]
    assert p - 0.3 < slope(errors) < p + 0.7, errors
    assert p - 1.3 < slope(embedded) < p + 0.7, embedded
    assert method.order == p - 1  # the controller's exponent 1/(order + 1) belongs to the embedded solution


@pytest.mark.parametrize("name, dense_order", [("rodas5p", 4), ("rodas4", 3), ("ros34pw2", 3)])
def test_dense_output_order(name, dense_order):
    """Inside one step from the exact solution, the dense output's error at θ = 0.37 falls as h^(q+1) (q = 4 for
    rodas5p's interpolant, 3 for rodas4's), and θ = 0, 1 give y and y1 exactly."""
    method = Rosenbrock(TABLEAU[name])
    errors = []
    for h in (0.2, 0.1, 0.05, 0.025):
        problem, _, exact = nonlinear()
        t0 = torch.tensor([0.5], dtype=F64)
        y0 = exact(t0)[:, None]
        step = method.step(problem, t0, y0, torch.tensor([h], dtype=F64), None)
        theta = torch.tensor([0.37], dtype=F64)
        value = method.interpolate(t0, torch.tensor([h], dtype=F64), y0, step, theta)
        errors.append(float((value - exact(t0 + 0.37 * h)[:, None]).abs()))
        ends = [method.interpolate(t0, torch.tensor([h], dtype=F64), y0, step, torch.tensor([x], dtype=F64))
                for x in (0.0, 1.0)]
        assert torch.equal(ends[0], y0) and torch.allclose(ends[1], step.y1, rtol=1e-15, atol=0)
    assert slope(errors) > dense_order + 0.6, errors


@pytest.mark.parametrize("name", ["rodas5p", "rodas4", "ros34pw2"])
def test_l_stable_and_stiffly_accurate(name):
    """R(∞) = 0: one step of y' = λy with hλ = −1e12 damps y by 1e-9 or more; on Prothero–Robinson
    y' = λ(y − cos t) − sin t with λ = −1e6 the solution follows cos t to tolerance in steps set by accuracy,
    not by λ (an explicit method would need about 1e6 steps). Only the end is compared: the steps grow to several
    time units (stiff accuracy makes each end exact to O(1/λ)), and the dense output inside such a step is a
    quartic through cos t, not controlled by the error estimate."""
    method = Rosenbrock(TABLEAU[name])
    problem = Problem(lambda t, y: -1e6 * y, autonomous=True)
    step = method.step(problem, torch.zeros(1, dtype=F64), torch.ones(1, 1, dtype=F64),
                       torch.tensor([1e6], dtype=F64), None)
    assert float(step.y1.abs()) < 1e-9
    f = lambda t, y: -1e6 * (y - torch.cos(t)[..., None]) - torch.sin(t)[..., None]  # noqa: E731
    ts = torch.tensor([0.0, 10.0], dtype=F64)
    stats = {}
    ys = solve(f, torch.ones(1, dtype=F64), ts, method=name, rtol=1e-6, atol=1e-10, stats=stats)
    assert torch.allclose(ys[:, 0], torch.cos(ts), rtol=0, atol=1e-6)
    assert stats["steps"] < 300, stats  # measured 8 (rodas5p), 12 (rodas4), 200 (ros34pw2, order 3)


def approximate_jacobians():
    """The nonlinear problem's Jacobian −4ty replaced by zero and by half of it."""
    return {"zero": lambda t, y: torch.zeros(len(t), 1, 1, dtype=F64),
            "half": lambda t, y: (-2 * t[:, None] * y)[:, :, None]}


@pytest.mark.parametrize("approximation", ["zero", "half"])
def test_w_method_keeps_its_order_with_an_approximate_jacobian(approximation):
    """ros34pw2 is a W-method: with any matrix in place of the Jacobian (here 0, or half the true one) its fixed-step
    error still falls as h^3 (measured slopes 3.1-3.2), where rodas5p's falls to h^2 (measured 2.0-2.1)."""
    slopes = {}
    for name in ("ros34pw2", "rodas5p"):
        errors = []
        for n in (8, 16, 32, 64):
            f = nonlinear()[0]._f
            problem = Problem(f, jacobian=approximate_jacobians()[approximation])
            y, _, _, _ = fixed_steps(Rosenbrock(TABLEAU[name]), problem, torch.ones(1, 1, dtype=F64), 0.0, 2.0, n)
            errors.append(float((y - 0.2).abs()))
        slopes[name] = slope(errors)
    assert 2.8 < slopes["ros34pw2"] < 3.6 and slopes["rodas5p"] < 2.5, slopes


COUPLING = 1e4


def coupled_lotka_volterra(t, y):
    """The homotopy pattern: a non-stiff model (Lotka–Volterra) plus a stiff linear coupling −λ(y − φ(t)) towards a
    target φ, λ = 1e4."""
    phi = torch.stack([1 + 0.5 * torch.sin(t), 1 + 0.5 * torch.cos(t)], -1)
    return in_torch(lotka_volterra_rhs)(t, y) - COUPLING * (y - phi)


@functools.lru_cache(maxsize=None)
def coupled_reference() -> np.ndarray:
    ts = np.linspace(0, 10, 11)
    return solve_ivp(lambda t, y: coupled_lotka_volterra(torch.tensor(t), torch.from_numpy(y)).numpy(), (0, 10),
                     [1.0, 1.5], method="Radau", rtol=1e-12, atol=1e-14, t_eval=ts).y.T


def test_w_method_with_only_the_stiff_coupling_in_the_jacobian():
    """With only the coupling's Jacobian −λI given, ros34pw2 matches Radau (rtol 1e-12, exact Jacobian) to 30 ×
    tolerance (measured 6.4) in about 120 steps; tsit5 would be held at h ≈ 3e-4."""
    stats = {}
    ys = solve(coupled_lotka_volterra, torch.tensor([1.0, 1.5], dtype=F64), torch.linspace(0, 10, 11, dtype=F64),
               method="ros34pw2", rtol=1e-6, atol=1e-10, stats=stats,
               jacobian=lambda t, y: -COUPLING * torch.eye(2, dtype=F64).expand(*y.shape, 2))
    assert weighted_error(ys, coupled_reference(), 1e-6, 1e-10) < 30
    assert stats["steps"] < 200, stats


def test_stiff_outputs_inside_long_steps_need_stop_at_outputs():
    """A known limit of dense output on stiff problems: rodas5p's step ends on the coupled problem are exact to
    O(1/λ) whatever h, so its steps grow to ~0.4 (27 steps to t = 10), and its quartic interpolant between them
    errs by up to 7e-5 at rtol 1e-6 (measured; the error estimate does not see it). stop_at_outputs=True makes
    every output a step end: within 30 × tolerance (measured error 6e-9, in 33 steps)."""
    ys = solve(coupled_lotka_volterra, torch.tensor([1.0, 1.5], dtype=F64), torch.linspace(0, 10, 11, dtype=F64),
               method="rodas5p", rtol=1e-6, atol=1e-10, stop_at_outputs=True)
    assert weighted_error(ys, coupled_reference(), 1e-6, 1e-10) < 30


# ---------------------------------------------------------------- whole solves against scipy Radau (rtol 1e-12)
CASES = [("robertson", "rodas5p"), ("robertson", "rodas4"), ("van_der_pol", "rodas5p"), ("van_der_pol", "rodas4"),
         ("enzyme_cascade", "rodas5p"), ("enzyme_cascade", "rodas4"), ("lotka_volterra", "rodas5p"),
         ("lotka_volterra", "rodas4"), pytest.param("robertson", "ros34pw2", marks=pytest.mark.slow),
         pytest.param("enzyme_cascade", "ros34pw2", marks=pytest.mark.slow)]


@pytest.mark.parametrize("problem, name", CASES)
def test_against_radau(problem, name):
    """At rtol 1e-6 / atol 1e-10 every output is within 30 × (atol + rtol |y|) of Radau at rtol 1e-12. Measured
    (rodas5p / rodas4): Robertson 1.3 / 0.6, Van der Pol 3.4 / 5.5, the enzyme cascade 9.5 / 5.1, Lotka–Volterra
    24 / 3 (the local error is controlled; on an oscillator the global one adds up over the periods)."""
    ys = solve_problem(problem, name)
    assert weighted_error(ys, reference(problem), 1e-6, 1e-10) < 30


@pytest.mark.parametrize("problem", ["robertson", "lotka_volterra"])
def test_error_follows_the_tolerance(problem):
    """Tolerance proportionality: at rtol 1e-9 / atol 1e-13 the error relative to the tolerance is as at 1e-6
    (measured 4.0 on Robertson, 24 on Lotka–Volterra), i.e. 1000 times smaller in absolute terms."""
    ys = solve_problem(problem, "rodas5p", rtol=1e-9, atol=1e-13)
    assert weighted_error(ys, reference(problem), 1e-9, 1e-13) < 30


def test_robertson_componentwise():
    """Robertson to t = 1e5 with rodas5p at rtol 1e-6 / atol 1e-10: relative errors below 1e-5 for every value of A
    and C above atol / rtol = 1e-4 (measured 1.3e-6; below it atol rules) and for B wherever it exceeds 1e-8
    (B never exceeds 4e-5; measured 7.3e-6), in about 100 steps (measured 102, 97 accepted)."""
    stats = {}
    ys = solve_problem("robertson", "rodas5p", stats=stats).numpy()
    ref = reference("robertson")
    relative = np.abs(ys - ref) / np.where(ref == 0, 1.0, np.abs(ref))
    assert float(relative[:, [0, 2]][np.abs(ref[:, [0, 2]]) > 1e-4].max()) < 1e-5
    assert float(relative[:, 1][np.abs(ref[:, 1]) > 1e-8].max()) < 1e-5
    assert stats["steps"] < 150, stats


@pytest.mark.parametrize("name", ["rodas5p", "rodas4"])
def test_float32(name):
    """In float32 (LU, solves and constants in float32) Robertson at rtol 1e-4 / atol 1e-8 is within 30 × the
    tolerance of Radau (measured 0.22 and 0.30), in float32."""
    rhs, y0, ts = PROBLEMS["robertson"]
    ys = solve(in_torch(rhs), torch.tensor(y0, dtype=torch.float32), torch.tensor(ts, dtype=torch.float32),
               method=name, rtol=1e-4, atol=1e-8, autonomous=True)
    assert ys.dtype == torch.float32
    assert weighted_error(ys.double(), reference("robertson"), 1e-4, 1e-8) < 30


def test_auto_switches_to_rodas5p_on_robertson():
    stats = {}
    ys = solve_problem("robertson", "auto", stats=stats)
    assert stats["method"] == "rodas5p" and "switched_at" in stats
    assert weighted_error(ys, reference("robertson"), 1e-6, 1e-10) < 30


# ---------------------------------------------------------------- per-member step control
def test_easy_and_stiff_member_each_as_alone():
    """A batch of Van der Pol with μ = 1 (easy) and μ = 1000 (stiff) gives each member what solving it alone gives:
    each member its own step sizes and acceptance (neither is dragged to the other's steps)."""
    ts = torch.linspace(0, 10, 11, dtype=F64)
    y0 = torch.tensor([[2.0, 0.0], [2.0, 0.0]], dtype=F64)
    mus = torch.tensor([1.0, 1000.0], dtype=F64)
    stats = {}
    both = solve(in_torch(van_der_pol_rhs, mus), y0, ts, method="rodas5p", rtol=1e-6, atol=1e-10, autonomous=True,
                 stats=stats)
    steps = []
    for b in range(2):
        alone_stats = {}
        alone = solve(in_torch(van_der_pol_rhs, mus[b:b + 1]), y0[b:b + 1], ts, method="rodas5p", rtol=1e-6,
                      atol=1e-10, autonomous=True, stats=alone_stats)
        assert torch.allclose(both[:, b], alone[:, 0], rtol=1e-10, atol=1e-13)
        steps.append(alone_stats["accepted"])
    assert steps[0] > 2 * steps[1] and stats["accepted"] == max(steps)
    for b in range(2):  # and each is right (measured below 1e-4)
        assert float((both[:, b] - reference_van_der_pol(float(mus[b]), ts)).abs().max()) < 1e-3


def reference_van_der_pol(mu: float, ts: torch.Tensor) -> torch.Tensor:
    sol = solve_ivp(lambda t, y: van_der_pol_rhs(y, mu), (0, float(ts[-1])), [2.0, 0.0], method="Radau",
                    rtol=1e-12, atol=1e-16, t_eval=ts.numpy())
    return torch.from_numpy(sol.y.T)


def test_per_member_time_grids():
    """Each member its own output times [T, B]: equal to solving each alone on its grid."""
    f = in_torch(robertson_rhs)
    ts = torch.tensor([[0.0, 0.0], [1.0, 10.0], [40.0, 400.0]], dtype=F64)
    y0 = torch.tensor([[1.0, 0, 0], [0.9, 0.0, 0.1]], dtype=F64)
    both = solve(f, y0, ts, method="rodas5p", rtol=1e-8, atol=1e-12, autonomous=True)
    for b in range(2):
        alone = solve(f, y0[b], ts[:, b], method="rodas5p", rtol=1e-8, atol=1e-12, autonomous=True)
        assert torch.allclose(both[:, b], alone, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------- gradients through the steps
def robertson_loss(k: torch.Tensor, y0: torch.Tensor, with_jacobian: bool) -> torch.Tensor:
    """A weighted sum of a batch of two Robertson trajectories (each member its own initial state and end time,
    so one finishes before the other) at rtol 1e-9."""
    ts = torch.tensor([[0.0, 0.0], [0.3, 0.5], [1.0, 2.0]], dtype=F64)
    ys = solve(in_torch(robertson_rhs, k), y0, ts, method="rodas5p", rtol=1e-9, atol=1e-13, autonomous=True,
               jacobian=robertson_jacobian(k) if with_jacobian else None)
    return (ys[1:] * torch.tensor([1.0, 1e4, 1.0], dtype=F64)).sum()


@pytest.mark.parametrize("with_jacobian", [True, False], ids=["given-jacobian", "autodiff-jacobian"])
def test_gradients_against_finite_differences(with_jacobian):
    """Backprop through the solver (through lu_factor, lu_solve and the Jacobian itself, given or by torch.func)
    equals central finite differences of the solution with respect to rate constants and an initial state; it is
    finite though one member ends first (its remaining steps have h = 0)."""
    k0 = torch.tensor([0.04, 3e7, 1e4], dtype=F64)
    y00 = torch.tensor([[1.0, 0.0, 0.0], [0.8, 1e-5, 0.2]], dtype=F64)
    k, y0 = k0.clone().requires_grad_(), y00.clone().requires_grad_()
    robertson_loss(k, y0, with_jacobian).backward()
    assert bool(torch.isfinite(y0.grad).all())
    with torch.no_grad():
        for i in (0, 2):
            e = torch.zeros(3, dtype=F64)
            e[i] = 1e-5 * k0[i]
            fd = (robertson_loss(k0 + e, y00, with_jacobian) - robertson_loss(k0 - e, y00, with_jacobian)) / (2 * e[i])
            assert float(k.grad[i]) == pytest.approx(float(fd), rel=1e-5)
        e = torch.zeros(2, 3, dtype=F64)
        e[1, 0] = 1e-6
        fd = (robertson_loss(k0, y00 + e, with_jacobian) - robertson_loss(k0, y00 - e, with_jacobian)) / 2e-6
        assert float(y0.grad[1, 0]) == pytest.approx(float(fd), rel=1e-5)


# ---------------------------------------------------------------- cost per step
def test_one_jacobian_and_one_lu_per_step(monkeypatch):
    """Each attempted step evaluates the Jacobian once and factorises once (batched: one call for all members),
    and evaluates f 8 times (rodas5p's stages; the first step reuses the loop's f(t0, y0)); with a Jacobian given,
    autodiff is never used."""
    factorisations = []
    lu_factor_ex = torch.linalg.lu_factor_ex
    monkeypatch.setattr(torch.linalg, "lu_factor_ex", lambda A: factorisations.append(A.shape) or lu_factor_ex(A))
    monkeypatch.setattr(torch.func, "jacrev", lambda *a, **k: pytest.fail("autodiff Jacobian used"))
    jacobian = robertson_jacobian()
    calls = []
    y0 = torch.tensor([[1.0, 0, 0], [0.5, 0, 0.5], [0.2, 0.0, 0.8]], dtype=F64)
    stats = {}
    solve(in_torch(robertson_rhs), y0, torch.tensor([0.0, 1e3], dtype=F64), method="rodas5p", rtol=1e-6,
          atol=1e-10, autonomous=True, jacobian=lambda t, y: calls.append(1) or jacobian(t, y), stats=stats)
    assert len(factorisations) == len(calls) == stats["n_jac"] == stats["steps"]
    assert set(factorisations) == {(3, 3, 3)}
    assert stats["n_f"] == 8 * stats["steps"] + 1  # + the first-step guess; f(t0, y0) is shared with step 1


def test_non_autonomous_time_derivative_counts():
    """A non-autonomous problem adds ∂f/∂t once per step (problem.time_derivative: one f evaluation with a
    forward-mode tangent), exact: ∂f/∂t = −1e3 sin t."""
    f = lambda t, y: -1e3 * (y - torch.cos(t)[..., None])  # noqa: E731
    stats = {}
    solve(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), method="rodas5p", stats=stats)
    assert stats["n_f"] == 9 * stats["steps"] + 1
    t = torch.tensor([0.3, 1.7], dtype=F64)
    exact = -1e3 * torch.sin(t)[:, None]
    torch.testing.assert_close(Problem(f).time_derivative(t, torch.ones(2, 1, dtype=F64)), exact, rtol=1e-14, atol=0)


# ---------------------------------------------------------------- the benchmark specs
@pytest.mark.parametrize("name", ["robertson", "van_der_pol", "enzyme_cascade"])
def test_benchmark_specs_compile_to_the_problems(name):
    """benchmarks/specs/<name>.hode compiles, starts where the hand-written problem starts (Robertson (1, 0, 0),
    Van der Pol (2, 0), the cascade's ENZYME_Y0), its forward equals the hand-written right-hand side and its
    generated Jacobian equals torch.func.jacrev of that right-hand side."""
    model = hodec.compile(SPECS / f"{name}.hode").model_class()().double()
    rhs, y0, _ = PROBLEMS[name]
    assert model.initial_state().tolist() == y0
    y = torch.tensor(y0, dtype=F64) + torch.rand(5, len(y0), dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.zeros(5, dtype=F64)
    with torch.no_grad():
        assert torch.allclose(model(t, y), in_torch(rhs)(t, y), rtol=1e-12, atol=1e-12)
        exact = torch.func.vmap(torch.func.jacrev(lambda x: in_torch(rhs)(t[0], x)))(y)
        assert torch.allclose(model.jacobian(t, y), exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["robertson", "van_der_pol", "enzyme_cascade"])
def test_simulate_the_benchmark_specs_with_rodas5p(name):
    """The product path: the compiled model's simulate(method='rodas5p'), with its generated Jacobian, against
    Radau on the hand-written problem: within 30 × (atol + rtol |y|)."""
    model = hodec.compile(SPECS / f"{name}.hode").model_class()().double()
    ts = torch.tensor(PROBLEMS[name][2], dtype=F64)
    with torch.no_grad():
        ys = model.simulate(ts, method="rodas5p", rtol=1e-6, atol=1e-10)
    assert weighted_error(ys, reference(name), 1e-6, 1e-10) < 30


# ---------------------------------------------------------------- torch.compile
@pytest.mark.slow
@pytest.mark.parametrize("with_jacobian", [True, False], ids=["given-jacobian", "autodiff-jacobian"])
def test_compiled_step_gives_the_eager_answer(with_jacobian):
    """compile=True (the Rosenbrock step, its LU and, without a given Jacobian, torch.func's jacrev inside the
    compiled graph; 5-25 s to compile on CPU) on Robertson with two members: the eager answer to 1e-12, and the
    step compiled once (a recompilation inside the loop raises)."""
    y0 = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.0, 0.2]], dtype=F64)
    ts = torch.tensor(PROBLEMS["robertson"][2], dtype=F64)
    kw = dict(method="rodas5p", rtol=1e-6, atol=1e-10, autonomous=True,
              jacobian=robertson_jacobian() if with_jacobian else None)
    eager = solve(in_torch(robertson_rhs), y0, ts, **kw)
    compiled = solve(in_torch(robertson_rhs), y0, ts, compile=True, **kw)
    assert float((compiled - eager).abs().max()) < 1e-12
