"""Symbolic model → C source of its right-hand side, state Jacobian, time and parameter derivatives, for the native
solvers (hodec/solvers/native compiles it together with its C solver loops into one shared library).

The source defines HODEC_N (states), HODEC_P (params, in the order of the generated module's parameter_values()),
HODEC_U (inputs, each a scalar), HODEC_AUTONOMOUS (1 when f reads neither t nor an input), HODEC_HAS_DFDP (1) and
four functions:

    static void hodec_rhs(double t, const double *y, const double *p, const double *u, double *dy);
    static void hodec_jac(double t, const double *y, const double *p, const double *u, double *J);
        J[i*HODEC_N + j] = d dy_i / d y_j, row-major, every entry written
    static void hodec_dfdt(double t, const double *y, const double *p, const double *u, const double *du, double *df);
        df = ∂f/∂t + Σ_k ∂f/∂u_k · du[k], the total time derivative at fixed y (du: the inputs' time derivatives)
    void hodec_dfdp(double t, const double *y, const double *p, const double *u, double *D);
        D[i*HODEC_P + k] = d dy_i / d p_k, for forward sensitivities (external: the library exports it)

plus `static` helpers prefixed `hodec_m_`. It computes what the generated torch module computes (forward,
jacobian(), and autograd of forward in t and p), expression for expression: the same SymPy expressions, lets as locals,
the flux structure (each flux once, accumulated through the stoichiometry, divided by compartment sizes), the
state Jacobian's entries from symbolic/state_jacobian.py and the printer's semantics of TorchPrinter. Names in the
C are generated identifiers (y[i], p[i], u[k], t, l<let>, d<derivative>, x<common subexpression>, f/g/h<output>);
a user's names and doc strings appear only in comments, sanitised so that they cannot end a comment or a line.

A model the C cannot express exactly gets a reason instead (neural slots, sparsity gates, events, a function the
printer has no C form for): never a silently different model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

import sympy
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import PRECEDENCE

from ..symbolic.dependencies import Dependencies
from ..symbolic.gates import gate_table
from ..symbolic.jacobian import ChainRule
from ..symbolic.lower import Leaf, SymbolicModel, flux_scales
from ..symbolic.state_jacobian import state_jacobian
from . import native_slots as slots
from .vectorize import _with_placeholders, shape_key

# SymPy function name -> the C99 <math.h> function with torch's semantics on doubles (NaN in, NaN out).
_C_FUNCTIONS = {
    "exp": "exp", "log": "log", "Abs": "fabs", "sin": "sin", "cos": "cos", "tan": "tan", "tanh": "tanh",
    "floor": "floor", "ceiling": "ceil", "asin": "asin", "acos": "acos", "atan": "atan", "sinh": "sinh",
    "cosh": "cosh", "asinh": "asinh", "acosh": "acosh", "atanh": "atanh", "atan2": "atan2",
}
# As TorchPrinter: sec, csc, ... as reciprocals of the functions C has, and their inverses of the reciprocal.
_RECIPROCALS = {"sec": "cos", "csc": "sin", "cot": "tan", "sech": "cosh", "csch": "sinh", "coth": "tanh"}
_OF_RECIPROCAL = {"asec": "acos", "acsc": "asin", "acot": "atan", "asech": "acosh", "acsch": "asinh",
                  "acoth": "atanh"}

# The helpers a printed expression may call, each defined once in the source when used (in this order).
_HELPERS = {
    "hodec_m_sigmoid": "static double hodec_m_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }",
    # torch.nn.functional.softplus with its defaults (beta 1, threshold 20): x itself above the threshold
    "hodec_m_softplus": "static double hodec_m_softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }",
    # torch.minimum / torch.maximum / torch.clamp propagate NaN (C's fmin and fmax return the other argument)
    "hodec_m_min": "static double hodec_m_min(double a, double b) { return (a < b || a != a) ? a : b; }",
    "hodec_m_max": "static double hodec_m_max(double a, double b) { return (a > b || a != a) ? a : b; }",
    # torch.special.digamma: -inf at 0 (signed as torch), NaN at the negative integers, the reflection formula
    # below 0, the recurrence up to 10, then the asymptotic series (as Cephes' psi, which torch follows)
    "hodec_m_digamma": """static double hodec_m_digamma(double x)
{
    const double pi = 3.14159265358979323846;
    double r = 0.0, z;
    if (x == 0.0) return copysign(INFINITY, -x);
    if (x < 0.0) {
        if (x == trunc(x)) return NAN;
        return hodec_m_digamma(1.0 - x) - pi / tan(pi * x);
    }
    while (x < 10.0) {
        r -= 1.0 / x;
        x += 1.0;
    }
    z = 1.0 / (x * x);
    return r + log(x) - 0.5 / x - z * (1.0 / 12 - z * (1.0 / 120 - z * (1.0 / 252 - z * (1.0 / 240 - z * (
        1.0 / 132 - z * (691.0 / 32760 - z / 12))))));
}""",
}

_MUL = PRECEDENCE["Mul"]


class Unprintable(Exception):
    """An expression the C printer has no exact form for: the model cannot go native (the message says why)."""


def c_float(value: float) -> str:
    if value != value:
        return "NAN"
    if value in (float("inf"), float("-inf")):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    return repr(float(value))  # the shortest text that reads back as the same double, always with . or e


def comment(text: str) -> str:
    """A C comment of arbitrary text: characters outside printable ASCII (newlines included) escaped as Python
    writes them, and a space between any '*' and '/' that touch, so the text can neither end the comment nor
    open a nested one."""
    printable = "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in text)
    return "/* " + re.sub(r"\*(?=/)|/(?=\*)", lambda m: m.group() + " ", printable) + " */"


class CPrinter(C99CodePrinter):
    """Prints one expression as C99 over doubles; `names` maps each leaf Symbol to the code that reads it. The code
    computes what TorchPrinter's computes, NaN where torch gives NaN; `helpers` collects the hodec_m_ helpers the
    printed code calls. What it cannot print raises Unprintable."""

    def __init__(self, names: dict):
        super().__init__({"strict": True})
        self.names = names
        self.helpers: set = set()

    def _print(self, expr, **kwargs):
        # A numeric subexpression that SymPy keeps symbolic (exp(2), pi, log(10)) becomes one literal (C99 has no
        # M_PI, M_LN10, which C99CodePrinter would write).
        # (a slot called on numbers is a number to SymPy, but only C computes it)
        if isinstance(expr, sympy.Expr) and expr.is_number and not expr.is_Number and not expr.has(slots.SlotCall):
            value = complex(expr.evalf(17))
            return c_float(value.real if value.imag == 0 else float("nan"))
        return super()._print(expr, **kwargs)

    def parenthesize(self, item, level, strict=False):
        # a nonnegative number is an atom in C (SymPy ranks a Rational as a product, and would write (0.5)*x)
        if isinstance(item, sympy.Number) and item.is_nonnegative:
            return self._print(item)
        return super().parenthesize(item, level, strict)

    def _print_not_supported(self, expr):
        # strict: never the base printer's partial code with a comment in it
        raise Unprintable(f"the C printer has no form for {type(expr).__name__}")

    def _print_Symbol(self, expr):
        if expr not in self.names:
            raise Unprintable(f"the C source cannot read '{expr}'")
        return self.names[expr]

    _print_Dummy = _print_Symbol

    def _print_SlotCall(self, expr):
        # a function slot's value: its MLP (native_slots) on the arguments, its weights found through p
        k, *args = expr.args
        return f"hodec_m_call{int(k)}(p, {', '.join(self._print(a) for a in args)})"

    def _print_Integer(self, expr):
        # as a double: C's integer division would truncate 1/2
        return c_float(float(expr))

    def _print_Float(self, expr):
        return c_float(float(expr))

    def _print_Rational(self, expr):
        return c_float(float(expr))

    _print_Half = _print_Rational

    def _print_NaN(self, expr):
        return "NAN"

    _print_ComplexInfinity = _print_NaN

    def _print_Infinity(self, expr):
        return "INFINITY"

    def _print_NegativeInfinity(self, expr):
        return "(-INFINITY)"

    def _print_Pow(self, expr):
        # torch's pow kernel special-cases these exponents (x*x, x*x*x, 1/(x*x), 1/x, sqrt, 1/sqrt); the rest is
        # pow, as torch's std::pow (never cbrt, which C99CodePrinter writes for 1/3: torch's pow(-8, 1/3) is NaN).
        # Each form is bracketed: CodePrinter's _print_Mul takes a Pow for an atom.
        base, exponent = expr.args
        b = self.parenthesize(base, _MUL, strict=False)
        if exponent == sympy.S.Half:
            return f"sqrt({self._print(base)})"
        if exponent == -sympy.S.Half:
            return f"(1.0/sqrt({self._print(base)}))"
        forms = {2: f"({b}*{b})", 3: f"({b}*{b}*{b})", -1: f"(1.0/{b})", -2: f"(1.0/({b}*{b}))"}
        if exponent.is_Integer and int(exponent) in forms:
            return forms[int(exponent)]
        return f"pow({self._print(base)}, {self._print(exponent)})"

    def _print_math_func(self, expr, nest=False, known=None):
        # only the functions of _C_FUNCTIONS (C99CodePrinter knows more, erf, exp2, ..., which hodec never makes)
        name = type(expr).__name__
        if name not in _C_FUNCTIONS:
            raise Unprintable(f"the C printer has no form for {name}")
        return f"{_C_FUNCTIONS[name]}({', '.join(self._print(a) for a in expr.args)})"

    _print_Abs = _print_math_func

    def _print_Function(self, expr):
        # the reciprocal trigonometric and hyperbolic functions and their inverses, as TorchPrinter has them
        name = type(expr).__name__
        if name in _RECIPROCALS:
            return f"(1.0/{_RECIPROCALS[name]}({self._print(expr.args[0])}))"
        if name in _OF_RECIPROCAL:
            return f"{_OF_RECIPROCAL[name]}(1.0/{self.parenthesize(expr.args[0], _MUL, strict=False)})"
        return self._print_math_func(expr)

    def _helper(self, name: str, *args) -> str:
        self.helpers.add(name)
        return f"{name}({', '.join(self._print(a) for a in args)})"

    def _print_sigmoid(self, expr):
        return self._helper("hodec_m_sigmoid", *expr.args)

    def _print_softplus(self, expr):
        return self._helper("hodec_m_softplus", *expr.args)

    def _print_factorial(self, expr):
        # Γ(x + 1) as TorchPrinter's exp(lgamma(x + 1)) (x >= 0 is kept by a domain term)
        return f"exp(lgamma({self._print(expr.args[0] + 1)}))"

    def _print_gamma(self, expr):
        # from the derivative of factorial(x), Γ(x + 1) ψ(x + 1) with x + 1 >= 1; C99CodePrinter writes tgamma
        return f"exp(lgamma({self._print(expr.args[0])}))"

    def _print_polygamma(self, expr):
        # ψ itself, from the derivative of factorial; higher orders never arise from one derivative
        order, x = expr.args
        if order != 0:
            raise Unprintable("the C printer has no form for polygamma of order > 0")
        return self._helper("hodec_m_digamma", x)

    def _print_quotient(self, expr):
        # SBML's quotient rounds toward zero, as TorchPrinter's torch.trunc(a / b)
        a, b = (self._print(x) for x in expr.args)
        return f"trunc(({a})/({b}))"

    def _print_rem(self, expr):
        # the remainder with the sign of the dividend: C's fmod is torch.fmod
        return f"fmod({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_domain(self, expr):
        # 0 where the argument is finite, NaN where it is NaN or infinite (IEEE: 0*inf is NaN), as TorchPrinter
        return f"(0.0*({self._print(expr.args[0])}))"

    def _print_Min(self, expr):
        return self._fold(expr.args, "hodec_m_min")

    def _print_Max(self, expr):
        return self._fold(expr.args, "hodec_m_max")

    def _fold(self, args, helper: str) -> str:
        # NaN-propagating, as torch.minimum/maximum and clamp (C's fmin/fmax, which C99CodePrinter writes, are not)
        self.helpers.add(helper)
        code = self._print(args[0])
        for other in args[1:]:
            code = f"{helper}({code}, {self._print(other)})"
        return code

    def _print_Piecewise(self, expr):
        # nested conditional expressions, as TorchPrinter's nested torch.where
        *pieces, (value, default) = expr.args
        if default != sympy.true:
            raise Unprintable("a piecewise expression without a default branch")
        code = self._print(value)
        for value, cond in reversed(pieces):
            code = f"({self._print(cond)} ? {self._print(value)} : {code})"
        return code

    def _print_ITE(self, expr):
        # SymPy folds a condition that compares with an if(...) into ITE(c, a, b)
        cond, then, orelse = (self._print(a) for a in expr.args)
        return f"({cond} ? {then} : {orelse})"

    def _print_Relational(self, expr):
        # always bracketed: C's == binds more loosely than <, and -Wall asks for brackets around && inside ||
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

    def _print_And(self, expr):
        return self._logical(expr.args, "&&")

    def _print_Or(self, expr):
        return self._logical(expr.args, "||")

    def _print_Xor(self, expr):
        # C has no logical xor: two truth values differ
        return self._logical(expr.args, "!=", truth=True)

    def _print_Implies(self, expr):
        # a -> b is (not a) or b; the base printer has no Implies
        a, b = expr.args
        return f"(!{self._print(a)} || {self._print(b)})"

    def _logical(self, args, op: str, truth: bool = False) -> str:
        codes = [self._print(a) for a in sorted(args, key=sympy.default_sort_key)]
        if truth:
            codes = [f"(!!{c})" for c in codes]
        code = codes[0]
        for other in codes[1:]:
            code = f"({code} {op} {other})"
        return code

    def _print_Not(self, expr):
        return f"(!{self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr):
        return "1"

    def _print_BooleanFalse(self, expr):
        return "0"

    # Values are real, but SymPy cannot always tell: re, im, arg and conjugate of real arguments, as TorchPrinter
    def _print_re(self, expr):
        return self._print(expr.args[0])

    _print_conjugate = _print_re

    def _print_im(self, expr):
        return f"(0.0*({self._print(expr.args[0])}))"

    def _print_arg(self, expr):
        return f"atan2(0.0, {self._print(expr.args[0])})"


# ---------------------------------------------------------------- the source
def unsupported(sm: SymbolicModel, gates: bool = False) -> Optional[str]:
    """Why the model cannot go native as a whole (what the printer cannot express is found while printing)."""
    if gates and gate_table(sm):
        return "sparsity gates (a module compiled with gates)"
    if sm.events:
        return f"events (line {sm.events[0].line}: {sm.events[0].text})"
    return None


def native_source(sm: SymbolicModel, gates: bool = False) -> tuple[Optional[str], Optional[str]]:
    """(C source, None), or (None, the reason the model cannot go native). `gates`: the module is compiled with
    sparsity gates (native only when the model has none)."""
    reason = unsupported(sm, gates)
    if reason is not None:
        return None, reason
    try:
        return _source(sm), None
    except Unprintable as err:
        return None, str(err)


def _source(sm: SymbolicModel) -> str:
    helpers: set = set()
    m = sm.model
    rhs = _rhs(sm, helpers)
    if m.slots:  # derivatives by differences (native_slots); the slots' MLPs before the functions that call them
        derivatives = slots.DIFFERENCES
        networks = slots.functions(sm, comment)
        helpers |= {name for name in slots.NEEDS if name in "\n".join(networks)}
    else:
        derivatives = _jac(sm, helpers) + [""] + _dfdt(sm, helpers) + [""] + _dfdp(sm, helpers)
        networks = []
    reads_time = Dependencies(sm).reads_kind(sympy.Tuple(*(f.rate for f in sm.fluxes)), {"time", "input"}) \
        or slots.reads_time(sm)
    weights = sum(slots.weight_count(s) for s in m.slots)
    head = [comment(f"{m.name}: {m.doc or 'a model compiled by hodec'}"),
            comment(f"Generated by hodec from {m.filename}: do not edit; change the .hode spec and compile it again."),
            comment("y: states, p: params (the order of parameters_table), then the neural slots' weights, u: "
                    "inputs, t: time"),
            "#include <math.h>"] + (["#include <stdlib.h>", "#include <string.h>"] if m.slots else []) + [
            "", f"#define HODEC_N {len(sm.state_names)}", f"#define HODEC_P {len(sm.param_order)}",
            f"#define HODEC_W {weights}", f"#define HODEC_U {len(m.inputs)}",
            f"#define HODEC_AUTONOMOUS {0 if reads_time else 1}", "#define HODEC_HAS_DFDP 1", ""]
    used = [_HELPERS[name] + "\n" for name in _HELPERS if name in helpers]
    networks = networks + [""] if networks else []
    return "\n".join(head + used + networks + rhs + [""] + derivatives) + "\n"


# Straight-line code of thousands of statements takes cc -O2 minutes (its register allocation and dead-store
# elimination grow faster than the length of a function: 105 s for the N=1000 network's functions), so outputs of
# one shape this numerous are computed by one loop over index tables, and so is an accumulation this long.
LOOP_MIN = 256
ACCUMULATE_LOOP = 2048
_ARRAYS = {"state": "y", "param": "p", "input": "u", "rate": "du"}  # leaves read from an array argument


def _names(model: SymbolicModel) -> dict:
    """Leaf Symbol → the C that reads it; the kinds a native model cannot have (neural leaves) are left out."""
    names = {sym: f"{_ARRAYS[leaf.kind]}[{leaf.index}]" for sym, leaf in model.leaves.items() if leaf.kind in _ARRAYS}
    names.update({sym: f"{leaf.kind[0]}{leaf.index}" for sym, leaf in model.leaves.items()
                  if leaf.kind in ("let", "derivative")})
    names.update({sym: "t" for sym, leaf in model.leaves.items() if leaf.kind == "time"})
    slot = {s.name: k for k, s in enumerate(model.model.slots)}  # a residual slot's outputs: native_slots' o<k>
    names.update({sym: f"o{slot[leaf.source]}[{leaf.index}]" for sym, leaf in model.leaves.items()
                  if leaf.kind == "out"})
    return names


def _body(model: SymbolicModel, outputs: list, array: str, labels: list, helpers: set) -> list:
    """Statements computing `outputs` (expressions over model's leaves) into the local array[0], array[1], ...
    (each labelled): the lets and derivative leaves they read and the common subexpressions of all of them
    (SymPy's CSE, temporaries x0, x1, ...) in dependency order, then the outputs, numerous ones of one shape by
    loops."""
    if not outputs:
        return []
    loops, singles = _loops(model, outputs)
    deps = Dependencies(model)
    reads = deps.reads(*(outputs[k] for k in singles)) if singles else frozenset()
    lets = [(sym, value) for sym, value in model.lets if sym in reads]
    temps = sympy.numbered_symbols("x", cls=sympy.Dummy, real=True)
    replacements, reduced = sympy.cse([v for _, v in lets] + [outputs[k] for k in singles], symbols=temps,
                                      order="none")
    names = _names(model)
    names.update((sym, f"x{k}") for k, (sym, _) in enumerate(replacements))
    printer = CPrinter(names)
    definitions = dict(replacements)
    definitions.update((sym, value) for (sym, _), value in zip(lets, reduced))
    lines = [f"double {array}[{len(outputs)}];"]
    for sym in _dependency_order(definitions, [sym for sym, _ in lets] + [sym for sym, _ in replacements]):
        leaf = model.leaves.get(sym)
        note = f"  {comment(('let ' if leaf.kind == 'let' else '') + leaf.name)}" if leaf else ""
        lines.append(f"const double {names[sym]} = {printer.doprint(definitions[sym])};{note}")
    for k, value in zip(singles, reduced[len(lets):]):
        lines.append(f"{array}[{k}] = {printer.doprint(value)};  {comment(labels[k])}")
    for template, slots, members in loops:
        codes = {placeholder: _operand(model, names, column, f"a{j}")
                 for j, (placeholder, column) in enumerate(slots)}
        loop = CPrinter({placeholder: code for placeholder, (code, _) in codes.items()})
        tables = [table for _, table in codes.values() if table]
        at = f"{members[0]} + k" if members == _range(members) else "o[k]"
        if at == "o[k]":
            tables.append(_table("o", members))
        lines += [comment(labels[k]) for k in members] + ["{"] + ["    " + t for t in tables]
        lines.append(f"    for (int k = 0; k < {len(members)}; ++k) {array}[{at}] = {loop.doprint(template)};")
        lines.append("}")
        helpers |= loop.helpers
    helpers |= printer.helpers
    return lines


def _loops(model: SymbolicModel, outputs: list) -> tuple[list, list]:
    """(template, [(placeholder, the leaf it stands for in each member)], members) for each group of at least
    LOOP_MIN outputs of one shape that read array leaves only (vectorize.py's shapes), and the other outputs."""
    by_key: dict = {}
    for k, expr in enumerate(outputs):
        found: list = []
        by_key.setdefault(shape_key(expr, model.leaves, found), []).append((k, found))
    loops, singles = [], []
    for members in by_key.values():
        if len(members) >= LOOP_MIN and all(model.leaves[s].kind in _ARRAYS for s in members[0][1]):
            placeholders: list = []
            template = _with_placeholders(outputs[members[0][0]], model.leaves, placeholders)
            columns = list(zip(*(found for _, found in members)))
            loops.append((template, list(zip(placeholders, columns)), [k for k, _ in members]))
        else:
            singles += [k for k, _ in members]
    return loops, sorted(singles)


def _operand(model: SymbolicModel, names: dict, column: tuple, table: str) -> tuple[str, str]:
    """The code reading one operand of a loop's members at index k (the same leaf, a run of an array or a table
    of indices), and the table's declaration if it needs one."""
    if len(set(column)) == 1:
        return names[column[0]], ""
    array = _ARRAYS[model.leaves[column[0]].kind]
    index = [model.leaves[s].index for s in column]
    if index == _range(index):
        return f"{array}[{index[0]} + k]", ""
    return f"{array}[{table}[k]]", _table(table, index)


def _range(index: list) -> list:
    return list(range(index[0], index[0] + len(index)))


def _table(name: str, values: list, kind: str = "int") -> str:
    """A block-scope constant table, wrapped so that no line grows past 120 columns."""
    items = [str(v) if kind == "int" else c_float(v) for v in values]
    rows, row = [], ""
    for item in items:
        if len(row) + len(item) > 100:
            rows.append(row.rstrip())
            row = ""
        row += item + ", "
    rows.append(row.rstrip())
    return f"static const {kind} {name}[{len(items)}] = {{\n        " + "\n        ".join(rows) + "\n    };"


def _dependency_order(definitions: dict, roots: list) -> list:
    """The defined symbols, each after the definitions it reads: the roots in order, each preceded by what it
    needs that is not yet defined (an explicit stack: a chain of lets may be longer than Python's recursion)."""
    order, done, position = [], set(), {sym: k for k, sym in enumerate(roots)}
    for root in roots:
        stack = [root]
        while stack:
            sym = stack[-1]
            if sym in done:
                stack.pop()
                continue
            pending = sorted((s for s in definitions[sym].free_symbols if s in definitions and s not in done),
                             key=position.get, reverse=True)
            if pending:
                stack += pending
                continue
            done.add(sym)
            order.append(sym)
            stack.pop()
    return order


def _with_sizes(sm: SymbolicModel, outputs: list, labels: list) -> tuple[list, list]:
    """The outputs followed by each compartment size (of every state in one; none without compartments or
    outputs), with their labels."""
    sized = [i for i, size in enumerate(sm.sizes) if size != 1] if outputs else []
    return (outputs + [sm.sizes[i] for i in sized],
            labels + [f"size of {sm.state_names[i]}'s compartment" for i in sized])


@dataclass(frozen=True)
class _Out:
    """An output argument of a generated function: one value per state, or with `columns` (names, and the macro
    counting them) a row-major matrix with a row per state; `label` names an entry from its state s and column c."""

    name: str
    label: str
    columns: tuple = ()
    width: str = ""

    def entry(self, sm: SymbolicModel, at: int) -> str:
        if not self.width:
            return self.label.format(s=sm.state_names[at])
        return self.label.format(s=sm.state_names[at // len(self.columns)], c=self.columns[at % len(self.columns)])


def _accumulate(sm: SymbolicModel, values: list, array: str, out: _Out, scaled: bool = True) -> list:
    """Every entry of out[i * width + column] (i a state) = Σ_f S[f, i] · scale_f · array[k] over `values` (k, flux
    f, column), as the generated forward and jacobian() accumulate; `scaled`: the flux scales of lower.flux_scales
    (at _with_sizes' positions in array) still to be applied."""
    scales, width = flux_scales(sm), len(out.columns) or 1
    sizes = _sizes(sm, array, len(values))
    lines = [f"{array}[{k}] *= {sizes[sm.fluxes[f].stoichiometry[0][0]]};  "
             f"{comment(f'{_flux_label(sm.fluxes[f])}: an amount per time')}" for k, f, _ in values
             if scaled and scales and scales[f] != 1]
    terms = [(i * width + column, float(c), k) for k, f, column in values for i, c in sm.fluxes[f].stoichiometry]
    size = f"HODEC_N * {out.width}" if out.width else "HODEC_N"
    if len(terms) >= ACCUMULATE_LOOP:
        return lines + [
            f"for (int k = 0; k < {size}; ++k) {out.name}[k] = 0.0;",
            comment(f"{out.name}[i] += S[f, i] * value_f: one term per flux and state it changes"), "{",
            "    " + _table("to", [at for at, _, _ in terms]), "    " + _table("from", [k for _, _, k in terms]),
            "    " + _table("coef", [c for _, c, _ in terms], "double"),
            f"    for (int k = 0; k < {len(terms)}; ++k) {out.name}[to[k]] += coef[k]*{array}[from[k]];", "}"]
    rows: dict = {}
    for at, c, k in terms:
        sign, magnitude = ("-" if c < 0 else "+"), abs(c)
        rows.setdefault(at, []).append(f"{sign} {'' if magnitude == 1 else c_float(magnitude) + '*'}{array}[{k}]")
    if out.width:
        lines.append(f"for (int k = 0; k < {size}; ++k) {out.name}[k] = 0.0;")
    for at in (sorted(rows) if out.width else range(len(sm.state_names))):
        total = " ".join(rows.get(at, ["+ 0.0"]))
        lines.append(f"{out.name}[{at}] = {total[2:] if total[0] == '+' else '-' + total[2:]};  "
                     f"{comment(out.entry(sm, at))}")
    return lines


def _concentrations(sm: SymbolicModel, array: str, n_values: int, out: _Out) -> list:
    """Rows of states in compartments divided by their sizes (at _with_sizes' positions in array)."""
    lines = []
    for i, size in (_sizes(sm, array, n_values) if n_values else {}).items():
        row = f"for (int k = 0; k < {out.width}; ++k) {out.name}[{i * len(out.columns)} + k]" if out.width else \
            f"{out.name}[{i}]"
        lines.append(f"{row} /= {size};  {comment(f'{sm.state_names[i]} is a concentration')}")
    return lines


def _sizes(sm: SymbolicModel, array: str, n_values: int) -> dict:
    """State in a compartment -> the code of its size: after the n_values outputs, as _with_sizes put them."""
    sized = [i for i, size in enumerate(sm.sizes) if size != 1]
    return {i: f"{array}[{n_values + k}]" for k, i in enumerate(sized)}


def _params(sm: SymbolicModel, reads: frozenset) -> list:
    """(index in p, Symbol) of the params among `reads`, in p's order."""
    return sorted((sm.leaves[s].index, s) for s in reads if sm.leaves[s].kind == "param")


def _function(signature: str, lines: list) -> list:
    return [signature, "{"] + ["    " + line.replace("\n", "\n    ") for line in lines] + ["}"]


def _flux_label(flux) -> str:
    return f"{flux.kind} {flux.name}"


_DY = _Out("dy", "d{s}/dt")
_DF = _Out("df", "d(d{s}/dt)/dt")


def _rhs(sm: SymbolicModel, helpers: set) -> list:
    model = slots.with_calls(sm) if sm.model.slots else sm
    exprs, labels = _with_sizes(sm, [f.rate for f in model.fluxes], [_flux_label(f) for f in sm.fluxes])
    lines = slots.residual_outputs(sm, CPrinter(_names(sm)), comment)
    lines += _body(model, exprs, "f", labels, helpers)
    lines += _accumulate(sm, [(f, f, 0) for f in range(len(sm.fluxes))], "f", _DY)
    lines += _concentrations(sm, "f", len(sm.fluxes), _DY)
    return _function("static void hodec_rhs(double t, const double *y, const double *p, const double *u, double *dy)",
                     lines)


def _jac(sm: SymbolicModel, helpers: set) -> list:
    jac = state_jacobian(sm)
    states = sm.state_names
    out = _Out("J", "d(d{s}/dt)/d{c}", tuple(states), "HODEC_N")
    labels = [f"d {_flux_label(sm.fluxes[f])} / d {states[j]}" for f, j, _ in jac.entries]
    exprs, labels = _with_sizes(sm, [d for _, _, d in jac.entries], labels)
    lines = _body(jac.model, exprs, "g", labels, helpers)
    lines += _accumulate(sm, [(e, f, j) for e, (f, j, _) in enumerate(jac.entries)], "g", out)
    lines += _concentrations(sm, "g", len(jac.entries), out)
    return _function("static void hodec_jac(double t, const double *y, const double *p, const double *u, double *J)",
                     lines)


def _dfdt(sm: SymbolicModel, helpers: set) -> list:
    """df/dt at fixed y = Σ_f S[f, ·] · (∂v_f/∂t + Σ_k ∂v_f/∂u_k · du[k]): each flux differentiated once with
    respect to t and each input it reads, through lets by the chain rule of jacobian.py."""
    chain = ChainRule(sm)
    inputs = sm.model.inputs
    rates = [sympy.Dummy(f"du{k}", real=True) for k in range(len(inputs))]  # read as du[k]
    by_input = {sm.symbols[i.name]: rate for i, rate in zip(inputs, rates)}
    derivatives, fluxes = [], []
    for f, flux in enumerate(sm.fluxes):
        reads = chain.reads(flux.rate)
        total = sympy.Add(*(chain.total(flux.rate, s) * by_input.get(s, 1) for s in [sm.time, *by_input]
                            if s in reads))
        if total != 0:
            derivatives.append(total)
            fluxes.append(f)
    model = chain.model()
    model = replace(model, leaves={**model.leaves, **{rate: Leaf("rate", f"d{i.name}/dt", k)
                                                      for k, (i, rate) in enumerate(zip(inputs, rates))}})
    exprs, labels = _with_sizes(sm, derivatives, [f"d {_flux_label(sm.fluxes[f])} / dt" for f in fluxes])
    lines = _body(model, exprs, "h", labels, helpers)
    lines += _accumulate(sm, [(e, f, 0) for e, f in enumerate(fluxes)], "h", _DF)
    lines += _concentrations(sm, "h", len(fluxes), _DF)
    return _function("static void hodec_dfdt(double t, const double *y, const double *p, const double *u, "
                     "const double *du, double *df)", lines)


def _dfdp(sm: SymbolicModel, helpers: set) -> list:
    """∂f/∂p, for forward sensitivities: each flux times its scale (an amount per time) differentiated once with
    respect to each param it reads, through lets by the chain rule of jacobian.py, accumulated through the
    stoichiometry; a row of a state in a compartment whose size reads params also gets −dy_i · ∂size_i/∂p_k (the
    quotient rule, dy from hodec_rhs) before it is divided by the size."""
    chain = ChainRule(sm)
    out = _Out("D", "d(d{s}/dt)/d{c}", tuple(p.name for p in sm.param_order), "HODEC_P")
    scales = flux_scales(sm) or [1] * len(sm.fluxes)
    amounts = [scales[f] * flux.rate for f, flux in enumerate(sm.fluxes)]
    entries = [(f, k, d) for f, amount in enumerate(amounts) for k, p in _params(sm, chain.reads(amount))
               if (d := chain.total(amount, p)) != 0]
    quotients = [(i, k, chain.total(size, p)) for i, size in enumerate(sm.sizes) if size != 1
                 for k, p in _params(sm, chain.reads(size))]
    labels = [f"d {_flux_label(sm.fluxes[f])} (an amount per time) / d {out.columns[k]}" for f, k, _ in entries]
    labels += [f"d size of {sm.state_names[i]}'s compartment / d {out.columns[k]}" for i, k, _ in quotients]
    exprs, labels = _with_sizes(sm, [d for *_, d in entries + quotients], labels)
    lines = (["double dy[HODEC_N];", "hodec_rhs(t, y, p, u, dy);"] if quotients else [])
    lines += _body(chain.model(), exprs, "e", labels, helpers)
    lines += _accumulate(sm, [(e, f, k) for e, (f, k, _) in enumerate(entries)], "e", out, scaled=False)
    for q, (i, k, _) in enumerate(quotients):
        at = i * len(out.columns) + k
        lines.append(f"D[{at}] -= dy[{i}]*e[{len(entries) + q}];  {comment(out.entry(sm, at))}")
    lines += _concentrations(sm, "e", len(entries) + len(quotients), out)
    # external, not static: a solver unit that does not call it would get -Wunused-function (and the library
    # exports it, for tests and sensitivities)
    return _function("void hodec_dfdp(double t, const double *y, const double *p, const double *u, double *D)", lines)
