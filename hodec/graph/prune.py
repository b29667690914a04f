"""The pruned spec of `hodec sparsify`: the original text minus pruned reactions, der terms, slot arguments and
the states that no longer reach an observed quantity, edited line by line so comments and layout survive."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterable

import networkx as nx

from ..model.build import additive_terms
from ..syntax import ast
from ..syntax.unparse import unparse_statement

if TYPE_CHECKING:  # the compiler sits above the graph layer: prune takes its result, never calls it
    from ..compiler import Compilation


@dataclass(frozen=True)
class Pruning:
    source: str  # the pruned spec text
    states_kept: tuple
    states_dropped: tuple


def prune_spec(spec: "Compilation", pruned: Iterable[str], observed: Iterable[str] = ()) -> Pruning:
    """Remove from a compiled spec the gates named in `pruned` (reaction names, der_<x>.<i>, <slot>.<arg>), then
    every state that no longer reaches an observable or a state in `observed` (the states with a data column) or
    one that an event reads or assigns (events are no edges of the graph; they stay whole)."""
    pruned = set(pruned)
    keep = _reaching_states(spec.graph, pruned, set(observed) | _held_states(spec.model))
    states = tuple(s.name for s in spec.model.states)
    dropped = set(states) - keep
    edits = {}
    for stmt in spec.ast.statements:
        new = _edit(stmt, pruned, dropped)
        if new is not stmt:
            edits[stmt.span.line] = new
    text = _apply(spec.source, spec.ast.statements, edits)
    return Pruning(text, tuple(s for s in states if s in keep), tuple(s for s in states if s in dropped))


def _held_states(model) -> set:
    """The states kept whatever the graph says: those events assign, and those events and initial values read
    (through lets; a state's initial value may be another's)."""
    lets = {let.name: let.value for let in model.lets}
    exprs = [s.initial for s in model.states]
    exprs += [e for event in model.events for e in (*event.times, *filter(None, [event.trigger]),
                                                   *(a.value for a in event.assignments))]
    names = ast.reads_through_lets(exprs, lets) | {name for event in model.events for name in event.targets}
    return {s.name for s in model.states if s.name in names}


def _reaching_states(G: nx.DiGraph, pruned: set, observed: set) -> set:
    live = nx.DiGraph()
    live.add_nodes_from(G.nodes(data=True))
    live.add_edges_from((u, v) for u, v, d in G.edges(data=True) if any(c.name not in pruned for c in d["causes"]))
    targets = {n for n, d in G.nodes(data=True) if d["observed"]} | (observed & set(G.nodes))
    reach = set(targets)
    for target in targets:
        reach |= nx.ancestors(live, target)
    return {n for n in reach if G.nodes[n]["kind"] == "state"}


def _edit(stmt, pruned: set, dropped: set):
    """The statement as it stays: itself, a rewritten copy, or None (removed)."""
    if isinstance(stmt, ast.StateDecl):
        return None if stmt.name.id in dropped else stmt
    if isinstance(stmt, ast.ReactionDecl):
        if stmt.name.id in pruned:
            return None
        left = tuple(s for s in stmt.reactants if s.name.id not in dropped)
        right = tuple(s for s in stmt.products if s.name.id not in dropped)
        if (left, right) == (stmt.reactants, stmt.products):
            return stmt
        return replace(stmt, reactants=left, products=right) if left or right else None
    if isinstance(stmt, ast.DerDecl):
        return _edit_der(stmt, pruned, dropped)
    if isinstance(stmt, ast.NeuralDecl) and stmt.outputs is not None:
        return _edit_slot(stmt, pruned, dropped)
    if isinstance(stmt, ast.LetDecl) and any(n.id in dropped for n in ast.names_in(stmt.value)):
        return None  # only dropped states could still use it
    return stmt


def _edit_der(stmt: ast.DerDecl, pruned: set, dropped: set):
    if stmt.target.id in dropped:
        return None
    terms = additive_terms(stmt.value)
    kept = [t for i, t in enumerate(terms) if f"der_{stmt.target.id}.{i}" not in pruned]
    if len(kept) == len(terms):
        return stmt
    if not kept:
        return None
    value = kept[0]
    for term in kept[1:]:
        if isinstance(term, ast.Neg):
            value = ast.Binary("-", value, term.operand, term.span)
        else:
            value = ast.Binary("+", value, term, term.span)
    return replace(stmt, value=value)


def _edit_slot(stmt: ast.NeuralDecl, pruned: set, dropped: set):
    args = tuple(a for a in stmt.args if f"{stmt.name.id}.{a.name.id}" not in pruned and a.name.id not in dropped)
    outputs = tuple(o for o in stmt.outputs if o.id not in dropped)
    if (args, outputs) == (stmt.args, stmt.outputs):
        return stmt
    return replace(stmt, args=args, outputs=outputs) if args and outputs else None


def _apply(source: str, statements: list, edits: dict) -> str:
    """Replace or delete the edited statements' lines; a trailing comment stays with a rewritten statement."""
    lines = source.splitlines(keepends=True)
    for stmt in statements:
        line = stmt.span.line
        if line not in edits:
            continue
        new = edits[line]
        if new is None:
            lines[line - 1] = ""
            continue
        text = lines[line - 1]
        rest = text[stmt.span.end_column - 1:].rstrip("\r\n")
        lines[line - 1] = unparse_statement(new) + rest + ("\n" if text.endswith("\n") else "")
    return "".join(lines)
