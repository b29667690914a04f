"""The synchronisation coupling compiled into the generated forward: -lam k J+ (h(u) - yhat(t))."""
import pytest
import torch

from hodec.compiler import load, load_source, compile_source
from hodec.errors import HodecError
from hodec.runtime import Coupling
from hodec.training.reference import GridCubic
from hodec.training.spline import SmoothingSpline

f64 = torch.float64
SPECS = __import__("pathlib").Path(__file__).resolve().parents[1] / "specs"


def model_from(source: str):
    return load_source(compile_source(source, "test.hode"), f"hodec_test_{abs(hash(source))}")().double()


def spline_reference(times, n_targets, batch=3, seed=0, alpha=0.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(len(times), batch, n_targets, generator=g, dtype=f64) + 2.0
    return SmoothingSpline(times, y, alpha)


NONLINEAR = """
model Nonlinear
param a = 1.5 positive
param b = 0.4
state x = 1
state y = 2
state z = 0.5
let s = x * y
der x = -a * x + b * y
der y = a * x - b * y * z
der z = b * y - z
observe q = s / (1 + z^2)
observe r = exp(0.3 * y) + sqrt(z) * x
"""

DISJOINT = """
model Disjoint
param a = 2 positive
state x = 1
state y = 2
state z = 0.5
der x = -a * x
der y = a * x - y
der z = y - z
observe q = x^2 / a + 1
observe r = log(y) * z + abs(z - 1)
"""


def test_state_observable_gives_minus_lam_k_u_minus_uhat():
    model = load(SPECS / "lotka_volterra.hode")().double()
    times = torch.linspace(0, 6, 13, dtype=f64)
    spline = spline_reference(times, 2)
    y = torch.rand(3, 2, dtype=f64) + 0.5
    t = torch.tensor(2.35, dtype=f64)
    plain = model(t, y)
    for lam, k in ((1.0, 6.0), (0.37, 2.5)):
        coupling = Coupling(model, ["prey", "predators"], spline, k)
        assert coupling.mode == "direct"
        model.set_coupling(coupling, lam)
        term = model(t, y) - plain
        torch.testing.assert_close(term, -lam * k * (y - spline(t)), rtol=1e-12, atol=1e-12)
    model.set_coupling(None)


def test_per_target_gain_and_state_targets():
    model = load(SPECS / "lotka_volterra.hode")().double()
    times = torch.linspace(0, 6, 13, dtype=f64)
    spline = spline_reference(times, 2)
    k = torch.tensor([3.0, 0.5], dtype=f64)
    coupling = Coupling(model, ["y", "x"], spline, k)  # states by name, in another order
    y = torch.rand(3, 2, dtype=f64)
    t = torch.tensor(4.0, dtype=f64)
    plain = model(t, y)
    with model.coupled(coupling, 0.8):
        term = model(t, y) - plain
    expected = torch.stack([-0.8 * 0.5 * (y[:, 0] - spline(t)[:, 1]), -0.8 * 3.0 * (y[:, 1] - spline(t)[:, 0])], -1)
    torch.testing.assert_close(term, expected)


@pytest.mark.parametrize("source,mode", [(NONLINEAR, "general"), (DISJOINT, "diagonal")])
def test_nonlinear_observable_matches_pinv_of_autograd_jacobian(source, mode):
    model = model_from(source)
    times = torch.linspace(0, 5, 11, dtype=f64)
    spline = spline_reference(times, 2, batch=4, seed=1, alpha=0.01)
    coupling = Coupling(model, ["q", "r"], spline, 4.0)
    assert coupling.mode == mode
    y = torch.rand(4, 3, dtype=f64) + 0.3
    t = torch.tensor(1.7, dtype=f64)
    plain = model(t, y)
    lam = 0.6
    model.set_coupling(coupling, lam)
    term = model(t, y) - plain
    model.set_coupling(None)
    for b in range(4):
        J = torch.autograd.functional.jacobian(lambda u: model.observables(t, u), y[b])
        h = model.observables(t, y[b])
        expected = -lam * 4.0 * torch.linalg.pinv(J) @ (h - spline(t)[b])
        torch.testing.assert_close(term[b], expected, rtol=1e-9, atol=1e-10)


def test_generated_jacobian_matches_autograd_for_nonsmooth_functions():
    source = """
model Rough
param a = 1.5 positive
input u
state x = 1
state y = 2
state z = 0.5
der x = -a * x + u
der y = a * x - y
der z = y - z
observe r = abs(x - 1) + max(y, 2 * z) + if(x > 0.5, x^2, 3) + floor(z) + hill(y, a, 2) + sigmoid(z) + softplus(x) + tanh(t * x)
observe w = z
observe tt = a * t + u
"""
    model = model_from(source)
    model.set_inputs({"u": ([0.0, 10.0], [1.0, 2.0])})
    y = torch.tensor([[0.7, 2.3, 0.4], [1.6, 1.1, 0.9], [0.2, 0.9, 1.3]], dtype=f64)
    t = torch.tensor(0.8, dtype=f64)
    J = model.observation_jacobian(t, y)
    assert J.shape == (3, 3, 3)
    for b in range(3):
        expected = torch.autograd.functional.jacobian(lambda v: model.observables(t, v), y[b])
        torch.testing.assert_close(J[b], expected)
    assert model.observation_table[1] == ("w", (2,), 2, ())
    assert model.observation_table[2][1] == ()


def test_lambda_zero_is_exactly_the_uncoupled_field():
    model = model_from(NONLINEAR)
    spline = spline_reference(torch.linspace(0, 5, 11, dtype=f64), 2, batch=2)
    coupling = Coupling(model, ["q", "r"], spline, 5.0)
    y = torch.rand(2, 3, dtype=f64)
    t = torch.tensor(0.3, dtype=f64)
    plain = model(t, y)
    model.set_coupling(coupling, 0.0)
    assert model._coupling is None
    assert torch.equal(model(t, y), plain)
    with model.coupled(coupling, 1.0):
        assert not torch.equal(model(t, y), plain)
    assert torch.equal(model(t, y), plain)


def test_jacobian_params_are_detached():
    """conc = central / V: J = 1/V carries no gradient, h does: d(term)/dV = -lam k V (central / V^2)."""
    model = load(SPECS / "pk_two_compartment.hode")().double()
    model.set_inputs({"infusion": ([0.0], [0.0])})
    spline = spline_reference(torch.linspace(0, 5, 11, dtype=f64), 1, batch=1)
    coupling = Coupling(model, ["conc"], spline, 2.0)
    y = torch.tensor([[30.0, 10.0]], dtype=f64)
    t = torch.tensor(1.0, dtype=f64)
    model.set_coupling(coupling, 1.0)
    term = model(t, y)[0, 0]
    model.set_coupling(None)
    term = term - model(t, y)[0, 0]
    (grad,) = torch.autograd.grad(term, model.raw_positive)
    V1 = model.params()["V1"]
    # raw is log V1: d/d(log V1) of -2 V1_detached (central / V1 - yhat) = -2 V1 * (-central / V1) = 2 central
    index = [row[0] for row in model.parameters_table].index("V1")
    assert grad[index].item() == pytest.approx(2.0 * 30.0, rel=1e-9)
    assert V1 == pytest.approx(20.0)


def test_grid_cubic_matches_spline_inside_and_outside():
    times = torch.cumsum(torch.rand(20, dtype=f64, generator=torch.Generator().manual_seed(3)) + 0.1, 0)
    y = torch.randn(20, 2, 3, dtype=f64, generator=torch.Generator().manual_seed(4))
    y[3:6, 0, 1] = float("nan")
    y[-4:, 1, 2] = float("nan")
    spline = SmoothingSpline(times, y, torch.tensor([0.0, 0.1, 1.0], dtype=f64))
    fast = GridCubic(spline, times)
    for tq in torch.linspace(float(times[0]) - 1, float(times[-1]) + 1, 301, dtype=f64):
        torch.testing.assert_close(fast(tq), spline(tq), rtol=1e-10, atol=1e-10)


def test_observable_calling_a_neural_slot_cannot_be_coupled():
    source = """
model N
state x = 1
neural g(x) hidden 4
der x = -x
observe o = g(x) + x
"""
    model = model_from(source)
    spline = spline_reference(torch.linspace(0, 1, 5, dtype=f64), 1, batch=1)
    with pytest.raises(HodecError, match="neural slot"):
        Coupling(model, ["o"], spline, 1.0)
    with pytest.raises(HodecError, match="did you mean 'x'"):
        Coupling(model, ["xx"], spline, 1.0)


def test_group_with_a_shared_batched_operand_broadcasts_per_batch_element():
    """Regression: a vectorised group reading the same state in every member (k1 A B, k2 A C) over a batch."""
    source = """
model Grp
param k1 = 1.5
param k2 = 0.5
state A = 1
state B = 2
state C = 0.5
state D = 0
reaction r1: A + B -> D ; k1 * A * B
reaction r2: A + C -> D ; k2 * A * C
"""
    model = model_from(source)
    y = torch.rand(3, 4, dtype=f64)
    batched = model(0.0, y)
    one_by_one = torch.stack([model(0.0, y[i]) for i in range(3)])
    torch.testing.assert_close(batched, one_by_one)


def test_a_new_lam_is_not_a_new_compiled_graph():
    """The coupling strength is an input of a compiled field, not a constant it specialises on: with lam a Python
    float every homotopy step recompiled, and the third lam hit torch's limit of 8 graphs (the step raised)."""
    from torch._dynamo.testing import CompileCounter

    model = load(SPECS / "lotka_volterra.hode")().double()
    times = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)
    coupling = Coupling(model, ["prey", "predators"], spline_reference(times, 2, batch=1), 3.0)
    counter = CompileCounter()
    field = torch.compile(lambda t, y: model(t, y), backend=counter, fullgraph=False)
    y, t = torch.tensor([[1.0, 0.5]], dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    model.set_coupling(coupling, 1.0)
    model(t, y)  # fills the coupling's per-dtype cache: a one-off, not what this test is about
    torch._dynamo.reset()
    values = []
    for lam in (1.0, 0.5, 0.25, 0.125):
        model.set_coupling(coupling, lam)
        values.append(field(t, y))
        model.set_coupling(None)
        assert torch.allclose(values[-1], model(t, y) + lam * (values[0] - model(t, y)), rtol=1e-12, atol=1e-12)
    assert counter.frame_count == 1


def test_grid_cubic_confined_gives_each_member_its_trajectorys_spline_on_its_interval():
    """confined(intervals): member i * B + b reads trajectory b's spline on grid interval intervals[i], at its own
    time or a shared one, its interval's ends included (the spline, not the GridCubic, is the reference)."""
    times = torch.linspace(0, 4, 9, dtype=f64)
    y = torch.randn(9, 2, 3, dtype=f64, generator=torch.Generator().manual_seed(5))
    spline = SmoothingSpline(times, y, 0.0)
    intervals = torch.tensor([0, 3, 7])
    confined = GridCubic(spline, times).confined(intervals)
    for at in (times[intervals].repeat_interleave(2), times[intervals + 1].repeat_interleave(2),
               times[intervals].repeat_interleave(2) + torch.tensor([0.1, 0.2, 0.3, 0.15, 0.49, 0.5], dtype=f64)):
        values = confined(at)  # 3 intervals x 2 trajectories, one time each
        for m in range(6):
            torch.testing.assert_close(values[m], spline(at[m])[m % 2], rtol=1e-10, atol=1e-10)
    shared = confined(torch.tensor(1.75, dtype=f64))  # one time for all: members 2, 3 have it in their interval
    torch.testing.assert_close(shared[2:4], spline(torch.tensor(1.75, dtype=f64)), rtol=1e-10, atol=1e-10)
