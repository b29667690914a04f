"""Issue 15: the state Jacobian d(dy/dt)/dy that the stiff solvers call (generated jacobian(t, y)), derived by SymPy
per flux and accumulated through the stoichiometry; the coupling term's Jacobian; forward, jacobian and inputs at
one time per batch member. References: torch.func.jacrev of the generated forward, hand-written formulas, and
each batch member evaluated alone."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sympy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hodec
from hodec.compiler import compile_source, load_source, symbolic
from hodec.runtime import Coupling
from hodec.symbolic.state_jacobian import state_jacobian
from hodec.training.reference import GridCubic
from hodec.training.spline import SmoothingSpline
from benchmarks.networks import random_network
from test_coupling import DISJOINT  # a nonlinear observable on each of two disjoint sets of states
from test_fuzz import generated_models  # random well-formed specs: lets, if, functions, neural calls, residuals

f64 = torch.float64
SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.hode"))
_counter = itertools.count()


def model_from(source: str, gates: bool = False):
    code = compile_source(source, "test.hode", gates=gates)
    return load_source(code, f"hodec_test_state_jacobian_{next(_counter)}")().double()


def bind_inputs(model, batch=None):
    """Each input a linear signal over [0, 10]; with `batch`, one column per member (values [T, batch])."""
    g = torch.Generator().manual_seed(7)
    times = torch.linspace(0, 10, 11, dtype=f64)
    for name in model.input_names:
        shape = (11,) if batch is None else (11, batch)
        model.set_inputs({name: (times, torch.rand(*shape, generator=g, dtype=f64) + 0.5)})


def per_sample(model, batch: int):
    """Give the first param (if any) a different value in each batch member (inside its bounds)."""
    if not model.parameters_table:
        return
    name, default, kind, lower, upper = model.parameters_table[0]
    if kind == "bounded":
        values = lower + (upper - lower) * torch.linspace(0.3, 0.7, batch, dtype=f64)
    else:
        values = (default if default != 0 else 1.0) * torch.linspace(0.8, 1.2, batch, dtype=f64)
    model.set_params({name: values})


def random_states(model, batch: tuple, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = model.initial_state().detach().reshape(-1, len(model.state_names))[0].abs() + 0.5
    return scale * (0.5 + torch.rand(*batch, len(model.state_names), generator=g, dtype=f64))


def autograd_jacobian(model, t, y):
    """jacrev of the generated forward over the whole batch, then each member's own block [*batch, n, n]."""
    n = y.shape[-1]
    flat = y.reshape(-1, n)
    full = torch.func.jacrev(lambda s: model.forward(t, s.reshape(y.shape)).reshape(-1, n))(flat)
    members = torch.arange(flat.shape[0])
    return full[members, :, members, :].reshape(*y.shape[:-1], n, n)


def has_gates(path: Path) -> bool:
    return bool(hodec.compile(path).model_class(gates=True).gates_table)


CASES = [(p, False) for p in SPECS] + [(p, True) for p in SPECS if has_gates(p)]


@pytest.mark.parametrize("path, gates", CASES, ids=[f"{p.stem}{'-gated' if g else ''}" for p, g in CASES])
def test_jacobian_matches_jacrev_on_every_spec(path, gates):
    model = hodec.compile(path).model_class(gates=gates)().double()
    bind_inputs(model)
    if gates:  # away from 1, so a missing gate factor shows
        g = torch.Generator().manual_seed(3)
        model.set_gates({name: float(0.3 + torch.rand(1, generator=g, dtype=f64)) for name, _ in model.gates_table})
    t = torch.tensor(2.5, dtype=f64)
    for batch in ((), (4,), (2, 3)):
        y = random_states(model, batch, seed=len(batch))
        want = autograd_jacobian(model, t, y)
        got = model.jacobian(t, y)
        assert got.shape == (*batch, len(model.state_names), len(model.state_names))
        assert torch.isfinite(want).all()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    per_sample(model, 4)  # per-sample params: each member differentiated with its own values
    y = random_states(model, (4,), seed=9)
    torch.testing.assert_close(model.jacobian(t, y), autograd_jacobian(model, t, y), rtol=1e-10, atol=1e-12)


def test_network_jacobian_is_the_hand_written_mass_action_one():
    net = random_network(100, 300)
    model = model_from(net.hode)
    y = 0.5 + torch.rand(3, net.n_states, generator=torch.Generator().manual_seed(1), dtype=f64)
    t = torch.tensor(0.0, dtype=f64)
    want = torch.zeros(3, net.n_states, net.n_states, dtype=f64)
    stoich = {}
    for r, s, c in net.stoichiometry():
        stoich.setdefault(r, []).append((s, c))
    for r, (k, reactants) in enumerate(zip(net.rates, net.reactants)):
        for j in reactants:  # d(k * prod y[reactants]) / d y_j
            d = k * torch.prod(y[:, [i for i in reactants if i != j]], -1)
            for s, c in stoich.get(r, []):
                want[:, s, j] += c * d
    got = model.jacobian(t, y)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], autograd_jacobian(model, t, y[1]), rtol=1e-12, atol=1e-12)


def test_network_jacobian_code_is_vectorised_like_forward():
    code = compile_source(random_network(100, 300).hode, "net.hode")
    body = code[code.index("    def jacobian"):code.index("    def observation_jacobian")]
    statements = [line for line in body.splitlines()[5:] if line.strip() and not line.strip().startswith("#")]
    assert len(statements) < 20  # a few gathered groups and one index_add, not one line per entry


def test_symbolic_entries_of_lotka_volterra_are_the_hand_derived_ones():
    sm = symbolic((SPECS[0].parent / "lotka_volterra.hode").read_text(), "lotka_volterra.hode")
    a, b, c, d, x, y = (sm.symbols[n] for n in "abcdxy")
    entries = {(i, j): e for i, j, e in state_jacobian(sm).state_entries()}
    want = {(0, 0): a - b * y, (0, 1): -b * x, (1, 0): c * y, (1, 1): c * x - d}
    assert entries.keys() == want.keys()
    for key, expr in want.items():
        assert sympy.simplify(entries[key] - expr) == 0


LETS = """
model Lets
param k = 0.7
param q = 1.3 positive
input u
state x = 0.4
state y = 1.2
state z = 0.3
let v0 = x * y
let v1 = sin(v0) + cos(v0) + k * z
let v2 = exp(0.3 * v1) - 1
let v3 = v2 * v1 + sqrt(y)
let w = if(x > 0.6, q * x^2, -k * y) + abs(z - 0.5) + min(x, z) * max(y, 2 * z)
reaction r1: x -> y ; q * v3 * x
reaction r2: y <-> 2 z ; v2 * y - k * z^2 + u * t
der x = -w * x + 0.1 * t
der z = -floor(3 * y) * z + hill(x, 0.5, 2)
observe o = v3
"""


def test_let_chains_piecewise_and_nonsmooth_functions():
    model = model_from(LETS)
    bind_inputs(model)
    # both branches of the if, both sides of abs/min/max
    y = torch.tensor([[0.4, 1.2, 0.3], [0.9, 0.7, 0.8], [0.2, 0.5, 0.45], [0.65, 1.9, 0.1]], dtype=f64)
    for t in (torch.tensor(0.3, dtype=f64), torch.tensor(7.9, dtype=f64)):
        torch.testing.assert_close(model.jacobian(t, y), autograd_jacobian(model, t, y), rtol=1e-12, atol=1e-13)


NEURAL = """
model Neural
param k = 0.7
input u
state x = 0.4
state y = 1.2
state z = 0.3
neural f(a, b) hidden 4
neural h(a) hidden 3 activation softplus positive
neural R(x, u, t, z) -> y, z hidden 5
let w = f(x, y * z) + k * u
let v = sin(w) * h(w^2) + f(z, t)
der x = -k * v * x + f(x, x)
reaction r: y -> z ; v * y^2 + h(x)
"""


@pytest.mark.parametrize("gates", [False, True])
def test_neural_slots_enter_by_the_chain_rule(gates):
    """Function slots called inside lets and rates, a residual slot reading an input and t, its arguments gated:
    the slots' own derivatives (by autodiff) times the symbolic rest."""
    model = model_from(NEURAL, gates)
    bind_inputs(model)
    model.set_gates({name: 0.5 + 0.1 * i for i, (name, _) in enumerate(model.gates_table)})
    y = random_states(model, (3,), seed=11)
    for t in (torch.tensor(0.7, dtype=f64), torch.tensor([0.7, 2.0, 5.0], dtype=f64)):
        torch.testing.assert_close(model.jacobian(t, y), autograd_jacobian(model, t, y), rtol=1e-10, atol=1e-12)
    assert "torch.func" in model.jacobian.__doc__ and "(R, f, h)" in model.jacobian.__doc__
    assert "slot_jacobian" in compile_source(NEURAL, "neural.hode")


def test_fused_gated_slots_keep_their_forward_and_jacobian():
    """Slots of one shape run as one block network whose stacked arguments are gated from a table of their own;
    the Jacobian's per-slot gate table must not take its name (it did: forward then read 2 gates for 7 arguments)."""
    from test_language import FUSED  # three slot groups: fa/fb/fc fused, other alone, pa/pb fused

    model = model_from(FUSED, gates=True)
    model.set_gates({name: 0.3 + 0.1 * i for i, (name, _) in enumerate(model.gates_table)})
    u = torch.rand(4, dtype=f64)
    model.set_inputs({"u": lambda t: u})
    y = random_states(model, (4,), seed=5)
    t = torch.tensor(0.5, dtype=f64)
    assert model.forward(t, y).shape == y.shape
    torch.testing.assert_close(model.jacobian(t, y), autograd_jacobian(model, t, y), rtol=1e-10, atol=1e-12)


class UserNet(torch.nn.Module):
    """A network a user puts in a slot: no Linear/activation stack to propagate through."""

    def forward(self, x):
        return torch.stack([torch.sin(x[..., 0] * x[..., 1]), x[..., 0] ** 3 - torch.exp(-x[..., 1])], -1)


def test_a_users_network_in_a_slot_is_differentiated_by_autodiff():
    model = hodec.compile(SPECS[0].parent / "lotka_volterra_graybox.hode").model_class(gates=True)(
        slots={"U": UserNet()}).double()
    model.set_gates({name: 0.6 + 0.1 * i for i, (name, _) in enumerate(model.gates_table)})
    y = random_states(model, (4,), seed=14)
    t = torch.tensor(0.0, dtype=f64)
    torch.testing.assert_close(model.jacobian(t, y), autograd_jacobian(model, t, y), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the coupling term
LINEAR = DISJOINT.replace("observe q = x^2 / a + 1", "observe q = 3 * x / a").replace(
    "observe r = log(y) * z + abs(z - 1)", "observe r = y - 2 * z")
GENERAL = DISJOINT.replace("observe r = log(y) * z + abs(z - 1)", "observe r = x * z + y")


def reference(m: int):
    return lambda t: torch.full((m,), 0.7, dtype=f64) + 0.1 * t


@pytest.mark.parametrize("k", [2.5, torch.tensor([3.0, 0.5], dtype=f64)])
def test_direct_coupling_jacobian_is_exact(k):
    model = hodec.compile(SPECS[0].parent / "lotka_volterra.hode").model_class()().double()
    coupling = Coupling(model, ["predators", "prey"], reference(2), k)
    assert coupling.mode == "direct"
    y = torch.rand(3, 2, generator=torch.Generator().manual_seed(2), dtype=f64) + 0.5
    t = torch.tensor(1.5, dtype=f64)
    with model.coupled(coupling, 0.8):
        got = model.jacobian(t, y)
        want = autograd_jacobian(model, t, y)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    diagonal = torch.tensor([0.8 * 2.5] * 2 if not torch.is_tensor(k) else [0.8 * 0.5, 0.8 * 3.0], dtype=f64)
    torch.testing.assert_close(model.jacobian(t, y) - got, torch.diag(diagonal).expand(3, 2, 2))  # -lam k, by hand


@pytest.mark.parametrize("source, mode", [(LINEAR, "diagonal"), (LINEAR.replace("y - 2 * z", "x + y - 2 * z"),
                                                                   "general")])
def test_coupling_jacobian_on_linear_observables_is_exact(source, mode):
    model = model_from(source)
    coupling = Coupling(model, ["q", "r"], reference(2), torch.tensor([4.0, 1.5], dtype=f64))
    assert coupling.mode == mode
    y = torch.rand(4, 3, generator=torch.Generator().manual_seed(4), dtype=f64) + 0.3
    t = torch.tensor(0.9, dtype=f64)
    with model.coupled(coupling, 0.6):
        torch.testing.assert_close(model.jacobian(t, y), autograd_jacobian(model, t, y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("source, mode", [(DISJOINT, "diagonal"), (GENERAL, "general")])
def test_coupling_jacobian_includes_the_pseudo_inverse_derivative(source, mode):
    model = model_from(source)
    coupling = Coupling(model, ["q", "r"], reference(2), 4.0)
    assert coupling.mode == mode
    y = torch.rand(4, 3, generator=torch.Generator().manual_seed(5), dtype=f64) + 0.3
    t = torch.tensor(0.9, dtype=f64)
    with model.coupled(coupling, 0.6):
        got = model.jacobian(t, y)
        exact = autograd_jacobian(model, t, y)
        # the reference: jacrev of the coupled forward with J (so J+) frozen at the point of evaluation
        frozen = coupling.jacobian(model, t, y).detach()
        coupling.jacobian = lambda model, t, u: frozen
        want = autograd_jacobian(model, t, y)
    torch.testing.assert_close(got, exact, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(got, want, rtol=1e-6, atol=1e-8)  # the pinv derivative is really nonzero here


# ---------------------------------------------------------------- one time per batch member
TIMED = """
model Timed
param k = 0.5 positive
param a = 0.2
param b = 0.3
state x = 1
state y = 0.5
state z = 0.2
state w = 0.1
der x = -k * x + sin(t) * y
der y = k * x - t * y^2
der z = t * z + a * t
der w = t * w + b * t
"""  # the last two: t in vectorised groups, beside states and beside params


@pytest.mark.parametrize("columns", [False, True])
def test_forward_and_jacobian_at_one_time_per_member(columns):
    """Member b at its own time t_b equals member b alone at t_b; with per-member input signals (values [T, B],
    as hodec fit binds a group's inputs) each member also reads its own signal column."""
    t = torch.tensor([0.5, 3.25, 9.0, 1.0], dtype=f64)
    for model in (hodec.compile(SPECS[0].parent / "pk_two_compartment.hode").model_class()().double(),
                  model_from(TIMED)):
        bind_inputs(model, batch=4 if columns else None)
        y = random_states(model, (4,), seed=3)
        alone = [model.forward(t[b], y[b]) for b in range(4)] if not columns else []
        for b in range(4 if columns else 0):  # member b alone: its own column as the signal
            single = hodec.compile(SPECS[0].parent / "pk_two_compartment.hode").model_class()().double() \
                if model.input_names else model
            for name in model.input_names:
                signal = model._signals[name]
                single.set_inputs({name: (signal.times, signal.values[:, b])})
            alone.append(single.forward(t[b], y[b]))
        torch.testing.assert_close(model.forward(t, y), torch.stack(alone), rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(model.jacobian(t, y), autograd_jacobian(model, t, y), rtol=1e-12, atol=1e-14)


def test_input_values_keep_observes_time_layout():
    model = hodec.compile(SPECS[0].parent / "pk_two_compartment.hode").model_class()().double()
    bind_inputs(model, batch=3)
    ts = torch.tensor([0.5, 2.0], dtype=f64)
    u = model.input_values(ts.reshape(2, 1), (2, 3))  # observe()'s [T, 1] against a [T, B] batch
    signal = model._signals["infusion"]
    torch.testing.assert_close(u[..., 0], signal(ts))


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("targets", [("prey", "predators"), ("predators",)])
def test_coupled_forward_at_one_time_per_member(targets, grid):
    """The coupling's reference read at each member's own time: a spline over the batch (times [K] -> [K, B, m]),
    or hodec fit's GridCubic (one time per member -> [B, m]). Member b equals the coupled field at the scalar t_b."""
    model = hodec.compile(SPECS[0].parent / "lotka_volterra.hode").model_class()().double()
    times = torch.linspace(0, 6, 13, dtype=f64)
    data = torch.rand(13, 4, len(targets), generator=torch.Generator().manual_seed(8), dtype=f64) + 0.5
    reference = SmoothingSpline(times, data, 0.0)
    coupling = Coupling(model, list(targets), GridCubic(reference, times) if grid else reference, 3.0)
    y = torch.rand(4, 2, generator=torch.Generator().manual_seed(9), dtype=f64) + 0.5
    t = torch.tensor([0.3, 2.2, 5.9, 4.0], dtype=f64)
    with model.coupled(coupling, 0.7):
        got = model.forward(t, y)
        want = torch.stack([model.forward(t[b], y)[b] for b in range(4)])
        torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(model.jacobian(t, y), autograd_jacobian(model, t, y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("source", [LETS, NEURAL])
def test_jacobian_gradients_reach_params_and_slot_weights(source):
    """Backprop through a Rosenbrock step differentiates J: its gradients (params, slot weights) against the
    double-backward of jacrev of the forward."""
    model = model_from(source)
    bind_inputs(model)
    y = random_states(model, (3,), seed=12)
    t = torch.tensor(1.1, dtype=f64)
    weights = torch.rand(3, 3, 3, generator=torch.Generator().manual_seed(13), dtype=f64)
    trainable = [p for p in model.parameters() if p.requires_grad and p.numel()]
    got = torch.autograd.grad((model.jacobian(t, y) * weights).sum(), trainable, allow_unused=True)
    want = torch.autograd.grad((torch.func.jacrev(lambda s: model.forward(t, s))(y).diagonal(0, 0, 2).movedim(-1, 0)
                                * weights).sum(), trainable, allow_unused=True)
    for p, g, w in zip(trainable, got, want):  # None: J does not depend on it (an output layer's bias)
        torch.testing.assert_close(torch.zeros_like(p) if g is None else g, torch.zeros_like(p) if w is None else w,
                                   rtol=1e-10, atol=1e-12)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_models(), st.integers(0, 2 ** 31 - 1))
def test_jacobian_of_generated_models_matches_jacrev(text, seed):
    """Wherever the field and its autograd Jacobian are finite (random specs reach log, ^ and / of anything)."""
    try:
        model = model_from(text)
    except hodec.HodecError:
        return
    bind_inputs(model)
    y = 3 * torch.rand(3, len(model.state_names), generator=torch.Generator().manual_seed(seed), dtype=f64) - 0.5
    t = torch.tensor(1.3, dtype=f64)
    want = autograd_jacobian(model, t, y).detach()
    finite = torch.isfinite(want) & torch.isfinite(model.forward(t, y).detach())[..., :, None]
    torch.testing.assert_close(model.jacobian(t, y).detach()[finite], want[finite], rtol=1e-9, atol=1e-11)


def test_a_nan_constant_in_a_table_is_code_not_a_bare_name():
    """d(0^A)/dA = 0^A log 0: NaN where A <= 0, written as float("nan") (repr printed `nan`, a NameError when the
    module loaded; hypothesis found it); where A > 0 it is 0, as autograd has it (SymPy's 0^A log 0 gave NaN there
    too; hypothesis found that against jacrev)."""
    m = model_from("model N\nparam k = 1 positive\nstate A = 1\nreaction r: A -> ; k * 0 ^ A\n")
    t = torch.tensor(0.0, dtype=torch.float64)
    assert torch.isnan(m.jacobian(t, torch.tensor([[-1.0]], dtype=torch.float64))).all()
    y = torch.tensor([[1.0], [2.5]], dtype=torch.float64)
    assert (m.jacobian(t, y) == 0).all()
    torch.testing.assert_close(m.jacobian(t, y), autograd_jacobian(m, t, y), rtol=0, atol=0)
