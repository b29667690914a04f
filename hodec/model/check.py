"""Semantic checks on a parsed file, as explicit passes that each append every error they find.

Passes: declarations (duplicate, reserved), user functions (what a body reads, recursion), references
(undefined, kind), arity, expression types (boolean vs number), values (bounds, options, neural sizes), constants
(finite in double precision), initial values (finite with the params' values), structure (reactions, ders,
slots), let cycles, initial-value cycles, compartment sizes, noise models and events.
"""
from __future__ import annotations

import graphlib
import math
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import Diagnostic, Span, did_you_mean
from ..syntax import ast
from .model import (ACTIVATIONS, BUILTINS, CONDITION_FUNCTIONS, DEFAULT_HIDDEN, MAX_HIDDEN_WIDTH,
                    MAX_NEURAL_PARAMETERS, NOISE_DISTRIBUTIONS, RESERVED, TIME)

_DECLARED_KIND = {ast.ParamDecl: "param", ast.InputDecl: "input", ast.StateDecl: "state", ast.LetDecl: "let",
                  ast.ReactionDecl: "reaction", ast.NeuralDecl: "neural slot", ast.ObserveDecl: "observable",
                  ast.FunctionDecl: "function"}
_VALUE_KINDS = {"param", "input", "state", "let", "time"}
_A_KIND = {"param": "a param", "input": "an input", "state": "a state", "let": "a let", "reaction": "a reaction",
           "neural slot": "a neural slot", "observable": "an observable", "time": "the time"}
_KIND_ORDER = ("state", "input", "time", "param", "let")


def _a(kind: str) -> str:
    """'a param', 'an input', ...: a kind with its article."""
    return _A_KIND.get(kind, f"a {kind}")


def _one_of(kinds: set) -> str:
    """'a state, an input or t'."""
    words = ["t" if k == "time" else _a(k) for k in sorted(kinds, key=_KIND_ORDER.index)]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


@dataclass
class Context:
    """What the passes share: the statements, the namespace they build, and the errors so far."""

    statements: list
    names: dict = field(default_factory=dict)  # name -> declaring statement
    errors: list = field(default_factory=list)

    def error(self, message: str, span: Span, hint: str | None = None):
        self.errors.append(Diagnostic(message, span, hint))

    def kind(self, name: str) -> str | None:
        if name == TIME:
            return "time"
        decl = self.names.get(name)
        return None if decl is None else _DECLARED_KIND[type(decl)]

    def of_type(self, cls) -> list:
        return [s for s in self.statements if isinstance(s, cls)]


def run_checks(statements: list) -> Context:
    ctx = Context(statements)
    for check in (check_declarations, check_functions, check_references, check_arity, check_types, check_values,
                  check_constants, check_initial_values, check_structure, check_let_cycles, check_initial_cycles,
                  check_compartments, check_noise, check_events):
        check(ctx)
    return ctx


# ---------------------------------------------------------------- declarations
def check_declarations(ctx: Context):
    models = ctx.of_type(ast.ModelDecl)
    if not models:
        ctx.error("missing 'model NAME' statement", Span(1, 1, 1, 2), "start the file with e.g. 'model MyModel'")
    for extra in models[1:]:
        ctx.error(f"second 'model' statement (the model is already named '{models[0].name.id}')", extra.span)
    for stmt in ctx.statements:
        kind = _DECLARED_KIND.get(type(stmt))
        if kind is None:
            continue
        name = stmt.name
        if name.id in RESERVED:
            ctx.error(f"'{name.id}' is reserved and cannot be used as a name", name.span)
        elif name.id in ctx.names:
            first = ctx.names[name.id]
            ctx.error(f"'{name.id}' is already declared (as {_a(_DECLARED_KIND[type(first)])} on line "
                      f"{first.span.line})", name.span)
        else:
            ctx.names[name.id] = stmt


# ---------------------------------------------------------------- references
def expressions(ctx: Context) -> Iterator[tuple[ast.Expr, str]]:
    """Every expression of the file with the role it plays."""
    for stmt in ctx.statements:
        if isinstance(stmt, ast.StateDecl):
            yield stmt.initial, "initial"
        elif isinstance(stmt, ast.LetDecl):
            yield stmt.value, "let"
        elif isinstance(stmt, ast.ReactionDecl):
            yield stmt.rate, "rate"
        elif isinstance(stmt, (ast.DerDecl, ast.ObserveDecl)):
            yield stmt.value, "rate"
        elif isinstance(stmt, ast.FunctionDecl):
            yield stmt.body, "function"
        if isinstance(stmt, ast.ObserveDecl) and stmt.noise is not None:
            yield from ((arg, "noise") for arg in stmt.noise.args)
        if isinstance(stmt, ast.EventDecl):
            yield from ((time, "event time") for time in stmt.times)
            if stmt.trigger is not None:
                yield stmt.trigger, "trigger"
            yield from ((a.value, "assignment") for a in stmt.assignments)


def check_references(ctx: Context):
    for expr, role in expressions(ctx):
        if role in ("noise", "function"):
            continue  # their names resolve differently (the observable's own name, the arguments): own passes
        for node in ast.walk(expr):
            if isinstance(node, ast.Name):
                _check_value_name(ctx, node)
            elif isinstance(node, ast.Call):
                _check_function_name(ctx, node)


def _check_value_name(ctx: Context, node: ast.Name):
    kind = ctx.kind(node.id)
    if kind is None:
        candidates = [n for n in ctx.names if ctx.kind(n) in _VALUE_KINDS]
        ctx.error(f"undefined name '{node.id}'", node.span, did_you_mean(node.id, candidates))
    elif kind not in _VALUE_KINDS:
        decl = ctx.names[node.id]
        hint = (f"call it: {node.id}({', '.join(a.name.id for a in decl.args)})"
                if isinstance(decl, ast.NeuralDecl) and decl.outputs is None else None)
        ctx.error(f"'{node.id}' is {_a(kind)}, not a value that can be used in an expression", node.span, hint)


def _check_function_name(ctx: Context, node: ast.Call):
    if node.func in BUILTINS:
        return
    decl = ctx.names.get(node.func)
    if decl is None:
        functions = list(BUILTINS) + [n for n, d in ctx.names.items() if isinstance(d, (ast.NeuralDecl,
                                                                                          ast.FunctionDecl))]
        ctx.error(f"unknown function '{node.func}'", node.func_span, did_you_mean(node.func, functions))
    elif isinstance(decl, ast.FunctionDecl):
        return
    elif not isinstance(decl, ast.NeuralDecl):
        ctx.error(f"'{node.func}' is {_a(ctx.kind(node.func))}, not a function", node.func_span)
    elif decl.outputs is not None:
        ctx.error(f"'{node.func}' is a residual slot (it adds to states) and cannot be called; "
                  f"declare it without '->' to call it", node.func_span)


# ---------------------------------------------------------------- arity
def check_arity(ctx: Context):
    for expr, _ in expressions(ctx):
        for node in ast.calls_in(expr):
            low, high = _arity(ctx, node.func)
            n = len(node.args)
            if low is None or low <= n and (high is None or n <= high):
                continue
            if high is None:
                expected = f"at least {low} arguments"
            else:
                expected = f"{low} argument{'s' if low != 1 else ''}" if low == high else f"{low} to {high}"
            hint = "log is natural; for base b write log(x) / log(b), or log10(x)" if node.func == "log" else None
            ctx.error(f"'{node.func}' takes {expected}, got {n}", node.span, hint)
        for node in ast.calls_in(expr):
            if node.func == "piecewise" and len(node.args) % 2 == 0:
                ctx.error(f"piecewise takes value, condition pairs and then an 'otherwise' value (an odd number of "
                          f"arguments), got {len(node.args)}", node.span,
                          "piecewise(v1, c1, v2, c2, ..., otherwise): add the value where no condition holds")


def _arity(ctx: Context, func: str):
    if func in BUILTINS:
        return BUILTINS[func]
    decl = ctx.names.get(func)
    if isinstance(decl, ast.NeuralDecl) and decl.outputs is None or isinstance(decl, ast.FunctionDecl):
        return len(decl.args), len(decl.args)
    return None, None


# ---------------------------------------------------------------- user functions
def check_functions(ctx: Context):
    """A function's arguments are distinct unreserved names; its body reads them, params and numbers, and calls
    builtins and other functions (so it means the same wherever it is inlined, initial values included); no
    function calls itself, directly or through others."""
    functions = {f.name.id: f for f in ctx.of_type(ast.FunctionDecl) if ctx.names.get(f.name.id) is f}
    for f in functions.values():
        _no_repeats(ctx, list(f.args), "argument")
        for arg in f.args:
            if arg.id in RESERVED:
                ctx.error(f"'{arg.id}' is reserved and cannot be used as a name", arg.span)
        args = [a.id for a in f.args]
        for node in ast.walk(f.body):
            if isinstance(node, ast.Name) and node.id not in args and ctx.kind(node.id) != "param":
                what = "undefined" if ctx.kind(node.id) is None else _a(ctx.kind(node.id))
                hint = f"pass it as an argument: function {f.name.id}({', '.join([*args, node.id])})"
                ctx.error(f"the body of function '{f.name.id}' reads its arguments ({', '.join(args)}) and params "
                          f"only; '{node.id}' is {what}", node.span, None if node.id == TIME else hint)
            elif isinstance(node, ast.Call) and ctx.kind(node.func) == "neural slot":
                ctx.error(f"a function body cannot call a neural slot ('{node.func}'): call the slot where the "
                          f"function is called", node.func_span)
            elif isinstance(node, ast.Call) and node.func not in functions:
                _check_function_name(ctx, node)
    _check_recursion(ctx, functions)


def _check_recursion(ctx: Context, functions: dict):
    graph = {name: [c.func for c in ast.calls_in(f.body) if c.func in functions] for name, f in functions.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1]
        ctx.error(f"functions call each other in a cycle (recursion is not allowed): {' -> '.join(cycle)}",
                  functions[cycle[0]].name.span)


# ---------------------------------------------------------------- types: boolean vs number
def check_types(ctx: Context):
    for expr, role in expressions(ctx):
        _expect(ctx, expr, boolean=role == "trigger")


def _expect(ctx: Context, node: ast.Expr, boolean: bool):
    is_bool = isinstance(node, (ast.Compare, ast.Logic)) or isinstance(node, ast.Call) and \
        node.func in CONDITION_FUNCTIONS
    if is_bool != boolean:
        what = "a condition (comparison, and, or, not)" if is_bool else "a number"
        where = "a number" if not boolean else "a condition"
        ctx.error(f"expected {where} here, found {what}", node.span,
                  "conditions are only allowed as the first argument of if(...), the even arguments of "
                  "piecewise(...) and after 'when'" if is_bool else None)
        return
    if isinstance(node, ast.If):
        _expect(ctx, node.cond, True)
        _expect(ctx, node.then, False)
        _expect(ctx, node.orelse, False)
    elif isinstance(node, ast.Call) and node.func == "piecewise":  # value, condition, ..., otherwise
        for i, child in enumerate(node.args):
            _expect(ctx, child, i % 2 == 1)
    elif isinstance(node, ast.Logic) or isinstance(node, ast.Call) and node.func in CONDITION_FUNCTIONS:
        for child in ast.children(node):
            _expect(ctx, child, True)
    else:
        for child in ast.children(node):
            _expect(ctx, child, False)


# ---------------------------------------------------------------- values and options
def check_values(ctx: Context):
    for p in ctx.of_type(ast.ParamDecl):
        if p.kind == "positive" and p.value.value <= 0:
            ctx.error(f"positive param '{p.name.id}' needs a value > 0, got {p.value.text}", p.value.span)
        if p.kind == "bounded":
            low, high = p.bounds
            if not low.value < high.value:
                ctx.error(f"empty bounds ({low.text}, {high.text}) for '{p.name.id}': lower must be < upper",
                          low.span)
            elif not low.value < p.value.value < high.value:
                ctx.error(f"value {p.value.text} of '{p.name.id}' is not strictly inside ({low.text}, "
                          f"{high.text})", p.value.span)
    for n in ctx.of_type(ast.NeuralDecl):
        if n.activation is not None and n.activation.id not in ACTIVATIONS:
            ctx.error(f"unknown activation '{n.activation.id}' (one of {', '.join(ACTIVATIONS)})",
                      n.activation.span, did_you_mean(n.activation.id, ACTIVATIONS))
        if n.hidden is not None and any(w <= 0 for w in n.hidden):
            ctx.error(f"hidden layer widths of '{n.name.id}' must be positive", n.span)
        elif n.hidden is not None and any(w > MAX_HIDDEN_WIDTH for w in n.hidden):
            ctx.error(f"hidden layer widths of '{n.name.id}' must be at most {MAX_HIDDEN_WIDTH}", n.span)
    _check_neural_size(ctx)


def _check_neural_size(ctx: Context):
    """All slots' weights and biases together within MAX_NEURAL_PARAMETERS (reported at the slot that passes it)."""
    total = 0
    for n in ctx.of_type(ast.NeuralDecl):
        if any(not 0 < w <= MAX_HIDDEN_WIDTH for w in n.hidden or ()):
            return  # reported above
        widths = [len(n.args), *(n.hidden or DEFAULT_HIDDEN), 1 if n.outputs is None else len(n.outputs)]
        total += sum(a * b + b for a, b in zip(widths, widths[1:]))
        if total > MAX_NEURAL_PARAMETERS:
            ctx.error(f"neural slots up to '{n.name.id}' have {total:,} weights, more than the limit of "
                      f"{MAX_NEURAL_PARAMETERS:,}", n.span)
            return


# ---------------------------------------------------------------- constants
def check_constants(ctx: Context):
    """Constant subexpressions must have a finite value in double precision, as generated code computes them.

    SymPy evaluates constants exactly or to arbitrary precision, so without this check 9^9^9 would never finish,
    log(-1) would be complex and exp(1e300) would reach code generation as a number no tensor can hold. A let of
    numbers only is a constant too: with 'let v = -1', sqrt(v) is reported where it is written.
    """
    folder = _Folder(ctx)
    for expr, role in expressions(ctx):
        if role != "function":  # a body is evaluated where it is called, with its arguments' values
            folder.value(expr, report=True)


def check_initial_values(ctx: Context):
    """An initial value must be finite with the params at their values in the spec: `1/z` with `z = 0` would
    start the model at inf. (Problems of the constants alone are reported by check_constants.)"""
    params = {p.name.id: p.value.value for p in ctx.of_type(ast.ParamDecl) if ctx.names.get(p.name.id) is p}
    states = {s.name.id: s for s in ctx.of_type(ast.StateDecl) if ctx.names.get(s.name.id) is s}
    try:  # dependencies first, so that a long chain of initial values is evaluated without deep recursion
        order = list(graphlib.TopologicalSorter({n: _initial_states(ctx, s) for n, s in states.items()})
                     .static_order())
    except graphlib.CycleError:
        return  # reported by check_initial_cycles
    known: dict = {}  # state or let -> its value (None where undefined: reported once, where it starts)
    undefined = set()
    for name in order:
        constants, with_params = _Folder(ctx), _Folder(ctx, params, initial=True)
        with_params.declared = known
        constants.value(states[name].initial, report=False)
        known[name] = with_params.value(states[name].initial, report=False)
        if with_params.undefined and not constants.undefined:
            undefined.add(name)
    for s in (s for s in ctx.of_type(ast.StateDecl) if s.name.id in undefined and states[s.name.id] is s):
        read = sorted({n.id for n in ast.names_in(s.initial) if n.id in params})
        values = ", ".join(f"{name} = {params[name]:g}" for name in read)
        ctx.error(f"the initial value of '{s.name.id}' is not a finite number with the params at their values"
                  + (f" ({values})" if values else ""), s.initial.span)


_DOUBLE_RANGE = 400  # |log10| of a power beyond which no double (about 1e-308 to 1e308) can hold it


def _factorial(x: float) -> float:
    if x < 0:
        raise ValueError  # Γ(x + 1), defined (as generated code computes it) for x >= 0 only
    return math.gamma(x + 1)


_MATH = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "abs": abs, "sin": math.sin, "cos": math.cos,
         "tan": math.tan, "tanh": math.tanh, "sigmoid": lambda x: 0.5 * (1.0 + math.tanh(0.5 * x)),
         "softplus": lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))), "floor": math.floor,
         "ceil": math.ceil, "min": min, "max": max, "asin": math.asin, "acos": math.acos, "atan": math.atan,
         "sinh": math.sinh, "cosh": math.cosh, "asinh": math.asinh, "acosh": math.acosh, "atanh": math.atanh,
         "sec": lambda x: 1 / math.cos(x), "csc": lambda x: 1 / math.sin(x), "cot": lambda x: 1 / math.tan(x),
         "sech": lambda x: 1 / math.cosh(x), "csch": lambda x: 1 / math.sinh(x), "coth": lambda x: 1 / math.tanh(x),
         "asec": lambda x: math.acos(1 / x), "acsc": lambda x: math.asin(1 / x),
         "acot": lambda x: math.atan(1 / x) if x else math.pi / 2, "asech": lambda x: math.acosh(1 / x),
         "acsch": lambda x: math.asinh(1 / x), "acoth": lambda x: math.atanh(1 / x), "log10": math.log10,
         "factorial": _factorial, "quotient": lambda a, b: float(math.trunc(a / b)), "rem": math.fmod}


class _Folder:
    """Evaluates constant subexpressions in doubles; value() is None for anything not constant (or reported).
    With `params` (name -> value), params are read as those values. `undefined`: whether some subexpression had
    no finite value."""

    def __init__(self, ctx: Context, params: dict | None = None, initial: bool = False):
        self.ctx = ctx
        self.params = params or {}
        self.initial = initial  # states are read as their initial values
        self.declared: dict = {}  # let or state name -> its value or None; None while being evaluated (cycles)
        self.undefined = False
        self.calling = frozenset()  # the functions being evaluated: a recursive one (an error) is not folded
        self.calls: dict = {}  # (function, argument values) -> (value, undefined), shared with the bodies' folders

    def value(self, node: ast.Expr, report: bool):
        values = [self.value(child, report) for child in ast.children(node)]
        if isinstance(node, ast.Num):
            return node.value
        if isinstance(node, ast.Name):
            return self.params[node.id] if node.id in self.params else self._declared(node.id)
        if isinstance(node, ast.Binary) and node.op == "/" and values[1] == 0.0:
            return self._error(report, "division by zero", node.span)
        if any(v is None for v in values) or not isinstance(node, (ast.Neg, ast.Binary, ast.Call)):
            return None
        if isinstance(node, ast.Call):
            if isinstance(self.ctx.names.get(node.func), ast.FunctionDecl):
                return self._call(node, values, report)
            if node.func not in BUILTINS:
                return None  # a neural function
            low, high = BUILTINS[node.func]
            if not low <= len(values) <= (high or len(values)):
                return None  # reported by the arity pass
        try:
            value = _evaluate(node, values)
        except ZeroDivisionError:
            return self._error(report, "division by zero", node.span)
        except ValueError:
            shown = ", ".join(f"{v:g}" for v in values)
            what = f"{node.func}({shown})" if isinstance(node, ast.Call) else f"({values[0]:g})^{values[1]:g}"
            return self._error(report, f"{what} is undefined in real numbers", node.span)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            return self._error(report, "this constant expression is out of the range of double-precision numbers "
                                       "(about 1e308)", node.span)
        return value

    def _declared(self, name: str):
        decl = self.ctx.names.get(name)
        if isinstance(decl, ast.LetDecl):
            expr = decl.value
        elif self.initial and isinstance(decl, ast.StateDecl):
            expr = decl.initial
        else:
            return None
        if name not in self.declared:
            self.declared[name] = None
            self.declared[name] = self.value(expr, report=False)  # its own errors are reported where it is
        return self.declared[name]

    def _call(self, node: ast.Call, values: list, report: bool):
        """A user function's body with its arguments' values (and the params' values, if this folder has them)."""
        decl = self.ctx.names[node.func]
        if len(values) != len(decl.args) or node.func in self.calling:
            return None  # reported by the arity and function passes
        key = (node.func, tuple(values))
        if key not in self.calls:  # once per function and arguments: calls in bodies nest
            inner = _Folder(self.ctx, {**self.params, **{a.id: v for a, v in zip(decl.args, values)}})
            inner.calling, inner.calls = self.calling | {node.func}, self.calls
            value = inner.value(decl.body, report=False)
            self.calls[key] = (value, inner.undefined)
        value, undefined = self.calls[key]
        if undefined:
            shown = ", ".join(f"{v:g}" for v in values)
            return self._error(report, f"{node.func}({shown}) is undefined: its body has no finite value there",
                               node.span)
        return value

    def _error(self, report: bool, message: str, span: Span):
        self.undefined = True
        if report:
            self.ctx.error(message, span)
        return None


def _evaluate(node: ast.Expr, values: list) -> float:
    if isinstance(node, ast.Neg):
        return -values[0]
    if isinstance(node, ast.Binary):
        left, right = values
        if node.op == "^":
            return _power(left, right)
        if node.op == "/":
            return left / right
        return {"+": left + right, "-": left - right, "*": left * right}[node.op]
    if node.func == "hill":  # x^n / (K^n + x^n)
        x, k, n = values
        return _power(x, n) / (_power(k, n) + _power(x, n))
    if node.func == "pow":
        return _power(*values)
    if node.func == "root":  # root(n, x) = x^(1/n)
        degree, x = values
        return _power(x, 1 / degree)
    return float(_MATH[node.func](*values))


def _power(base: float, exponent: float) -> float:
    if base == 0.0 and exponent < 0:
        raise ZeroDivisionError
    if base not in (0.0, 1.0, -1.0) and abs(exponent * math.log10(abs(base))) > _DOUBLE_RANGE:
        raise OverflowError  # or an underflow that SymPy would still compute exactly: 10^-1e8
    if base < 0 and not float(exponent).is_integer():
        raise ValueError
    return math.pow(base, exponent)


# ---------------------------------------------------------------- structure
def check_structure(ctx: Context):
    for r in ctx.of_type(ast.ReactionDecl):
        _check_reaction(ctx, r)
    seen_der: dict[str, ast.DerDecl] = {}
    for d in ctx.of_type(ast.DerDecl):
        _expect_kind(ctx, d.target, {"state"}, "the target of 'der'")
        if d.target.id in seen_der:
            ctx.error(f"second 'der' for '{d.target.id}' (first on line {seen_der[d.target.id].span.line}); "
                      f"write one equation with all terms", d.target.span)
        seen_der.setdefault(d.target.id, d)
    for n in ctx.of_type(ast.NeuralDecl):
        _check_slot(ctx, n)
    for s in ctx.of_type(ast.StateDecl):
        _check_initial(ctx, s)


def _check_reaction(ctx: Context, r: ast.ReactionDecl):
    if not r.reactants and not r.products:
        ctx.error(f"reaction '{r.name.id}' has no reactants and no products", r.name.span)
    for sp in r.reactants + r.products:
        _expect_kind(ctx, sp.name, {"state"}, "a reaction species")
        if sp.coefficient is not None and sp.coefficient.value <= 0:
            ctx.error(f"the coefficient of '{sp.name.id}' must be positive, got {sp.coefficient.text}",
                      sp.coefficient.span)


def _check_slot(ctx: Context, n: ast.NeuralDecl):
    if not n.args:
        ctx.error(f"neural slot '{n.name.id}' needs at least one argument", n.name.span)
    _no_repeats(ctx, [a.name for a in n.args], "argument")
    if n.outputs is None:
        return  # a function's arguments are formal names, local to the slot
    for arg in n.args:
        _expect_kind(ctx, arg.name, {"state", "input", "time"}, "a residual slot argument")
    for out in n.outputs:
        _expect_kind(ctx, out, {"state"}, "a residual slot output")
    _no_repeats(ctx, list(n.outputs), "output")


def _check_initial(ctx: Context, s: ast.StateDecl):
    """An initial value reads params, other states (their initial values) and lets of those; no input, t or
    neural slot (nothing that exists only during a simulation)."""
    for node in ast.walk(s.initial):
        if isinstance(node, ast.Call) and ctx.kind(node.func) == "neural slot":
            ctx.error("an initial value cannot call a neural slot", node.span)
        if isinstance(node, ast.Name) and ctx.kind(node.id) in {"input", "time"}:
            ctx.error(f"an initial value is an expression of params and states (their initial values); "
                      f"'{node.id}' is {_a(ctx.kind(node.id))}", node.span)
        if isinstance(node, ast.Name) and ctx.kind(node.id) == "let" and \
                _let_reads(ctx, node.id) & {"input", "time", "neural slot"}:
            ctx.error(f"let '{node.id}' depends on inputs, t or neural slots, so it cannot be used in an initial "
                      f"value", node.span)


def _let_reads(ctx: Context, name: str) -> set:
    """The kinds of what a let reads, through the lets it reads."""
    lets = {n: d.value for n, d in ctx.names.items() if isinstance(d, ast.LetDecl)}
    return {ctx.kind(read) for read in ast.reads_through_lets([lets[name]], lets)}


def _initial_states(ctx: Context, s: ast.StateDecl) -> list:
    """The states whose initial values this state's initial value reads, directly or through lets."""
    lets = {n: d.value for n, d in ctx.names.items() if isinstance(d, ast.LetDecl)}
    return sorted(n for n in ast.reads_through_lets([s.initial], lets) if ctx.kind(n) == "state")


def check_initial_cycles(ctx: Context):
    states = {s.name.id: s for s in ctx.of_type(ast.StateDecl) if ctx.names.get(s.name.id) is s}
    sorter = graphlib.TopologicalSorter({name: _initial_states(ctx, s) for name, s in states.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1]
        ctx.error(f"initial values refer to each other in a cycle: {' -> '.join(cycle)}",
                  states[cycle[0]].initial.span)


def _static_let(ctx: Context, name: str) -> bool:
    """True when a let depends on params and numbers only."""
    return not _let_reads(ctx, name) & {"state", "input", "time", "neural slot"}


def _expect_kind(ctx: Context, name: ast.Name, kinds: set, role: str):
    kind = ctx.kind(name.id)
    wanted = _one_of(kinds)
    if kind is None:
        candidates = [n for n in ctx.names if ctx.kind(n) in kinds]
        ctx.error(f"undefined name '{name.id}' ({role} must be {wanted})", name.span,
                  did_you_mean(name.id, candidates))
    elif kind not in kinds:
        ctx.error(f"{role} must be {wanted}; '{name.id}' is {_a(kind)}", name.span)


def _no_repeats(ctx: Context, names: list, what: str):
    seen = set()
    for name in names:
        if name.id in seen:
            ctx.error(f"repeated {what} '{name.id}'", name.span)
        seen.add(name.id)


# ---------------------------------------------------------------- let cycles
# ---------------------------------------------------------------- compartments
def check_compartments(ctx: Context):
    """`state S = 1 in V`: V is a param or a let of params and numbers (a size constant in time: one that
    changes, as SBML's d[S]/dt = rate/V - [S]/V dV/dt, is refused), no event assigns it, and it is > 0 with the
    params at their values."""
    params = {p.name.id: p.value.value for p in ctx.of_type(ast.ParamDecl) if ctx.names.get(p.name.id) is p}
    assigned = {a.target.id for e in ctx.of_type(ast.EventDecl) for a in e.assignments}
    varying = ("sizes that change in time are not supported: declare the species in amounts (without 'in') and "
               "divide by the size where a concentration is read")
    for s in ctx.of_type(ast.StateDecl):
        size = s.size
        if size is None:
            continue
        kind = ctx.kind(size.id)
        if kind not in ("param", "let"):
            _expect_kind(ctx, size, {"param", "let"}, "the size of a compartment")
        elif kind == "let" and not _static_let(ctx, size.id):
            ctx.error(f"the size of a compartment is constant in time; let '{size.id}' reads states, inputs, t or "
                      f"neural slots", size.span, varying)
        elif size.id in assigned:
            ctx.error(f"the size of a compartment is constant in time; an event assigns '{size.id}'", size.span,
                      varying)
        else:
            value = _Folder(ctx, params).value(size, report=False)
            if value is not None and not value > 0:
                ctx.error(f"the size of a compartment must be > 0; '{size.id}' is {value:g} with the params at their "
                          f"values", size.span)


def check_let_cycles(ctx: Context):
    lets = {s.name.id: s for s in ctx.of_type(ast.LetDecl) if ctx.names.get(s.name.id) is s}
    sorter = graphlib.TopologicalSorter(_let_graph(lets))
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1]
        first = lets[cycle[0]]
        ctx.error(f"lets refer to each other in a cycle: {' -> '.join(cycle)}", first.name.span)


def let_order(ctx: Context) -> list[str]:
    """Lets in an order where each comes after the lets it uses (deterministic for a given file)."""
    return list(graphlib.TopologicalSorter(_let_graph({s.name.id: s for s in ctx.of_type(ast.LetDecl)})).static_order())


def _let_graph(lets: dict) -> dict:
    """Let name -> the lets its value reads, in order of appearance."""
    return {name: [n.id for n in ast.names_in(s.value) if n.id in lets] for name, s in lets.items()}


# ---------------------------------------------------------------- noise models
def check_noise(ctx: Context):
    """`observe x = e ~ normal(sigma)`: a known distribution with one argument, the scale sigma, which may read
    numbers, params, lets of those and `x` itself (its model value, for proportional and combined errors). Not
    states, inputs, t, other observables or neural slots: sigma is a function of the params and the prediction
    only, as PEtab's noise formulas are. Every param sigma reads must be positive by declaration, so that no value
    training can reach makes sigma <= 0 through it; a constant sigma must be > 0."""
    for stmt in ctx.of_type(ast.ObserveDecl):
        noise = stmt.noise
        if noise is None:
            continue
        name = noise.distribution
        if name.id not in NOISE_DISTRIBUTIONS:
            ctx.error(f"unknown noise distribution '{name.id}' (one of {', '.join(NOISE_DISTRIBUTIONS)})",
                      name.span, did_you_mean(name.id, NOISE_DISTRIBUTIONS))
        if len(noise.args) != 1:
            ctx.error(f"'{name.id}' takes 1 argument (the noise scale sigma), got {len(noise.args)}", noise.span)
            continue
        _check_noise_scale(ctx, stmt.name.id, noise.args[0])


def _check_noise_scale(ctx: Context, own: str, sigma: ast.Expr):
    for node in ast.walk(sigma):
        if isinstance(node, ast.Call) and node.func not in BUILTINS:
            ctx.error(f"a noise scale cannot call '{node.func}' (only built-in functions)", node.func_span,
                      did_you_mean(node.func, BUILTINS) if node.func not in ctx.names else None)
        elif isinstance(node, ast.Name) and node.id != own:
            _check_noise_name(ctx, own, node)
    params = {p.name.id: p.value.value for p in ctx.of_type(ast.ParamDecl) if ctx.names.get(p.name.id) is p}
    value = _Folder(ctx, params).value(sigma, report=False)  # None where it reads the observable
    if value is not None and value <= 0:
        read = sorted({n.id for n in ast.names_in(sigma) if n.id in params})
        values = ", ".join(f"{name} = {params[name]:g}" for name in read)
        ctx.error(f"the noise scale of '{own}' is {value:g}" + (f" with the params at their values ({values})"
                                                                  if values else "") + "; it must be > 0", sigma.span)


def _check_noise_name(ctx: Context, own: str, node: ast.Name):
    kind = ctx.kind(node.id)
    allowed = f"numbers, params, lets of params and '{own}' (its model value)"
    if kind is None:
        candidates = [n for n in ctx.names if ctx.kind(n) in {"param", "let"}] + [own]
        ctx.error(f"undefined name '{node.id}'", node.span, did_you_mean(node.id, candidates))
    elif kind == "let" and not _static_let(ctx, node.id):
        ctx.error(f"let '{node.id}' depends on states, inputs, t or neural slots; a noise scale reads {allowed}",
                  node.span)
    elif kind not in {"param", "let"}:
        ctx.error(f"a noise scale reads {allowed}; '{node.id}' is {_a(kind)}", node.span)
    else:
        lets = {n: d.value for n, d in ctx.names.items() if isinstance(d, ast.LetDecl)}
        reads = {node.id} | (ast.reads_through_lets([lets[node.id]], lets) if kind == "let" else set())
        for param in sorted(n for n in reads if ctx.kind(n) == "param"):
            _check_noise_param(ctx, ctx.names[param], node)


def _check_noise_param(ctx: Context, p: ast.ParamDecl, use: ast.Name):
    """A param a noise scale reads (directly or through the let `use`) must stay > 0 whatever training does."""
    via = "" if use.id == p.name.id else f" (through let '{use.id}')"
    reason = {"free": "is free (it can train to any value)",
              "bounded": p.bounds and p.bounds[0].value < 0 and f"has bounds ({p.bounds[0].text}, "
                                                                  f"{p.bounds[1].text}) reaching below 0",
              "fixed": p.value.value <= 0 and f"is fixed at {p.value.text}"}.get(p.kind)
    if reason:
        ctx.error(f"the noise scale reads param '{p.name.id}'{via}, which {reason}: a noise scale must stay > 0",
                  use.span, f"declare it 'param {p.name.id} = ... positive' or bounded in (0, ...)")


# ---------------------------------------------------------------- events
def check_events(ctx: Context):
    """`at t = ...: ...` and `when COND: ...`: each assignment targets a state or a param that is not fixed, at
    most once per event; event times read numbers, params and lets of those (no param an event assigns: that one
    varies in time) and are finite with the params at their values; a trigger has no == or != (a root function
    needs a crossing). A param an event assigns becomes a state of the generated module, so an initial value may
    read it directly (its value at the start) but not through a let (which reads the state)."""
    assigned = {a.target.id for e in ctx.of_type(ast.EventDecl) for a in e.assignments}
    for event in ctx.of_type(ast.EventDecl):
        for a in event.assignments:
            _check_assignment_target(ctx, a.target)
        first: dict = {}
        for a in event.assignments:
            if a.target.id in first:
                ctx.error(f"'{a.target.id}' is assigned twice in one event (its assignments are simultaneous)",
                          a.target.span)
            first.setdefault(a.target.id, a)
        for time in event.times:
            _check_event_time(ctx, time, assigned)
        for node in ast.walk(event.trigger) if event.trigger is not None else ():
            if isinstance(node, ast.Compare) and node.op in ("==", "!="):
                ctx.error(f"'{node.op}' in a 'when' condition: an event fires when its condition becomes true, "
                          f"which needs a crossing; use <, <=, > or >=", node.span)
    for s in ctx.of_type(ast.StateDecl):
        for node in ast.names_in(s.initial):
            if ctx.kind(node.id) == "let" and _let_names_read(ctx, node.id) & assigned:
                param = sorted(_let_names_read(ctx, node.id) & assigned)[0]
                ctx.error(f"let '{node.id}' reads param '{param}', which an event assigns (so it varies in time); "
                          f"an initial value may read '{param}' itself, not this let", node.span)


def _check_assignment_target(ctx: Context, target: ast.Name):
    _expect_kind(ctx, target, {"state", "param"}, "the target of an event assignment")
    decl = ctx.names.get(target.id)
    if isinstance(decl, ast.ParamDecl) and decl.kind == "fixed":
        ctx.error(f"an event assigns param '{target.id}', which is fixed (declared on line {decl.span.line})",
                  target.span, f"remove 'fixed' from 'param {target.id}' (an assigned param becomes a state)")


def _check_event_time(ctx: Context, time: ast.Expr, assigned: set):
    for node in ast.walk(time):
        if isinstance(node, ast.Call) and isinstance(ctx.names.get(node.func), ast.NeuralDecl):
            ctx.error("an event time cannot call a neural slot", node.span)
        if not isinstance(node, ast.Name):
            continue
        kind, reads = ctx.kind(node.id), {node.id} | _let_names_read(ctx, node.id)
        if kind in {"state", "input", "time"} or kind == "let" and not _static_let(ctx, node.id):
            ctx.error(f"an event time is an expression of params and numbers; '{node.id}' is {_a(kind)}"
                      + ("" if kind != "let" else " that depends on states, inputs, t or neural slots"), node.span)
        elif reads & assigned:
            ctx.error(f"an event time cannot read param '{sorted(reads & assigned)[0]}', which an event assigns "
                      f"(so it varies in time)", node.span)
    params = {p.name.id: p.value.value for p in ctx.of_type(ast.ParamDecl) if ctx.names.get(p.name.id) is p}
    constants, with_params = _Folder(ctx), _Folder(ctx, params)
    constants.value(time, report=False)
    with_params.value(time, report=False)
    if with_params.undefined and not constants.undefined:
        ctx.error("this event time is not a finite number with the params at their values", time.span)


def _let_names_read(ctx: Context, name: str) -> set:
    """What a let reads through other lets (empty for a name that is not a let)."""
    if ctx.kind(name) != "let":
        return set()
    lets = {n: d.value for n, d in ctx.names.items() if isinstance(d, ast.LetDecl)}
    return ast.reads_through_lets([lets[name]], lets)
