"""Syntax-tree expressions → SymPy. The only place (with its siblings) that knows SymPy."""
from __future__ import annotations

from typing import Callable

import sympy

from ..syntax import ast


class sigmoid(sympy.Function):
    """Logistic function; its own class so that it prints as torch.sigmoid and differentiates cheaply."""

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)


class softplus(sympy.Function):
    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


def _hill(x, K, n):
    return x ** n / (K ** n + x ** n)


_FUNCTIONS: dict[str, Callable] = {
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "abs": sympy.Abs, "sin": sympy.sin, "cos": sympy.cos,
    "tan": sympy.tan, "tanh": sympy.tanh, "sigmoid": sigmoid, "softplus": softplus, "floor": sympy.floor,
    "ceil": sympy.ceiling, "min": sympy.Min, "max": sympy.Max, "hill": _hill,
}
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

    def __call__(self, e: ast.Expr) -> sympy.Expr:
        method = getattr(self, "_" + type(e).__name__)
        return method(e)

    def _Num(self, e):
        return number(e.value)

    def _Name(self, e):
        return self.resolve_name(e.id)

    def _Neg(self, e):
        return -self(e.operand)

    def _Binary(self, e):
        left, right = self(e.left), self(e.right)
        if e.op == "+":
            return left + right
        if e.op == "-":
            return left - right
        if e.op == "*":
            return left * right
        if e.op == "/":
            return left / right
        return left ** right

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
            return _FUNCTIONS[e.func](*args)
        return self.resolve_call(e.func, args)
