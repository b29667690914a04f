"""Issue 16: user functions (`function f(x, K) = x / (K + x)`), called like builtins and inlined at lowering. The
reference is the formula written out by hand in the same spec language and in numpy; errors are located."""
from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch

import hodec
from hodec.cli import main
from hodec.compiler import load_source
from hodec.errors import HodecError
from hodec.syntax.parser import parse
from hodec.syntax.unparse import unparse

_counter = itertools.count()

SPEC = """model Enzyme
param Vmax = 1.5 positive
param Km = 0.4 positive
param k = 2
function mm(x, K) = Vmax * x / (K + x)
function hill2(x, K) = x^2 / (K^2 + x^2)
function both(x) = mm(x, Km) + k * hill2(x, 2 * Km)
function constant() = 3 * k
function shadow(k) = 10 * k
state S = 2
state P = 0
reaction conversion: S -> P ; both(S)
der P = -0.1 * P + constant() + shadow(P)
observe rate = mm(S, Km)
"""


def _model(source: str = SPEC):
    code = hodec.compile_source(source, "enzyme.hode")
    return code, load_source(code, f"hodec_test_sbml_user_functions_{next(_counter)}")({}).double()


def test_calls_compute_the_inlined_bodies():
    _, m = _model()
    y = torch.tensor([[2.0, 0.0], [0.3, 1.2], [5.0, 3.0]], dtype=torch.float64)
    S, P = y[:, 0].numpy(), y[:, 1].numpy()
    Vmax, Km, k = 1.5, 0.4, 2.0
    flux = Vmax * S / (Km + S) + k * S ** 2 / ((2 * Km) ** 2 + S ** 2)
    want = np.stack([-flux, flux - 0.1 * P + 3 * k + 10 * P], -1)  # shadow(k): its argument, not the param
    t = torch.tensor(0.0, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(m(t, y).numpy(), want, rtol=1e-14)
        np.testing.assert_allclose(m.observables(t, y)[:, 0].numpy(), Vmax * S / (Km + S), rtol=1e-14)


def test_inlining_generates_the_code_of_the_formula_written_out():
    code, _ = _model("model F\nparam K = 0.4\nfunction mm(x, K) = x / (K + x)\nstate S = 1\nder S = -mm(S, 2*K)\n")
    same, _ = _model("model F\nparam K = 0.4\nstate S = 1\nder S = -S / (2*K + S)\n")
    assert code.split("def forward")[1] == same.split("def forward")[1]


def test_a_function_in_an_initial_value_is_folded_and_trains_its_params():
    _, m = _model("model F\nparam a = 3 positive\nfunction sq(x) = x * x\nstate S = sq(a) + sq(2)\nder S = -S\n")
    assert m.initial_state().item() == pytest.approx(13.0, rel=1e-14)  # a positive param is exp(log(3))
    assert dict(m.initial_table)["S"] == ("a",)


def test_the_function_round_trips_through_unparse():
    text = unparse(parse(SPEC))
    assert "function mm(x, K) = Vmax * x / (K + x)\n" in text and "function constant() = 3 * k\n" in text
    assert unparse(parse(text)) == text


# ---------------------------------------------------------------- errors, located
H = "model M\nparam k = 1\nstate A = 1\n"


@pytest.mark.parametrize("lines, where, message", [
    ("function f(x) = x + A\nder A = f(A)", "4:21", "the body of function 'f' reads its arguments (x) and params "
                                                  "only; 'A' is a state"),
    ("function f(x) = x + q\nder A = f(A)", "4:21", "the body of function 'f' reads its arguments (x) and params "
                                                  "only; 'q' is undefined"),
    ("function f(x) = x * t\nder A = f(A)", "4:21", "the body of function 'f' reads its arguments (x) and params "
                                                  "only; 't' is the time"),
    ("function f(x, K) = x / K\nder A = f(A)", "5:9", "'f' takes 2 arguments, got 1"),
    ("function f(x, x) = x\nder A = f(A, A)", "4:15", "repeated argument 'x'"),
    ("function f(exp) = 1\nder A = f(A)", "4:12", "'exp' is reserved and cannot be used as a name"),
    ("function f(x) = g(x)\nfunction g(x) = f(x)\nder A = f(A)", "4:10", "functions call each other in a cycle "
                                                                         "(recursion is not allowed): f -> g -> f"),
    ("function f(x) = f(x)\nder A = f(A)", "4:10", "functions call each other in a cycle"),
    ("function f(x) = hg(x)\nder A = f(A)", "4:17", "unknown function 'hg'"),
    ("neural n(x)\nfunction f(x) = n(x)\nder A = f(A)", "5:17", "a function body cannot call a neural slot ('n')"),
    ("function f(x) = x > 1\nder A = f(A)", "4:17", "expected a number here, found a condition"),
    ("function f(x) = 1 / (x - 1)\nstate B = f(1)\nder A = -A", "5:11", "f(1) is undefined: its body has no "
                                                                        "finite value there"),
    ("function f(x) = 1 / (x - 1)\nder A = f(1) * A", "5:9", "f(1) is undefined"),
    ("function f(x) = log(x - 1)\nder A = f(1) * A", "5:9", "f(1) is undefined"),
    ("let f = 1\nfunction f(x) = x\nder A = A", "5:10", "'f' is already declared (as a let on line 4)"),
    ("function f(x) = x\nder A = f", "5:9", "'f' is a function, not a value that can be used in an expression"),
])
def test_bad_functions_are_located_errors(lines, where, message):
    with pytest.raises(HodecError) as info:
        hodec.compile_source(H + lines + "\n", "bad.hode")
    assert f"bad.hode:{where}: error: {message}" in str(info.value), str(info.value)


def test_an_error_that_only_lowering_finds_is_reported_at_the_call():
    """k - k is 0 only once SymPy simplifies: the constant folder cannot see it, the converter does."""
    with pytest.raises(HodecError) as info:
        hodec.compile_source(H + "function f(x) = x / (k - k)\nder A = -f(A)\n", "bad.hode")
    assert "bad.hode:5:10: error: " in str(info.value) and "(in the body of 'f'" in str(info.value), str(info.value)


def _doubling(n: int) -> str:
    """Functions each calling the one before twice: the n-th expands to 2^n copies of the first."""
    lines = ["model F", "function f0(x) = x"]
    lines += [f"function f{i}(x) = sin(f{i - 1}(x)) + cos(f{i - 1}(x))" for i in range(1, n + 1)]
    return "\n".join(lines + ["state A = 1", f"der A = -f{n}(A)"]) + "\n"


def test_nested_calls_are_inlined_once_per_function_and_arguments():
    _, m = _model(_doubling(8))
    x = 0.7
    for _ in range(8):
        x = np.sin(x) + np.cos(x)
    with torch.no_grad():
        assert m(torch.tensor(0.0), torch.tensor([[0.7]], dtype=torch.float64)).item() == pytest.approx(-x, rel=1e-14)


def test_a_call_that_expands_beyond_the_limit_is_a_located_error_not_a_hang():
    started = time.perf_counter()
    with pytest.raises(HodecError) as info:
        hodec.compile_source(_doubling(40), "bad.hode")
    assert time.perf_counter() - started < 10
    assert "bad.hode:44:10: error: this call expands to more than 20,000 operations" in str(info.value)


def test_the_constant_checks_evaluate_each_call_once():
    """f40(1) is folded by the constant checks before lowering: 2^40 evaluations without the memo."""
    started = time.perf_counter()
    with pytest.raises(HodecError) as info:
        hodec.compile_source(_doubling(40).replace("der A = -f40(A)", "der A = -f40(1) * A"), "bad.hode")
    assert time.perf_counter() - started < 20
    assert "bad.hode:44:10: error: this call expands to more than 20,000 operations" in str(info.value)


def test_cli_exits_1_on_recursion(tmp_path, capsys):
    spec = tmp_path / "bad.hode"
    spec.write_text(H + "function f(x) = f(x)\nder A = f(A)\n")
    code = main(["check", str(spec)])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert f"{spec}:4:10: error: functions call each other in a cycle" in err
