"""Parsed file → typed Model, after every check has passed."""
from __future__ import annotations

from ..errors import HodecError
from ..syntax import ast
from ..syntax.unparse import unparse_statement
from .check import run_checks, let_order
from .model import (DEFAULT_HIDDEN, Assignment, Der, Event, Function, Input, Let, Model, Noise, Observable, Param,
                    Reaction, Slot, SlotArg, State)


def build_model(spec: ast.SpecFile) -> Model:
    ctx = run_checks(spec.statements)
    if ctx.errors:
        raise HodecError(ctx.errors, spec.filename, spec.source)
    of = ctx.of_type
    lets = {s.name.id: Let(s.name.id, s.value, s.span) for s in of(ast.LetDecl)}
    return Model(
        name=of(ast.ModelDecl)[0].name.id,
        doc=of(ast.ModelDecl)[0].doc,
        params=tuple(_param(p) for p in of(ast.ParamDecl)),
        inputs=tuple(Input(i.name.id, i.doc, i.span) for i in of(ast.InputDecl)),
        states=tuple(State(s.name.id, s.initial, s.doc, s.span, s.size and s.size.id) for s in of(ast.StateDecl)),
        lets=tuple(lets[name] for name in let_order(ctx)),
        reactions=tuple(_reaction(r) for r in of(ast.ReactionDecl)),
        ders=tuple(Der(d.target.id, tuple(additive_terms(d.value)), d.keep, d.span) for d in of(ast.DerDecl)),
        slots=tuple(_slot(n) for n in of(ast.NeuralDecl)),
        observables=tuple(Observable(o.name.id, o.value, o.span, _noise(o.noise)) for o in of(ast.ObserveDecl)),
        filename=spec.filename,
        events=tuple(_event(e) for e in of(ast.EventDecl)),
        functions=tuple(Function(f.name.id, tuple(a.id for a in f.args), f.body, f.span)
                        for f in of(ast.FunctionDecl)),
    )


def _event(e: ast.EventDecl) -> Event:
    assignments = tuple(Assignment(a.target.id, a.op, a.value, a.span) for a in e.assignments)
    return Event(e.kind, e.times, e.trigger, assignments, unparse_statement(e), e.span)


def _noise(noise) -> Noise | None:
    return None if noise is None else Noise(noise.distribution.id, noise.args[0], noise.span)


def _param(p: ast.ParamDecl) -> Param:
    low, high = (None, None) if p.bounds is None else (p.bounds[0].value, p.bounds[1].value)
    return Param(p.name.id, p.value.value, p.kind, low, high, p.doc, p.span)


def _side(species) -> tuple[tuple[str, float], ...]:
    merged: dict[str, float] = {}
    for sp in species:  # 'A + A' is '2 A'
        merged[sp.name.id] = merged.get(sp.name.id, 0.0) + (1.0 if sp.coefficient is None else sp.coefficient.value)
    return tuple(merged.items())


def _reaction(r: ast.ReactionDecl) -> Reaction:
    return Reaction(r.name.id, _side(r.reactants), _side(r.products), r.rate, r.reversible, r.keep, r.span)


def _slot(n: ast.NeuralDecl) -> Slot:
    return Slot(n.name.id, tuple(SlotArg(a.name.id, a.keep) for a in n.args),
                None if n.outputs is None else tuple(o.id for o in n.outputs),
                n.hidden or DEFAULT_HIDDEN, "tanh" if n.activation is None else n.activation.id, n.positive, n.span)


def additive_terms(expr: ast.Expr) -> list[ast.Expr]:
    """Split a sum at its top level: a + b - c → [a, b, -c] (each term keeps its own span)."""
    if isinstance(expr, ast.Binary) and expr.op in "+-":
        right = additive_terms(expr.right)
        if expr.op == "-":
            right = [_negate(term) for term in right]
        return additive_terms(expr.left) + right
    return [expr]


def _negate(term: ast.Expr) -> ast.Expr:
    return term.operand if isinstance(term, ast.Neg) else ast.Neg(term, term.span)
