"""hodec.solvers events: time events per batch member and state events (located roots), their jumps, outputs at
event times, gradients through event times (implicit function theorem for state events) and jumps, stiff methods
and auto across events, bad input. References: closed forms, scipy's brentq on analytic solutions, finite
differences."""
import math

import pytest
import torch
from scipy.optimize import brentq

from hodec.errors import HodecError
from hodec.solvers import Events, solve, solve_adjoint

TIGHT = dict(rtol=1e-11, atol=1e-13)
METHODS = ["tsit5", "rodas5p", "auto"]
pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations
NAN = float("nan")


def decay_with_doses(t, y0, k, doses):
    """y' = −k y from y0, plus 1 at each dose time (at a dose time: after it)."""
    return y0 * math.exp(-k * t) + sum(math.exp(-k * (t - d)) for d in doses if d <= t)


@pytest.mark.parametrize("method", METHODS)
def test_time_events_per_member_against_the_closed_form(method):
    """Each member its own event times (NaN padding, one at the start time, one at an output time, one between
    outputs, one after the last output): steps end at them, outputs at an event's time are after it."""
    k = 0.3
    ts = torch.linspace(0, 10, 11, dtype=torch.float64)
    y0 = torch.tensor([[1.0], [2.0], [0.5]], dtype=torch.float64)
    times = torch.tensor([[0.0, 2.5, 4.0], [5.0, NAN, 7.25], [NAN, NAN, 12.0]], dtype=torch.float64)
    stats = {}
    ys = solve(lambda t, y: -k * y, y0, ts, method, events=Events(times, lambda row, t, y: y + 1.0), stats=stats,
               **TIGHT)
    member_doses = [[0.0, 5.0], [2.5], [4.0, 7.25]]  # column b of times
    for b, doses in enumerate(member_doses):
        expected = torch.tensor([decay_with_doses(t, float(y0[b, 0]), k, doses) for t in ts.tolist()],
                                dtype=torch.float64)
        assert torch.allclose(ys[:, b, 0], expected, rtol=0, atol=1e-9), (b, ys[:, b, 0] - expected)
    assert float(ys[0, 0, 0]) == 2.0  # the event at the start time applies before the first step
    assert stats["jumps"] == 4  # 5, 2.5, 4, 7.25 (the start's not counted; 12 is after the last output)


def test_events_at_one_time_apply_in_row_order():
    ts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    jumps = {0: lambda y: 2 * y, 1: lambda y: y + 1}
    events = Events(torch.tensor([1.0, 1.0], dtype=torch.float64), lambda row, t, y: jumps[row](y))
    ys = solve(lambda t, y: torch.zeros_like(y), torch.ones(1, dtype=torch.float64), ts, "tsit5", events=events)
    assert ys[:, 0].tolist() == [1.0, 3.0, 3.0]  # 2·1 + 1, not 2·(1 + 1)


@pytest.mark.parametrize("method", ["tsit5", "rodas5p"])
def test_gradients_through_event_times_and_jumps(method):
    """d y(T)/dτ = k·exp(−k (T − τ)) for a dose of 1 at τ; d y(T)/da = exp(−k (T − τ)) for a jump y += a."""
    k, T = 0.4, 6.0
    tau = torch.tensor([[1.5], [3.0]], dtype=torch.float64, requires_grad=True)  # [K = 2, batch 1]
    amount = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    events = Events(tau, lambda row, t, y: y + (amount if row == 0 else 1.0))
    # event times at output times, outputs after them: a chain of step sizes through the controller (h_next = h ·
    # factor, the error detached) once made these gradients grow by ~8x per output interval after the event
    ys = solve(lambda t, y: -k * y, torch.ones(1, 1, dtype=torch.float64), torch.linspace(0, T, 13), method,
               events=events, rtol=1e-8, atol=1e-10)
    d_tau, d_amount = torch.autograd.grad(ys[-1, 0, 0], (tau, amount))
    expected = [0.7 * k * math.exp(-k * (T - 1.5)), k * math.exp(-k * (T - 3.0))]
    assert d_tau[:, 0].tolist() == pytest.approx(expected, rel=1e-6)
    assert float(d_amount) == pytest.approx(math.exp(-k * (T - 1.5)), rel=1e-7)


def oscillator(zeta=0.1):
    """x'' = −x − 2ζ x', x(0) = 1, x'(0) = 0: the analytic x(t)."""
    w = math.sqrt(1 - zeta ** 2)
    return lambda t: math.exp(-zeta * t) * (math.cos(w * t) + zeta / w * math.sin(w * t))


@pytest.mark.parametrize("method", METHODS)
def test_a_state_event_is_located_to_1e10_against_brentq(method):
    """x falls below each member's threshold c (g = c − x > 0): the first located time, recorded by the jump into a
    third state, matches brentq on the analytic solution to 1e-10 (the jump: x' = −x' / 2)."""
    zeta = 0.1
    x = oscillator(zeta)
    c = torch.tensor([-0.5, -0.2, 0.3], dtype=torch.float64)

    def f(t, y):
        return torch.stack([y[..., 1], -y[..., 0] - 2 * zeta * y[..., 1], torch.zeros_like(t)], -1)

    def jump(e, t, y):
        return torch.stack([y[..., 0], -0.5 * y[..., 1], torch.where(y[..., 2] == 0, t, y[..., 2])], -1)

    J = torch.tensor([[0.0, 1.0, 0.0], [-1.0, -2 * zeta, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)

    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(3, 3)
    ys = solve(f, y0, torch.tensor([0.0, 2.5, 6.0]), method, events=Events(condition=lambda t, y: (c - y[..., 0])[
        ..., None], on_condition=jump), jacobian=lambda t, y: J.expand(3, 3, 3), rtol=1e-12, atol=1e-14)
    for b in range(3):
        root = brentq(lambda t: x(t) - float(c[b]), 0.0, 3.0, xtol=1e-15, rtol=1e-15)
        assert abs(float(ys[-1, b, 2]) - root) < 1e-10, (b, float(ys[-1, b, 2]) - root)


def test_a_state_event_does_not_fire_where_its_condition_holds_at_the_start():
    ys = solve(lambda t, y: torch.full_like(y, 1.0), torch.tensor([[0.0], [2.0]], dtype=torch.float64),
               torch.tensor([0.0, 1.0, 3.0]), "tsit5",
               events=Events(condition=lambda t, y: y - 1.0, on_condition=lambda e, t, y: y + 10.0))
    assert ys[-1, :, 0].tolist() == pytest.approx([13.0, 5.0])  # member 0 crosses 1 at t = 1; member 1 never


def test_a_time_event_that_makes_a_condition_true_fires_it():
    events = Events(torch.tensor([1.0], dtype=torch.float64), lambda row, t, y: y + 5.0,
                    condition=lambda t, y: y - 3.0, on_condition=lambda e, t, y: y * 0 + 100.0)
    ys = solve(lambda t, y: torch.zeros_like(y), torch.zeros(1, dtype=torch.float64),
               torch.tensor([0.0, 1.0, 2.0]), "tsit5", events=events)
    assert ys[:, 0].tolist() == [0.0, 100.0, 100.0]


def test_a_state_event_an_earlier_one_at_the_same_time_made_false_does_not_fire():
    """Two events on one condition (t − reset > 0.1), each resetting it (SBML test case 00953): at every crossing
    the first fires and the second, false again by then, does not: q counts the crossings, r stays 0."""
    def jump(e, t, y):
        return torch.stack([t, y[..., 1] + (e == 0), y[..., 2] + (e == 1)], -1)

    condition = lambda t, y: (t - y[..., 0] - 0.1)[..., None].expand(*t.shape, 2)  # noqa: E731
    ys = solve(lambda t, y: torch.zeros_like(y), torch.zeros(1, 3, dtype=torch.float64),
               torch.tensor([0.0, 0.95]), "tsit5", events=Events(condition=condition, on_condition=jump))
    assert ys[-1, 0].tolist() == pytest.approx([0.9, 9.0, 0.0])


@pytest.mark.parametrize("method", ["tsit5", "rodas5p"])
def test_gradient_through_a_state_event_time(method):
    """y' = −k y from 1; when y < c: y += 1, the time recorded. t* = ln(1/c)/k, so dt*/dk = −t*/k and
    dt*/dc = −1/(k c); y(T) = (c + 1) exp(−k (T − t*)): its gradients against finite differences."""
    k = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    c = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    T = 4.0

    def run(k, c):
        f = lambda t, y: torch.stack([-k * y[..., 0], torch.zeros_like(t)], -1)  # noqa: E731
        events = Events(condition=lambda t, y: (c - y[..., 0])[..., None],
                        on_condition=lambda e, t, y: torch.stack([y[..., 0] + 1, t], -1))
        jacobian = lambda t, y: torch.stack([-k, 0 * k, 0 * k, 0 * k]).reshape(1, 2, 2)  # noqa: E731
        return solve(f, torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([0.0, T]), method,
                     events=events, jacobian=jacobian, autonomous=True, rtol=1e-12, atol=1e-14)[-1, 0]

    y = run(k, c)
    t_star = math.log(1 / 0.4) / 0.5
    assert float(y[1]) == pytest.approx(t_star, abs=1e-10)
    grads = torch.autograd.grad(y[1], (k, c), retain_graph=True)
    assert [float(g) for g in grads] == pytest.approx([-t_star / 0.5, -1 / (0.5 * 0.4)], rel=1e-7)
    grads = torch.autograd.grad(y[0], (k, c))
    with torch.no_grad():
        h = 1e-6
        fd = [(float(run(k + h, c)[0]) - float(run(k - h, c)[0])) / (2 * h),
              (float(run(k, c + h)[0]) - float(run(k, c - h)[0])) / (2 * h)]
    assert [float(g) for g in grads] == pytest.approx(fd, rel=1e-6)


def test_auto_switches_to_the_stiff_method_across_events():
    """A fast and a slow decay dosed at 5 and 50: tsit5 turns stiff, auto goes on with rodas5p, the doses land."""
    rates = torch.tensor([2000.0, 0.05], dtype=torch.float64)
    ts = torch.linspace(0, 100, 21, dtype=torch.float64)
    stats = {}
    ys = solve(lambda t, y: -rates * y, torch.tensor([1.0, 1.0], dtype=torch.float64), ts, "auto",
               events=Events(torch.tensor([5.0, 50.0], dtype=torch.float64), lambda row, t, y: y + 1.0), stats=stats,
               rtol=1e-9, atol=1e-12)
    assert stats["method"] == "rodas5p" and stats["switched_at"] < 50
    for j, rate in enumerate(rates.tolist()):
        expected = [decay_with_doses(t, 1.0, rate, [5.0, 50.0]) for t in ts.tolist()]
        assert ys[:, j].tolist() == pytest.approx(expected, abs=1e-8)


def test_backward_integration_with_time_events():
    ts = torch.tensor([4.0, 2.0, 0.0], dtype=torch.float64)
    ys = solve(lambda t, y: torch.ones_like(y), torch.zeros(1, dtype=torch.float64), ts, "tsit5",
               events=Events(torch.tensor([3.0], dtype=torch.float64), lambda row, t, y: y + 10.0))
    assert ys[:, 0].tolist() == pytest.approx([0.0, 8.0, 6.0])  # −1 to t = 3, +10 there, −3 to t = 0


@pytest.mark.parametrize("events, message", [
    (Events(torch.ones(2, 3)), "times need on_time"),
    (Events(torch.ones(2, 3), lambda k, t, y: y), r"times have shape \[2, 3\]"),
    (Events(torch.ones(1), lambda k, t, y: y[..., 0]), r"on_time\(0, t, y\) returned shape \[2\]"),
    (Events(condition=lambda t, y: y), "a condition needs on_condition"),
    (Events(condition=lambda t, y: y[..., 0], on_condition=lambda e, t, y: y), r"condition\(t, y\) returned shape"),
])
def test_bad_events_are_named(events, message):
    with pytest.raises(HodecError, match=message):
        solve(lambda t, y: -y, torch.ones(2, 1, dtype=torch.float64), torch.tensor([0.0, 2.0]), "tsit5",
              events=events)


def test_the_adjoint_refuses_events():
    with pytest.raises(HodecError, match="adjoint method does not support events"):
        solve_adjoint(lambda t, y: -y, torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 1.0]),
                      events=Events(torch.ones(1), lambda k, t, y: y))
