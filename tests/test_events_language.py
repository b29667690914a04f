"""The events language: `at t = e1, e2: x += a, y = b` and `when COND: ...`, from text to the generated methods
event_times, event_conditions and event_assign (checked against hand-computed values and autograd), with every
bad input a located error, and the graph tools and unparse keeping events."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hodec
from hodec import HodecError
from hodec.cli import main
from hodec.compiler import Compilation, load_text
from hodec.graph.prune import prune_spec
from hodec.symbolic.dependencies import used_params
from hodec.symbolic.folding import folded_gates
from hodec.syntax import ast
from hodec.syntax.parser import parse
from hodec.syntax.unparse import unparse

from test_names import NAMES
from test_unparse import S, expressions, strip


pytestmark = pytest.mark.usefixtures("float64")

PK = """model PK "doses as events"
param ka = 1.2 positive
param ke = 0.2 positive
param dose = 100 positive
param tau = 12 positive
param lag = 0.5
param rescue = 0 in (-1, 5)
state depot = 0
state central = 0
state effect = 1
reaction absorb: depot -> central ; ka * depot
reaction elim: central -> ; ke * central
der effect = -0.1 * effect + rescue
at t = 0, tau + lag, 2 * tau: depot += dose   # three doses
when central < 2 and t > 1: rescue = 1, effect -= 0.5
at t = 5: central = central / 2
observe conc = central
"""


def _compile(source: str) -> Compilation:
    return Compilation(source, "events.hode")


# ---------------------------------------------------------------- syntax
def test_events_parse_with_spans():
    statements = parse(PK).statements
    at, when = statements[13], statements[14]
    assert isinstance(at, ast.EventDecl) and at.kind == "at" and at.trigger is None
    assert [type(e).__name__ for e in at.times] == ["Num", "Binary", "Binary"]
    (dose,) = at.assignments
    assert (dose.target.id, dose.op, dose.value.id) == ("depot", "+=", "dose")
    assert (dose.span.line, dose.span.column, dose.span.end_column) == (14, 31, 44)
    assert when.kind == "when" and when.times == () and isinstance(when.trigger, ast.Logic)
    assert [(a.target.id, a.op) for a in when.assignments] == [("rescue", "="), ("effect", "-=")]
    assert when.assignments[1].target.span.column == 41


def test_events_round_trip_through_unparse():
    tree = parse(PK)
    text = unparse(tree)
    assert "at t = 0, tau + lag, 2 * tau: depot += dose\n" in text
    assert "when central < 2 and t > 1: rescue = 1, effect -= 0.5\n" in text
    again = parse(text)
    assert strip(again.statements) == strip(tree.statements)
    assert unparse(again) == text


def _assignments():
    one = st.tuples(st.sampled_from(["x", "y", "index", "self"]), st.sampled_from(["=", "+=", "-="]), expressions())
    return st.lists(one.map(lambda a: ast.Assignment(ast.Name(a[0], S), a[1], a[2], S)), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.tuples(st.lists(expressions(), min_size=1, max_size=3), _assignments())
    .map(lambda e: ast.EventDecl("at", tuple(e[0]), None, tuple(e[1]), S)),
    st.tuples(expressions(), _assignments()).map(lambda e: ast.EventDecl("when", (), e[0], tuple(e[1]), S))))
def test_random_events_round_trip(event):
    text = unparse([ast.ModelDecl(ast.Name("M", S), None, S), event])
    again = parse(text)
    assert strip(again.statements[1]) == strip(event)
    assert unparse(again) == text


def test_event_text_is_the_unparsed_statement():
    model = _compile(PK).model
    assert [e.text for e in model.events] == ["at t = 0, tau + lag, 2 * tau: depot += dose",
                                              "when central < 2 and t > 1: rescue = 1, effect -= 0.5",
                                              "at t = 5: central = central / 2"]
    assert model.event_params == ("rescue",)


def test_transform_and_prune_keep_events(tmp_path):
    spec = tmp_path / "pk.hode"
    spec.write_text(PK)
    out = tmp_path / "mnode.hode"
    assert main(["transform", "--mnode", str(spec), "-o", str(out)]) == 0
    text = out.read_text()
    assert "at t = 0, tau + lag, 2 * tau: depot += dose" in text and "when central < 2" in text
    assert "param dose" in text and "param lag" in text  # read only by events, still declared
    assert "param rescue" in text  # assigned by an event, read by no slot of the MNODE form
    assert main(["check", str(out)]) == 0
    # Pruning every flux of 'effect' leaves it no path to the observable; the event assigning it keeps it.
    pruning = prune_spec(_compile(PK), ["der_effect.0"])
    assert "effect" in pruning.states_kept
    assert "when central < 2 and t > 1: rescue = 1, effect -= 0.5" in pruning.source
    _compile(pruning.source)


# ---------------------------------------------------------------- located errors
H = "model M\nparam k = 1\nparam F = 2 fixed\nparam z = 0\ninput u\nstate depot = 0\nstate x = 1\nlet v = x\n"
# line 9 onwards is the event under test
BAD = [
    ("undeclared", "at t = 1: dpot += 1\n", "9:11", "undefined name 'dpot' (the target of an event assignment must be "
                                                    "a state or a param)", "did you mean 'depot'?"),
    ("fixed", "at t = 1: F = 3\n", "9:11", "an event assigns param 'F', which is fixed (declared on line 3)",
     "remove 'fixed' from 'param F' (an assigned param becomes a state)"),
    ("input", "at t = 1: u = 3\n", "9:11", "the target of an event assignment must be a state or a param; 'u' is an "
                                           "input", None),
    ("let", "when x > 2: v = 3\n", "9:13", "the target of an event assignment must be a state or a param; 'v' is a "
                                           "let", None),
    ("twice", "at t = 1: x = 1, depot += 1, x += 2\n", "9:30", "'x' is assigned twice in one event (its assignments "
                                                               "are simultaneous)", None),
    ("time reads a state", "at t = 1, x: depot += 1\n", "9:11", "an event time is an expression of params and "
                                                                "numbers; 'x' is a state", None),
    ("time reads t", "at t = t + 1: depot += 1\n", "9:8", "an event time is an expression of params and numbers; 't' "
                                                          "is the time", None),
    ("time reads an input", "at t = u: depot += 1\n", "9:8", "an event time is an expression of params and numbers; "
                                                             "'u' is an input", None),
    ("time reads a dynamic let", "at t = v: depot += 1\n", "9:8", "an event time is an expression of params and "
                                                                  "numbers; 'v' is a let that depends on states, "
                                                                  "inputs, t or neural slots", None),
    ("time not finite", "at t = 1 / z: depot += 1\n", "9:8", "this event time is not a finite number with the params "
                                                             "at their values", None),
    ("time reads an assigned param", "at t = k: k = 2\n", "9:8", "an event time cannot read param 'k', which an "
                                                                 "event assigns (so it varies in time)", None),
    ("time calls a neural slot", "neural g(a)\nat t = 1 + g(1): depot += 1\n", "10:12", "an event time cannot call "
                                                                                     "a neural slot", None),
    ("==", "when x == 2: depot = 0\n", "9:6", "'==' in a 'when' condition: an event fires when its condition becomes "
                                              "true, which needs a crossing; use <, <=, > or >=", None),
    ("!=", "when not x != 2: depot = 0\n", "9:10", "'!=' in a 'when' condition: an event fires when its condition "
                                                   "becomes true, which needs a crossing; use <, <=, > or >=", None),
    ("trigger a number", "when x + 1: depot = 0\n", "9:6", "expected a condition here, found a number", None),
    ("value a condition", "at t = 1: depot += x > 1\n", "9:20", "expected a number here, found a condition", None),
    ("at u", "at u = 1: depot += 1\n", "9:4", "an 'at' event is written 'at t = TIME, ...'; found 'u' instead of 't'",
     None),
    ("reserved at", "state at = 1\n", "9:7", "'at' is reserved and cannot be used as a name", None),
    ("reserved when", "param when = 1\n", "9:7", "'when' is reserved and cannot be used as a name", None),
    ("missing colon", "at t = 1 depot += 1\n", "9:10", "unexpected 'depot'; expected", None),
    ("let of an assigned param in an initial value", "let w = 2 * k\nstate q = w\nat t = 1: k = 3\n", "10:11",
     "let 'w' reads param 'k', which an event assigns (so it varies in time); an initial value may read 'k' itself, "
     "not this let", None),
]


@pytest.mark.parametrize("body, where, message, hint", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_events_are_located_errors(tmp_path, capsys, body, where, message, hint):
    path = tmp_path / "bad.hode"
    path.write_text(H + body)
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}:{where}: error: {message}")
    if hint is not None:
        assert f"  {hint}" in lines


def test_an_assigned_param_may_start_a_state_directly():
    m = load_text(H + "state q = 2 * k\nat t = 1: k = 3\n")()
    assert m.initial_state()[m.state_names.index("q")].item() == 2.0


# ---------------------------------------------------------------- generated methods
def test_event_tables():
    M = _compile(PK).model_class()
    assert M.events_table == (("at", "at t = 0, tau + lag, 2 * tau: depot += dose", ("depot",)),
                              ("when", "when central < 2 and t > 1: rescue = 1, effect -= 0.5", ("rescue", "effect")),
                              ("at", "at t = 5: central = central / 2", ("central",)))
    assert M.time_events == (0, 0, 0, 2)
    assert M.state_events == (1,)


def test_event_times_from_param_expressions_with_gradients():
    m = _compile(PK).model_class()()
    times = m.event_times()
    assert times.shape == (4,)
    assert times.tolist() == pytest.approx([0.0, 12.5, 24.0, 5.0], abs=1e-15)
    tau = m.raw_positive  # tau trains in log space: d time / d log(tau) = tau * d time / d tau
    (grad,) = torch.autograd.grad(times.sum(), tau)
    index = [row[0] for row in m.parameters_table if row[2] == "positive"].index("tau")
    assert float(grad[index]) == pytest.approx(12.0 * (1 + 2))


def test_event_times_per_sample_params_are_K_by_B():
    m = _compile(PK).model_class()()
    m.set_params({"tau": [1.0, 2.0, 4.0], "lag": [0.0, 0.25, 0.5]})
    times = m.event_times()
    assert times.shape == (4, 3)
    expected = torch.tensor([[0, 0, 0], [1.0, 2.25, 4.5], [2.0, 4.0, 8.0], [5, 5, 5]])
    torch.testing.assert_close(times.detach(), expected, rtol=0, atol=1e-12)


CONDITIONS = """model C
param a = 0.5
state x = 0
state y = 0
when x > 1 and y < 2: x = 0
when x >= 1 or not y <= 2: x = 0
when not (x < a): x = 0
when x < 1 and (y > 0 or not x > -1): y = 0
"""


def test_event_conditions_root_functions():
    m = load_text(CONDITIONS)()
    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 2, generator=g) * 3
    x, w = y[:, 0], y[:, 1]
    roots = m.event_conditions(torch.tensor(0.0), y)
    assert roots.shape == (50, 4)
    expected = torch.stack([torch.minimum(x - 1, 2 - w), torch.maximum(x - 1, w - 2), x - 0.5,
                            torch.minimum(1 - x, torch.maximum(w, -(x + 1)))], -1)
    torch.testing.assert_close(roots, expected, rtol=0, atol=1e-15)
    holds = torch.stack([(x > 1) & (w < 2), (x >= 1) | ~(w <= 2), ~(x < 0.5), (x < 1) & ((w > 0) | ~(x > -1))], -1)
    assert torch.equal(roots > 0, holds)


def test_event_conditions_reading_only_t_broadcast_to_the_batch():
    m = load_text("model T\nstate x = 1\nwhen t > 3: x = 0\n")()
    roots = m.event_conditions(torch.tensor(1.0), torch.zeros(4, 1))
    assert roots.tolist() == [[-2.0]] * 4


ASSIGN = """model A
param k = 0.5
param c = 3
state x = 1
state w = 2
state z = 3
state s = 4
at t = 1: x = w, w = x, z += x * k + t, s -= c
"""


def test_event_assign_is_simultaneous():
    m = load_text(ASSIGN)()
    y = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 5.0, 0.5, 0.0]], requires_grad=True)
    t = torch.tensor(2.0)
    after = m.event_assign(0, t, y)
    expected = [[2.0, 1.0, 3.0 + 1.0 * 0.5 + 2.0, 4.0 - 3.0], [5.0, -1.0, 0.5 - 1.0 * 0.5 + 2.0, 0.0 - 3.0]]
    torch.testing.assert_close(after.detach(), torch.tensor(expected), rtol=0, atol=1e-15)
    assert y.tolist() == [[1.0, 2.0, 3.0, 4.0], [-1.0, 5.0, 0.5, 0.0]]  # a new tensor, y untouched
    (grad,) = torch.autograd.grad(after[:, 2].sum(), y)  # d z_new / d y = (k, 0, 1, 0)
    assert grad.tolist() == [[0.5, 0.0, 1.0, 0.0]] * 2
    with pytest.raises(IndexError):
        m.event_assign(1, t, y)


def test_event_assign_with_per_sample_params():
    m = load_text(ASSIGN)()
    m.set_params({"k": [1.0, 2.0], "c": [10.0, 20.0]})
    y = torch.ones(2, 4)
    after = m.event_assign(0, 0.0, y)
    assert after[:, 2].tolist() == [2.0, 3.0] and after[:, 3].tolist() == [-9.0, -19.0]


PROMOTED = """model P
param k = 0.5 positive
param g = 2
state x = 1
state q = 3 * k
der x = -k * x + g
at t = 1: k = 2 * k
observe o = k * x
"""


def test_assigned_param_becomes_a_state():
    M = load_text(PROMOTED)
    m = M()
    assert M.state_names == ("x", "q", "k") and "k" in M.param_names
    assert [row[0] for row in M.parameters_table if row[2] == "positive"] == ["k"]  # still trained
    y0 = m.initial_state()
    assert y0.tolist() == pytest.approx([1.0, 1.5, 0.5])
    (grad,) = torch.autograd.grad(y0[2], m.raw_positive)  # trains through its initial value (log space)
    assert float(grad[0]) == pytest.approx(0.5)
    y = torch.tensor([2.0, 0.0, 4.0])  # the state k (4) is read, not the param (0.5)
    assert m.forward(0.0, y).tolist() == pytest.approx([-4.0 * 2.0 + 2.0, 0.0, 0.0])
    assert m.observables(0.0, y).tolist() == pytest.approx([8.0])
    assert m.event_assign(0, 1.0, y).tolist() == pytest.approx([2.0, 0.0, 8.0])
    J = m.jacobian(0.0, y)
    reference = torch.autograd.functional.jacobian(lambda v: m.forward(0.0, v), y)
    torch.testing.assert_close(J, reference)
    assert J[0, 2] == -2.0
    H_ = m.observation_jacobian(0.0, y)
    torch.testing.assert_close(H_, torch.autograd.functional.jacobian(lambda v: m.observables(0.0, v), y))


def test_model_without_events_has_empty_methods():
    m = load_text("model N\nparam k = 1\nstate x = 1\nder x = -k * x\n")()
    assert m.events_table == () and m.time_events == () and m.state_events == ()
    assert m.event_times().shape == (0,)
    assert m.event_conditions(0.0, torch.ones(3, 1)).shape == (3, 0)
    with pytest.raises(IndexError):
        m.event_assign(0, 0.0, torch.ones(1))


def test_generated_code_names_the_spec_lines():
    code = _compile(PK).code()
    assert "if index == 0:  # line 14: at t = 0, tau + lag, 2 * tau: depot += dose" in code
    assert "# line 15: when central < 2 and t > 1: rescue = 1, effect -= 0.5" in code
    assert max(len(line) for line in code.splitlines()) <= 120


def test_generated_event_code_is_deterministic():
    code = _compile(PK).code()
    assert _compile(PK).code() == code
    script = ("import sys, hodec.compiler as c; "
              "sys.stdout.write(c.Compilation(sys.stdin.read(), 'events.hode').code())")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", script], input=PK, capture_output=True, text=True, env=env,
                             check=True)
        assert run.stdout == code


SHADOW = """model S
param self = 2
param pbatch = 3
state index = 1
state y = 2
state p = 3
state torch = 4
der y = -self * y
at t = pbatch, self: index += y * self, y = index, torch -= p
when index > y: p = pbatch
"""


def test_names_that_could_shadow_the_generated_locals():
    m = load_text(SHADOW)()
    assert m.event_times().tolist() == [3.0, 2.0]
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert m.event_assign(0, 0.0, y).tolist() == [1.0 + 2.0 * 2.0, 1.0, 3.0, 4.0 - 3.0]
    assert m.event_assign(1, 0.0, y).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert m.event_conditions(0.0, y).tolist() == [1.0 - 2.0]


def test_hodec_check_accepts_events(tmp_path):
    path = tmp_path / "pk.hode"
    path.write_text(PK)
    assert main(["check", str(path)]) == 0
    assert isinstance(hodec.compile(path).model.events[0].times[0], ast.Num)


def test_events_are_not_interaction_edges():
    G = _compile(PK).graph
    assert not G.has_edge("central", "effect") and "rescue" not in G


def test_error_type():
    with pytest.raises(HodecError):
        _compile(H + "at t = 1: F = 3\n")


FOLD = """model F
param k = 2
param j = 3
state x = 1
der x = -k * x - j * x
at t = 1: x += k
"""


def test_a_gate_never_folds_into_a_param_an_event_reads():
    c = _compile(FOLD)
    assert folded_gates(c.symbolic, c.model_class()(), {"der_x.0": 0.5, "der_x.1": 0.5}) == {"j": 1.5}
    assert used_params(c.symbolic) == {"k", "j"}
    assert used_params(_compile("model G\nparam k = 2\nparam d = 1\nstate x = 1\nder x = -k * x\n"
                                "at t = 1: x += d\n").symbolic) == {"k", "d"}


def test_a_gated_model_keeps_its_events():
    c = _compile(PK)
    gated = c.model_class(gates=True)()
    plain = c.model_class()()
    y = torch.tensor([10.0, 3.0, 1.0, 0.0])  # depot, central, effect, rescue
    assert gated.events_table == plain.events_table and gated.state_names == plain.state_names
    torch.testing.assert_close(gated.forward(0.0, y), plain.forward(0.0, y))  # every gate starts at 1
    torch.testing.assert_close(gated.jacobian(0.0, y), torch.autograd.functional.jacobian(
        lambda v: gated.forward(0.0, v), y))
    torch.testing.assert_close(gated.event_assign(1, 2.0, y), torch.tensor([10.0, 3.0, 0.5, 1.0]))
    assert gated.event_conditions(2.0, y).tolist() == [-1.0]  # min(2 - central, t - 1)


def test_xor_and_implies_in_a_trigger():
    m = load_text("model X\nstate x = 0\nstate w = 0\nwhen xor(x > 1, w > 0, x < 3): x = 0\n"
                  "when implies(x > 1, w < 2): x = 0\n")()
    g = torch.Generator().manual_seed(1)
    y = torch.randn(200, 2, generator=g) * 3
    x, w = y[:, 0], y[:, 1]
    roots = m.event_conditions(0.0, y)
    a, b, c = x - 1, w, 3 - x
    ab = torch.maximum(torch.minimum(a, -b), torch.minimum(-a, b))
    expected = torch.stack([torch.maximum(torch.minimum(ab, -c), torch.minimum(-ab, c)),
                            torch.maximum(-(x - 1), 2 - w)], -1)
    torch.testing.assert_close(roots, expected, rtol=0, atol=1e-15)
    holds = torch.stack([(x > 1) ^ (w > 0) ^ (x < 3), ~(x > 1) | (w < 2)], -1)
    assert torch.equal(roots > 0, holds)


def test_an_event_time_may_call_a_user_function():
    m = load_text("model U\nparam k = 2\nfunction f(a) = 2 * a + k\nstate x = 1\nat t = f(k), f(1): x += 1\n")()
    assert m.event_times().tolist() == [6.0, 4.0]


@pytest.mark.parametrize("k", range(len(NAMES)))
def test_every_awkward_name_in_every_event_role(k):
    a, b, c = (NAMES[(k + j) % len(NAMES)] for j in range(3))
    m = load_text(f"model M\nparam {a} = 2\nstate {b} = 1\nstate {c} = 3\n"
                  f"at t = {a} + 1: {b} += {c} * {a}, {c} = {b}\nwhen {b} > {a}: {c} -= 1\n")()
    y = torch.tensor([[1.0, 3.0], [5.0, -1.0]])
    assert m.event_times().tolist() == [3.0]
    assert m.event_assign(0, 0.0, y).tolist() == [[1.0 + 3.0 * 2.0, 1.0], [5.0 - 1.0 * 2.0, 5.0]]
    assert m.event_assign(1, 0.0, y).tolist() == [[1.0, 2.0], [5.0, -2.0]]
    assert m.event_conditions(0.0, y).tolist() == [[-1.0], [3.0]]


def test_event_times_and_values_may_read_lets_of_params():
    m = load_text("model L\nparam tau = 3\nlet T = 2 * tau\nlet W = T + tau\nstate x = 1\nat t = T, W: x += T\n")()
    assert m.event_times().tolist() == [6.0, 9.0]
    assert m.event_assign(0, 0.0, torch.ones(1)).tolist() == [7.0]
