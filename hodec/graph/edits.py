"""Domain-informed graph edits of HGS (Zou & Tian, "Automatic and Structure-Aware Sparsification of Hybrid Neural
ODEs", ICLR 2026, arXiv 2505.18996): pure functions from a networkx DiGraph to a new one; the input is not changed.

- ``merge_sccs``: collapse each strongly connected component (more than one node) into a super-node with a
  self-loop, giving the relaxed DAG (a DAG once self-loops and expert-kept loops are set aside).
- ``partial_transitive_closure``: shortcut edges along the pathways from an input to an observable, among the
  input, the cut vertices of the pathway (the nodes on every input → observable path) and the observable; never
  the direct input → observable edge.
- ``full_transitive_closure``: every skip edge (u → w whenever w is reachable from u).

Added edges carry ``shortcut=True``, ``causes=()`` and ``self_loop=False``; merged edges keep the union of the
causes of the edges they replace and list those in ``merged_from``.
"""
from __future__ import annotations

from typing import Iterable

import networkx as nx

from .extract import merge_causes


def merge_sccs(G: nx.DiGraph, keep_loops: Iterable[Iterable[str]] = ()) -> tuple[nx.DiGraph, dict[str, str]]:
    """Collapse every strongly connected component of more than one node into one super-node with a self-loop.

    ``keep_loops`` lists loops the expert keeps, each a set of node names: a component that contains all the
    nodes of a kept loop is left as it is. A kept loop whose nodes are not all in one component (so not on a
    common cycle) is a ValueError, as is an unknown name.

    Returns (H, mapping): mapping sends every node of G to its node in H (itself unless merged). A super-node is
    named by joining its members with '_' in G's node order (with a suffix if that name is taken) and has
    attributes ``members`` (tuple), ``kind`` (the members' common kind, else "merged"), ``observed`` (any
    member observed), ``observables`` (their union). H.graph["merged"] maps each super-node to its members and
    H.graph["observables"] (when G has it) is rewritten in H's node names.
    """
    order = {n: i for i, n in enumerate(G.nodes)}
    components = sorted((sorted(c, key=order.__getitem__) for c in nx.strongly_connected_components(G)),
                        key=lambda c: order[c[0]])
    component_of = {n: i for i, c in enumerate(components) for n in c}
    exempt = set()
    for loop in keep_loops:
        loop = set(loop)
        unknown = sorted(n for n in loop if n not in G)
        if unknown:
            raise ValueError(f"--keep-loop names unknown nodes: {', '.join(map(str, unknown))}")
        found = {component_of[n] for n in loop}
        if len(found) != 1:
            raise ValueError(f"--keep-loop {','.join(sorted(map(str, loop)))}: these nodes are not on a common "
                             f"cycle (not in one strongly connected component)")
        exempt |= found

    taken = set(G.nodes)
    mapping: dict[str, str] = {}
    merged: dict[str, tuple] = {}
    H = nx.DiGraph(**G.graph)
    for i, members in enumerate(components):
        if len(members) == 1 or i in exempt:
            for n in members:
                mapping[n] = n
            continue
        name = _fresh("_".join(map(str, members)), taken)
        taken.add(name)
        merged[name] = tuple(members)
        for n in members:
            mapping[n] = name
    for n, data in G.nodes(data=True):
        m = mapping[n]
        if m in H:
            continue
        if m not in merged:
            H.add_node(n, **data)
            continue
        members = merged[m]
        kinds = {G.nodes[x].get("kind") for x in members}
        observables = tuple(dict.fromkeys(o for x in members for o in G.nodes[x].get("observables", ())))
        H.add_node(m, kind=kinds.pop() if len(kinds) == 1 else "merged", members=members,
                   observed=any(G.nodes[x].get("observed", False) for x in members), observables=observables)
    for u, v, data in G.edges(data=True):
        a, b = mapping[u], mapping[v]
        if a not in merged and b not in merged:
            H.add_edge(a, b, **data)
            continue
        if H.has_edge(a, b):
            e = H.edges[a, b]
            e["causes"] = merge_causes(e["causes"], data.get("causes", ()))
            e["merged_from"] += ((u, v),)
            e["shortcut"] = e.get("shortcut", False) and data.get("shortcut", False)
        else:
            H.add_edge(a, b, causes=tuple(data.get("causes", ())), self_loop=a == b, merged_from=((u, v),),
                       shortcut=data.get("shortcut", False))
    H.graph["merged"] = {**G.graph.get("merged", {}), **merged}
    if "observables" in G.graph:  # observe name -> the nodes it reads, now in H
        H.graph["observables"] = {name: tuple(dict.fromkeys(mapping[n] for n in nodes))
                                  for name, nodes in G.graph["observables"].items()}
    return H, mapping


def _fresh(name: str, taken: set) -> str:
    if name not in taken:
        return name
    i = 1
    while f"{name}_scc{i if i > 1 else ''}" in taken:
        i += 1
    return f"{name}_scc{i if i > 1 else ''}"


def cut_vertices(G: nx.DiGraph, source: str, target: str) -> list[str]:
    """The nodes other than source and target on every source → target path, in path order.

    These are the dominators of target in the graph rooted at source (networkx's immediate_dominators).
    A ValueError when a name is unknown, source is target, or target cannot be reached from source.
    """
    for n in (source, target):
        if n not in G:
            raise ValueError(f"unknown node '{n}'")
    if source == target:
        raise ValueError(f"a pathway needs two different nodes, got '{source}' twice")
    reachable = nx.descendants(G, source)
    if target not in reachable:
        raise ValueError(f"no pathway from '{source}' to '{target}'")
    pathway = G.subgraph((reachable | {source}) & (nx.ancestors(G, target) | {target}))
    idom = nx.immediate_dominators(pathway, source)
    chain, node = [], idom[target]
    while node != source:
        chain.append(node)
        node = idom[node]
    return chain[::-1]


def partial_transitive_closure(G: nx.DiGraph, source: str, target: str,
                               exclude: Iterable[tuple[str, str]] = ()) -> nx.DiGraph:
    """Add the shortcut edges along the pathways from ``source`` (an input) to ``target`` (an observed node).

    With c1..ck the cut vertices of the pathway (cut_vertices) in path order, every missing edge a → b with a
    before b in (source, c1, ..., ck, target) is added, except the direct source → target edge and the pairs in
    ``exclude``. Meant for the relaxed DAG (after merge_sccs), where paths are walks; on a graph with cycles the
    pathway is the set of nodes reachable from source that reach target.
    """
    exclude = _pairs(G, exclude)
    chain = [source, *cut_vertices(G, source, target), target]
    H = G.copy()
    for i, a in enumerate(chain):
        for b in chain[i + 1:]:
            if (a, b) != (source, target) and (a, b) not in exclude and not H.has_edge(a, b):
                H.add_edge(a, b, causes=(), self_loop=False, shortcut=True)
    return H


def full_transitive_closure(G: nx.DiGraph, exclude: Iterable[tuple[str, str]] = ()) -> nx.DiGraph:
    """Add every skip edge u → w (w reachable from u, w ≠ u, no edge yet) except the pairs in ``exclude``."""
    exclude = _pairs(G, exclude)
    closure = nx.transitive_closure(G, reflexive=None)  # reflexive=None: no self-loops added
    H = G.copy()
    for a, b in closure.edges:
        if a != b and (a, b) not in exclude and not H.has_edge(a, b):
            H.add_edge(a, b, causes=(), self_loop=False, shortcut=True)
    return H


def shortcut_edges(G: nx.DiGraph) -> list[tuple[str, str]]:
    """The edges a closure added."""
    return [(u, v) for u, v, s in G.edges(data="shortcut", default=False) if s]


def _pairs(G: nx.DiGraph, pairs: Iterable[tuple[str, str]]) -> set:
    out = set()
    for pair in pairs:
        a, b = pair
        for n in (a, b):
            if n not in G:
                raise ValueError(f"excluded shortcut {a} -> {b}: unknown node '{n}'")
        out.add((a, b))
    return out
