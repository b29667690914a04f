"""What hodec.solvers.solve says when it cannot go on or is given bad input: each a HodecError (the solve-time ones
SolverError subclasses) whose message says where (time, batch member, state), raised early rather than after a
long grind."""
from __future__ import annotations

import math
import re

import pytest
import torch

from hodec.errors import HodecError
from hodec.solvers import SolverError, StepSizeUnderflow, StiffnessDetected, TooManySteps, solve

EXPLICIT = ["tsit5", "dopri5"]
F64 = torch.float64


def _counted(f):
    """f with its calls counted in calls[0]: how long a solve ground on before it gave up."""
    calls = [0]

    def counted(t, y):
        calls[0] += 1
        return f(t, y)

    return counted, calls


def _time_in(message: str) -> float:
    return float(re.search(r"t = ([-+0-9.e]+)", message).group(1))


def _decay(t, y):
    return -y


def _robertson(t, y):
    a, b, c = y.unbind(-1)
    return torch.stack([-0.04 * a + 1e4 * b * c, 0.04 * a - 1e4 * b * c - 3e7 * b * b, 3e7 * b * b], -1)


STIFF = {"cosine_tracking": (lambda t, y: -1e6 * (y - torch.cos(t)[..., None]), [0.0], 1.0),
         "robertson": (_robertson, [1.0, 0.0, 0.0], 1e5)}


# ---------------------------------------------------------------- what a solve can run into
@pytest.mark.parametrize("method", EXPLICIT)
@pytest.mark.parametrize("name", STIFF)
def test_explicit_method_on_a_stiff_problem_says_so_quickly(method, name):
    """y' = −1e6 (y − cos t) and Robertson at the default tolerances: StiffnessDetected naming the time, the method
    and the way out ('rodas5p', 'auto') after a few hundred f evaluations (~350 measured), not tens of thousands."""
    f, y0, t_end = STIFF[name]
    counted, calls = _counted(f)
    with pytest.raises(StiffnessDetected) as err:
        solve(counted, torch.tensor(y0, dtype=F64), torch.tensor([0.0, t_end], dtype=F64), method=method)
    message = str(err.value)
    assert method in message and "'rodas5p'" in message and "'auto'" in message and "batch member 0" in message
    assert 0 < _time_in(message) < 0.1
    assert calls[0] < 600


@pytest.mark.parametrize("method", EXPLICIT)
def test_stiffness_at_a_tight_tolerance_is_found_too(method):
    """y' = −1000 (y − cos t) at rtol 1e-8: the controller settles the stiff mode near h·|λ| ≈ 2, below the
    stability boundary (~3.4) where Hairer's test looks, and tsit5 took 4873 steps without a word; now it is
    found within a few hundred steps, and `auto` finishes with rodas5p in a couple of hundred."""
    p = torch.tensor([1000.0, 0.5], dtype=F64)

    def f(t, y):
        return torch.stack([-p[0] * (y[..., 0] - torch.cos(t)), y[..., 0] - p[1] * y[..., 1]], -1)

    y0, ts = torch.tensor([2.0, 1.0], dtype=F64), torch.linspace(0, 10, 6, dtype=F64)
    counted, calls = _counted(f)
    with pytest.raises(StiffnessDetected):
        solve(counted, y0, ts, method=method, rtol=1e-8, atol=1e-8)
    assert calls[0] < 1500
    stats = {}
    solve(f, y0, ts, method="auto", rtol=1e-8, atol=1e-8, stats=stats)
    assert stats["method"] == "rodas5p" and stats["steps"] < 500


def test_stiffness_names_the_stiff_member_of_a_batch():
    """Member 0 decays gently, member 1 tracks cos t at rate 1e6: the error names member 1."""
    rates = torch.tensor([1.0, 1e6], dtype=F64)
    with pytest.raises(StiffnessDetected, match="batch member 1"):
        solve(lambda t, y: -rates[:, None] * (y - torch.cos(t)[:, None]), torch.zeros(2, 1, dtype=F64),
              torch.tensor([0.0, 1.0], dtype=F64), method="tsit5")


@pytest.mark.parametrize("method", EXPLICIT)
@pytest.mark.parametrize("t_end", [200.0, 1000.0])
def test_a_solution_settling_at_equilibrium_is_not_called_stiff(method, t_end):
    """A two-compartment PK model (gut → central → out, rates 1 and 0.2) run until it has emptied holds the
    explicit step at its stability limit near the end, but finishing takes a few hundred steps: no
    StiffnessDetected (it was raised at t = 196 of 200), and the closed form to 1e-7."""
    def pk(t, y):
        gut, central = y.unbind(-1)
        return torch.stack([-gut, gut - 0.2 * central], -1)

    ts = torch.tensor([0.0, 1.0, 5.0, 20.0, t_end], dtype=F64)
    y = solve(pk, torch.tensor([1.0, 0.0], dtype=F64), ts, method=method)
    exact = torch.stack([torch.exp(-ts), 1.25 * (torch.exp(-0.2 * ts) - torch.exp(-ts))], -1)
    assert float((y - exact).abs().max()) < 1e-7


@pytest.mark.parametrize("method", EXPLICIT)
def test_blow_up_is_a_step_size_underflow_naming_time_and_state(method):
    """y' = y², y(0) = 1 blows up at t = 1: StepSizeUnderflow at t ≈ 1 naming the state; in a batch, the member
    that blows up (member 1's z: z(0) = 1) is named, not its calm neighbour."""
    with pytest.raises(StepSizeUnderflow) as err:
        solve(lambda t, y: y ** 2, torch.tensor([1.0], dtype=F64), torch.tensor([0.0, 2.0], dtype=F64),
              method=method, state_names=["x"])
    message = str(err.value)
    assert abs(_time_in(message) - 1.0) < 1e-4 and "x (=" in message and "batch member 0" in message
    with pytest.raises(StepSizeUnderflow) as err:
        solve(lambda t, y: y ** 2, torch.tensor([[0.3, 0.1], [0.1, 1.0]], dtype=F64),
              torch.tensor([0.0, 2.0], dtype=F64), method=method, state_names=["x", "z"])
    message = str(err.value)
    assert abs(_time_in(message) - 1.0) < 1e-4 and "z (=" in message and "batch member 1" in message


def test_a_backward_solve_names_times_in_the_callers_time():
    """Decreasing ts integrate s = −t inside: the messages still give t. y' = −y², y(0) = 1 backward blows up at
    t = −1; f NaN before t = −0.5; max_steps stops at some t < 0."""
    backward = torch.tensor([0.0, -2.0], dtype=F64)
    with pytest.raises(StepSizeUnderflow) as err:
        solve(lambda t, y: -y ** 2, torch.tensor([1.0], dtype=F64), backward, method="tsit5")
    assert abs(_time_in(str(err.value)) + 1.0) < 1e-4, str(err.value)
    with pytest.raises(StepSizeUnderflow) as err:
        solve(lambda t, y: torch.where(t[..., None] < -0.5, torch.full_like(y, math.nan), -y),
              torch.tensor([1.0], dtype=F64), backward, method="dopri5")
    assert abs(_time_in(str(err.value)) + 0.5) < 1e-9, str(err.value)
    with pytest.raises(TooManySteps) as err:
        solve(_decay, torch.tensor([1.0], dtype=F64), backward, method="tsit5", max_steps=3)
    assert -2.0 < _time_in(str(err.value)) < 0.0, str(err.value)


def test_max_steps_raises_too_many_steps():
    with pytest.raises(TooManySteps) as err:
        solve(_decay, torch.tensor([1.0], dtype=F64), torch.tensor([0.0, 100.0], dtype=F64), method="tsit5",
              rtol=1e-10, max_steps=10)
    message = str(err.value)
    assert "10 steps (max_steps)" in message and 0 < _time_in(message) < 100 and "batch member 0" in message


def test_nan_from_f_mid_solve_is_named_as_such():
    """f turns NaN past t = 0.5: the error says the right-hand side is not finite there (t = 0.5, the state), not
    that the model may blow up."""
    def f(t, y):
        return torch.where(t[..., None] > 0.5, torch.full_like(y, math.nan), -y)

    with pytest.raises(StepSizeUnderflow) as err:
        solve(f, torch.tensor([1.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), method="tsit5",
              state_names=["x"])
    message = str(err.value)
    assert abs(_time_in(message) - 0.5) < 1e-9 and "x" in message and "not finite" in message, message


@pytest.mark.parametrize("y0, f, words", [
    ([1.0, math.nan], _decay, ["z", "nan", "initial"]),
    ([1.0, 2.0], lambda t, y: y * torch.tensor([1.0, math.inf], dtype=F64), ["z", "inf", "rate"]),
])
def test_non_finite_start_is_refused_at_once(y0, f, words):
    """A NaN initial state or an infinite rate at t0: a SolverError naming the state at the start, after one f
    evaluation, instead of hundreds of ever smaller steps ending in 'step size underflow at t = 0'."""
    counted, calls = _counted(f)
    with pytest.raises(SolverError) as err:
        solve(counted, torch.tensor([y0, [1.0, 1.0]], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
              method="tsit5", state_names=["x", "z"])
    message = str(err.value)
    assert all(w in message for w in words) and "batch member 0" in message and "t = 0" in message, message
    assert calls[0] <= 2


# ---------------------------------------------------------------- bad input
def _solve(y0=(1.0,), ts=(0.0, 1.0), f=_decay, **kw):
    y0 = y0 if torch.is_tensor(y0) else torch.tensor(y0, dtype=F64)
    return solve(f, y0, ts if torch.is_tensor(ts) else torch.tensor(ts, dtype=F64), **{"method": "tsit5", **kw})


@pytest.mark.parametrize("kw, words", [
    (dict(y0=torch.ones(2, 1, dtype=F64), ts=torch.zeros(3, 3, dtype=F64)), ["[3, 3]", "[T, *batch]"]),
    (dict(y0=torch.ones(2, 1, dtype=F64), ts=torch.zeros(3, 2, 1, dtype=F64)), ["[3, 2, 1]"]),
    (dict(ts=torch.tensor(1.0, dtype=F64)), ["shape []"]),
    (dict(y0=torch.ones(2, 1, dtype=F64), ts=torch.tensor(1.0, dtype=F64)), ["shape []"]),
    (dict(ts=()), ["at least one time"]),
    (dict(ts=(0.0, math.inf)), ["finite"]),
    (dict(ts=(0.0, math.nan)), ["finite"]),
    (dict(ts=(0.0, 2.0, 1.0)), ["sorted"]),
    (dict(y0=torch.ones(2, 1, dtype=F64), ts=torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=F64)), ["sorted"]),
])
def test_bad_time_grids(kw, words):
    with pytest.raises(HodecError) as err:
        _solve(**kw)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize("rtol, atol", [(0.0, 1e-8), (-1e-6, 1e-8), (math.nan, 1e-8), (math.inf, 1e-8), (1e-20, 1e-8),
                                        (1e-6, -1.0), (1e-6, math.nan), (1e-6, math.inf),
                                        (1e-6, [1e-8, -1.0]), (1e-6, [1e-8, math.nan])])
def test_bad_tolerances(rtol, atol):
    with pytest.raises(HodecError, match="tolerances"):
        _solve(y0=(1.0, 1.0), rtol=rtol, atol=atol)


def test_absolute_tolerance_per_state_and_per_member():
    """atol as a list per state [n], or per member and state [*batch, n]: each member solved with its own atol
    gives the answer of solving it alone with that atol; a shape that fits neither is a HodecError."""
    y0 = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]], dtype=F64)  # batch [2, 1], n = 2
    per_state = _solve(y0=y0, ts=(0.0, 3.0), atol=[1e-3, 1e-9], rtol=1e-3)
    assert per_state.shape == (2, 2, 1, 2)
    atol = torch.tensor([[[1e-2, 1e-2]], [[1e-9, 1e-9]]], dtype=F64)
    both = _solve(y0=y0, ts=(0.0, 3.0), atol=atol, rtol=1e-3)
    for b in range(2):
        alone = _solve(y0=y0[b], ts=(0.0, 3.0), atol=float(atol[b, 0, 0]), rtol=1e-3)
        assert float((both[:, b] - alone).abs().max()) < 1e-14
    other = _solve(y0=y0[0], ts=(0.0, 3.0), atol=1e-9, rtol=1e-3)  # the atols matter: member 0's differs
    assert float((both[:, 0] - other).abs().max()) > 1e-6
    with pytest.raises(HodecError, match=r"atol has shape \[3\]"):
        _solve(y0=y0, atol=[1e-8, 1e-8, 1e-8])


@pytest.mark.parametrize("y0, words", [(torch.tensor(1.0, dtype=F64), ["initial state", "[*batch, n]"]),
                                       (torch.ones(2, 0, dtype=F64), ["initial state", "no values"]),
                                       (torch.tensor([1, 2]), ["floating-point", "int64"])])
def test_bad_initial_states(y0, words):
    with pytest.raises(HodecError) as err:
        _solve(y0=y0)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize("f, words", [(lambda t, y: -y[..., :1], ["f(t, y) returned", "[2, 1]", "[2, 2]"]),
                                      (lambda t, y: torch.tensor(0.0, dtype=F64), ["[]", "[2, 2]"]),
                                      (lambda t, y: (-y).float(), ["float32", "float64"])])
def test_right_hand_side_of_the_wrong_shape_or_dtype(f, words):
    with pytest.raises(HodecError) as err:
        _solve(y0=torch.ones(2, 2, dtype=F64), f=f)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_unknown_method():
    with pytest.raises(HodecError, match="unknown solver method 'rk45'.*tsit5"):
        _solve(method="rk45")
