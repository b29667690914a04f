"""Homotopy's coupled solves parallel in time (solvers/parallel.py, methods/homotopy.py InTime): the states against
scipy's solve of the coupled ODE, the gradient against central differences, the fallback to the sequential solve,
the warm start."""
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.interpolate import CubicSpline

from hodec.compiler import load
from hodec.solvers.parallel import chain, shoot
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.fit import Trainer
from hodec.training.methods import homotopy

LV = Path(__file__).resolve().parents[1] / "specs" / "lotka_volterra.hode"
K_GAIN, LAM = 4.0, 0.5


def trainer(rtol=1e-9, atol=1e-11, **config):
    """Mechanistic LV, two trajectories (each its own start) of 9 noisy points, interpolated (smoothing 0): the
    reference yhat is then the natural cubic spline through the data."""
    M = load(LV)
    t = np.linspace(0, 4, 9)
    rng = np.random.default_rng(3)
    times, ids, prey, predators = [], [], [], []
    for member, y0 in enumerate(([0.5, 4.0], [1.2, 2.0])):
        ys = solve_ivp(lambda _, y: [1.3 * y[0] - 0.9 * y[0] * y[1], 0.8 * y[0] * y[1] - 1.8 * y[1]], (0, 4), y0,
                       t_eval=t, rtol=1e-10, atol=1e-12).y
        ys = ys * (1 + 0.05 * rng.standard_normal(ys.shape))
        times.append(t)
        ids += [member] * len(t)
        prey += list(ys[0])
        predators += list(ys[1])
    data = make_dataset(M, np.concatenate(times), {"prey": prey, "predators": predators}, ids=ids)
    config = load_config({"method": "homotopy", "k": K_GAIN, "smoothing": 0.0, "dtype": "float64", "lr": 0.05,
                          "solver": {"rtol": rtol, "atol": atol}, **config})
    return Trainer(M().double(), data, config)


def epoch(tr, lam=LAM) -> float:
    tr.optimizer.zero_grad(set_to_none=True)
    loss = tr.method.loss(lam)[0]
    loss.backward()
    return float(loss.detach())


def scipy_coupled(tr, lam, times=None) -> np.ndarray:
    """The coupled ODE du/dt = f(u) - lam k (u - yhat(t)) per trajectory by scipy (rtol 1e-11), yhat scipy's
    natural cubic spline through the trajectory's data: [T, B, 2] at times (default: the data times)."""
    g = tr.problem.groups[0]
    a, b, c, d = tr.model.parameter_values().tolist()
    t, y = g.t.numpy(), g.y.numpy()
    times = t if times is None else times.numpy()
    y0 = tr.problem.initial(tr.model, g).detach().numpy()
    out = []
    for member in range(g.size):
        spline = CubicSpline(t, y[:, member], bc_type="natural")

        def f(s, u):
            lv = np.array([a * u[0] - b * u[0] * u[1], c * u[0] * u[1] - d * u[1]])
            return lv - lam * K_GAIN * (u - spline(s))
        out.append(solve_ivp(f, (t[0], t[-1]), y0[member], t_eval=times, method="DOP853", rtol=1e-11,
                             atol=1e-13).y.T)
    return np.stack(out, 1)


def test_parallel_states_equal_scipys_coupled_solution():
    tr = trainer()
    in_time = tr.method.in_time[0]
    epoch(tr)  # the first solve is sequential: it seeds the warm start
    tr.optimizer.step()
    epoch(tr)
    assert (in_time.counts["parallel"], in_time.counts["sequential"], in_time.counts["fallback"]) == (1, 1, 0)
    np.testing.assert_allclose(in_time.nodes[in_time.rows].numpy(), scipy_coupled(tr, LAM), rtol=1e-7, atol=1e-9)


def test_hard_data_intervals_are_halved_and_the_states_stay_the_coupled_solution(monkeypatch):
    """With every piece taking more than one step called hard, each solve halves the hard data intervals' pieces
    (up to MAX_SPLIT); the new nodes' guesses are converged already (one evaluation at unchanged parameters), and
    the states at every node, old and new, are scipy's."""
    monkeypatch.setattr(homotopy, "TARGET_STEPS", 1)
    tr = trainer()
    in_time, g = tr.method.in_time[0], tr.problem.groups[0]
    epoch(tr)  # sequential: no per-member steps to read yet
    assert in_time.counts["refinements"] == 0 and in_time.splits.tolist() == [homotopy.SPLIT] * 8
    epoch(tr)  # parallel, then refined
    assert in_time.counts["refinements"] == 1 and in_time.splits.tolist() == [2 * homotopy.SPLIT] * 8
    np.testing.assert_array_equal(in_time.grid[in_time.rows].numpy(), g.t.numpy())  # the data times stay nodes
    assert in_time.nodes.shape == (8 * 2 * homotopy.SPLIT + 1, 2, 2)
    evaluations = in_time.counts["evaluations"]
    epoch(tr)  # the same parameters: the refined guess is converged
    assert in_time.counts["evaluations"] == evaluations + 1 and in_time.counts["fallback"] == 0
    np.testing.assert_allclose(in_time.nodes[in_time.rows].numpy(), scipy_coupled(tr, LAM), rtol=1e-7, atol=1e-9)
    for _ in range(3):
        epoch(tr)
    assert in_time.splits.tolist() == [homotopy.MAX_SPLIT] * 8  # 2 -> 4 -> 8 -> 16, then no further
    np.testing.assert_allclose(in_time.nodes.numpy(), scipy_coupled(tr, LAM, in_time.grid), rtol=1e-7, atol=1e-9)


def test_no_refinement_where_the_tolerance_is_at_the_rounding_level(monkeypatch):
    """float32 at rtol 1e-7 (~1 eps): step counts are rounding noise, so the nodes stay; rtol 1e-3 refines."""
    monkeypatch.setattr(homotopy, "TARGET_STEPS", 1)
    for rtol, refined in ((1e-7, False), (1e-3, True)):
        tr = trainer(rtol=rtol, atol=1e-6, dtype="float32")
        for _ in range(3):
            epoch(tr)
        in_time = tr.method.in_time[0]
        assert in_time.counts["parallel"] == 2 and (in_time.counts["refinements"] > 0) == refined


def test_refinement_stops_at_max_members(monkeypatch):
    monkeypatch.setattr(homotopy, "TARGET_STEPS", 1)
    monkeypatch.setattr(homotopy, "MAX_MEMBERS", 2 * 8 * homotopy.SPLIT * 2 - 1)  # B = 2: one doubling too many
    tr = trainer()
    for _ in range(3):
        epoch(tr)
    in_time = tr.method.in_time[0]
    assert in_time.counts["refinements"] == 0 and in_time.counts["parallel"] == 2


def test_gradient_equals_central_differences_of_the_parallel_loss():
    tr = trainer(rtol=1e-11, atol=1e-13)
    epoch(tr)  # sequential
    tr.optimizer.step()
    epoch(tr)
    raw = tr.model.raw_positive
    grad = raw.grad.clone()
    assert tr.method.in_time[0].counts["parallel"] == 1
    h = 1e-5
    for j in (0, 3):  # a and d
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                raw[j] += sign * h
            values.append(epoch(tr))
            with torch.no_grad():
                raw[j] -= sign * h
        fd = (values[0] - values[1]) / (2 * h)
        assert abs(float(grad[j]) - fd) <= 1e-5 * abs(fd) + 1e-9, (j, float(grad[j]), fd)
    assert tr.method.in_time[0].counts["fallback"] == 0


def test_starts_the_flow_cannot_take_fall_back_to_the_sequential_solve():
    """NaN starts make the flow fail: the sequential solve gives the states (the loss of the method without the
    parallel route, to tolerance), counted as a fallback, and they are the next guess."""
    tr = trainer()
    epoch(tr)
    in_time = tr.method.in_time[0]
    in_time.nodes = in_time.nodes * float("nan")
    loss = epoch(tr)
    assert in_time.counts["fallback"] == 1 and in_time.counts["parallel"] == 0
    assert torch.isfinite(in_time.nodes).all()
    tr.method.in_time = [None]
    assert loss == pytest.approx(epoch(tr), rel=1e-7)  # its steps also stop at the nodes between data times


def test_newton_not_converging_falls_back_to_the_sequential_solve(monkeypatch):
    tr = trainer()
    epoch(tr)
    in_time = tr.method.in_time[0]
    in_time.nodes = in_time.nodes * 1.2
    monkeypatch.setattr(homotopy, "shoot", functools.partial(homotopy.shoot, max_iterations=1))
    loss = epoch(tr)
    assert in_time.counts == dict(parallel=0, sequential=1, fallback=1, evaluations=1, refinements=0)
    tr.method.in_time = [None]
    assert loss == pytest.approx(epoch(tr), rel=1e-7)  # its steps also stop at the nodes between data times


def test_warm_start_from_converged_states_takes_one_evaluation():
    tr = trainer()
    epoch(tr)  # sequential
    in_time = tr.method.in_time[0]
    epoch(tr)  # same parameters: the sequential states are the guess
    first = in_time.counts["evaluations"]
    states = in_time.nodes[in_time.rows].clone()  # at the data times (the pieces between may be refined)
    epoch(tr)  # same parameters again: the last parallel states are converged already
    assert in_time.counts["parallel"] == 2 and in_time.counts["evaluations"] == first + 1
    np.testing.assert_allclose(in_time.nodes[in_time.rows].numpy(), states.numpy(), rtol=1e-8, atol=1e-10)


def test_guess_extrapolates_the_last_two_solves(monkeypatch):
    """Parameters moved by equal steps: the states' linear extrapolation from the last two solves is much closer to
    the next solution than the last states are (second order against first); a refinement forgets it."""
    monkeypatch.setattr(homotopy, "TARGET_STEPS", 10 ** 6)  # the same nodes throughout
    tr = trainer()
    in_time = tr.method.in_time[0]
    raw = tr.model.raw_positive
    step = 1e-3 * raw.detach().abs()
    epoch(tr)  # sequential: nothing to extrapolate from
    assert in_time.previous is None and in_time.guess(LAM) is in_time.nodes
    for _ in range(2):
        with torch.no_grad():
            raw += step
        epoch(tr)
    guess, last = in_time.guess(LAM), in_time.nodes
    assert in_time.guess(LAM / 2) is last  # another lambda: no extrapolation
    with torch.no_grad():
        raw += step
    epoch(tr)
    solution = in_time.nodes
    assert in_time.counts["parallel"] == 3 and in_time.counts["refinements"] == 0
    assert float((guess - solution).abs().max()) < 0.05 * float((last - solution).abs().max())
    epoch(tr, LAM / 2)  # a solve at another lambda: the next one cannot extrapolate across it
    assert in_time.previous is None and in_time.guess(LAM / 2) is in_time.nodes
    monkeypatch.setattr(homotopy, "TARGET_STEPS", 1)
    epoch(tr)
    assert in_time.counts["refinements"] == 1 and in_time.previous is None and in_time.guess(LAM) is in_time.nodes


def test_fit_yaml_parallel_in_time_false_solves_sequentially():
    tr = trainer(parallel_in_time=False)
    assert tr.method.in_time == [None]
    tr = trainer()
    assert tr.method.in_time[0] is not None
    tr.problem.solver["compile"] = True  # untried with the Jacobians' batched backward: sequential
    assert not homotopy.InTime.applies(tr.problem, tr.problem.groups[0])


def test_shoot_finds_the_fixed_point_of_a_nonlinear_map_and_its_implicit_gradient():
    """flow: x -> theta sin(x) + c per interval (a map with exact Jacobians): the states equal the sequential
    recurrence and their gradient in theta equals backpropagation through it."""
    theta = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    c = torch.linspace(0.1, 0.5, 6, dtype=torch.float64)[:, None, None].expand(6, 2, 3)
    y0 = torch.tensor([[0.3, -0.2, 1.0], [0.5, 0.1, -1.0]], dtype=torch.float64)
    sequential = [y0]
    for i in range(6):
        sequential.append(theta * torch.sin(sequential[-1]) + c[i])
    sequential = torch.stack(sequential)
    shot = shoot(lambda starts: theta * torch.sin(starts) + c, y0, torch.zeros_like(sequential), 1e-12, 1e-14)
    assert shot.converged and shot.iterations <= 6
    torch.testing.assert_close(shot.states, sequential, rtol=1e-12, atol=1e-14)
    weights = torch.randn(sequential.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    want, = torch.autograd.grad((sequential * weights).sum(), theta)
    got, = torch.autograd.grad((shot.states * weights).sum(), theta)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)


@pytest.mark.parametrize("K", [1, 2, 5, 8, 131])
def test_chain_equals_the_recurrence_and_its_gradient(K):
    """The parallel prefix gives z_(i+1) = P_i z_i + b_i step by step's values and gradients (in b and z0)."""
    gen = torch.Generator().manual_seed(K)
    P = 0.6 * torch.randn(K, 2, 3, 3, dtype=torch.float64, generator=gen)
    b = torch.randn(K, 2, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    z0 = torch.randn(2, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    zs = [z0]
    for i in range(K):
        zs.append((P[i] @ zs[-1].unsqueeze(-1)).squeeze(-1) + b[i])
    want = torch.stack(zs)
    got = chain(P, b, z0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    weights = torch.randn(want.shape, dtype=torch.float64, generator=gen)
    expected = torch.autograd.grad((want * weights).sum(), (b, z0))
    for a, c in zip(expected, torch.autograd.grad((got * weights).sum(), (b, z0))):
        torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-12)
