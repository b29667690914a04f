"""The interaction graph of a model as a networkx graph, built from symbolic.edges (never from the text).

Nodes are the states and inputs; edges and their causes are symbolic.edges.interaction_edges (see there what
an edge means):

- ``reaction`` / ``term``: the flux (reaction name, ``der_x.i``) whose rate reads u and whose stoichiometry
  changes v. ``via`` lists the lets (``name``) and neural function arguments (``slot.arg``) crossed on the way
  from the flux's rate to u (empty when the rate reads u directly).
- ``neural_input``: the argument ``slot.arg`` of a residual slot ``neural slot(..., u, ...) -> ..., v, ...``.

A reaction A -> B with rate k*A gives the self-loop A → A (``self_loop=True``) and A → B; self-loops are kept.
"""
from __future__ import annotations

from typing import Iterable

import networkx as nx

from ..symbolic.dependencies import Dependencies
from ..symbolic.edges import EdgeCause, interaction_edges, merge_causes, node_sources
from ..symbolic.lower import SymbolicModel

__all__ = ["EdgeCause", "interaction_graph", "graph_of_source", "merge_causes", "edge_names", "gate_edges",
           "resolve_nodes", "edges_by_cause"]


def interaction_graph(sm: SymbolicModel) -> nx.DiGraph:
    """The model's interaction graph (see the module docstring for what nodes, edges and attributes mean).

    Node attributes: ``kind`` (state | input), ``index`` (position in its vector), ``observed`` (an `observe`
    reads it, through lets and calls included) and ``observables`` (the names of those observes).
    Edge attributes: ``causes`` (tuple of EdgeCause, in declaration order) and ``self_loop``.
    Graph attributes: ``name`` (the model's name) and ``observables`` (observe name → tuple of nodes it reads).
    """
    model = sm.model
    G = nx.DiGraph(name=model.name)
    for kind, items in (("state", model.states), ("input", model.inputs)):
        for index, item in enumerate(items):
            G.add_node(item.name, kind=kind, index=index, observed=False, observables=())

    for (source, target), causes in interaction_edges(sm).items():
        G.add_edge(source, target, causes=causes, self_loop=source == target)

    deps = Dependencies(sm)
    observables = {}
    for obs, expr in zip(model.observables, sm.observables):
        sources = node_sources(sm, deps, expr)
        nodes = tuple(n for n in G.nodes if n in sources)
        observables[obs.name] = nodes
        for n in nodes:
            G.nodes[n]["observed"] = True
            G.nodes[n]["observables"] += (obs.name,)
    G.graph["observables"] = observables
    return G


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
