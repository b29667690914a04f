"""Issue 16: initial values that read other states (SBML initial assignments, `state B = 2 * A`), directly or
through lets, in any declaration order, with a located error for cycles and for values that are not finite.
References: the values computed by hand, and the gradient of an initial value with respect to the param it reads
through another state."""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch

import hodec
from hodec.cli import main
from hodec.compiler import compile_text, load_source
from hodec.errors import HodecError
from hodec.graph.prune import prune_spec
from hodec.model.build import build_model
from hodec.syntax.parser import parse
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.initial import initial_sources
from hodec.training.problem import Problem

_counter = itertools.count()

SPEC = """model Chain
param k = 1.5
param c = 4 fixed
state B = 2 * A + sqrt(c)
state A = k * c
let total = A + B + k
state C = total / 2
state D = 1
der A = -A
der B = -B
der C = -C + total
der D = -D
"""


def _model(source: str = SPEC, params=None):
    code = hodec.compile_source(source, "chain.hode")
    return load_source(code, f"hodec_test_sbml_initial_{next(_counter)}")(params or {}).double()


def test_initial_values_read_other_states_and_lets_of_them_in_any_order():
    k, c = 1.5, 4.0
    A = k * c
    B = 2 * A + c ** 0.5
    want = [B, A, (A + B + k) / 2, 1.0]
    assert _model().initial_state().tolist() == pytest.approx(want, rel=1e-15)
    k = 0.25  # a trained value flows through
    A, B = k * c, 2 * k * c + c ** 0.5
    assert _model(params={"k": k}).initial_state().tolist() == pytest.approx([B, A, (A + B + k) / 2, 1.0])


def test_the_gradient_flows_through_the_states_an_initial_value_reads():
    m = _model()
    p = m.parameter_values().detach().requires_grad_(True)
    m.parameter_values = lambda: p  # the gradient with respect to the params' values
    (grad,) = torch.autograd.grad(m.initial_state()[2], p)  # C0 = (k c + 2 k c + sqrt(c) + k) / 2
    k_index = [row[0] for row in m.parameters_table].index("k")
    assert grad[k_index].item() == pytest.approx((3 * 4.0 + 1) / 2, rel=1e-14)


def test_a_state_reading_a_trainable_param_through_another_state_keeps_it():
    """`initial: data` pins only states whose initial value reads nothing trainable, through other states too."""
    sources = initial_sources(_model())
    assert sources == {"B": ("k",), "A": ("k",), "C": ("k",), "D": ()}


@pytest.mark.parametrize("lines, where, message", [
    ("state A = B\nstate B = 2 * A", "3:11", "initial values refer to each other in a cycle: A -> B -> A"),
    ("state A = A + 1", "3:11", "initial values refer to each other in a cycle: A -> A"),
    ("let v = 2 * B\nstate A = v\nstate B = A", "4:11", "initial values refer to each other in a cycle: A -> B -> A"),
    ("param z = 0\nstate A = z\nstate B = 1 / A\nstate C = B + 1", "5:11",
     "the initial value of 'B' is not a finite number with the params at their values"),
])
def test_bad_initial_values_are_located_errors(lines, where, message):
    source = "model M\nparam k = 1\n" + lines + "\n"
    with pytest.raises(HodecError) as info:
        hodec.compile_source(source, "bad.hode")
    text = str(info.value)
    assert f"bad.hode:{where}: error: {message}" in text, text
    assert text.count("error:") == 1, text  # C, which reads B, is not reported again


def test_cli_exits_1_on_a_cycle(tmp_path, capsys):
    spec = tmp_path / "bad.hode"
    spec.write_text("model M\nstate A = B\nstate B = A\n")
    code = main(["check", str(spec)])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert f"{spec}:2:11: error: initial values refer to each other in a cycle: A -> B -> A" in err


def test_pruning_keeps_a_state_that_an_initial_value_reads():
    """A pruned spec must still compile: B starts at 2 * A, so A stays even when no path leads from it to the
    observable any more."""
    source = ("model P\nparam k = 1\nstate A = 3\nstate B = 2 * A\nreaction r: A -> ; k * A\n"
              "reaction s: A -> B ; k * A\nobserve b = B\n")
    pruning = prune_spec(compile_text(source, "p.hode"), ["s"])
    assert "A" in pruning.states_kept
    assert compile_text(pruning.source, "p2.hode").model_class()({}).initial_state().tolist() == [3.0, 6.0]


def test_initial_from_recomputes_the_initial_values_that_read_given_states():
    """initial_from(y, keep): B = 2 A + sqrt(c) and C = (A + B + k) / 2 from y's A, in order (C reads the new B),
    except where keep holds."""
    m = _model()
    y = torch.tensor([[0.0, 10.0, 0.0, 5.0], [0.0, 10.0, 0.0, 5.0]], dtype=torch.float64)  # columns B, A, C, D
    keep = torch.tensor([[False, False, False, True], [True, False, False, True]])
    with torch.no_grad():
        out = m.initial_from(y, keep)
    B = 2 * 10.0 + 2.0
    assert out[0].tolist() == pytest.approx([B, 10.0, (10.0 + B + 1.5) / 2, 5.0], rel=1e-15)
    assert out[1].tolist() == pytest.approx([0.0, 10.0, (10.0 + 0.0 + 1.5) / 2, 5.0], rel=1e-15)  # B kept
    plain = _model("model P\nstate A = 1\nder A = -A\n")
    assert plain.initial_from(y[:, :1], keep[:, :1]) is not None


def test_with_initial_data_a_state_computed_from_a_pinned_state_starts_from_its_data_value():
    """A has data (first value 4) and reads nothing trainable: pinned; B = 2 * A has no data: it starts at 8."""
    model = _model("model P\nparam k = 1 positive\nstate A = 1\nstate B = 2 * A\nder A = -k * A\nder B = -B\n")
    t = np.linspace(0.0, 1.0, 3)
    data = make_dataset(model, t, {"A": 4.0 * np.exp(-t)})
    problem = Problem(model, data, load_config({"method": "vanilla", "initial": "data"}))
    assert problem.initial(model, problem.groups[0]).tolist() == [[4.0, 8.0]]
    problem = Problem(model, data, load_config({"method": "vanilla", "initial": "spec"}))
    assert problem.initial(model, problem.groups[0]).tolist() == [[1.0, 2.0]]


def _chain(n: int, lets: bool) -> str:
    """x0 = 0.5, then n levels of sin(prev) + cos(prev): as states' initial values, or as lets of states."""
    lines = ["model Chain", "state x0 = 0.5", "der x0 = -x0"]
    for i in range(1, n + 1):
        previous = f"v{i - 1}" if lets and i > 1 else f"x{i - 1}"
        lines.append(f"{'let v' if lets else 'state x'}{i} = sin({previous}) + cos({previous})")
    return "\n".join(lines + ([f"state y = v{n}"] if lets else [])) + "\n"


@pytest.mark.parametrize("lets", [False, True], ids=["states", "lets-of-states"])
def test_a_60_level_chain_of_initial_values_compiles_in_seconds_and_computes_each_level(lets):
    """Each level reads the one before twice: inlined, the expression doubles at every level (20 levels took
    minutes); computed one at a time, compile time is linear."""
    started = time.perf_counter()
    m = load_source(hodec.compile_source(_chain(60, lets), "chain.hode"), f"hodec_test_sbml_initial_{next(_counter)}")
    assert time.perf_counter() - started < 30
    x, want = 0.5, [0.5]
    for _ in range(60):
        x = math.sin(x) + math.cos(x)
        want.append(x)
    got = m({}).double().initial_state().tolist()
    assert got == pytest.approx([0.5, want[-1]] if lets else want, rel=1e-14)


def test_a_2000_state_chain_of_initial_values_is_checked_without_deep_recursion():
    """The finite-value check evaluates initial values in dependency order (a RecursionError, a traceback, before)."""
    lines = ["model Long", "param k = 0.5", "state x0 = k"] + [f"state x{i} = 0.5 * x{i - 1} + 0.1" for i in
                                                               range(1, 2001)]
    model = build_model(parse("\n".join(lines + ["der x0 = -x0"]) + "\n", "long.hode"))
    assert len(model.states) == 2001
