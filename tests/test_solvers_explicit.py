"""The explicit solvers (tsit5, dopri5) of hodec.solvers, checked against independent references: scipy's DOP853 at
rtol 1e-12 and closed forms for the accuracy, the Butcher order conditions for the tableaus, exact solutions for the
dense output, members solved alone for the per-member step control, central finite differences for the gradients.
Errors and bad input: test_solvers_errors.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from hodec.solvers import solve
from hodec.solvers.explicit import ExplicitRK
from hodec.solvers.problem import Problem
from hodec.solvers.tableaus import DOPRI5, TSIT5

EXPLICIT = ["tsit5", "dopri5"]
TABLEAUS = {"tsit5": TSIT5, "dopri5": DOPRI5}
F64 = torch.float64


# ---------------------------------------------------------------- reference problems: (numpy f, torch f, y0, t_end)
def _lv_np(t, y):
    return np.array([1.5 * y[0] - y[0] * y[1], -3.0 * y[1] + y[0] * y[1]])


def _lv(t, y):
    x, z = y.unbind(-1)
    return torch.stack([1.5 * x - x * z, -3.0 * z + x * z], -1)


def _forced_np(t, y):  # non-autonomous: every component reads t
    return np.array([np.sin(t) * y[1] - 0.1 * y[0], -np.cos(2 * t) * y[0] + 0.5 * y[2] * np.exp(-t / 5),
                     -y[2] + np.sin(3 * t)])


def _forced(t, y):
    a, b, c = y.unbind(-1)
    return torch.stack([torch.sin(t) * b - 0.1 * a, -torch.cos(2 * t) * a + 0.5 * c * torch.exp(-t / 5),
                        -c + torch.sin(3 * t)], -1)


def _lorenz_np(t, y):
    return np.array([10 * (y[1] - y[0]), y[0] * (28 - y[2]) - y[1], y[0] * y[1] - 8 / 3 * y[2]])


def _lorenz(t, y):
    a, b, c = y.unbind(-1)
    return torch.stack([10 * (b - a), a * (28 - c) - b, a * b - 8 / 3 * c], -1)


PROBLEMS = {"lotka_volterra": (_lv_np, _lv, [1.0, 1.0], 10.0),
            "forced_3_state": (_forced_np, _forced, [1.0, 0.5, -0.3], 8.0),
            "lorenz_short": (_lorenz_np, _lorenz, [1.0, 1.0, 1.0], 2.0)}
_REFERENCES: dict = {}


def _reference(name: str, ts: np.ndarray) -> np.ndarray:
    if name not in _REFERENCES:
        f_np, _, y0, t_end = PROBLEMS[name]
        sol = solve_ivp(f_np, (0.0, t_end), y0, method="DOP853", rtol=1e-12, atol=1e-14, t_eval=ts)
        _REFERENCES[name] = sol.y.T
    return _REFERENCES[name]


def _relative_error(y: torch.Tensor, ref: np.ndarray) -> float:
    """max |y − ref| over times and states, relative to the solution's size max |ref|."""
    return float(np.abs(y.numpy() - ref).max() / np.abs(ref).max())


# ---------------------------------------------------------------- accuracy and convergence
@pytest.mark.parametrize("method", EXPLICIT)
@pytest.mark.parametrize("name", PROBLEMS)
def test_accuracy_against_scipy_and_convergence(method, name):
    """At rtol 1e-4, 1e-6, 1e-8 (atol = rtol/100) on 21 output times (dense output): the error is within 20·rtol
    for rtol ≤ 1e-6, and shrinks at least 10-fold for each 100-fold tighter rtol (the global error of a 5th-order
    pair goes as rtol^(5/5) ~ rtol; dopri5 on LV to t = 10 is at 13.7·rtol for 1e-6, exactly as scipy's RK45)."""
    _, f, y0, t_end = PROBLEMS[name]
    ts = np.linspace(0.0, t_end, 21)
    ref = _reference(name, ts)
    errors = []
    for rtol in (1e-4, 1e-6, 1e-8):
        y = solve(f, torch.tensor(y0, dtype=F64), torch.tensor(ts), method=method, rtol=rtol, atol=rtol / 100)
        errors.append(_relative_error(y, ref))
    assert errors[1] <= 20 * 1e-6 and errors[2] <= 20 * 1e-8, errors
    assert errors[1] <= errors[0] / 10 and errors[2] <= errors[1] / 10, errors


@pytest.mark.parametrize("method", EXPLICIT)
def test_exponential_decay_against_its_closed_form(method):
    """y' = −k y for rates k = 0.5, 2, 5 at once (a batch): y0·exp(−k t) at 11 times, each member to ≤ 5·rtol of
    its own size at rtol 1e-6 and 1e-9."""
    k = torch.tensor([0.5, 2.0, 5.0], dtype=F64)
    ts = torch.linspace(0.0, 2.0, 11, dtype=F64)
    exact = 3.0 * torch.exp(-k * ts[:, None])
    for rtol in (1e-6, 1e-9):
        y = solve(lambda t, y: -k[:, None] * y, torch.full((3, 1), 3.0, dtype=F64), ts, method=method, rtol=rtol,
                  atol=1e-14)
        assert float(((y[..., 0] - exact).abs() / exact).max()) <= 5 * rtol


# ---------------------------------------------------------------- the tableaus
def _full_tableau(tab):
    """(A [s, s], b [s], bhat [s], c [s]) as numpy arrays: the stored rows start at stage 2, e = b − bhat."""
    s = len(tab.b)
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        A[i + 1, :len(row)] = row
    b = np.array(tab.b)
    return A, b, b - np.array(tab.e), np.array((0.0,) + tuple(tab.c))


def _order_conditions(w, A, c) -> dict:
    """The 17 rooted-tree conditions of order ≤ 5 (Hairer, Nørsett & Wanner I, II.2), each as (value, target)."""
    Ac, Ac2, Ac3, AAc = A @ c, A @ c ** 2, A @ c ** 3, A @ A @ c
    return {
        1: [(w.sum(), 1)],
        2: [(w @ c, 1 / 2)],
        3: [(w @ c ** 2, 1 / 3), (w @ Ac, 1 / 6)],
        4: [(w @ c ** 3, 1 / 4), (w @ (c * Ac), 1 / 8), (w @ Ac2, 1 / 12), (w @ AAc, 1 / 24)],
        5: [(w @ c ** 4, 1 / 5), (w @ (c ** 2 * Ac), 1 / 10), (w @ Ac ** 2, 1 / 20), (w @ (c * Ac2), 1 / 15),
            (w @ Ac3, 1 / 20), (w @ (c * AAc), 1 / 30), (w @ A @ (c * Ac), 1 / 40), (w @ A @ Ac2, 1 / 60),
            (w @ A @ AAc, 1 / 120)],
    }


@pytest.mark.parametrize("method", EXPLICIT)
def test_order_conditions_from_the_coefficients(method):
    """The weights b satisfy all 17 conditions of order ≤ 5, the embedded bhat all 8 of order ≤ 4 and (being an
    order-4 estimate) not all of order 5; the rows of A sum to c; the method is first-same-as-last."""
    tab = TABLEAUS[method]
    A, b, bhat, c = _full_tableau(tab)
    assert sum(len(v) for v in _order_conditions(b, A, c).values()) == 17
    assert np.allclose(A.sum(1), c, atol=1e-14, rtol=0)
    for order, conditions in _order_conditions(b, A, c).items():
        for value, target in conditions:
            assert abs(value - target) < 1e-14, (order, value, target)
    embedded = _order_conditions(bhat, A, c)
    for order in (1, 2, 3, 4):
        for value, target in embedded[order]:
            assert abs(value - target) < 1e-14, (order, value, target)
    assert max(abs(value - target) for value, target in embedded[5]) > 1e-5
    assert np.array_equal(A[-1], b) and c[-1] == c[-2] == 1.0  # FSAL: the last stage is f(t + h, y1)
    assert tab.order == 4  # the controller's exponent 1/(order + 1) is that of the embedded order-4 estimate


@pytest.mark.parametrize("method", EXPLICIT)
def test_dense_output_is_continuous_and_consistent(method):
    """b_i(θ) (polynomials with b_i(0) = 0): b_i(1) = b_i, so the interpolant ends at the step's y1 and the output
    is continuous across steps; b_i'(0) = δ_i1, so it starts with slope f(t, y)."""
    tab = TABLEAUS[method]
    dense = np.array(tab.dense)  # [s, d]: coefficients of θ, θ², ...
    assert np.abs(dense.sum(1) - np.array(tab.b)).max() < 2e-14  # tsit5's are published to ~16 digits
    assert np.abs(dense[:, 0] - np.eye(len(tab.b))[0]).max() < 2e-14


@pytest.mark.parametrize("method", EXPLICIT)
def test_dense_output_order(method):
    """One step of y' = y² from y(0) = 1 (exact 1/(1 − t)), step sizes 0.1·2^-k: the interpolant's error at
    θ = 0.25, 0.5, 0.75 falls as h^5 (an order-4 continuous extension; fitted slope 5.05–5.15 measured), the
    step's y1 as h^6; at θ = 1 the interpolant is y1 itself."""
    rk = ExplicitRK(TABLEAUS[method])
    problem = Problem(lambda t, y: y ** 2)
    hs = 0.1 * 0.5 ** torch.arange(5, dtype=F64)
    t = torch.zeros(5, dtype=F64)
    y = torch.ones(5, 1, dtype=F64)
    step = rk.step(problem, t, y, hs, problem.f(t, y))
    slope = lambda err: float(np.polyfit(np.log(hs[:len(err)].numpy()), np.log(err.numpy()), 1)[0])  # noqa: E731
    assert slope((step.y1[:, 0] - 1 / (1 - hs)).abs()[:3]) > 5.8  # smaller steps reach the rounding error
    for theta in (0.25, 0.5, 0.75):
        value = rk.interpolate(t, hs, y, step, torch.full_like(t, theta))
        assert 4.8 < slope((value[:, 0] - 1 / (1 - theta * hs)).abs()) < 5.4, theta
    at_one = rk.interpolate(t, hs, y, step, torch.ones_like(t))
    assert float((at_one - step.y1).abs().max()) < 1e-14


# ---------------------------------------------------------------- per-member step control
def _oscillator(t, y):
    """x'' = −ω² x with ω carried as a constant third state: each member its own frequency."""
    x, v, w = y.unbind(-1)
    return torch.stack([v, -w ** 2 * x, torch.zeros_like(w)], -1)


@pytest.mark.parametrize("method", EXPLICIT)
def test_easy_and_hard_member_each_get_their_own_solve(method):
    """A batch of an easy (ω = 1) and a hard (ω = 40) oscillator: each member's answer is that of solving it
    alone (to 1e-12 of its size: only reductions differ; 1e-12 measured for the hard one, whose size is 40) and
    the easy member takes its own 9 accepted steps, not the hard one's ~270-300 (measured)."""
    y0 = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 40.0]], dtype=F64)
    ts = torch.linspace(0.0, 1.0, 11, dtype=F64)
    stats: dict = {}
    both = solve(_oscillator, y0, ts, method=method, rtol=1e-7, atol=1e-9, stats=stats)
    alone_steps = []
    for b in range(2):
        alone_stats: dict = {}
        alone = solve(_oscillator, y0[b:b + 1], ts, method=method, rtol=1e-7, atol=1e-9, stats=alone_stats)
        assert float((both[:, b] - alone[:, 0]).abs().max()) <= 1e-12 * float(alone.abs().max())
        assert float((alone[:, 0, 0] - torch.cos(y0[b, 2] * ts)).abs().max()) < 20 * 1e-7  # and both are right
        alone_steps.append(alone_stats["accepted"])
    easy, hard = stats["accepted_each"]
    assert abs(easy - alone_steps[0]) <= 1 and abs(hard - alone_steps[1]) <= 1, (stats, alone_steps)
    assert easy < 20 < 200 < hard and stats["accepted"] == hard


# ---------------------------------------------------------------- time grids, batch shapes, dtypes
def _cos_growth(t, y):
    """y' = cos(t)·y: exact y(t) = y(t0)·exp(sin t − sin t0); non-autonomous, so a member's own t matters."""
    return torch.cos(t)[..., None] * y


def _cos_growth_exact(y0, t0, t):
    return y0 * torch.exp(torch.sin(t) - torch.sin(t0))


def _worst_relative(y: torch.Tensor, exact: torch.Tensor) -> float:
    """max |y − exact| / |exact| (at rtol 1e-10 every case here is within 2e-9)."""
    return float(((y - exact).abs() / exact.abs()).max())


@pytest.mark.parametrize("method", EXPLICIT)
def test_per_member_time_grids(method):
    """ts [T, B]: each member starts, samples and ends on its own grid, and f sees each member's own time."""
    ts = torch.stack([torch.linspace(0.0, 1.0, 5), torch.linspace(0.5, 3.0, 5), torch.linspace(-2.0, -1.0, 5)],
                     1).to(F64)
    y0 = torch.tensor([[1.0], [2.0], [0.5]], dtype=F64)
    y = solve(_cos_growth, y0, ts, method=method, rtol=1e-10, atol=1e-12)
    assert y.shape == (5, 3, 1)
    assert _worst_relative(y[..., 0], _cos_growth_exact(y0[:, 0], ts[0], ts)) < 2e-9


@pytest.mark.parametrize("method", EXPLICIT)
def test_outputs_at_t0_and_repeated_times(method):
    ts = torch.tensor([0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0], dtype=F64)
    y0 = torch.tensor([[1.0], [2.0]], dtype=F64)
    y = solve(_cos_growth, y0, ts, method=method, rtol=1e-10, atol=1e-12)
    assert torch.equal(y[0], y0) and torch.equal(y[1], y0)
    assert torch.equal(y[2], y[3]) and torch.equal(y[3], y[4]) and torch.equal(y[5], y[6])
    assert _worst_relative(y[..., 0], _cos_growth_exact(y0[:, 0], ts[0], ts[:, None])) < 2e-9


@pytest.mark.parametrize("method", EXPLICIT)
def test_backward_integration_retraces_the_forward_one(method):
    """Decreasing ts: from y(2) back to t = 0 recovers the forward solution and the closed form; also per member."""
    y0 = torch.tensor([[1.0], [2.0]], dtype=F64)
    forward_ts = torch.linspace(0.0, 2.0, 5, dtype=F64)
    forward = solve(_cos_growth, y0, forward_ts, method=method, rtol=1e-10, atol=1e-12)
    backward = solve(_cos_growth, forward[-1], forward_ts.flip(0), method=method, rtol=1e-10, atol=1e-12)
    assert _worst_relative(backward.flip(0), forward) < 2e-9
    grid = torch.stack([torch.linspace(2.0, 0.0, 5), torch.linspace(1.0, -3.0, 5)], 1).to(F64)
    per_member = solve(_cos_growth, y0, grid, method=method, rtol=1e-10, atol=1e-12)
    assert _worst_relative(per_member[..., 0], _cos_growth_exact(y0[:, 0], grid[0], grid)) < 2e-9


@pytest.mark.parametrize("method", EXPLICIT)
def test_two_batch_dimensions(method):
    """y0 [2, 3, n] with a shared grid [T] and a per-member one [T, 2, 3]: f gets t [2, 3] and y [2, 3, n]."""
    seen = []

    def f(t, y):
        seen.append((tuple(t.shape), tuple(y.shape)))
        return _cos_growth(t, y)

    y0 = 0.5 + torch.arange(6, dtype=F64).reshape(2, 3, 1)
    shared = torch.linspace(0.0, 1.0, 4, dtype=F64)
    y = solve(f, y0, shared, method=method, rtol=1e-10, atol=1e-12)
    assert y.shape == (4, 2, 3, 1) and set(seen) == {((2, 3), (2, 3, 1))}
    assert _worst_relative(y, _cos_growth_exact(y0, shared[0], shared[:, None, None, None])) < 2e-9
    grid = shared[:, None, None] * (1.0 + torch.arange(6, dtype=F64).reshape(2, 3))  # each member its own end
    y = solve(f, y0, grid, method=method, rtol=1e-10, atol=1e-12)
    assert _worst_relative(y, _cos_growth_exact(y0, grid[0, ..., None], grid[..., None])) < 2e-9


@pytest.mark.parametrize("method", EXPLICIT)
@pytest.mark.parametrize("dtype, rtol, bound", [(torch.float32, 1e-5, 1e-4), (torch.float64, 1e-9, 1e-8)])
def test_float32_and_float64(method, dtype, rtol, bound):
    """The solve keeps the caller's dtype; LV to t = 5 within bound of scipy's reference (relative)."""
    ts = np.linspace(0.0, 5.0, 11)
    ref = solve_ivp(_lv_np, (0.0, 5.0), [1.0, 1.0], method="DOP853", rtol=1e-12, atol=1e-14, t_eval=ts).y.T
    y = solve(_lv, torch.tensor([1.0, 1.0], dtype=dtype), torch.tensor(ts, dtype=dtype), method=method, rtol=rtol,
              atol=rtol / 100)
    assert y.dtype == dtype
    assert _relative_error(y.double(), ref) < bound


@pytest.mark.parametrize("method", EXPLICIT)
def test_zero_length_span(method):
    """ts = [t0, t0] (or a single time) gives y0 back without a step; a member with a zero span next to one with a
    real span keeps y0 while the other integrates."""
    y0 = torch.tensor([[1.0], [2.0]], dtype=F64)
    for ts in ([0.3, 0.3], [0.3]):
        stats: dict = {}
        y = solve(_cos_growth, y0, torch.tensor(ts, dtype=F64), method=method, stats=stats)
        assert y.shape == (len(ts), 2, 1) and torch.equal(y, y0.expand_as(y)) and stats["steps"] == 0
    grid = torch.tensor([[0.3, 0.3], [0.3, 1.3]], dtype=F64)
    y = solve(_cos_growth, y0, grid, method=method, rtol=1e-10, atol=1e-12)
    assert torch.equal(y[:, 0], y0[:1].expand(2, 1))
    assert _worst_relative(y[1, 1, 0], _cos_growth_exact(2.0, grid[0, 1], grid[1, 1])) < 2e-9


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("method", EXPLICIT)
def test_backprop_gradients_against_finite_differences(method):
    """d/d(y0, a) of a weighted sum of the LV solution (a: the prey's growth rate) by backprop through solve(),
    against central differences (step 1e-6, float64, rtol 1e-10): within 1e-5 relative (1e-7 measured)."""
    ts = torch.linspace(0.0, 2.0, 5, dtype=F64)
    weights = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))

    def loss(y0, a):
        def f(t, y):
            x, z = y.unbind(-1)
            return torch.stack([a * x - x * z, -3.0 * z + x * z], -1)
        return (solve(f, y0, ts, method=method, rtol=1e-10, atol=1e-12) * weights).sum()

    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    a = torch.tensor(1.5, dtype=F64, requires_grad=True)
    grad_y0, grad_a = torch.autograd.grad(loss(y0, a), (y0, a))
    eps = 1e-6
    with torch.no_grad():
        fd_y0 = torch.stack([(loss(y0 + eps * e, a) - loss(y0 - eps * e, a)) / (2 * eps)
                             for e in torch.eye(2, dtype=F64)])
        fd_a = (loss(y0, a + eps) - loss(y0, a - eps)) / (2 * eps)
    assert float((grad_y0 - fd_y0).abs().max()) <= 1e-5 * float(fd_y0.abs().max())
    assert abs(float(grad_a - fd_a)) <= 1e-5 * abs(float(fd_a))


@pytest.mark.parametrize("method", EXPLICIT)
def test_gradients_of_members_that_finish_at_different_times(method):
    """Per-member grids ending at t = 1, 3 and 0 (a zero span): members that are done keep stepping with h = 0
    until the last finishes, and their gradients stay finite and exact: d y(T)/d y0 = exp(sin T − sin t0)."""
    ts = torch.tensor([[0.0, 0.0, 0.0], [0.5, 1.0, 0.0], [1.0, 3.0, 0.0]], dtype=F64)
    y0 = torch.tensor([[1.0], [2.0], [3.0]], dtype=F64, requires_grad=True)
    y = solve(_cos_growth, y0, ts, method=method, rtol=1e-10, atol=1e-12)
    grad, = torch.autograd.grad(y[-1].sum(), y0)
    exact = torch.exp(torch.sin(ts[-1]) - torch.sin(ts[0]))
    assert _worst_relative(grad[:, 0], exact) < 1e-8


# ---------------------------------------------------------------- torch.compile
@pytest.mark.slow
def test_compiled_loop_gives_the_eager_answer():
    """compile=True (torch.compile of the step and the dense output; ~20-45 s to compile on CPU) on a batch of two
    LV members with their own grids: the eager answer to 1e-12."""
    y0 = torch.tensor([[1.0, 1.0], [2.0, 0.5]], dtype=F64)
    ts = torch.stack([torch.linspace(0.0, 5.0, 11), torch.linspace(0.0, 3.0, 11)], 1).to(F64)
    eager = solve(_lv, y0, ts, method="tsit5", rtol=1e-8)
    compiled = solve(_lv, y0, ts, method="tsit5", rtol=1e-8, compile=True)
    assert float((compiled - eager).abs().max()) < 1e-12
    assert math.isfinite(float(compiled.sum()))
