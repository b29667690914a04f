"""Issue 16: species in concentration in compartments of a size (`state S = 1 in V`), SBML's semantics: a reaction
rate is an amount per time, so a species of concentration [S] in a compartment of size V changes by
(Σ stoichiometry x rate) / V; `der` terms and residual slot outputs are the state's own rate (a concentration per
time). References: the same model written by hand in amounts and solved by scipy, torch autograd for the state
Jacobian, and located errors for sizes that are not constant positive params or lets of params."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import hodec
from hodec.cli import main
from hodec.compiler import compile_text, load_source
from hodec.errors import HodecError
from hodec.graph.transform import transform
from hodec.symbolic.dependencies import used_params
from hodec.symbolic.folding import folded_gates
from hodec.syntax.parser import parse
from hodec.syntax.unparse import unparse

_counter = itertools.count()

SPEC = """model Cells
param kf = 0.8
param V1 = 2 positive
param V2 = 0.5 fixed
let V3 = 2 * V1
state A = 1 in V1
state B = 0.2 in V2
state C = 0.1 in V3
state D = 0.3
reaction transport: A -> B ; kf * A * V1
reaction bind: A + B -> C ; kf * A * B * V1
reaction out: C -> D ; 0.3 * C * V3
der B = -0.1 * B
der D = -0.2 * D
observe total = A * V1 + B * V2 + C * V3 + D
"""


def _model(source: str = SPEC, params=None):
    code = hodec.compile_source(source, "cells.hode")
    return load_source(code, f"hodec_test_sbml_compartments_{next(_counter)}")(params or {}).double()


def _amounts(kf=0.8, V1=2.0, V2=0.5):
    """The hand-derived model in amounts n = concentration x size; D has no compartment (its value)."""
    V3 = 2 * V1

    def field(t, n):
        A, B, C, D = n[0] / V1, n[1] / V2, n[2] / V3, n[3]
        transport, bind, out = kf * A * V1, kf * A * B * V1, 0.3 * C * V3
        return [-transport - bind, transport - bind + V2 * (-0.1 * B), bind - out, out - 0.2 * D]

    sizes = np.array([V1, V2, V3, 1.0])
    ts = np.linspace(0.0, 5.0, 11)
    n0 = np.array([1.0, 0.2, 0.1, 0.3]) * sizes
    solution = solve_ivp(field, (0.0, 5.0), n0, t_eval=ts, rtol=1e-12, atol=1e-14, method="LSODA")
    return ts, solution.y.T / sizes


@pytest.mark.parametrize("method", ["dopri5", "rodas5p"])
def test_concentrations_follow_the_amount_based_model(method):
    """dopri5 reads the vector field, rodas5p its generated Jacobian too."""
    ts, want = _amounts()
    m = _model()
    with torch.no_grad():
        ys = m.simulate(torch.tensor(ts), method=method, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ys.numpy(), want, rtol=1e-7, atol=1e-9)


def test_a_trained_size_changes_the_dynamics_as_the_amounts_say():
    ts, want = _amounts(V1=3.5)
    m = _model(params={"V1": 3.5})
    with torch.no_grad():
        ys = m.simulate(torch.tensor(ts), method="dopri5", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ys.numpy(), want, rtol=1e-7, atol=1e-9)


def test_the_state_jacobian_is_the_derivative_of_the_field():
    m = _model()
    t = torch.tensor(0.0, dtype=torch.float64)
    y = torch.tensor([[1.0, 0.2, 0.1, 0.3], [0.5, 1.5, 2.0, 0.0]], dtype=torch.float64)
    want = torch.stack([torch.autograd.functional.jacobian(lambda v: m(t, v), row) for row in y])
    with torch.no_grad():
        torch.testing.assert_close(m.jacobian(t, y), want, rtol=1e-12, atol=1e-14)


def test_the_gradient_with_respect_to_the_sizes_against_finite_differences():
    m = _model()
    t = torch.tensor(0.0, dtype=torch.float64)
    y = torch.tensor([1.0, 0.2, 0.1, 0.3], dtype=torch.float64)
    p = m.parameter_values().detach().requires_grad_(True)
    m.parameter_values = lambda: p  # the gradient with respect to the params' values, in parameters_table order
    (grad,) = torch.autograd.grad(m(t, y).sum(), p)
    values, h = dict(_model().params()), 1e-6
    for i, row in enumerate(m.parameters_table):
        name = row[0]
        plus, minus = (_model(params={**values, name: values[name] + step}) for step in (h, -h))
        with torch.no_grad():
            fd = ((plus(t, y) - minus(t, y)).sum() / (2 * h)).item()
        assert grad[i].item() == pytest.approx(fd, rel=1e-7), name


def test_a_residual_slot_output_is_the_states_own_rate():
    """The slot output is added to d[B]/dt as it is (not divided by the size), like a der term."""
    source = SPEC + "neural r(A) -> B hidden 4\n"
    m = _model(source)
    t = torch.tensor(0.0, dtype=torch.float64)
    y = torch.tensor([[1.0, 0.2, 0.1, 0.3], [0.5, 1.5, 2.0, 0.0]], dtype=torch.float64)
    plain = _model()
    with torch.no_grad():
        slot = m.slot_modules[0](y[:, :1])[:, 0]
        difference = m(t, y) - plain(t, y)
    torch.testing.assert_close(difference[:, 1], slot, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(difference[:, [0, 2, 3]], torch.zeros(2, 3, dtype=torch.float64))


def test_specs_without_compartments_generate_the_same_code_as_before():
    code = hodec.compile_source("model P\nparam k = 1\nstate A = 1\nreaction r: A -> ; k * A\n", "p.hode")
    forward = code[code.index("    def forward"):code.index("    def observables")]
    jacobian = code[code.index("    def jacobian"):code.index("    def observation_jacobian")]
    for body in (forward, jacobian):
        assert "size" not in body and "_scale" not in body


def test_the_size_round_trips_through_unparse():
    text = unparse(parse(SPEC))
    assert "state A = 1 in V1\n" in text and "state D = 0.3\n" in text
    assert unparse(parse(text)) == text
    assert 'state A = 1 in V1 "doc"' in unparse(parse(SPEC.replace("state A = 1 in V1", 'state A = 1 in V1 "doc"')))


# ---------------------------------------------------------------- errors, located
H = "model M\nparam k = 1\ninput u\nstate X = 1\n"


@pytest.mark.parametrize("lines, message, column", [
    ("state A = 1 in X", "the size of a compartment must be a param or a let; 'X' is a state", 16),
    ("state A = 1 in Q", "undefined name 'Q' (the size of a compartment must be a param or a let)", 16),
    ("state A = 1 in t", "the size of a compartment must be a param or a let; 't' is the time", 16),
    ("let v = 2 * X\nstate A = 1 in v", "the size of a compartment is constant in time; let 'v' reads states, "
                                       "inputs, t or neural slots", 16),
    ("let v = k * u\nstate A = 1 in v", "the size of a compartment is constant in time; let 'v' reads", 16),
    ("param z = -1\nstate A = 1 in z", "the size of a compartment must be > 0; 'z' is -1 with the params at", 16),
    ("let v = k - 1\nstate A = 1 in v", "the size of a compartment must be > 0; 'v' is 0 with the params", 16),
    ("state A = 1 in k\nat t = 1: k = 2", "the size of a compartment is constant in time; an event assigns 'k'",
     16),
])
def test_bad_sizes_are_located_errors(lines, message, column):
    source = H + lines + "\nder A = -A\n"
    line = 4 + lines.split("\n").index(next(x for x in lines.split("\n") if x.startswith("state A"))) + 1
    with pytest.raises(HodecError) as info:
        hodec.compile_source(source, "bad.hode")
    assert f"bad.hode:{line}:{column}: error: {message}" in str(info.value), str(info.value)


def test_cli_exits_1_on_a_bad_size(tmp_path, capsys):
    spec = tmp_path / "bad.hode"
    spec.write_text("model M\nstate X = 1\nstate A = 1 in X\nder A = -A\n")
    code = main(["check", str(spec)])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert f"{spec}:3:16: error: the size of a compartment must be a param or a let" in err



def test_a_gate_never_folds_into_a_compartment_size():
    """A size divides every reaction into its compartment: folding a reaction's gate into it would change them
    all (hodec sparsify folds a gate into a param only its own rate reads)."""
    c = compile_text("model G\nparam V = 2 positive\nparam k = 3 positive\nstate A = 1 in V\nstate B = 0\n"
                     "reaction r: A -> B ; V * A\nreaction s: B -> ; k * B\n", "g.hode")
    assert folded_gates(c.symbolic, c.model_class()({}), {"r": 0.5, "s": 0.5}) == {"k": pytest.approx(1.5)}


def test_a_param_read_only_as_a_size_is_used():
    assert used_params(compile_text("model U\nparam V = 2\nstate A = 1 in V\nder A = -A\n", "u.hode").symbolic) == {"V"}


def test_the_mnode_transform_keeps_sizes_and_the_functions_initial_values_call():
    source = ("model T\nparam V = 2\nparam k = 1\nfunction f(x) = k * x\nfunction g(x) = x\nstate A = f(3) in V\n"
              "state B = 0\nreaction r: A -> B ; g(A)\n")
    text = transform(compile_text(source, "t.hode"), mnode=True)
    assert "param V = 2\n" in text and "state A = f(3) in V\n" in text and "function f(x) = k * x\n" in text
    assert "function g" not in text  # only a rate called it, and the rates are gone
    assert compile_text(text, "t2.hode").model_class()({}).initial_state().tolist() == [3.0, 0.0]


def test_the_generated_class_lists_the_states_in_compartments():
    assert _model().compartments_table == (("A", "V1"), ("B", "V2"), ("C", "V3"))
    assert _model("model P\nstate A = 1\nder A = -A\n").compartments_table == ()
