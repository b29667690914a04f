"""Events → SymPy: each event's times, its trigger as a root function, and its assignments as new state values.

A `when COND` event fires when COND goes from false to true; the solver locates that crossing as a sign change
of a root function g(t, y), positive exactly where COND holds (README, "The language"):

    a > b, a >= b  →  a − b            c1 and c2  →  min(g1, g2)
    a < b, a <= b  →  b − a            c1 or c2   →  max(g1, g2)
                                       not c      →  −g

and xor and implies by those forms: implies(c1, c2) is (not c1) or c2, xor(c1, c2) is (c1 and not c2) or
(not c1 and c2), xor of more conditions xor(xor(c1, c2), c3) and so on.

(`==` and `!=` have no crossing: the model checks refuse them.) An assignment's new value reads the states before
the event: `x += e` is x + e, `x -= e` is x − e, `x = e` is e, all of one event computed from the same y.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import sympy

from ..model.model import Event
from ..syntax import ast


@dataclass(frozen=True)
class SymbolicEvent:
    kind: str  # at | when
    text: str  # the statement as .hode text
    line: int  # where the spec has it
    times: tuple  # at: one expression of params per time
    root: Optional[sympy.Expr]  # when: g(t, y) > 0 where the condition holds
    targets: tuple[int, ...]  # the state index each assignment changes, in the event's order
    values: tuple  # each target's new value, reading the states before the event


def lower_events(events: tuple[Event, ...], convert: Callable, symbols: dict, state_index: dict) -> list:
    """`convert`: syntax tree → SymPy; `symbols`: name → the Symbol expressions read; `state_index`: name → index
    of the state it is in the module (event-assigned params included)."""
    out = []
    for event in events:
        values = tuple(_new_value(a, convert, symbols) for a in event.assignments)
        root = None if event.trigger is None else root_function(event.trigger, convert)
        out.append(SymbolicEvent(event.kind, event.text, event.span.line, tuple(convert(e) for e in event.times),
                                 root, tuple(state_index[a.target] for a in event.assignments), values))
    return out


def event_expressions(events: list) -> list:
    """Every expression of the (symbolic) events: times, root functions and new values."""
    roots = [event.root for event in events if event.root is not None]
    return [time for event in events for time in event.times] + roots + [v for event in events for v in event.values]


def _new_value(assignment, convert: Callable, symbols: dict) -> sympy.Expr:
    value = convert(assignment.value)
    old = symbols[assignment.target]
    return {"=": value, "+=": old + value, "-=": old - value}[assignment.op]


def root_function(cond: ast.Expr, convert: Callable) -> sympy.Expr:
    """g, positive where the condition holds (the table above)."""
    if isinstance(cond, ast.Compare):
        left, right = convert(cond.left), convert(cond.right)
        return left - right if cond.op in (">", ">=") else right - left
    if isinstance(cond, ast.Call):  # xor, implies: conditions of conditions
        roots = [root_function(arg, convert) for arg in cond.args]
        if cond.func == "implies":
            return sympy.Max(-roots[0], roots[1])
        return functools.reduce(lambda g, h: sympy.Max(sympy.Min(g, -h), sympy.Min(-g, h)), roots)
    if cond.op == "not":
        return -root_function(cond.left, convert)
    parts = root_function(cond.left, convert), root_function(cond.right, convert)
    return sympy.Min(*parts) if cond.op == "and" else sympy.Max(*parts)
