"""The interaction graph of a model, read off the SymPy expressions of its SymbolicModel (never off the text).

Nodes are the states and inputs. There is an edge u → v when u appears in v's derivative: in the rate of a flux
that changes v (a reaction with a non-zero net coefficient for v, or a term of `der v`), directly or through
`let`s and the arguments of neural function calls; or as an argument of a residual slot with v among its outputs.

Every edge carries the *causes* responsible for it, one per gate that can remove it:

- ``reaction`` / ``term``: the flux (reaction name, ``der_x.i``) whose rate reads u and whose stoichiometry
  changes v. ``via`` lists the lets (``name``) and neural function arguments (``slot.arg``) crossed on the way
  from the flux's rate to u (empty when the rate reads u directly).
- ``neural_input``: the argument ``slot.arg`` of a residual slot ``neural slot(..., u, ...) -> ..., v, ...``.

A reaction A -> B with rate k*A gives the self-loop A → A (``self_loop=True``) and A → B; self-loops are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import networkx as nx

from ..symbolic.dependencies import Dependencies
from ..symbolic.lower import SymbolicModel

NODE_KINDS = ("state", "input")


@dataclass(frozen=True)
class EdgeCause:
    """One reason for an edge: a gate that, set to 0, removes this contribution of the source to the target."""

    kind: str  # reaction | term | neural_input
    name: str  # reaction name, der_<state>.<i>, or <slot>.<argument>
    keep: bool = False  # the spec marks it `keep`: never gated
    via: tuple[str, ...] = ()  # lets and neural-function arguments (slot.arg) crossed, sorted


def interaction_graph(sm: SymbolicModel) -> nx.DiGraph:
    """The model's interaction graph (see the module docstring for what nodes, edges and attributes mean).

    Node attributes: ``kind`` (state | input), ``index`` (position in its vector), ``observed`` (an `observe`
    reads it, through lets and calls included) and ``observables`` (the names of those observes).
    Edge attributes: ``causes`` (tuple of EdgeCause, in declaration order) and ``self_loop``.
    Graph attributes: ``name`` (the model's name) and ``observables`` (observe name → tuple of nodes it reads).
    """
    model = sm.model
    deps = Dependencies(sm)
    G = nx.DiGraph(name=model.name)
    for kind, items in (("state", model.states), ("input", model.inputs)):
        for index, item in enumerate(items):
            G.add_node(item.name, kind=kind, index=index, observed=False, observables=())

    for flux in sm.fluxes:
        if flux.kind == "slot":
            continue  # residual slots: handled per argument below
        targets = [model.states[i].name for i, c in flux.stoichiometry if c != 0]
        for source, via in _sources(sm, deps, flux.rate).items():
            cause = EdgeCause(flux.kind, flux.name, flux.keep, tuple(sorted(via)))
            for target in targets:
                _add_cause(G, source, target, cause)

    for slot in model.slots:
        if slot.is_function:
            continue  # a function's arguments are formal names; its call sites are traced inside the rates
        for arg in slot.args:
            cause = EdgeCause("neural_input", f"{slot.name}.{arg.name}", arg.keep)
            for source in _sources(sm, deps, sm.symbols[arg.name]):  # a state or input by name, or t (no node)
                for target in slot.outputs:
                    _add_cause(G, source, target, cause)

    observables = {}
    for obs, expr in zip(model.observables, sm.observables):
        sources = _sources(sm, deps, expr)
        nodes = tuple(n for n in G.nodes if n in sources)
        observables[obs.name] = nodes
        for n in nodes:
            G.nodes[n]["observed"] = True
            G.nodes[n]["observables"] += (obs.name,)
    G.graph["observables"] = observables
    return G


def graph_of_source(source: str, filename: str = "<spec>") -> nx.DiGraph:
    """Parse, check and lower a spec, then extract its interaction graph."""
    from ..compiler import symbolic

    return interaction_graph(symbolic(source, filename))


def merge_causes(*groups: Iterable[EdgeCause]) -> tuple[EdgeCause, ...]:
    """The causes of several edges as one edge's: one per (kind, name), their `via`s united, first-seen order."""
    out: dict[tuple[str, str], EdgeCause] = {}
    for group in groups:
        for c in group:
            seen = out.get((c.kind, c.name))
            out[(c.kind, c.name)] = c if seen is None else EdgeCause(
                c.kind, c.name, seen.keep and c.keep, tuple(sorted(set(seen.via) | set(c.via))))
    return tuple(out.values())


def _sources(sm: SymbolicModel, deps: Dependencies, expr) -> dict[str, frozenset]:
    """The states and inputs an expression reads: node name -> the lets and `slot.arg` names crossed on the way
    (params, t and residual-slot outputs read no node)."""
    return {sm.leaves[sym].name: via for sym, via in deps.reads(expr).items() if sm.leaves[sym].kind in NODE_KINDS}


def _add_cause(G: nx.DiGraph, source: str, target: str, cause: EdgeCause):
    if G.has_edge(source, target):
        data = G.edges[source, target]
        data["causes"] = merge_causes(data["causes"], (cause,))
    else:
        G.add_edge(source, target, causes=(cause,), self_loop=source == target)


# ---------------------------------------------------------------- queries
def edge_names(G: nx.DiGraph, u: str, v: str) -> list[str]:
    """The names of the causes of an edge (shortcut edges added by a closure have none)."""
    return [c.name for c in G.edges[u, v].get("causes", ())]


def gate_edges(G: nx.DiGraph) -> list[dict]:
    """One entry per gate that carries at least one edge: kind, name, keep, source and target (name lists).

    Gates whose flux reads no state or input (a constant term, a slot argument `t`) carry no edge and are absent.
    """
    table: dict[tuple[str, str], dict] = {}
    for u, v, data in G.edges(data=True):
        for c in data.get("causes", ()):
            entry = table.setdefault((c.kind, c.name), {"kind": c.kind, "name": c.name, "keep": c.keep,
                                                         "source": [], "target": []})
            if u not in entry["source"]:
                entry["source"].append(u)
            if v not in entry["target"]:
                entry["target"].append(v)
    return list(table.values())


def resolve_nodes(G: nx.DiGraph, name: str) -> tuple[str, ...]:
    """A node by name, or the nodes an `observe` of that name reads (for closure targets such as `u:glucose`)."""
    if name in G:
        return (name,)
    observables = G.graph.get("observables", {})
    if name in observables:
        return tuple(observables[name])
    raise KeyError(name)


def edges_by_cause(G: nx.DiGraph, names: Iterable[str]) -> list[tuple[str, str]]:
    """The edges that one of the given cause names (reaction, der_x.i, slot.arg) is responsible for."""
    wanted = set(names)
    return [(u, v) for u, v, data in G.edges(data=True) if any(c.name in wanted for c in data.get("causes", ()))]
