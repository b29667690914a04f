"""Language semantics end to end: each construct compiled, run in float64 and compared with an independent
reference (Python's own evaluation of the same arithmetic, or a hand-written right-hand side)."""
from __future__ import annotations

import copy
import inspect
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hodec
from hodec import HodecError
from hodec.compiler import load_source

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def build(source: str, values=None, **kwargs):
    """Compile a spec text and instantiate its model in float64."""
    cls = load_source(hodec.compile_source(source, "test.hode"), f"hodec_test_language_{next(_counter)}")
    return cls(values or {}, **kwargs).double()


def T(values):
    return torch.tensor(values, dtype=torch.float64)


def deriv(m, y, t=0.0):
    with torch.no_grad():
        return m(T(t), T(y))


# ---------------------------------------------------------------- expressions
# Each is a .hode expression over a, b, c, d (params) and x (a state); Python evaluates the same text with '^'
# spelled '**', and 'if(q, r, s)' written as a conditional: Python's precedence rules are the reference.
EXPRESSIONS = {
    "neg_pow": ("-x^2", "-x**2"),
    "neg_pow_stars": ("-x**2", "-x**2"),
    "pow_neg_exponent": ("2^-1", "2**-1"),
    "mul_neg": ("a * -b", "a * -b"),
    "pow_right_assoc": ("2^3^2", "2**3**2"),
    "pow_chain_neg": ("2^-1^2", "2**-1**2"),
    "paren_neg_pow": ("(-x)^2", "(-x)**2"),
    "unary_plus": ("+x - +a", "+x - +a"),
    "double_neg": ("- -x", "- -x"),
    "sub_left_assoc": ("a - b - c", "a - b - c"),
    "div_left_assoc": ("a / b / c", "a / b / c"),
    "mixed": ("a + b * c ^ 2 / d - x", "a + b * c ** 2 / d - x"),
    "neg_in_pow_base": ("a * -x^3", "a * -x**3"),
    "not_and": ("if(not a < b and c > d, 1, 0)", "(1 if (not a < b and c > d) else 0)"),
    "or_and": ("if(a > b or c > d and x > 0, 1, 0)", "(1 if (a > b or c > d and x > 0) else 0)"),
    "not_not": ("if(not not a <= b, 1, 0)", "(1 if (not not a <= b) else 0)"),
    "eq_ne": ("if(a == a and b != c, 5, 7)", "(5 if (a == a and b != c) else 7)"),
    "min3": ("min(a, x, 2)", "min(a, x, 2)"),
    "max3": ("max(a, b, x)", "max(a, b, x)"),
    "min4_nested": ("min(max(a, b), c, d, x)", "min(max(a, b), c, d, x)"),
    "hill_fn": ("hill(abs(x), a, 3)", "abs(x)**3 / (a**3 + abs(x)**3)"),
    "funcs": ("exp(a) + log(b) + sqrt(c) + sin(x) + cos(x) + tan(d) + tanh(x)",
              "math.exp(a) + math.log(b) + math.sqrt(c) + math.sin(x) + math.cos(x) + math.tan(d) + math.tanh(x)"),
    "sigmoid_softplus": ("sigmoid(x) + softplus(a - x)", "1 / (1 + math.exp(-x)) + math.log1p(math.exp(a - x))"),
    "floor_ceil": ("floor(x * 3) + ceil(a * 3)", "math.floor(x * 3) + math.ceil(a * 3)"),
}


@pytest.fixture(scope="module")
def expression_model():
    lines = ["model Expressions", "param a = 1.5", "param b = 2.5 positive", "param c = 0.7 in (0.1, 5)",
             "param d = 1.1 fixed", "state x = 0.3"]
    lines += [f"observe {name} = {text}" for name, (text, _) in EXPRESSIONS.items()]
    cls = load_source(hodec.compile_source("\n".join(lines) + "\n", "expr.hode"), "hodec_test_language_expr")
    return cls


@pytest.mark.parametrize("params", [dict(a=1.5, b=2.5, c=0.7, d=1.1), dict(a=3.0, b=0.5, c=0.9, d=0.2),
                                    dict(a=0.4, b=0.4, c=4.0, d=4.0), dict(a=-2.0, b=1.0, c=0.2, d=-1.0)])
def test_expressions_follow_python_precedence(expression_model, params):
    m = expression_model(params).double()
    xs = [-1.7, -0.3, 0.0, 0.45, 2.2]
    with torch.no_grad():
        got = m.observe(T([[x] for x in xs]))
    assert got.dtype == torch.float64 and got.shape == (len(xs), len(EXPRESSIONS))
    for i, x in enumerate(xs):
        env = dict(params, x=x, math=math)
        for j, (name, (_, python)) in enumerate(EXPRESSIONS.items()):
            want = eval(python, env)
            assert float(got[i, j]) == pytest.approx(want, rel=1e-13, abs=1e-13), (name, params, x)


def test_power_and_negation_specific_values():
    m = build("model P\nstate x = 3\nobserve a = -x^2\nobserve b = 2^3^2\nobserve c = 2^-1\nobserve e = -2^2\n")
    with torch.no_grad():
        assert m.observe(T([3.0])).tolist() == [-9.0, 512.0, 0.5, -4.0]


def test_if_with_numeric_branches_stays_float64():
    m = build("model If\nparam k = 2\nstate x = if(k > 1, 2, 3)\nstate z = 1\n"
              "der x = if(x > 1, 2, 3)\nder z = if(x > 1, -1, 0.5) * z\nobserve o = if(x > 1, 2, 3)\n"
              "observe q = if(k < 1, 0.1, 0.2)\n")
    y0 = m.initial_state()
    assert y0.dtype == torch.float64 and y0.tolist() == [2.0, 1.0]
    m1 = build("model If\nparam k = 2\nstate x = if(k > 1, 2, 3)\nobserve o = x\n", dict(k=0.5))
    assert m1.initial_state().tolist() == [3.0]
    y = T([[0.5, 2.0], [1.5, 2.0]])
    with torch.no_grad():
        dy = m(T(0.0), y)
        obs = m.observe(y)
    assert dy.dtype == obs.dtype == torch.float64
    assert dy.tolist() == [[3.0, 1.0], [2.0, -2.0]]
    assert obs.tolist() == [[3.0, 0.2], [2.0, 0.2]]
    # 0.2 is the float64 0.2, not a float32 rounding widened
    assert obs[0, 1].item() == 0.2


# ---------------------------------------------------------------- reactions and structure
def test_repeated_species_is_a_coefficient():
    src = "model R\nparam k = 0.7\nstate A = 1\nstate B = 0\nreaction dimer: A + A -> B ; k * A^2\n"
    src2 = "model R\nparam k = 0.7\nstate A = 1\nstate B = 0\nreaction dimer: 2 A -> B ; k * A^2\n"
    for m in (build(src), build(src2)):
        for A, B in [(1.3, 0.2), (0.4, 2.0)]:
            torch.testing.assert_close(deriv(m, [A, B]), T([-2 * 0.7 * A ** 2, 0.7 * A ** 2]), rtol=1e-15, atol=0)


def test_species_on_both_sides_uses_net_stoichiometry():
    m = build("model R\nparam k = 0.3\nstate A = 1\nstate B = 1\nstate C = 1\n"
              "reaction autocatalysis: A + B -> 2 A ; k * A * B\n"
              "reaction idle: C -> C ; 100 * C\n"
              "reaction partial: 3 C + B -> C + B ; k * C\n")
    A, B, C = 1.5, 0.8, 2.0
    want = [0.3 * A * B, -0.3 * A * B, -2 * 0.3 * C]
    torch.testing.assert_close(deriv(m, [A, B, C]), T(want), rtol=1e-15, atol=1e-15)


def test_reversible_reaction_takes_the_net_rate():
    m = build("model R\nparam kf = 2\nparam kr = 0.5\nstate A = 1\nstate B = 0\nstate C = 0\n"
              "reaction bind: A + B <-> C ; kf * A * B - kr * C\n")
    for A, B, C in [(1.0, 2.0, 0.1), (0.1, 0.1, 3.0)]:
        net = 2 * A * B - 0.5 * C
        torch.testing.assert_close(deriv(m, [A, B, C]), T([-net, -net, net]), rtol=1e-15, atol=1e-15)


def test_sources_and_sinks():
    m = build("model S\nparam k = 1.5\ninput u\nstate A = 0\nstate B = 2\n"
              "reaction make: 0 -> A ; k\n"
              "reaction feed: -> B ; u\n"
              "reaction decay: B -> 0 ; 0.25 * B\n"
              "reaction drain: A -> ; 0.5 * A\n")
    m.set_inputs({"u": ([0.0], [0.75])})
    A, B = 0.8, 3.0
    torch.testing.assert_close(deriv(m, [A, B]), T([1.5 - 0.5 * A, 0.75 - 0.25 * B]), rtol=1e-15, atol=1e-15)


def test_real_coefficients():
    m = build("model Q\nparam k = 0.9\nstate A = 1\nstate B = 1\nstate C = 0\n"
              "reaction r: 1.5 A + 0.5 B -> 2.25 C ; k * A\n")
    v = 0.9 * 1.2
    torch.testing.assert_close(deriv(m, [1.2, 1.0, 0.0]), T([-1.5 * v, -0.5 * v, 2.25 * v]), rtol=1e-15, atol=0)


def test_der_adds_to_reactions_and_a_state_without_terms_is_constant():
    m = build("model D\nparam k = 0.4\nstate A = 1\nstate B = 0\nstate C = 7.5\n"
              "reaction conv: A -> B ; k * A\nder A = 0.1 - C * A\n")
    A, B, C = 2.0, 1.0, 7.5
    torch.testing.assert_close(deriv(m, [A, B, C]), T([-0.4 * A + 0.1 - C * A, 0.4 * A, 0.0]),
                               rtol=1e-15, atol=1e-15)
    with torch.no_grad():
        ys = m.simulate(T([0.0, 0.5, 1.0]))
    assert (ys[:, 2] == 7.5).all()


def test_model_without_reactions_or_params():
    m = build("model Decay\nstate x = 2\nder x = -x\n")
    assert m.params() == {} and m.param_names == ()
    with torch.no_grad():
        ys = m.simulate(T([0.0, 1.0, 2.0]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ys[:, 0].numpy(), 2 * np.exp(-np.array([0.0, 1.0, 2.0])), rtol=1e-8)


def test_observable_of_params_only_is_broadcast():
    m = build("model O\nparam k = 1.25\nparam j = 2 fixed\nstate x = 1\nstate y = 2\n"
              "der x = -k * x\nobserve twice = 2 * k\nobserve xs = x\nobserve const = 3\nobserve kj = k * j\n")
    ys = torch.rand(5, 4, 2, dtype=torch.float64)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    with torch.no_grad():
        obs = m.observe(ys, ts)
        single = m.observe(ys[0, 0])
    assert obs.shape == (5, 4, 4) and single.shape == (4,)
    assert (obs[..., 0] == 2.5).all() and (obs[..., 2] == 3.0).all() and (obs[..., 3] == 2.5).all()
    assert torch.equal(obs[..., 1], ys[..., 0])
    assert single.tolist() == [2.5, float(ys[0, 0, 0]), 3.0, 2.5]
    # a model whose observables are all params only
    m2 = build("model O2\nparam k = 0.5\nstate x = 1\nobserve a = k\nobserve b = k + 1\n")
    with torch.no_grad():
        assert m2.observe(ys[..., :1], ts).shape == (5, 4, 2)
        assert (m2.observe(ys[..., :1], ts) == T([0.5, 1.5])).all()


def test_shared_operand_with_time_in_observables():
    """Observables sharing a shape (k_i * t * x) are vectorised; t is [T, 1] inside observe()."""
    m = build("model G\nparam k1 = 2\nparam k2 = 3\nlet c = 4\nlet tt = 2 * t\nstate x = 1\nstate z = 1\n"
              "observe a = k1 * tt * x\nobserve b = k2 * tt * x\nobserve e = k1 * c * z\nobserve f = k2 * c * z\n")
    ys = torch.rand(3, 2, 2, dtype=torch.float64)
    ts = T([0.0, 0.5, 2.0])
    with torch.no_grad():
        obs = m.observe(ys, ts)
    tt = 2 * ts[:, None]
    want = torch.stack([2 * tt * ys[..., 0], 3 * tt * ys[..., 0], 8 * ys[..., 1], 12 * ys[..., 1]], -1)
    torch.testing.assert_close(obs, want, rtol=1e-15, atol=0)


def test_identical_expressions_in_several_columns():
    """Two reactions with the same rate law and two identical observables (shared by CSE, not grouped)."""
    m = build("model Dup\nparam k = 2\nstate A = 1\nstate B = 0\nstate C = 0\n"
              "reaction r1: A -> B ; k * A\nreaction r2: A -> C ; k * A\nreaction r3: B -> C ; k * A\n"
              "observe a = A\nobserve b = A\nobserve c = k * B\nobserve d = k * B\n")
    y = T([[1.0, 0.5, 0.0], [3.0, 0.0, 1.0]])
    with torch.no_grad():
        dy, obs = m(T(0.0), y), m.observe(y)
    A, B = y[:, 0], y[:, 1]
    torch.testing.assert_close(dy, torch.stack([-4 * A, 2 * A - 2 * A, 4 * A], -1), rtol=1e-15, atol=0)
    torch.testing.assert_close(obs, torch.stack([A, A, 2 * B, 2 * B], -1), rtol=1e-15, atol=0)


def test_inputs_read_as_a_vector():
    """Terms u_i / V_i over every input at once (a gathered read of the input vector)."""
    m = build("model Vec\nparam V1 = 2 fixed\nparam V2 = 4 fixed\ninput u1\ninput u2\nstate x = 0\nstate y = 0\n"
              "der x = u1 / V1 - x\nder y = u2 / V2\nobserve o1 = u1 / V1\nobserve o2 = u2 / V2\n")
    m.set_inputs({"u1": ([0.0, 1.0], [1.0, 3.0]), "u2": ([0.0], [0.1])})
    assert deriv(m, [0.5, 0.0], 0.5).tolist() == pytest.approx([2.0 / 2 - 0.5, 0.1 / 4], rel=1e-15)
    with torch.no_grad():
        obs = m.observe(T([[[0.0, 0.0]], [[1.0, 1.0]]]), T([0.0, 1.0]))
    torch.testing.assert_close(obs, T([[[0.5, 0.025]], [[1.5, 0.025]]]), rtol=1e-15, atol=0)


# ---------------------------------------------------------------- inputs
def hand_previous(times, values, t):
    k = 0
    for i, ti in enumerate(times):
        if ti <= t:
            k = i
    return values[k]


@pytest.mark.parametrize("method", ["linear", "previous"])
def test_input_interpolation(method):
    m = build("model In\ninput u\nstate x = 0\nder x = 3 * u\nobserve o = u + x\n")
    times, values = [0.0, 1.0, 2.5, 4.0], [1.0, -2.0, 0.5, 3.0]
    m.set_inputs({"u": (times, values, method)})
    for t in [-1.0, 0.0, 0.3, 1.0, 1.7, 2.5, 3.99, 4.0, 9.0]:
        want = float(np.interp(t, times, values)) if method == "linear" else hand_previous(times, values, t)
        assert deriv(m, [0.0], t).tolist() == pytest.approx([3 * want], rel=1e-15, abs=1e-15), t
        with torch.no_grad():
            assert m.observe(T([[0.5]]), T([t]))[0, 0].item() == pytest.approx(want + 0.5, rel=1e-15), t
    # simulate: the integral of a piecewise-constant input is piecewise linear
    if method == "previous":
        with torch.no_grad():
            ys = m.simulate(T([0.0, 1.0, 2.5, 4.0]), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ys[:, 0].numpy(), 3 * np.array([0.0, 1.0, 1.0 - 3.0, 1.0 - 3.0 + 0.75]),
                                   rtol=1e-6, atol=1e-6)


def test_input_values_keep_float64():
    """Signal samples given as Python floats reach a float64 model unrounded (0.1 is not a float32 0.1)."""
    m = build("model In\ninput u\nstate x = 0\nder x = u\n")
    m.set_inputs({"u": ([0.0, 0.3], [0.1, 0.7], "previous")})
    assert deriv(m, [0.0], 0.0).item() == 0.1
    assert deriv(m, [0.0], 0.3).item() == 0.7  # the time 0.3 is not rounded either
    m.set_inputs({"u": ([0.0, 0.3], [0.1, 0.7])})
    assert deriv(m, [0.0], 0.15).item() == pytest.approx(0.4, rel=1e-15)


def test_default_interpolation_is_linear_and_simulate_binds_inputs():
    m = build("model In\ninput u\nstate x = 0\nder x = u\n")
    with torch.no_grad():
        ys = m.simulate(T([0.0, 1.0, 2.0]), inputs={"u": ([0.0, 2.0], [0.0, 4.0])}, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ys[:, 0].numpy(), [0.0, 1.0, 4.0], atol=1e-8)  # integral of 2 t


def test_missing_input_is_a_clear_error():
    m = build("model In\ninput dose\ninput other\nstate x = 0\nder x = dose + other\n")
    m.set_inputs({"other": ([0.0], [1.0])})
    with pytest.raises(HodecError, match=r"input 'dose' is not bound.*set_inputs"):
        m(T(0.0), T([0.0]))
    with pytest.raises(HodecError, match="dose"):
        m.simulate(T([0.0, 1.0]))
    with pytest.raises(HodecError, match=r"no input 'dos'.*did you mean 'dose'"):
        m.set_inputs({"dos": ([0.0], [1.0])})


# ---------------------------------------------------------------- slots, params, dtype
class Shift(torch.nn.Module):
    """A hand-written replacement network: sum of the inputs minus 5 (negative for small inputs)."""

    def __init__(self, n_out=1):
        super().__init__()
        self.n_out = n_out
        self.scale = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, x):
        return (self.scale * x.sum(-1, keepdim=True) - 5.0).expand(*x.shape[:-1], self.n_out)


def test_slot_replacement_and_positive():
    src = ("model S\nparam k = 2\nstate x = 1\nstate y = 1\nneural g(v) hidden 8 positive\n"
           "neural resid(x, y) -> x, y hidden 4\nneural raw(v, w) hidden 3\n"
           "der x = k * g(x)\nder y = raw(x, y)\n")
    m = build(src, slots={"g": Shift(), "resid": Shift(2), "raw": Shift()})
    assert isinstance(m.slot("g").net, Shift) and isinstance(m.slot("resid").net, Shift)
    for x, y in [(1.0, 0.5), (4.0, 3.0), (-2.0, 1.0)]:
        softplus = math.log1p(math.exp(x - 5.0))  # positive still applies to a user network
        want = [2 * softplus + (x + y - 5.0), (x + y - 5.0) + (x + y - 5.0)]
        assert deriv(m, [x, y]).tolist() == pytest.approx(want, rel=1e-14), (x, y)
    assert any(p is m.slot("g").net.scale for p in m.parameters()), "a replacement's parameters are trained"
    with pytest.raises(HodecError, match="no neural slot 'gg'"):
        build(src, slots={"gg": Shift()})


FUSED = ("model F\ninput u\nstate a = 1\nstate b = 2\nstate c = 3\n"
         "neural fa(a, u) -> a hidden 8 activation gelu\nneural fb(a, b, c) -> b hidden 8 activation gelu\n"
         "neural fc(b, keep c) -> c, a hidden 8 activation gelu\nneural other(c) -> c hidden 4\n"
         "neural pa(a) -> b hidden 8 activation gelu positive\nneural pb(b) -> a hidden 8 activation gelu positive\n"
         "der a = -a\n")


def slot_by_slot(m, y, u, gates=None):
    """The vector field with every slot's own network called on its own arguments (no fusion)."""
    values = {"a": y[..., 0], "b": y[..., 1], "c": y[..., 2], "u": u}
    term = -y[..., 0] * (gates or {}).get("der_a.0", 1.0)
    dy = torch.stack([term, torch.zeros_like(u), torch.zeros_like(u)], -1)
    for name, args, outputs, *_ in m.slots_table:
        x = torch.stack([values[a] for a in args], -1)
        if gates:
            x = x * torch.stack([torch.as_tensor(gates.get(f"{name}.{a}", 1.0), dtype=x.dtype) for a in args])
        out = m.slot(name).net(x)
        if m.slot(name).positive:
            out = torch.nn.functional.softplus(out)
        for k, target in enumerate(outputs):
            dy = dy + torch.nn.functional.one_hot(torch.tensor("abc".index(target)), 3) * out[..., k:k + 1]
    return dy


@pytest.mark.parametrize("gated", [False, True])
def test_slots_of_one_shape_run_fused_and_equal_slot_by_slot(gated):
    cls = load_source(hodec.compile_source(FUSED, "f.hode", gates=gated), f"hodec_test_fused_{gated}")
    code = hodec.compile_source(FUSED, "f.hode", gates=gated)
    assert "self.run_slots((0, 1, 2), " in code and "self.run_slots((4, 5), " in code  # two groups
    assert "self.slot_modules[3](" in code  # a shape of its own runs alone
    torch.manual_seed(3)
    m = cls().double()
    gates = {}
    if gated:
        gates = {name: 0.2 + 0.1 * i for i, name in enumerate(m.gates)}
        m.set_gates(gates)
        assert "fc.c" not in m.gates  # keep
    y = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    u = torch.rand(5, dtype=torch.float64)
    m.set_inputs({"u": lambda t: u})
    fused = m(T(0.5), y)
    want = slot_by_slot(m, y, u, gates)
    assert fused.detach().numpy() == pytest.approx(want.detach().numpy(), rel=1e-12, abs=1e-14)
    weights = list(m.slot_modules.parameters())
    g_fused = torch.autograd.grad(fused.square().sum(), [y, *weights])
    g_want = torch.autograd.grad(want.square().sum(), [y, *weights])
    for a, b in zip(g_fused, g_want):
        assert a.numpy() == pytest.approx(b.numpy(), rel=1e-10, abs=1e-13)
    copied = copy.deepcopy(m)  # the copy fuses its own weights, not the original's
    with torch.no_grad():
        for p in copied.slot_modules.parameters():
            p.mul_(0.5)
    assert not torch.allclose(copied(T(0.5), y), fused)
    assert torch.allclose(m(T(0.5), y), fused)
    m.slot("fb").net = Shift()  # a user network put in after construction: the group runs slot by slot
    swapped = m(T(0.5), y)
    assert swapped.detach().numpy() == pytest.approx(slot_by_slot(m, y, u, gates).detach().numpy(), rel=1e-12)
    assert not torch.allclose(swapped, fused)


def test_params_overrides_and_fixed():
    src = ("model P\nparam a = 0.1\nparam b = 3 positive\nparam c = 0.25 in (0, 1)\nparam N = 100 fixed\n"
           "state x = N\nder x = -a * b * c * x / N\n")
    m = build(src)
    assert list(m.params()) == ["a", "b", "c", "N"]
    assert m.params() == pytest.approx(dict(a=0.1, b=3.0, c=0.25, N=100.0), rel=1e-15)
    m2 = build(src, dict(a=0.5), N=40.0, b=2.0)
    assert m2.params() == pytest.approx(dict(a=0.5, b=2.0, c=0.25, N=40.0), rel=1e-15)
    assert m2.initial_state().tolist() == [40.0]
    assert deriv(m2, [10.0]).tolist() == pytest.approx([-0.5 * 2.0 * 0.25 * 10.0 / 40.0], rel=1e-14)
    assert "fixed_values" not in dict(m2.named_parameters())
    with pytest.raises(HodecError, match="positive"):
        build(src, b=-1.0)
    with pytest.raises(HodecError, match="strictly inside"):
        build(src, c=1.0)
    with pytest.raises(HodecError, match="no param 'nn'"):
        build(src, nn=1.0)


def test_initial_state_batch():
    m = build("model B\nparam k = 2\nstate x = k * 3\nstate y = -1\nder x = -x\n")
    y0 = m.initial_state(batch=(3,))
    assert y0.shape == (3, 2) and y0.dtype == torch.float64
    assert y0.tolist() == [[6.0, -1.0]] * 3
    assert m.initial_state(batch=(2, 4)).shape == (2, 4, 2)
    with torch.no_grad():
        ys = m.simulate(T([0.0, 1.0]), y0=y0)
    assert ys.shape == (2, 3, 2)


def test_double_keeps_exact_params():
    src = "model E\nparam a = 0.1\nparam b = 0.3 positive\nparam c = 0.7 in (0.1, 0.9)\nparam d = 0.1 fixed\n" \
          "state x = 0.1\nder x = -a * x\n"
    cls = load_source(hodec.compile_source(src, "e.hode"), "hodec_test_language_exact")
    m32 = cls()
    assert m32.raw_free.dtype == torch.float32
    m = cls().double()
    p = m.params()
    assert p["a"] == 0.1 and p["d"] == 0.1  # stored as is: exact
    assert p["b"] == pytest.approx(0.3, rel=2e-16) and p["c"] == pytest.approx(0.7, rel=4e-16)
    assert m.initial_state().tolist() == [0.1]
    assert deriv(m, [1.0]).tolist() == [-0.1]
    # overrides in the constructor too
    assert cls(a=0.2).double().params()["a"] == 0.2
    # but a parameter changed (trained) in float32 is widened, not reset to the spec's value
    m32 = cls()
    with torch.no_grad():
        m32.raw_free += 1.0
    assert m32.double().params()["a"] == pytest.approx(1.1, rel=1e-7) and m32.params()["a"] != 0.1


# ---------------------------------------------------------------- determinism
DETERMINISM_SPEC = """model Det
param kf = 2 positive
param kr = 0.5 in (0.1, 1)
param V = 3 fixed
input u
state A = 1
state B = 2
state C = 0
state D = 0
let total = A + B + C
reaction r1: A + B <-> C ; kf * A * B - kr * C
reaction r2: C -> D ; kf * C / V
reaction r3: D -> A ; kr * D * u
reaction r4: 0 -> B ; u
der D = -0.1 * D + hill(total, 1, 2)
neural g(q) hidden 4 positive
neural resid(A, D, u) -> A, D hidden 3
observe o1 = A / V
observe o2 = g(total) * C
observe o3 = max(A, B, C)
"""


def _compile_everything() -> dict:
    out = {"<det>": hodec.compile_source(DETERMINISM_SPEC, "det.hode")}
    for spec in sorted((ROOT / "specs").glob("*.hode")):
        out[spec.name] = hodec.compile_file(spec)
    return out


def test_compilation_is_deterministic_in_process():
    first, second = _compile_everything(), _compile_everything()
    assert len(first) > 1
    for name in first:
        assert first[name] == second[name], name


def test_compilation_is_deterministic_across_processes():
    # the child runs this module's _compile_everything without importing the module (which imports torch)
    script = ("import json, sys\nfrom pathlib import Path\nimport hodec\nROOT = Path(sys.argv[1])\n"
              "DETERMINISM_SPEC = sys.stdin.read()\n" + inspect.getsource(_compile_everything) +
              "sys.stdout.write(json.dumps(_compile_everything()))\n")
    here = _compile_everything()
    for seed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run([sys.executable, "-c", script, str(ROOT)], input=DETERMINISM_SPEC,
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        there = json.loads(proc.stdout)
        assert there.keys() == here.keys()
        for name in here:
            assert there[name].encode() == here[name].encode(), f"{name} differs with PYTHONHASHSEED={seed}"


def test_large_batches_accumulate_through_the_sparse_path_exactly(monkeypatch):
    """40 states, 50 first-order conversions: sparse enough that a batch of 1100 rows takes the CSR path."""
    rng = np.random.default_rng(5)
    pairs = [(i, i + 1) for i in range(39)] + [tuple(rng.choice(40, 2, replace=False)) for _ in range(11)]
    rates = rng.uniform(0.1, 1.0, len(pairs))
    lines = ["model Wide"] + [f"param k{r} = {float(rate)!r} positive" for r, rate in enumerate(rates)]
    lines += [f"state s{i} = 1" for i in range(40)]
    lines += [f"reaction r{r}: s{a} -> s{b} ; k{r} * s{a}" for r, (a, b) in enumerate(pairs)]
    m = build("\n".join(lines) + "\n")
    calls = []
    original = type(m)._accumulate_sparse
    monkeypatch.setattr(type(m), "_accumulate_sparse", lambda self, f: calls.append(f.shape) or original(self, f))
    y = torch.rand(1100, 40, dtype=torch.float64, requires_grad=True)
    dy = m(T(0.0), y)
    assert calls, "the CSR path was not taken"
    src = torch.tensor([a for a, _ in pairs])
    dst = torch.tensor([b for _, b in pairs])
    flux = y[:, src] * torch.tensor(rates)
    want = torch.zeros_like(y).index_add(1, dst, flux).index_add(1, src, -flux)
    torch.testing.assert_close(dy, want, rtol=1e-13, atol=1e-13)
    w = torch.rand(1100, 40, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad((dy * w).sum(), y)[0], torch.autograd.grad((want * w).sum(), y)[0],
                               rtol=1e-13, atol=1e-13)
    assert len(calls) == 1
    torch.testing.assert_close(m(T(0.0), y[:10]), want[:10], rtol=1e-13, atol=1e-13)  # a small batch: dense path
    assert len(calls) == 1
