"""SBML algebraic rules (0 = f(x, ...)) as the `let` of the variable each determines, where f is linear in it: the
rule solved by SymPy, x = -b / a for f = a x + b. A rule that is not linear in its variable (or calls a function)
would need a DAE solver and is refused."""
from __future__ import annotations

import re

import sympy
from sympy.parsing.sympy_parser import parse_expr

from .mathml import Unsupported

NAME = re.compile(r"(?<![0-9.])[A-Za-z_][A-Za-z0-9_]*(?=\s*(\(?))")  # not the exponent of 1e-3; a call?
CONDITION = re.compile(r"[<>=!]|\b(and|or|not)\b")


def solve_linear(expression: str, variable: str) -> str:
    """The .hode text of x where 0 = expression (.hode text) holds, for an expression linear in x."""
    if CONDITION.search(expression):
        raise Unsupported(f"an algebraic rule with a condition ({expression}): only rules linear in their variable "
                          f"are solved")
    # calls (of builtins or user functions) stay calls, opaque to SymPy: the variable must not be in them
    symbols = {m.group(0): sympy.Function(m.group(0)) if m.group(1) else sympy.Symbol(m.group(0))
               for m in NAME.finditer(expression)}
    try:
        expr = parse_expr(expression.replace("^", "**"), local_dict=symbols, evaluate=True)
        poly = sympy.Poly(sympy.expand(expr), symbols[variable])
    except (SyntaxError, TypeError, KeyError, sympy.PolynomialError, sympy.SympifyError):
        raise Unsupported(f"an algebraic rule that is not linear in '{variable}' ({expression})") from None
    if poly.degree() != 1:
        raise Unsupported(f"an algebraic rule of degree {poly.degree()} in '{variable}' ({expression})")
    a, b = poly.all_coeffs()
    return sympy.sstr(sympy.simplify(-b / a))
