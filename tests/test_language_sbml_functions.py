"""Issue 16: SBML's MathML functions in .hode (asin ... acoth, log10, pow, root, factorial, quotient, rem), piecewise,
xor and implies. References: numpy/math evaluating each definition as written (IEEE semantics: NaN outside a
domain), the state Jacobian against torch autograd of the generated vector field, and located errors for bad use."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import special

import hodec
from hodec.cli import main
from hodec.compiler import load_source
from hodec.errors import HodecError

_counter = itertools.count()


def _factorial(x):
    return np.where(x >= 0, special.gamma(np.maximum(x, 0) + 1), np.nan)


# function call as written in .hode -> the same definition in numpy (reference)
FUNCTIONS = {
    "asin(A)": np.arcsin, "acos(A)": np.arccos, "atan(A)": np.arctan, "sinh(A)": np.sinh, "cosh(A)": np.cosh,
    "asinh(A)": np.arcsinh, "acosh(A)": np.arccosh, "atanh(A)": np.arctanh,
    "sec(A)": lambda x: 1 / np.cos(x), "csc(A)": lambda x: 1 / np.sin(x), "cot(A)": lambda x: 1 / np.tan(x),
    "sech(A)": lambda x: 1 / np.cosh(x), "csch(A)": lambda x: 1 / np.sinh(x), "coth(A)": lambda x: 1 / np.tanh(x),
    "asec(A)": lambda x: np.arccos(1 / x), "acsc(A)": lambda x: np.arcsin(1 / x),
    "acot(A)": lambda x: np.arctan(1 / x), "asech(A)": lambda x: np.arccosh(1 / x),
    "acsch(A)": lambda x: np.arcsinh(1 / x), "acoth(A)": lambda x: np.arctanh(1 / x),
    "log10(A)": np.log10, "pow(A, 2.5)": lambda x: x ** 2.5, "pow(2, A)": lambda x: 2.0 ** x,
    "root(3, A)": lambda x: x ** (1 / 3), "root(A, 8)": lambda x: 8.0 ** (1 / x),
    "factorial(A)": _factorial, "quotient(A, 0.75)": lambda x: np.trunc(x / 0.75),
    "quotient(7, A)": lambda x: np.where(x == 0, np.nan, np.trunc(7 / x)),  # undefined, not inf
    "rem(A, 0.75)": lambda x: np.fmod(x, 0.75),
    "rem(7, A)": lambda x: np.fmod(7, x),
    # SymPy would rewrite these to A: the written formula's domain is kept (NaN where it is undefined)
    "cosh(acosh(A))": lambda x: np.cosh(np.arccosh(x)), "sin(asin(A))": lambda x: np.sin(np.arcsin(x)),
    "cos(acos(A))": lambda x: np.cos(np.arccos(x)), "tanh(atanh(A))": lambda x: np.tanh(np.arctanh(x)),
    "sec(asec(A))": lambda x: 1 / np.cos(np.arccos(1 / x)),
    "coth(acoth(A))": lambda x: 1 / np.tanh(np.arctanh(1 / x)),
    "sech(asech(A))": lambda x: 1 / np.cosh(np.arccosh(1 / x)),
}
POINTS = [-3.7, -1.0, -0.6, 0.0, 0.3, 0.5, 1.0, 1.4, 2.0, 5.0]


def _model(source: str):
    code = hodec.compile_source(source, "sbml_functions.hode")
    return load_source(code, f"hodec_test_sbml_functions_{next(_counter)}")({}).double()


def _evaluate(formula: str, points=POINTS):
    """The formula computed by the generated forward (as a der term) and observables, at states A = points."""
    m = _model(f"model F\nstate A = 1\nder A = {formula}\nobserve o = {formula}\n")
    y = torch.tensor(points, dtype=torch.float64)[:, None]
    t = torch.tensor(0.0, dtype=torch.float64)
    with torch.no_grad():
        return m, y, m(t, y)[:, 0].numpy(), m.observables(t, y)[:, 0].numpy()


@pytest.mark.parametrize("formula", FUNCTIONS)
def test_each_function_computes_its_definition(formula):
    _, _, field, observed = _evaluate(formula)
    with np.errstate(all="ignore"):
        want = FUNCTIONS[formula](np.array(POINTS))
    for got in (field, observed):
        assert np.array_equal(np.isnan(got), np.isnan(want)), (formula, got, want)
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-13, atol=1e-15, err_msg=formula)
        assert np.array_equal(got[np.isinf(want)], want[np.isinf(want)]), formula


@pytest.mark.parametrize("formula", [f for f in FUNCTIONS if "(A)" in f or "A," in f or ", A" in f])
def test_the_generated_jacobian_differentiates_each_function(formula):
    """The symbolic derivative (printed through the same printer: gamma, polygamma, sec*tan, ...) against torch's
    autograd of the generated vector field, where both are finite."""
    m, y, _, _ = _evaluate(formula, [0.3, 0.6, 1.4, 2.2, 4.1])
    t = torch.tensor(0.0, dtype=torch.float64)
    y = y.clone().requires_grad_(True)
    field = m(t, y)[:, 0]
    (autograd,) = torch.autograd.grad(field.sum(), y)
    with torch.no_grad():
        symbolic = m.jacobian(t, y)[:, 0, 0]
    finite = torch.isfinite(autograd[:, 0]) & torch.isfinite(field)
    assert finite.sum() >= 2, formula
    torch.testing.assert_close(symbolic[finite], autograd[finite, 0], rtol=1e-10, atol=1e-12)


def test_factorial_of_whole_numbers_and_constants_folded_at_compile_time():
    _, _, field, _ = _evaluate("factorial(A)", [0.0, 1.0, 5.0, 10.0, 20.0])
    want = [math.factorial(n) for n in (0, 1, 5, 10, 20)]
    np.testing.assert_allclose(field, want, rtol=1e-13)
    m = _model("model F\nparam n = 4 fixed\nstate A = factorial(n) + factorial(3) + quotient(-7, 2) + rem(-7, 2)\n"
               "der A = 0\n")
    # quotient rounds toward zero, rem has the dividend's sign; factorial(n) of a param is exp(lgamma(n + 1))
    assert m.initial_state()[0].item() == pytest.approx(24 + 6 - 3 - 1, rel=1e-14)


def test_piecewise_takes_the_first_value_whose_condition_holds():
    formula = "piecewise(10, A < 0, 20, A < 1, 30 + A, A >= 1 and A < 2, -A)"
    _, _, field, observed = _evaluate(formula)
    x = np.array(POINTS)
    want = np.select([x < 0, x < 1, (x >= 1) & (x < 2)], [10.0, 20.0, 30 + x], -x)
    np.testing.assert_array_equal(field, want)
    np.testing.assert_array_equal(observed, want)


def test_piecewise_of_one_value_and_if_are_the_same_function():
    _, _, field, _ = _evaluate("piecewise(A, A > 1, 2 * A) - if(A > 1, A, 2 * A)")
    np.testing.assert_array_equal(field, np.zeros(len(POINTS)))


def test_xor_and_implies_truth_tables():
    formula = ("if(xor(A > 1, A > 2), 1, 0) + 10 * if(xor(A > 0, A > 1, A > 2), 1, 0) "
               "+ 100 * if(implies(A > 1, A > 2), 1, 0)")
    points = [-1.0, 0.5, 1.5, 2.5]
    _, _, field, _ = _evaluate(formula, points)
    x = np.array(points)
    want = ((x > 1) ^ (x > 2)) + 10 * ((x > 0) ^ (x > 1) ^ (x > 2)) + 100 * (~(x > 1) | (x > 2))
    np.testing.assert_array_equal(field, want.astype(float))


def test_functions_group_in_the_vectorised_emitter():
    """Fluxes of one shape through a new function form one fused group over gathered states (no straight line)."""
    code = hodec.compile_source("model V\nparam k = 1\nstate A = 1\nstate B = 2\nstate C = 3\n"
                                "reaction r1: A -> ; k * asinh(A)\nreaction r2: B -> ; k * asinh(B)\n"
                                "reaction r3: C -> ; k * asinh(C)\n", "v.hode")
    forward = code[code.index("def forward"):code.index("def observables")]
    assert forward.count("torch.asinh(") == 1, forward
    m = load_source(code, f"hodec_test_sbml_functions_{next(_counter)}")({}).double()
    y = torch.tensor([[0.5, 1.5, -2.0]], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(torch.tensor(0.0), y), -torch.asinh(y))


# ---------------------------------------------------------------- errors, located
def _error(source: str) -> str:
    with pytest.raises(HodecError) as info:
        hodec.compile_source(source, "bad.hode")
    return str(info.value)


@pytest.mark.parametrize("body, message, column", [
    ("piecewise(1, A > 0)", "piecewise takes value, condition pairs and then an 'otherwise' value", 9),
    ("piecewise(1, A, 2)", "expected a condition here, found a number", 22),
    ("piecewise(A > 0, A > 1, 2)", "expected a number here, found a condition", 19),
    ("xor(A > 1, A > 2)", "expected a number here, found a condition", 9),
    ("if(xor(A, 1), 1, 0)", "expected a condition here, found a number", 16),
    ("root(3)", "'root' takes 2 arguments, got 1", 9),
    ("factorial(-1) * A", "factorial(-1) is undefined in real numbers", 9),
    ("acosh(0.5) * A", "acosh(0.5) is undefined in real numbers", 9),
    ("rem(1, 0) * A", "rem(1, 0) is undefined in real numbers", 9),
    ("cot(0) * A", "division by zero", 9),
    ("factorial(200) * A", "this constant expression is out of the range of double-precision numbers", 9),
])
def test_bad_uses_are_located_errors(body, message, column):
    text = _error(f"model F\nstate A = 1\nder A = {body}\n")
    assert f"bad.hode:3:{column}: error: {message}" in text, text


def test_log_of_two_arguments_says_how_to_write_another_base():
    text = _error("model F\nstate A = 1\nder A = -log(2, A)\n")
    assert "bad.hode:3:10: error: 'log' takes 1 argument, got 2" in text
    assert "log is natural; for base b write log(x) / log(b), or log10(x)" in text


def test_function_names_are_reserved():
    assert "'sech' is reserved" in _error("model F\nparam sech = 1\nstate A = 1\nder A = -sech * A\n")


def test_cli_exits_1_on_a_bad_piecewise(tmp_path, capsys):
    spec = tmp_path / "bad.hode"
    spec.write_text("model F\nstate A = 1\nder A = piecewise(1, A > 0, 2, A > 1)\n")
    code = main(["check", str(spec)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in err
    assert f"{spec}:3:9: error: piecewise takes" in err
