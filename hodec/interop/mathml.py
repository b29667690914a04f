"""SBML math (libsbml's ASTNode trees of MathML) as .hode expression text: the formula as written, with only the
parentheses that .hode's precedence needs (a grouping MathML has is kept even where arithmetic would not care,
so that the floating-point evaluation order stays the model's).

Names are resolved by the caller (an SBML id may be renamed, a reaction id stands for its rate); what .hode cannot
say (delay, rateOf, infinities, MathML outside SBML's subset) raises Unsupported, which the caller turns into an
error naming the SBML element."""
from __future__ import annotations

import math
from typing import Callable, Optional

import libsbml

# Precedence levels of .hode's grammar, loosest first; ATOM: a number, a name, a call or a parenthesised expression.
OR, AND, NOT, CMP, ADD, MUL, NEG, POW, ATOM = range(1, 10)
AVOGADRO = 6.02214179e23  # the value SBML Level 3 fixes for the avogadro csymbol

# MathML functions .hode has under a name of its own (same definition: see the README's language section).
FUNCTIONS = {
    libsbml.AST_FUNCTION_ABS: "abs", libsbml.AST_FUNCTION_ARCCOS: "acos", libsbml.AST_FUNCTION_ARCCOSH: "acosh",
    libsbml.AST_FUNCTION_ARCCOT: "acot", libsbml.AST_FUNCTION_ARCCOTH: "acoth", libsbml.AST_FUNCTION_ARCCSC: "acsc",
    libsbml.AST_FUNCTION_ARCCSCH: "acsch", libsbml.AST_FUNCTION_ARCSEC: "asec", libsbml.AST_FUNCTION_ARCSECH: "asech",
    libsbml.AST_FUNCTION_ARCSIN: "asin", libsbml.AST_FUNCTION_ARCSINH: "asinh", libsbml.AST_FUNCTION_ARCTAN: "atan",
    libsbml.AST_FUNCTION_ARCTANH: "atanh", libsbml.AST_FUNCTION_CEILING: "ceil", libsbml.AST_FUNCTION_COS: "cos",
    libsbml.AST_FUNCTION_COSH: "cosh", libsbml.AST_FUNCTION_COT: "cot", libsbml.AST_FUNCTION_COTH: "coth",
    libsbml.AST_FUNCTION_CSC: "csc", libsbml.AST_FUNCTION_CSCH: "csch", libsbml.AST_FUNCTION_EXP: "exp",
    libsbml.AST_FUNCTION_FACTORIAL: "factorial", libsbml.AST_FUNCTION_FLOOR: "floor", libsbml.AST_FUNCTION_LN: "log",
    libsbml.AST_FUNCTION_SEC: "sec", libsbml.AST_FUNCTION_SECH: "sech", libsbml.AST_FUNCTION_SIN: "sin",
    libsbml.AST_FUNCTION_SINH: "sinh", libsbml.AST_FUNCTION_TAN: "tan", libsbml.AST_FUNCTION_TANH: "tanh",
    libsbml.AST_FUNCTION_MAX: "max", libsbml.AST_FUNCTION_MIN: "min", libsbml.AST_FUNCTION_QUOTIENT: "quotient",
    libsbml.AST_FUNCTION_REM: "rem",
}
COMPARISONS = {libsbml.AST_RELATIONAL_EQ: "==", libsbml.AST_RELATIONAL_NEQ: "!=", libsbml.AST_RELATIONAL_LT: "<",
               libsbml.AST_RELATIONAL_LEQ: "<=", libsbml.AST_RELATIONAL_GT: ">", libsbml.AST_RELATIONAL_GEQ: ">="}
LOGICAL = {libsbml.AST_LOGICAL_AND, libsbml.AST_LOGICAL_OR, libsbml.AST_LOGICAL_NOT, libsbml.AST_LOGICAL_XOR,
           libsbml.AST_LOGICAL_IMPLIES, libsbml.AST_CONSTANT_TRUE, libsbml.AST_CONSTANT_FALSE}
NUMBERS = {libsbml.AST_INTEGER, libsbml.AST_REAL, libsbml.AST_REAL_E, libsbml.AST_RATIONAL}
REFUSED = {libsbml.AST_FUNCTION_DELAY: "delay (the value of an expression at an earlier time)",
           libsbml.AST_FUNCTION_RATE_OF: "rateOf (the rate of change) of this variable"}


class Unsupported(Exception):
    """Math .hode cannot say; the caller names the SBML element it came from."""


Text = tuple[str, int]  # expression text and its precedence level
Resolve = Callable[[str], Text]  # an SBML id (or a function argument) -> its .hode text


def format_number(value: float) -> str:
    """A finite number as a .hode literal (a negative one as unary minus, the grammar's form)."""
    if not math.isfinite(value):
        raise Unsupported(f"the number {value} (.hode has no infinities or NaN)")
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


class Printer:
    """Prints one SBML model's math. `resolve` gives the text of a name; `functions` maps each function
    definition's id to its .hode name and lambda, so that a call of a boolean-valued one (a condition, which a
    .hode function cannot return) is inlined."""

    def __init__(self, resolve: Resolve, functions: dict, time: str = "t", rate_of: Optional[Resolve] = None):
        self.resolve = resolve
        self.functions = functions
        self.time = time  # what SBML's time reads as ("0" in initial values: SBML's time starts at 0)
        self.rate_of = rate_of  # rateOf(x): x's rate of change as .hode text (None: refused)
        self.conditions: dict[str, Text] = {}  # an inlined function's arguments that are conditions

    def number_text(self, node) -> str:
        return self.numeric(node)[0]

    def condition_text(self, node) -> str:
        return self.boolean(node)[0]

    # ------------------------------------------------------------ numeric context
    def numeric(self, node) -> Text:
        kind = node.getType()
        if self.is_boolean(node):
            return f"piecewise(1, {self.boolean(node)[0]}, 0)", ATOM  # SBML's true/false as numbers
        if kind in NUMBERS:
            return _number(node)
        if kind == libsbml.AST_NAME:
            return self.resolve(node.getName())
        if kind == libsbml.AST_NAME_TIME:
            return self.time, ATOM
        if kind == libsbml.AST_NAME_AVOGADRO:
            return format_number(AVOGADRO), ATOM
        if kind == libsbml.AST_CONSTANT_E:
            return "exp(1)", ATOM
        if kind == libsbml.AST_CONSTANT_PI:
            return format_number(math.pi), ATOM
        if kind in (libsbml.AST_PLUS, libsbml.AST_TIMES):
            return self._chain(node)
        if kind == libsbml.AST_MINUS:
            return self._minus(node)
        if kind == libsbml.AST_DIVIDE:
            return self._binary(node, "/", MUL)
        if kind in (libsbml.AST_POWER, libsbml.AST_FUNCTION_POWER):
            return self._power(node)
        if kind == libsbml.AST_FUNCTION_LOG:
            return self._log(node)
        if kind == libsbml.AST_FUNCTION_ROOT:
            return self._root(node)
        if kind == libsbml.AST_FUNCTION_PIECEWISE:
            return self._piecewise(node)
        if kind in FUNCTIONS:
            return self._builtin(node, FUNCTIONS[kind])
        if kind == libsbml.AST_FUNCTION:
            return self._call(node)
        if kind == libsbml.AST_FUNCTION_RATE_OF and self.rate_of is not None and node.getNumChildren() == 1 and \
                node.getChild(0).getType() == libsbml.AST_NAME:
            return self.rate_of(node.getChild(0).getName())
        raise Unsupported(_unknown(node))

    def _args(self, node) -> list[str]:
        return [self.numeric(node.getChild(i))[0] for i in range(node.getNumChildren())]

    def _operand(self, node, least: int) -> str:
        text, level = self.numeric(node)
        return text if level >= least else f"({text})"

    def _chain(self, node) -> Text:
        """n-ary plus or times, left to right as written (no operands: 0 or 1; one operand: itself)."""
        plus = node.getType() == libsbml.AST_PLUS
        return _n_ary(node, self._operand, self.numeric, "+" if plus else "*", ADD if plus else MUL,
                      ("0" if plus else "1", ATOM))

    def _minus(self, node) -> Text:
        if node.getNumChildren() == 1:
            return f"-{self._operand(node.getChild(0), NEG)}", NEG
        return self._binary(node, "-", ADD)

    def _binary(self, node, op: str, level: int) -> Text:
        if node.getNumChildren() != 2:
            raise Unsupported(f"'{op}' with {node.getNumChildren()} operands (it takes 2)")
        return f"{self._operand(node.getChild(0), level)} {op} {self._operand(node.getChild(1), level + 1)}", level

    def _power(self, node) -> Text:
        if node.getNumChildren() != 2:
            raise Unsupported(f"power with {node.getNumChildren()} operands (it takes 2)")
        return f"{self._operand(node.getChild(0), ATOM)}^{self._operand(node.getChild(1), ATOM)}", POW

    def _log(self, node) -> Text:
        """libsbml gives <log/> its implicit base 10 as a first child; ln is a node of its own."""
        base, x = self.numeric(node.getChild(0))[0], self.numeric(node.getChild(node.getNumChildren() - 1))[0]
        if node.getNumChildren() == 1 or base == "10":
            return f"log10({x})", ATOM
        return f"log({x}) / log({base})", MUL

    def _root(self, node) -> Text:
        """libsbml gives <root/> its implicit degree 2 as a first child."""
        x = self.numeric(node.getChild(node.getNumChildren() - 1))[0]
        degree = self.numeric(node.getChild(0))[0] if node.getNumChildren() == 2 else "2"
        return (f"sqrt({x})" if degree == "2" else f"root({degree}, {x})"), ATOM

    def _piecewise(self, node) -> Text:
        """SBML's piecewise(v1, c1, ..., [otherwise]); without otherwise SBML leaves the value undefined where no
        condition holds, and the last piece stands in for it there (see the README)."""
        n = node.getNumChildren()
        if n == 0:
            raise Unsupported("a piecewise without pieces")
        if n % 2 == 0:  # no otherwise: the last pair's value stands in for it
            n -= 1
        if n == 1:
            return self.numeric(node.getChild(0))
        parts = [self.numeric(node.getChild(i))[0] if i % 2 == 0 else self.boolean(node.getChild(i))[0]
                 for i in range(n - 1)]
        return f"piecewise({', '.join(parts + [self.numeric(node.getChild(n - 1))[0]])})", ATOM

    def _builtin(self, node, name: str) -> Text:
        args = self._args(node)
        if name in ("min", "max") and len(args) == 1:
            return self.numeric(node.getChild(0))
        if name in ("min", "max") and not args:
            raise Unsupported(f"{name} without arguments")
        return f"{name}({', '.join(args)})", ATOM

    def _call(self, node) -> Text:
        name = node.getName()
        if name not in self.functions:
            raise Unsupported(f"a call of '{name}', which is not a function definition of the model")
        return f"{self.functions[name][0]}({', '.join(self._args(node))})", ATOM

    # ------------------------------------------------------------ boolean context
    def is_boolean(self, node) -> bool:
        kind = node.getType()
        if kind in COMPARISONS or kind in LOGICAL:
            return True
        if kind == libsbml.AST_FUNCTION and node.getName() in self.functions:
            lam = self.functions[node.getName()][1]
            return lam is not None and self.is_boolean(lam.getChild(lam.getNumChildren() - 1))
        return kind == libsbml.AST_FUNCTION_PIECEWISE and node.getNumChildren() > 0 and \
            self.is_boolean(node.getChild(0))

    def boolean(self, node) -> Text:
        kind = node.getType()
        if kind == libsbml.AST_NAME and node.getName() in self.conditions:
            return self.conditions[node.getName()]
        if not self.is_boolean(node):
            return f"{self._operand(node, ADD)} != 0", CMP  # a number as a condition: true where not 0
        if kind in COMPARISONS:
            return self._compare(node)
        if kind == libsbml.AST_CONSTANT_TRUE:
            return "0 < 1", CMP
        if kind == libsbml.AST_CONSTANT_FALSE:
            return "1 < 0", CMP
        if kind == libsbml.AST_LOGICAL_NOT:
            return f"not {self._condition(node.getChild(0), NOT)}", NOT
        if kind in (libsbml.AST_LOGICAL_AND, libsbml.AST_LOGICAL_OR):
            return self._junction(node)
        if kind in (libsbml.AST_LOGICAL_XOR, libsbml.AST_LOGICAL_IMPLIES):
            name = "xor" if kind == libsbml.AST_LOGICAL_XOR else "implies"
            args = [self.boolean(node.getChild(i))[0] for i in range(node.getNumChildren())]
            if name == "xor" and len(args) < 2:
                return (self.boolean(node.getChild(0)) if args else ("1 < 0", CMP))
            return f"{name}({', '.join(args)})", ATOM
        if kind == libsbml.AST_FUNCTION:
            return self._inline(node)
        return self._piecewise_condition(node)

    def _piecewise_condition(self, node) -> Text:
        """A piecewise of conditions: (c1 and v1) or (not c1 and (...)), the otherwise (or the last piece's value,
        as for numbers) innermost."""
        n = node.getNumChildren() if node.getNumChildren() % 2 else node.getNumChildren() - 1
        text = self.boolean(node.getChild(n - 1))[0]
        for i in reversed(range(0, n - 1, 2)):
            value, condition = self.boolean(node.getChild(i))[0], self.boolean(node.getChild(i + 1))[0]
            text = f"(({condition}) and ({value}) or not ({condition}) and ({text}))"
        return text, ATOM

    def _condition(self, node, least: int) -> str:
        text, level = self.boolean(node)
        return text if level >= least else f"({text})"

    def _compare(self, node) -> Text:
        """n-ary comparisons chain: a < b < c is a < b and b < c."""
        op = COMPARISONS[node.getType()]
        n = node.getNumChildren()
        if n < 2:
            raise Unsupported(f"'{op}' with {n} operand(s)")
        sides = [self._operand(node.getChild(i), ADD) for i in range(n)]
        pairs = [f"{sides[i]} {op} {sides[i + 1]}" for i in range(n - 1)]
        return (pairs[0], CMP) if n == 2 else (" and ".join(pairs), AND)

    def _junction(self, node) -> Text:
        is_and = node.getType() == libsbml.AST_LOGICAL_AND
        return _n_ary(node, self._condition, self.boolean, "and" if is_and else "or", AND if is_and else OR,
                      ("0 < 1" if is_and else "1 < 0", CMP))

    def _inline(self, node) -> Text:
        """A boolean-valued function definition's body with the call's arguments in place of its own."""
        lam = self.functions[node.getName()][1]
        nargs = lam.getNumChildren() - 1
        if node.getNumChildren() != nargs:
            raise Unsupported(f"'{node.getName()}' called with {node.getNumChildren()} arguments (it takes {nargs})")
        args = [(lam.getChild(i).getName(), node.getChild(i)) for i in range(nargs)]
        bound = {name: self.numeric(arg) for name, arg in args}
        inner = Printer(lambda name: bound[name] if name in bound else self.resolve(name), self.functions,
                        self.time, self.rate_of)
        inner.conditions = {name: self.boolean(arg) for name, arg in args if self.is_boolean(arg)}
        text, level = inner.boolean(lam.getChild(nargs))
        return f"({text})", ATOM


def _n_ary(node, operand, whole, op: str, level: int, empty: Text) -> Text:
    """An n-ary left-associative operation as written: no operands, its identity `empty`; one, that operand; else
    the first operand may be at the operator's own level and the others bind tighter (a + (b + c) keeps its
    parentheses)."""
    if node.getNumChildren() < 2:
        return whole(node.getChild(0)) if node.getNumChildren() else empty
    parts = [operand(node.getChild(0), level)]
    parts += [operand(node.getChild(i), level + 1) for i in range(1, node.getNumChildren())]
    return f" {op} ".join(parts), level


def _number(node) -> Text:
    if node.getType() == libsbml.AST_RATIONAL:
        text = f"{format_number(node.getNumerator())} / {format_number(node.getDenominator())}"
        return (f"({text})", ATOM) if node.getNumerator() >= 0 else (text, MUL)
    value = node.getInteger() if node.getType() == libsbml.AST_INTEGER else node.getReal()
    text = format_number(value)
    return text, (NEG if text.startswith("-") else ATOM)


def _formula(node) -> str:
    return libsbml.formulaToL3String(node) or "?"


def _unknown(node) -> str:
    kind = node.getType()
    if kind in REFUSED:
        return REFUSED[kind]
    return f"the MathML '{node.getName() or _formula(node)}' (not in what .hode can say)"
