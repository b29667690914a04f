"""Operator precedence in generated code: a power of a power, a power of a negation and the reciprocal inside the
inverse reciprocal functions (asec(x) = acos(1/x), ...) keep their brackets; the generated forward against numpy
at the same values."""
import numpy as np
import pytest
import torch

import sympy

from hodec.codegen.printer import TorchPrinter
from hodec.compiler import compile_source, load_text

CASES = {  # der x = <expression> at x = 2, s = 2 (params positive), and numpy's value
    "(x^3)^(1/3)": lambda x, s: np.cbrt(x ** 3),
    "(x^3)^s": lambda x, s: (x ** 3) ** s,
    "(-x)^s": lambda x, s: (-x) ** s,
    "-(x^s)": lambda x, s: -(x ** s),
    "asech(s * 0.21)": lambda x, s: np.arccosh(1 / (s * 0.21)),
    "asec(s * 0.7)": lambda x, s: np.arccos(1 / (s * 0.7)),
    "acsc(s * 0.7)": lambda x, s: np.arcsin(1 / (s * 0.7)),
    "acsch(s * 0.3)": lambda x, s: np.arcsinh(1 / (s * 0.3)),
    "acot(s * 0.4)": lambda x, s: np.arctan(1 / (s * 0.4)),
    "acoth(s * 1.5)": lambda x, s: np.arctanh(1 / (s * 1.5)),
    "1 / (s * x)": lambda x, s: 1 / (s * x),
}


@pytest.mark.parametrize("text", list(CASES))
def test_generated_forward_keeps_the_brackets(text):
    spec = f"model P\nparam s = 2 positive\nstate x = 2\nder x = {text}\n"
    m = load_text(spec, "p.hode")().double()
    got = float(m(torch.tensor(0.0), torch.tensor([2.0], dtype=torch.float64))[0])
    want = float(CASES[text](2.0, 2.0))
    assert np.isclose(got, want, rtol=1e-13, atol=0, equal_nan=True), (text, got, want)


@pytest.mark.parametrize("text, want", [("x^(10^30)", lambda x: np.power(x, 1e30)), ("10^20 * x", lambda x: 1e20 * x),
                                        ("x^(2^70) - 2^64", lambda x: np.power(x, 2.0 ** 70) - 2.0 ** 64)])
def test_integers_beyond_int64_are_doubles(text, want):
    """torch takes a Python int only within int64: the literal 10^30 in a forward raised OverflowError there."""
    m = load_text(f"model P\nstate x = 1\nder x = {text}\n", "p.hode")().double()
    with np.errstate(over="ignore"):
        for x in (0.5, 1.0, 1.5):
            got = float(m(torch.tensor(0.0), torch.tensor([x], dtype=torch.float64))[0])
            assert got == pytest.approx(float(want(np.float64(x))), rel=1e-12)


def test_integers_beyond_the_double_range_print_as_infinity():
    """An integer SymPy folds out of a spec can exceed a double (hill(100, k, 100)^2 expands to 100^200 / ...): the
    printer's float() raised OverflowError mid-compile (a random spec found it); it is the infinity a double
    computation of that integer gives."""
    printer = TorchPrinter({}, None)
    assert printer.doprint(sympy.Integer(10) ** 400) == 'float("inf")'
    assert printer.doprint(-sympy.Integer(10) ** 400) == '-float("inf")'
    assert printer.doprint(sympy.Integer(2) ** 70) == repr(2.0 ** 70)
    compile_source("model H\nparam k = 0.5 positive\nstate x = 1\nlet v = hill(100, k, 100) ^ 2 + k\nder x = v\n",
                   "h.hode")
