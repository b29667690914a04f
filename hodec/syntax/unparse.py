"""Syntax tree → .hode text: the inverse of the parser, up to spans, comments and layout.

``parse(unparse(spec))`` gives the same statements as ``spec`` with only the spans changed. Expressions get the
fewest parentheses the grammar needs (grammars/hode.lark, loosest first):

    or < and < not < comparison (non-associative) < + - < * / < unary minus < ^ (right-associative)

so ``a - (b - c)`` and ``(a ^ b) ^ c`` keep theirs while ``a - b - c``, ``a ^ b ^ c`` and ``-x ^ 2`` (which is
``-(x ^ 2)``) need none; the base of ``^`` is an atom, so ``(-x)^2`` keeps its parentheses.

Numbers are printed from their source text (``Num.text``) when it is a valid number literal, otherwise from
``repr(value)``. Not kept by the syntax tree, so not reproduced: comments, blank lines, ``compartment`` (printed
as ``state``, its synonym) and ``**`` (printed as ``^``). Doc strings cannot hold '"' or line breaks in the
language; a doc string built by hand that does is printed with '"' turned into "'" and line breaks into spaces.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Optional, Union

from . import ast

__all__ = ["unparse", "unparse_expr", "unparse_statement", "format_number", "quote_doc"]

# binding strength of each expression form, loosest first
OR, AND, NOT, COMPARE, SUM, PRODUCT, UNARY, POWER, ATOM = range(1, 10)

_NUMBER = re.compile(r"-?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_number(num: Union[ast.Num, float, int]) -> str:
    """A number literal: the source text when it is one, else the shortest repr of the value.

    A ValueError for values no literal can write (inf, nan).
    """
    if isinstance(num, ast.Num):
        text = (num.text or "").strip()
        if _NUMBER.fullmatch(text):
            return text
        num = num.value
    value = float(num)
    if not math.isfinite(value):
        raise ValueError(f"no .hode number literal for {value!r}")
    if value == int(value) and abs(value) < 1e16:
        return str(int(value)) if value != 0 or math.copysign(1.0, value) > 0 else "-0.0"
    return repr(value)


def quote_doc(doc: str) -> str:
    """A doc string as a .hode STRING literal (which cannot hold '"' or line breaks)."""
    text = re.sub(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+", " ", doc).replace('"', "'")
    return f'"{text}"'


def _name(name: Union[ast.Name, str]) -> str:
    text = name.id if isinstance(name, ast.Name) else name
    if not isinstance(text, str) or not _NAME.fullmatch(text):
        raise ValueError(f"not a valid .hode name: {text!r}")
    return text


# ---------------------------------------------------------------- expressions
def _is_negative_number(e: ast.Expr) -> bool:
    return isinstance(e, ast.Num) and format_number(e).startswith("-")


def precedence(e: ast.Expr) -> int:
    """How tightly an expression binds (the grammar level it parses at)."""
    if isinstance(e, ast.Logic):
        return {"or": OR, "and": AND, "not": NOT}[e.op]
    if isinstance(e, ast.Compare):
        return COMPARE
    if isinstance(e, ast.Binary):
        return {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "^": POWER, "**": POWER}[e.op]
    if isinstance(e, ast.Neg) or _is_negative_number(e):
        return UNARY  # a negative number built by hand prints as a unary minus
    return ATOM


def unparse_expr(expr: ast.Expr) -> str:
    """An expression as .hode text with minimal parentheses (iterative: deep sums do not hit the stack limit)."""
    out: list[str] = []
    stack: list = [(expr, 0)]  # (node, least precedence it may print at without parentheses) or a literal str
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node, least = item
        parts = _parts(node)
        if precedence(node) < least:
            parts = ["("] + parts + [")"]
        stack.extend(reversed(parts))
    return "".join(out)


def _parts(e: ast.Expr) -> list:
    """The pieces of one node: literal strings and (child, least precedence) pairs."""
    if isinstance(e, ast.Num):
        return [format_number(e)]
    if isinstance(e, ast.Name):
        return [_name(e)]
    if isinstance(e, ast.Call):
        parts: list = [_name(e.func), "("]
        for i, arg in enumerate(e.args):
            parts += ([", "] if i else []) + [(arg, 0)]
        return parts + [")"]
    if isinstance(e, ast.If):
        return ["if(", (e.cond, 0), ", ", (e.then, 0), ", ", (e.orelse, 0), ")"]
    if isinstance(e, ast.Neg):
        # '- -x' and '- -1', not '--x': a space keeps the two minus signs apart for the reader
        inner_negative = isinstance(e.operand, ast.Neg) or _is_negative_number(e.operand)
        return ["- " if inner_negative else "-", (e.operand, UNARY)]
    if isinstance(e, ast.Binary):
        if e.op in ("^", "**"):
            return [(e.left, ATOM), "^", (e.right, UNARY)]
        level = SUM if e.op in "+-" else PRODUCT
        return [(e.left, level), f" {e.op} ", (e.right, level + 1)]  # left-associative
    if isinstance(e, ast.Compare):
        return [(e.left, SUM), f" {e.op} ", (e.right, SUM)]  # non-associative
    if isinstance(e, ast.Logic):
        if e.op == "not":
            return ["not ", (e.left, NOT)]
        level = OR if e.op == "or" else AND
        return [(e.left, level), f" {e.op} ", (e.right, level + 1)]
    raise TypeError(f"not an expression node: {type(e).__name__}")


# ---------------------------------------------------------------- statements
def _doc(doc: Optional[str]) -> str:
    return "" if doc is None else " " + quote_doc(doc)


def _side(species: tuple) -> str:
    if not species:
        return "0"
    return " + ".join(_name(s.name) if s.coefficient is None else f"{format_number(s.coefficient)} {_name(s.name)}"
                      for s in species)


def _noise(noise: Optional[ast.Noise]) -> str:
    if noise is None:
        return ""
    return f" ~ {_name(noise.distribution)}({', '.join(unparse_expr(a) for a in noise.args)})"


def unparse_statement(stmt: ast.Statement) -> str:
    """One statement as one line of .hode text (no trailing newline)."""
    if isinstance(stmt, ast.ModelDecl):
        return f"model {_name(stmt.name)}{_doc(stmt.doc)}"
    if isinstance(stmt, ast.ParamDecl):
        option = ""
        if stmt.kind == "bounded":
            low, high = stmt.bounds
            option = f" in ({format_number(low)}, {format_number(high)})"
        elif stmt.kind in ("fixed", "positive"):
            option = f" {stmt.kind}"
        elif stmt.kind != "free":
            raise ValueError(f"unknown param kind {stmt.kind!r}")
        return f"param {_name(stmt.name)} = {format_number(stmt.value)}{option}{_doc(stmt.doc)}"
    if isinstance(stmt, ast.InputDecl):
        return f"input {_name(stmt.name)}{_doc(stmt.doc)}"
    if isinstance(stmt, ast.StateDecl):
        size = "" if stmt.size is None else f" in {_name(stmt.size)}"
        return f"state {_name(stmt.name)} = {unparse_expr(stmt.initial)}{size}{_doc(stmt.doc)}"
    if isinstance(stmt, ast.FunctionDecl):
        args = ", ".join(_name(a) for a in stmt.args)
        return f"function {_name(stmt.name)}({args}) = {unparse_expr(stmt.body)}"
    if isinstance(stmt, ast.LetDecl):
        return f"let {_name(stmt.name)} = {unparse_expr(stmt.value)}"
    if isinstance(stmt, ast.ReactionDecl):
        arrow = "<->" if stmt.reversible else "->"
        keep = " keep" if stmt.keep else ""
        return (f"reaction {_name(stmt.name)}: {_side(stmt.reactants)} {arrow} {_side(stmt.products)} ; "
                f"{unparse_expr(stmt.rate)}{keep}")
    if isinstance(stmt, ast.DerDecl):
        return f"der {_name(stmt.target)} = {unparse_expr(stmt.value)}{' keep' if stmt.keep else ''}"
    if isinstance(stmt, ast.NeuralDecl):
        args = ", ".join(("keep " if a.keep else "") + _name(a.name) for a in stmt.args)
        text = f"neural {_name(stmt.name)}({args})"
        if stmt.outputs is not None:
            text += " -> " + ", ".join(_name(o) for o in stmt.outputs)
        if stmt.hidden is not None:
            if not stmt.hidden or any(not isinstance(w, int) or w < 0 for w in stmt.hidden):
                raise ValueError(f"hidden widths must be non-negative integers, got {stmt.hidden!r}")
            text += " hidden " + " ".join(str(w) for w in stmt.hidden)
        if stmt.activation is not None:
            text += f" activation {_name(stmt.activation)}"
        if stmt.positive:
            text += " positive"
        return text
    if isinstance(stmt, ast.ObserveDecl):
        return f"observe {_name(stmt.name)} = {unparse_expr(stmt.value)}{_noise(stmt.noise)}"
    if isinstance(stmt, ast.EventDecl):
        return _event(stmt)
    raise TypeError(f"not a statement node: {type(stmt).__name__}")


def _event(stmt: ast.EventDecl) -> str:
    assignments = ", ".join(f"{_name(a.target)} {a.op} {unparse_expr(a.value)}" for a in stmt.assignments)
    if stmt.kind == "at":
        return f"at t = {', '.join(unparse_expr(e) for e in stmt.times)}: {assignments}"
    if stmt.kind == "when":
        return f"when {unparse_expr(stmt.trigger)}: {assignments}"
    raise ValueError(f"unknown event kind {stmt.kind!r}")


def statement_group(stmt: ast.Statement) -> str:
    """The kind of a statement, for layout: a blank line separates runs of different kinds."""
    return type(stmt).__name__


def unparse(spec: Union[ast.SpecFile, Iterable[ast.Statement]], header: Iterable[str] = ()) -> str:
    """A whole file: optional comment lines (``header``, each a single line, '# ' added), then one statement per
    line, a blank line between runs of statements of different kinds; ends with a newline."""
    statements = spec.statements if isinstance(spec, ast.SpecFile) else list(spec)
    lines = []
    for comment in header:
        lines.append("# " + re.sub(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+", " ", comment))
    if lines and statements:
        lines.append("")
    previous = None
    for stmt in statements:
        group = statement_group(stmt)
        if previous is not None and group != previous:
            lines.append("")
        lines.append(unparse_statement(stmt))
        previous = group
    return "\n".join(lines) + "\n"
