"""The edges of a model's interaction graph, read off its symbolic expressions (the graph package draws, edits and
prunes them; the generated module lists them in `edges_table`).

There is an edge u → v (states and inputs) when u appears in v's derivative: in the rate of a flux that changes v
(a reaction with a non-zero net coefficient for v, or a term of `der v`), directly or through lets and the
arguments of neural function calls; or as an argument of a residual slot with v among its outputs. Every edge
carries its *causes*, one per gate that can remove it (see EdgeCause).

Events (`at`, `when`) make no edges: the graph is the structure of the vector field, which gates, pruning and the
MNODE transform act on, and an event's assignments are jumps outside it (graph/prune.py keeps every state an event
reads or assigns, and the event whole). A param an event assigns is a state of the generated module but, being a
param of the spec, no node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .dependencies import Dependencies
from .lower import SymbolicModel

NODE_KINDS = ("state", "input")


@dataclass(frozen=True)
class EdgeCause:
    """One reason for an edge: a gate that, set to 0, removes this contribution of the source to the target."""

    kind: str  # reaction | term | neural_input
    name: str  # reaction name, der_<state>.<i>, or <slot>.<argument>
    keep: bool = False  # the spec marks it `keep`: never gated
    via: tuple[str, ...] = ()  # lets and neural-function arguments (slot.arg) crossed, sorted


def interaction_edges(sm: SymbolicModel) -> dict[tuple[str, str], tuple[EdgeCause, ...]]:
    """(source, target) → causes in declaration order; edges ordered by source node (states, then inputs, in
    declaration order), then by first appearance."""
    model = sm.model
    deps = Dependencies(sm)
    edges: dict = {}

    def add(source: str, target: str, cause: EdgeCause):
        edges[source, target] = merge_causes(edges.get((source, target), ()), (cause,))

    for flux in sm.fluxes:
        if flux.kind == "slot":
            continue  # residual slots: handled per argument below
        targets = [model.states[i].name for i, c in flux.stoichiometry if c != 0]
        for source, via in node_sources(sm, deps, flux.rate).items():
            cause = EdgeCause(flux.kind, flux.name, flux.keep, tuple(sorted(via)))
            for target in targets:
                add(source, target, cause)
    for slot in model.slots:
        if slot.is_function:
            continue  # a function's arguments are formal names; its call sites are traced inside the rates
        for arg in slot.args:
            cause = EdgeCause("neural_input", f"{slot.name}.{arg.name}", arg.keep)
            for source in node_sources(sm, deps, sm.symbols[arg.name]):  # a state or input by name, or t (none)
                for target in slot.outputs:
                    add(source, target, cause)
    nodes = [s.name for s in model.states] + [i.name for i in model.inputs]
    return {edge: edges[edge] for source in nodes for edge in edges if edge[0] == source}


def node_sources(sm: SymbolicModel, deps: Dependencies, expr) -> dict[str, frozenset]:
    """The states and inputs an expression reads: node name → the lets and `slot.arg` names crossed on the way
    (params, t and residual-slot outputs are no nodes)."""
    return {sm.leaves[sym].name: deps.steps(expr, sym) for sym in deps.reads(expr)
            if sm.leaves[sym].kind in NODE_KINDS}


def merge_causes(*groups: Iterable[EdgeCause]) -> tuple[EdgeCause, ...]:
    """The causes of several edges as one edge's: one per (kind, name), their `via`s united, first-seen order."""
    out: dict[tuple[str, str], EdgeCause] = {}
    for group in groups:
        for c in group:
            seen = out.get((c.kind, c.name))
            out[(c.kind, c.name)] = c if seen is None else EdgeCause(
                c.kind, c.name, seen.keep and c.keep, tuple(sorted(set(seen.via) | set(c.via))))
    return tuple(out.values())
