"""Where a formula is defined, kept through SymPy's automatic rewriting (issue 14: `exp(log(A))`, `sqrt(A)^2`,
`A/A` and `0*log(A)` become A, A, 1 and 0, numbers where the formula as written is NaN).

A formula is undefined where one of its *restrictions* fails: log(u) needs u > 0, a fractional power u^p needs
u ≥ 0, a division by u needs u ≠ 0. The converter compares, at every node, the restrictions of what was written
(its operands' and its own) with those of what SymPy built; each one SymPy dropped comes back as `domain(r)`: 0
wherever r is defined and NaN elsewhere (printed `0*(r)`), added to the result. The generated code then computes
NaN exactly where the written formula does (IEEE semantics), and the simplified value everywhere else.
"""
from __future__ import annotations

import sympy

# A restriction is (kind, u): kind "positive" (u > 0), "nonneg" (u >= 0) or "nonzero" (u != 0).
_IMPLIED_BY = {"positive": ("positive",), "nonneg": ("nonneg", "positive"), "nonzero": ("nonzero", "positive")}
_PROVEN = {"positive": "is_positive", "nonneg": "is_nonnegative", "nonzero": "is_nonzero"}


class domain(sympy.Function):
    """0 where its argument is defined, NaN where it is not: keeps a dropped restriction in an expression."""

    @classmethod
    def eval(cls, u):
        if u.is_number and u.is_finite:
            return sympy.S.Zero
        return None

    def _eval_is_extended_real(self):
        return True

    def fdiff(self, argindex=1):
        return domain(self.args[0])  # 0 where defined (the derivative's other factors are finite there), else NaN


def restrictions(expr, memo: dict) -> frozenset:
    """The restrictions of an expression, its subexpressions' included (memoised by subexpression)."""
    if expr not in memo:
        memo[expr] = _own(expr).union(*(restrictions(a, memo) for a in expr.args))
    return memo[expr]


def written(kind: str, *args) -> frozenset:
    """The restrictions that a written operation adds itself: 'log', 'log10', 'sqrt', '/' (a division by args[1]),
    '^', 'quotient' and 'rem' (a division by args[1]), and 'factorial' (u >= 0: torch's exp(lgamma(u + 1)) would
    give |Γ(u + 1)| below, so it is always kept as a domain term)."""
    half = sympy.S.Half
    node = {"log": lambda u: sympy.log(u, evaluate=False), "sqrt": lambda u: sympy.Pow(u, half, evaluate=False),
            "/": lambda a, b: sympy.Pow(b, -1, evaluate=False), "^": lambda a, b: sympy.Pow(a, b, evaluate=False),
            "factorial": lambda u: sympy.Pow(u, half, evaluate=False)}
    node.update(log10=node["log"], quotient=node["/"], rem=node["/"])
    return _own(node[kind](*args)) if kind in node else frozenset()


def keep_domain(value, expected: frozenset, memo: dict, function: bool = False):
    """`value` plus a domain() term for each expected restriction that its own restrictions no longer imply.

    A dropped log(u) is NaN where u < 0; at u = 0 it is -inf, which arithmetic turns into NaN (0*log(u),
    log(u) - log(u)) but a `function` of it may not (exp(log(u)) is 0 there): so after arithmetic the term is
    0*log(u), NaN unless log(u) is finite, and after a function 0*sqrt(u), NaN only where u < 0."""
    have = restrictions(value, memo)
    dropped = [r for r in expected if not any((kind, r[1]) in have for kind in _IMPLIED_BY[r[0]])]
    guard = {"positive": sympy.sqrt if function else sympy.log, "nonneg": sympy.sqrt, "nonzero": lambda u: 1 / u}
    for kind, u in sorted(dropped, key=sympy.default_sort_key):
        value = value + domain(guard[kind](u))
    return value


# Inverse functions defined on part of the real line, as restrictions of their argument u: SymPy drops them in
# cosh(acosh(u)) = u, sin(asin(u)) = u, sec(asec(u)) = u, ...
_PARTIAL = {
    sympy.asin: (("nonneg", lambda u: 1 - u ** 2),), sympy.acos: (("nonneg", lambda u: 1 - u ** 2),),
    sympy.acosh: (("nonneg", lambda u: u - 1),), sympy.atanh: (("positive", lambda u: 1 - u ** 2),),
    sympy.asec: (("nonneg", lambda u: u ** 2 - 1),), sympy.acsc: (("nonneg", lambda u: u ** 2 - 1),),
    sympy.acoth: (("positive", lambda u: u ** 2 - 1),),
    sympy.asech: (("positive", lambda u: u), ("nonneg", lambda u: 1 - u)),
}


def _own(expr) -> frozenset:
    if isinstance(expr, sympy.log):
        return frozenset(_restriction("positive", expr.args[0]))
    if expr.func in _PARTIAL:
        return frozenset().union(*(_restriction(kind, of(expr.args[0])) for kind, of in _PARTIAL[expr.func]))
    own: set = set()
    if isinstance(expr, sympy.Pow) and expr.exp.is_number:
        if not expr.exp.is_integer:
            own |= _restriction("nonneg", expr.base)
        if expr.exp.is_negative:
            own |= _restriction("nonzero", expr.base)
    return frozenset(own)


def _restriction(kind: str, u) -> set:
    """The normalised restrictions that (kind, u) stands for: a positive numeric factor dropped, a product that
    must be nonzero split into its factors, and what SymPy proves left out (or a number: constants are checked
    by the constant folder)."""
    if kind == "nonzero":
        factors = []
        for f in sympy.Mul.make_args(u):
            while isinstance(f, sympy.Pow) and f.exp.is_number and f.exp.is_positive:
                f = f.base
            factors.append(f)
    else:
        coefficient, rest = u.as_coeff_Mul()
        factors = [rest if coefficient.is_positive else u]
    return {(kind, f) for f in factors if not f.is_number and getattr(f, _PROVEN[kind]) is not True}
