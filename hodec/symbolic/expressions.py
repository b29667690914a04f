"""Syntax-tree expressions → SymPy. The only place (with its siblings) that knows SymPy."""
from __future__ import annotations

from typing import Callable

import sympy
from mpmath.libmp import prec_to_dps

from ..errors import Diagnostic, HodecError
from ..syntax import ast
from .domains import keep_domain, restrictions, written


class _RealFunction(sympy.Function):
    """A real function of a real argument with a closed form for numbers: comparable (Min/Max of constants work)
    and evaluable to a float (constant tables), which a bare sympy.Function is not."""

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_evalf(self, prec):
        if not self.args[0].is_number:
            return None
        return self.closed_form(self.args[0]).evalf(prec_to_dps(prec))


class sigmoid(_RealFunction):
    """Logistic function; its own class so that it prints as torch.sigmoid and differentiates cheaply."""

    @staticmethod
    def closed_form(x):
        return 1 / (1 + sympy.exp(-x))

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)


class softplus(_RealFunction):
    @staticmethod
    def closed_form(x):
        return sympy.log(1 + sympy.exp(x))

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


def _hill(x, K, n):
    return x ** n / (K ** n + x ** n)


_FUNCTIONS: dict[str, Callable] = {
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "abs": sympy.Abs, "sin": sympy.sin, "cos": sympy.cos,
    "tan": sympy.tan, "tanh": sympy.tanh, "sigmoid": sigmoid, "softplus": softplus, "floor": sympy.floor,
    "ceil": sympy.ceiling, "min": sympy.Min, "max": sympy.Max, "hill": _hill,
}
_UNDEFINED = (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I)  # what 1/(0*x), log(0*x), sqrt(0*x - 1) become


def undefined(value) -> bool:
    """Whether SymPy found an expression infinite, undefined or not real: generated code would compute NaN."""
    return value.has(*_UNDEFINED) or isinstance(value, sympy.Expr) and value.is_extended_real is False


_COMPARE = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge, "==": sympy.Eq, "!=": sympy.Ne}


def number(value: float) -> sympy.Expr:
    if value.is_integer() and abs(value) < 2 ** 53:
        return sympy.Integer(int(value))
    return sympy.Float(value)


class Converter:
    """Converts expressions given how to resolve a name and how to resolve a neural-function call."""

    def __init__(self, resolve_name: Callable[[str], sympy.Expr],
                 resolve_call: Callable[[str, tuple], sympy.Expr] | None = None):
        self.resolve_name = resolve_name
        self.resolve_call = resolve_call
        self.restrictions: dict = {}  # memo of domains.restrictions

    def __call__(self, e: ast.Expr) -> sympy.Expr:
        method = getattr(self, "_" + type(e).__name__)
        value = method(e)
        if undefined(value):  # reported at the innermost node, before SymPy fails on it further up
            raise HodecError([Diagnostic("this expression has no finite real value once simplified "
                                         "(like a division by zero or log(0))", e.span)])
        return value

    def _Num(self, e):
        return number(e.value)

    def _Name(self, e):
        return self.resolve_name(e.id)

    def _Neg(self, e):
        return -self(e.operand)

    def _Binary(self, e):
        left, right = self(e.left), self(e.right)
        value = {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                 "/": lambda: left / right, "^": lambda: left ** right}[e.op]()
        if e.op == "^" and right == 0:
            return value  # x^0 is 1 for every x, NaN included (IEEE pow), as SymPy has it
        return self._as_written(value, (left, right), written(e.op, left, right))

    def _Compare(self, e):
        return _COMPARE[e.op](self(e.left), self(e.right))

    def _Logic(self, e):
        if e.op == "not":
            return sympy.Not(self(e.left))
        return (sympy.And if e.op == "and" else sympy.Or)(self(e.left), self(e.right))

    def _If(self, e):
        return sympy.Piecewise((self(e.then), self(e.cond)), (self(e.orelse), True))

    def _Call(self, e):
        args = tuple(self(a) for a in e.args)
        if e.func in _FUNCTIONS:
            return self._as_written(_FUNCTIONS[e.func](*args), args, written(e.func, *args), function=True)
        return self.resolve_call(e.func, args)  # a neural call: its arguments are computed as written

    def _as_written(self, value, operands: tuple, own: frozenset, function: bool = False):
        """The value, undefined wherever the operands or the operation as written are (see domains.py)."""
        expected = own.union(*(restrictions(o, self.restrictions) for o in operands))
        return keep_domain(value, expected, self.restrictions, function)
