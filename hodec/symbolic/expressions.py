"""Syntax-tree expressions → SymPy. The only place (with its siblings) that knows SymPy."""
from __future__ import annotations

from typing import Callable

import sympy
from mpmath.libmp import prec_to_dps
from sympy.core.logic import fuzzy_and

from ..errors import Diagnostic, HodecError
from ..syntax import ast
from .domains import keep_domain, restrictions, written


class _RealFunction(sympy.Function):
    """A real function of real arguments with a closed form for numbers: comparable (Min/Max of constants work)
    and evaluable to a float (constant tables), which a bare sympy.Function is not."""

    def _eval_is_extended_real(self):
        return fuzzy_and(a.is_extended_real for a in self.args)

    def _eval_evalf(self, prec):
        if not all(a.is_number for a in self.args):
            return None
        return self.closed_form(*self.args).evalf(prec_to_dps(prec))


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


class _Division(_RealFunction):
    """A function of a dividend and a divisor, exact for two numbers and undefined (NaN) for a zero divisor."""

    nargs = 2

    @classmethod
    def eval(cls, a, b):
        if a.is_Number and b.is_Number:
            return cls.closed_form(a, b) if b != 0 else sympy.nan


class quotient(_Division):
    """SBML's quotient(a, b): a / b rounded toward zero (printed torch.trunc(a / b)); NaN where b = 0."""

    @staticmethod
    def closed_form(a, b):
        return sympy.sign(a / b) * sympy.floor(sympy.Abs(a / b))

    def fdiff(self, argindex=1):
        return sympy.S.Zero  # a step function: zero wherever it is differentiable


class rem(_Division):
    """SBML's rem(a, b): a - b * quotient(a, b), the sign of a (C's fmod; printed torch.fmod); NaN where b = 0."""

    @staticmethod
    def closed_form(a, b):
        return a - b * quotient.closed_form(a, b)

    def fdiff(self, argindex=1):
        return sympy.S.One if argindex == 1 else -quotient(*self.args)


def _hill(x, K, n):
    return x ** n / (K ** n + x ** n)


def _log10(x):
    return sympy.log(x, 10)


def piecewise(*args):
    """SBML's piecewise(v1, c1, v2, c2, ..., otherwise): the first v whose condition holds, else otherwise; `if(c,
    a, b)` is piecewise(a, c, b)."""
    pieces = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
    return sympy.Piecewise(*pieces, (args[-1], True))


_FUNCTIONS: dict[str, Callable] = {
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "abs": sympy.Abs, "sin": sympy.sin, "cos": sympy.cos,
    "tan": sympy.tan, "tanh": sympy.tanh, "sigmoid": sigmoid, "softplus": softplus, "floor": sympy.floor,
    "ceil": sympy.ceiling, "min": sympy.Min, "max": sympy.Max, "hill": _hill,
    "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh,
    "asinh": sympy.asinh, "acosh": sympy.acosh, "atanh": sympy.atanh, "sec": sympy.sec, "csc": sympy.csc,
    "cot": sympy.cot, "sech": sympy.sech, "csch": sympy.csch, "coth": sympy.coth, "asec": sympy.asec,
    "acsc": sympy.acsc, "acot": sympy.acot, "asech": sympy.asech, "acsch": sympy.acsch, "acoth": sympy.acoth,
    "log10": _log10, "factorial": sympy.factorial, "quotient": quotient, "rem": rem,
}
_CONDITIONS: dict[str, Callable] = {"xor": sympy.Xor, "implies": sympy.Implies}  # conditions of conditions
_UNDEFINED = (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I)  # what 1/(0*x), log(0*x), sqrt(0*x - 1) become


def undefined(value) -> bool:
    """Whether SymPy found an expression infinite, undefined or not real: generated code would compute NaN."""
    return value.has(*_UNDEFINED) or isinstance(value, sympy.Expr) and value.is_extended_real is False


_COMPARE = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge, "==": sympy.Eq, "!=": sympy.Ne}


def number(value: float) -> sympy.Expr:
    if value.is_integer() and abs(value) < 2 ** 53:
        return sympy.Integer(int(value))
    return sympy.Float(value)


# Operations (expression-tree nodes) one call of a user function may expand to: calls in bodies nest, so a chain of
# functions each calling the previous twice doubles at every level, and every later pass walks the whole tree.
MAX_INLINED = 20_000


class _InBody(HodecError):
    """An error inside an inlined function body, already worded for the user: relocated to the outer call."""


def tree_size(expr, memo: dict) -> int:
    """The number of nodes of an expression as a tree (shared subexpressions counted at every use), without
    recursion; `memo` maps subexpressions to their sizes."""
    stack = [expr]
    while stack:
        node = stack[-1]
        if node in memo:
            stack.pop()
            continue
        pending = [a for a in node.args if a not in memo]
        if pending:
            stack += pending
            continue
        memo[node] = 1 + sum(memo[a] for a in node.args)
        stack.pop()
    return memo[expr]


class Converter:
    """Converts expressions given how to resolve a name and how to resolve a neural-function call; `functions`
    (name -> hodec.model.Function) are inlined where they are called."""

    def __init__(self, resolve_name: Callable[[str], sympy.Expr],
                 resolve_call: Callable[[str, tuple], sympy.Expr] | None = None, functions: dict | None = None):
        self.resolve_name = resolve_name
        self.resolve_call = resolve_call
        self.functions = functions or {}
        self.inlined: dict = {}  # (function, converted arguments) -> its inlined body, shared with nested bodies
        self.sizes: dict = {}  # memo of tree_size
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
        return self._operation(e.op, self(e.left), self(e.right))

    def _operation(self, op: str, left, right):
        value = {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                 "/": lambda: left / right, "^": lambda: left ** right}[op]()
        if op == "^" and right == 0:
            return value  # x^0 is 1 for every x, NaN included (IEEE pow), as SymPy has it
        return self._as_written(value, (left, right), written(op, left, right))

    def _Compare(self, e):
        return _COMPARE[e.op](self(e.left), self(e.right))

    def _Logic(self, e):
        if e.op == "not":
            return sympy.Not(self(e.left))
        return (sympy.And if e.op == "and" else sympy.Or)(self(e.left), self(e.right))

    def _If(self, e):
        return piecewise(self(e.then), self(e.cond), self(e.orelse))

    def _Call(self, e):
        args = tuple(self(a) for a in e.args)
        if e.func == "piecewise":
            return piecewise(*args)
        if e.func in _CONDITIONS:  # like and/or/not, whose operands' domains are not tracked either
            return _CONDITIONS[e.func](*args)
        if e.func == "pow":
            return self._operation("^", *args)
        if e.func == "root":  # root(n, x), the degree first as in SBML: x^(1/n)
            degree, x = args
            return self._operation("^", x, self._operation("/", sympy.S.One, degree))
        if e.func in _FUNCTIONS:
            return self._as_written(_FUNCTIONS[e.func](*args), args, written(e.func, *args), function=True)
        if e.func in self.functions:
            return self._inline(self.functions[e.func], args, e)
        return self.resolve_call(e.func, args)  # a neural call: its arguments are computed as written

    def _inline(self, function, args: tuple, call: ast.Call):
        """A user function's body with its arguments bound to the converted arguments (the body reads only them
        and params: the checks), converted as written; an error inside it is reported at the call."""
        key = (function.name, args)
        if key in self.inlined:  # once per function and arguments: f(x) = g(x) + g(x) does not double
            return self.inlined[key]
        bound = dict(zip(function.args, args))
        body = Converter(lambda name: bound[name] if name in bound else self.resolve_name(name), self.resolve_call,
                         self.functions)
        body.inlined, body.sizes = self.inlined, self.sizes
        try:
            value = body(function.body)
        except _InBody as err:  # from a call inside the body: reported at the outermost call, as it was worded
            raise _InBody([Diagnostic(err.diagnostics[0].message, call.span)]) from None
        except HodecError as err:
            raise _InBody([Diagnostic(f"{err.diagnostics[0].message} (in the body of '{function.name}', with "
                                      f"the arguments of this call)", call.span)]) from None
        size = tree_size(value, self.sizes)
        if size > MAX_INLINED:
            raise _InBody([Diagnostic(f"this call expands to more than {MAX_INLINED:,} operations ({size:,} in "
                                      f"'{function.name}'): every call inlines its function's body and the calls "
                                      f"in it; compute a value used more than once with a let", call.span)])
        self.inlined[key] = value
        return value

    def _as_written(self, value, operands: tuple, own: frozenset, function: bool = False):
        """The value, undefined wherever the operands or the operation as written are (see domains.py)."""
        expected = own.union(*(restrictions(o, self.restrictions) for o in operands))
        return keep_domain(value, expected, self.restrictions, function)
