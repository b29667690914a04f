"""SymPy → torch source: a PythonCodePrinter that overrides only what differs for tensors.

Symbols are printed through an explicit table (Symbol → code), never from their names, so a user's name cannot
reach generated code except as a prefixed identifier chosen by the code generator.
"""
from __future__ import annotations

import math

import sympy
from sympy.printing.pycode import PythonCodePrinter, _print_known_func
from sympy.printing.precedence import precedence
from sympy.printing.str import StrPrinter

_TORCH_FUNCTIONS = {
    "exp": "torch.exp", "log": "torch.log", "sqrt": "torch.sqrt", "Abs": "torch.abs", "sin": "torch.sin",
    "cos": "torch.cos", "tan": "torch.tan", "tanh": "torch.tanh", "floor": "torch.floor", "ceiling": "torch.ceil",
    "sigmoid": "torch.sigmoid", "softplus": "torch.nn.functional.softplus", "asin": "torch.asin",
    "acos": "torch.acos", "atan": "torch.atan", "sinh": "torch.sinh", "cosh": "torch.cosh", "asinh": "torch.asinh",
    "acosh": "torch.acosh", "atanh": "torch.atanh",
}
# torch has no sec, csc, ... nor their inverses: the reciprocal of the function it has, and the inverse function
# of the reciprocal (asec(x) = acos(1/x); SymPy's acot(x) = atan(1/x) too, in (-pi/2, pi/2]).
_RECIPROCALS = {"sec": "torch.cos", "csc": "torch.sin", "cot": "torch.tan", "sech": "torch.cosh",
                "csch": "torch.sinh", "coth": "torch.tanh"}
_OF_RECIPROCAL = {"asec": "torch.acos", "acsc": "torch.asin", "acot": "torch.atan", "asech": "torch.acosh",
                  "acsch": "torch.asinh", "acoth": "torch.atanh"}


_PRODUCT = precedence(sympy.Mul(2, 3, evaluate=False))


def float_literal(value: float) -> str:
    if value != value:
        return 'float("nan")'
    if value in (float("inf"), float("-inf")):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return repr(float(value))


class TorchPrinter(PythonCodePrinter):
    """Prints one expression; `names` maps each leaf Symbol to the code that reads it.

    `like` names a tensor in scope whose dtype and device a purely numeric branch of torch.where must follow.
    """

    _kf = _TORCH_FUNCTIONS
    _print_sigmoid = _print_known_func
    _print_softplus = _print_known_func
    _print_Abs = _print_known_func

    def __init__(self, names: dict, like: str = "y"):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self.names = names
        self.like = like

    def _print(self, expr, **kwargs):
        # A numeric subexpression that SymPy keeps symbolic (exp(2), sqrt(3)) becomes one literal.
        if isinstance(expr, sympy.Expr) and expr.is_number and not expr.is_Number:
            value = complex(expr.evalf(17))
            return float_literal(value.real if value.imag == 0 else float("nan"))
        return super()._print(expr, **kwargs)

    def _print_Symbol(self, expr):
        return self.names[expr]

    _print_Dummy = _print_Symbol

    def _print_Integer(self, expr):
        # torch takes a Python int only within int64 (a larger one raises OverflowError mid-forward); beyond that it
        # goes in as the nearest double, as the C printer writes it (past 2**53 a double has no odd integers)
        value = int(expr)
        if abs(value) < 2 ** 63:
            return str(value)
        try:
            return float_literal(float(value))
        except OverflowError:  # past the double range (100 ** 200 folded by SymPy): the infinity a double gives
            return float_literal(math.inf if value > 0 else -math.inf)

    def _print_Float(self, expr):
        return float_literal(float(expr))

    def _print_Rational(self, expr):
        return float_literal(float(expr))

    _print_Half = _print_Rational

    def _print_NaN(self, expr):
        return float_literal(float("nan"))

    def _print_Infinity(self, expr):
        return float_literal(float("inf"))

    def _print_NegativeInfinity(self, expr):
        return float_literal(float("-inf"))

    _print_ComplexInfinity = _print_NaN

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent == sympy.S.Half:
            return f"torch.sqrt({self._print(base)})"
        if exponent == -sympy.S.Half:
            return f"1 / torch.sqrt({self._print(base)})"
        if exponent == -1:
            return f"1 / {self.parenthesize(base, precedence(expr))}"
        # SymPy's parenthesize(strict=False) brackets an operand that binds as loosely as the operator or looser:
        # a base that is itself a power must be, since Python's ** is right-associative ((x**3)**y is not x**3**y)
        return f"{self.parenthesize(base, precedence(expr), strict=False)} ** " \
               f"{self.parenthesize(exponent, precedence(expr), strict=False)}"

    def _print_Function(self, expr):
        # the reciprocal trigonometric and hyperbolic functions and their inverses (see _RECIPROCALS); a reciprocal
        # is parenthesised, as SymPy takes a function for an atom (x ** sec(y), 2 / sec(y))
        name = type(expr).__name__
        if name in _RECIPROCALS:
            return f"(1 / {_RECIPROCALS[name]}({self._print(expr.args[0])}))"
        if name in _OF_RECIPROCAL:
            return f"{_OF_RECIPROCAL[name]}({self._reciprocal(expr.args[0])})"
        return super()._print_Function(expr)

    def _reciprocal(self, expr) -> str:
        return f"1 / {self._divisor(expr)}"

    def _divisor(self, expr) -> str:
        # bracketed unless it binds tighter than a product (1 / (0.21*s), not 1 / 0.21*s)
        return self.parenthesize(expr, _PRODUCT, strict=False)

    def _print_factorial(self, expr):
        # Γ(x + 1) (the Converter keeps x >= 0 as a domain term: below it exp(lgamma) would be |Γ|); torch has no
        # gamma, and PythonCodePrinter's math.factorial takes no tensor
        return f"torch.exp(torch.lgamma({self._print(expr.args[0] + 1)}))"

    def _print_gamma(self, expr):
        # from the derivative of factorial(x), Γ(x + 1) ψ(x + 1), where x + 1 >= 1: Γ > 0 there
        return f"torch.exp(torch.lgamma({self._print(expr.args[0])}))"

    def _print_polygamma(self, expr):
        order, x = expr.args
        if order == 0:
            return f"torch.special.digamma({self._print(x)})"
        return f"torch.special.polygamma({self._print(order)}, {self._print(x)})"

    def _print_quotient(self, expr):
        # SBML's quotient rounds toward zero (Python's // and torch.div's floor mode round down)
        a, b = expr.args
        return f"torch.trunc({self.parenthesize(a, _PRODUCT)} / {self._divisor(b)})"

    def _print_rem(self, expr):
        # the remainder with the sign of the dividend (C's fmod, as SBML's rem); torch.fmod needs a tensor first
        a, b = expr.args
        dividend = f"{self.like}.new_tensor({self._print(a)})" if a.is_number else self._print(a)
        return f"torch.fmod({dividend}, {self._print(b)})"

    def _print_domain(self, expr):
        # 0 where the argument is finite, NaN where it is NaN or infinite (IEEE: 0*inf is NaN)
        return f"0*({self._print(expr.args[0])})"

    def _print_Min(self, expr):
        return self._fold(expr.args, "torch.minimum", "max")

    def _print_Max(self, expr):
        return self._fold(expr.args, "torch.maximum", "min")

    def _fold(self, args, func: str, clamp_side: str):
        numbers = [a for a in args if a.is_number]
        tensors = [self._print(a) for a in args if not a.is_number]
        code = tensors[0]
        for other in tensors[1:]:
            code = f"{func}({code}, {other})"
        for n in numbers:  # SymPy leaves at most one, but clamp each to be safe
            code = f"torch.clamp({code}, {clamp_side}={self._print(n)})"
        return code

    def _print_Piecewise(self, expr):
        *pieces, (code_value, default_cond) = expr.args
        if default_cond != sympy.true:
            raise ValueError("Piecewise without a default branch")  # cannot come from if(c, a, b)
        code, code_is_number = self._print(code_value), code_value.is_number
        for value, cond in reversed(pieces):
            value_code = self._print(value)
            if value.is_number and code_is_number:
                # torch.where of two Python numbers computes in the default dtype: anchor one to a tensor.
                value_code = f"{self.like}.new_tensor({value_code})"
            code, code_is_number = f"torch.where({self._print(cond)}, {value_code}, {code})", False
        return code

    def _print_Relational(self, expr):
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

    def _print_And(self, expr):
        return self._logical(expr.args, "torch.logical_and")

    def _print_Or(self, expr):
        return self._logical(expr.args, "torch.logical_or")

    def _print_Xor(self, expr):
        # PythonCodePrinter writes '^', a bitwise operator: the logical function says what is meant
        return self._logical(expr.args, "torch.logical_xor")

    def _print_Implies(self, expr):
        # a -> b is (not a) or b; the base printer has no Implies
        a, b = expr.args
        return f"torch.logical_or(torch.logical_not({self._print(a)}), {self._print(b)})"

    def _logical(self, args, func):
        codes = [self._print(a) for a in sorted(args, key=sympy.default_sort_key)]
        code = codes[0]
        for other in codes[1:]:
            code = f"{func}({code}, {other})"
        return code

    # Values are real, but SymPy cannot always tell (abs(exp(x^k)) becomes exp(re(x^k))): read re, im, arg and
    # conjugate with real arguments, where a NaN stays a NaN.
    def _print_re(self, expr):
        return self._print(expr.args[0])

    _print_conjugate = _print_re

    def _print_im(self, expr):
        return f"(0*{self.parenthesize(expr.args[0], _PRODUCT)})"

    def _print_arg(self, expr):
        return self._print(sympy.atan2(0, expr.args[0], evaluate=False))

    def _print_atan2(self, expr):
        # From the derivative of abs(f) where SymPy cannot tell that f is real (abs(x^(1/3))): torch.atan2 takes
        # tensors only, so a numeric argument is made one.
        y, x = (f"{self.like}.new_tensor({self._print(a)})" if a.is_number else self._print(a) for a in expr.args)
        return f"torch.atan2({y}, {x})"

    def _print_ITE(self, expr):
        # SymPy folds a condition that compares with an if(...) into ITE(c, a, b); the base printer would rewrite it
        # to a Piecewise of booleans, which SymPy itself then fails to build.
        cond, then, orelse = (self._print(a) for a in expr.args)
        return f"torch.where({cond}, {then}, {orelse})"

    def _print_Not(self, expr):
        return f"torch.logical_not({self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr):
        return f"torch.ones_like({self.like}, dtype=torch.bool)"

    def _print_BooleanFalse(self, expr):
        return f"torch.zeros_like({self.like}, dtype=torch.bool)"


def print_expr(expr, names: dict, like: str = "y") -> str:
    return TorchPrinter(names, like).doprint(expr)


class _FormulaPrinter(StrPrinter):
    """SymPy's plain notation with each leaf under its name in the spec: the formulas of comments."""

    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def _print_Symbol(self, expr):
        return self.names[expr]

    _print_Dummy = _print_Symbol

    def _print_Float(self, expr):
        return repr(float(expr))


def formula(expr, names: dict) -> str:
    """An expression as the spec would write it, for a comment (names are identifiers: nothing can escape it)."""
    return _FormulaPrinter(names).doprint(expr)
