"""Pictures of an interaction graph: DOT text, and PNG/SVG/PDF laid out by Graphviz `dot` where it is installed,
else drawn with matplotlib (a layered layout of our own, which can put an edge label on another edge).

Inputs are boxes, states ellipses, observed nodes are drawn doubled (DOT) or filled (matplotlib), super-nodes of
merged components list their members. Edge labels are the names of the causes (reaction, der_x.i, slot.arg);
shortcut edges (closures) are dashed. With ``gates`` (cause name → value, e.g. after a fit) an edge's width
follows its largest |gate| and its label shows each gate's value.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import networkx as nx

from ..files import write_atomic

DOT_SUFFIXES = (".dot", ".gv")
IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
DOT_TIMEOUT_S = 60  # dot lays out a few hundred nodes in seconds; past this, matplotlib draws instead
PNG_DPI = 150  # dot's default 96 makes small graphs blurry


def edge_label(data: dict, gates: Optional[dict] = None) -> str:
    parts = []
    for c in data.get("causes", ()):
        if gates is not None and c.name in gates:
            parts.append(f"{c.name}={gates[c.name]:.3g}")
        else:
            parts.append(c.name)
    return "\n".join(parts)  # a closure's shortcut has no cause: unlabelled, drawn dashed


def edge_gate(data: dict, gates: Optional[dict]) -> Optional[float]:
    """The largest |gate| among an edge's causes, None when no cause has a value (no gates, or all `keep`)."""
    if not gates:
        return None
    values = [abs(float(gates[c.name])) for c in data.get("causes", ()) if c.name in gates]
    return max(values) if values else None


def _width(gate: Optional[float], scale: float) -> float:
    return 1.0 if gate is None else 0.3 + scale * min(gate, 2.0)


def _colour(G: nx.DiGraph, n) -> str:
    data = G.nodes[n]
    return "#f4d8a8" if data.get("kind") == "input" else ("#9ecae1" if data.get("observed") else "#ffffff")


def node_label(G: nx.DiGraph, n) -> str:
    members = G.nodes[n].get("members")
    return f"{n}\n({', '.join(map(str, members))})" if members else str(n)


def to_dot(G: nx.DiGraph, gates: Optional[dict] = None, title: Optional[str] = None) -> str:
    """The graph as Graphviz DOT text."""
    name = title or G.graph.get("name") or "hodec"
    lines = [f"digraph {_quote(name)} {{", "  rankdir=LR;",
             f'  graph [label={_quote(name)}, labelloc="t", fontname="Helvetica"];',  # the title, on top
             '  node [fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];']
    for n, data in G.nodes(data=True):
        attrs = {"label": node_label(G, n), "shape": "box" if data.get("kind") == "input" else "ellipse"}
        if data.get("observed"):
            attrs["peripheries"] = 2
        if data.get("members"):
            attrs["style"] = "bold"
        lines.append(f"  {_quote(n)} [{_attrs(attrs)}];")
    for u, v, data in G.edges(data=True):
        attrs = {"label": edge_label(data, gates)}
        gate = edge_gate(data, gates)
        if gate is not None:
            attrs["penwidth"] = round(_width(gate, 2.5), 3)
        if data.get("shortcut"):
            attrs["style"] = "dashed"
        lines.append(f"  {_quote(u)} -> {_quote(v)} [{_attrs(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quote(text) -> str:
    text = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={_quote(v) if isinstance(v, str) else v}" for k, v in attrs.items())


def layered_layout(G: nx.DiGraph) -> dict:
    """Left to right by longest-path depth (inputs first), nodes of a layer spread vertically, 1 unit apart.

    Nodes are ranked by the topological order of the condensation (within a strongly connected component, by
    G's node order); only edges going forward in that rank count for depth, so a cycle is laid out as a chain.
    """
    C = nx.condensation(G)
    order = {n: i for i, n in enumerate(G.nodes)}
    members = {c: sorted(C.nodes[c]["members"], key=order.__getitem__) for c in C}
    rank = {n: r for r, n in enumerate(n for c in nx.lexicographical_topological_sort(
        C, key=lambda c: order[members[c][0]]) for n in members[c])}
    depth = {}
    for n in sorted(G.nodes, key=rank.__getitem__):
        depth[n] = max((depth[p] + 1 for p in G.predecessors(n) if rank[p] < rank[n]), default=0)
    layers: dict[int, list] = {}
    for n in sorted(G.nodes, key=rank.__getitem__):
        layers.setdefault(depth[n], []).append(n)
    pos = {}
    for x, nodes in layers.items():
        for i, n in enumerate(nodes):
            pos[n] = (float(x), (len(nodes) - 1) / 2.0 - i)
    return pos


def find_dot() -> Optional[str]:
    """The path of Graphviz's `dot` program, None when it is not on PATH."""
    return shutil.which("dot")


def dot_image(dot_text: str, fmt: str) -> Optional[bytes]:
    """The picture of DOT text laid out by `dot`; None when dot is not installed, or fails (said on stderr)."""
    program = find_dot()
    if program is None:
        return None
    command = [program, f"-T{fmt}"] + ([f"-Gdpi={PNG_DPI}"] if fmt == "png" else [])
    try:
        done = subprocess.run(command, input=dot_text.encode("utf-8"), capture_output=True, timeout=DOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        reason = f"no picture after {DOT_TIMEOUT_S} s"
    except OSError as err:
        reason = err.strerror or str(err)
    else:
        if done.returncode == 0 and done.stdout:
            return done.stdout
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = message[0] if message else f"exit status {done.returncode}"
    print(f"hodec: Graphviz dot failed ({reason}); drawing with matplotlib instead", file=sys.stderr)
    return None


def render_image(G: nx.DiGraph, fmt: str, gates: Optional[dict] = None, title: Optional[str] = None) -> bytes:
    """The picture's bytes in the given format: Graphviz dot's layout where it works, else matplotlib's drawing."""
    return dot_image(to_dot(G, gates, title), fmt) or matplotlib_image(G, fmt, gates, title)


def matplotlib_image(G: nx.DiGraph, fmt: str, gates: Optional[dict] = None, title: Optional[str] = None) -> bytes:
    """Draw with matplotlib (Agg, no pyplot state) on the layered layout and return the file's bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.transforms import ScaledTranslation

    pos = layered_layout(G)
    xs, ys = [x for x, _ in pos.values()] or [0.0], [y for _, y in pos.values()] or [0.0]
    width, height = 2.4 * (max(xs) - min(xs)) + 3.0, 1.5 * (max(ys) - min(ys)) + 3.3
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    nodes = list(G.nodes)
    labels = {n: node_label(G, n) for n in nodes}
    sizes = {n: max(1400.0, (7.0 * max(map(len, labels[n].split("\n"))) + 16.0) ** 2) for n in nodes}
    for shape in ("s", "o"):
        chosen = [n for n in nodes if (G.nodes[n].get("kind") == "input") == (shape == "s")]
        if chosen:
            nx.draw_networkx_nodes(G, pos, nodelist=chosen, node_shape=shape, ax=ax, edgecolors="#333333",
                                   node_size=[sizes[n] for n in chosen], node_color=[_colour(G, n) for n in chosen])
    nx.draw_networkx_labels(G, pos, labels=labels, font_size=9, ax=ax)
    groups: dict[tuple, list] = {}  # (style, bend) -> edges; long or same-layer edges bend more, around nodes
    loops = []
    for u, v, d in G.edges(data=True):
        if u == v:
            loops.append((u, d))
            continue
        (xu, yu), (xv, yv) = pos[u], pos[v]
        bend = 0.12 if abs(xv - xu) <= 1 and (xv != xu or abs(yv - yu) <= 1) else 0.35
        groups.setdefault(("dashed" if d.get("shortcut") else "solid", bend), []).append((u, v, d))
    for (style, bend), chosen in groups.items():
        connection = f"arc3,rad={bend}"
        nx.draw_networkx_edges(G, pos, edgelist=[(u, v) for u, v, _ in chosen], nodelist=nodes, style=style,
                               node_size=[sizes[n] for n in nodes], arrows=True, arrowsize=14, ax=ax,
                               width=[_width(edge_gate(d, gates), 3.0) for _, _, d in chosen],
                               connectionstyle=connection)
        nx.draw_networkx_edge_labels(G, pos, edge_labels={(u, v): edge_label(d, gates) for u, v, d in chosen},
                                     font_size=7, ax=ax, connectionstyle=connection, rotate=False)
    top = 0.0
    for n, d in loops:  # drawn here, a fixed size in points above the node (networkx scales them by the view)
        radius = sizes[n] ** 0.5 / 2.0 / 72.0  # inches
        at = fig.dpi_scale_trans + ScaledTranslation(*pos[n], ax.transData)
        ax.add_patch(FancyArrowPatch((-0.45 * radius, 0.9 * radius), (0.45 * radius, 0.9 * radius), transform=at,
                                     connectionstyle="arc3,rad=-2.2", arrowstyle="-|>", mutation_scale=14,
                                     linewidth=_width(edge_gate(d, gates), 3.0),
                                     linestyle="--" if d.get("shortcut") else "-", color="k", clip_on=False))
        label = edge_label(d, gates)
        if label:
            ax.annotate(label, pos[n], xytext=(0, 144 * radius + 8), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7)
        if pos[n][1] == max(ys):
            top = max(top, 144 * radius + 20 + 9 * label.count("\n"))
    ax.set_title(title or G.graph.get("name") or "", pad=max(6.0, top - 72 * 1.5 * 1.1))  # 1.1 units above
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 1.1, max(ys) + 1.1)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, bbox_inches="tight")
    return buffer.getvalue()


def write_graph(G: nx.DiGraph, path, gates: Optional[dict] = None, title: Optional[str] = None) -> Path:
    """Write the picture chosen by the suffix (.dot/.gv, .png, .svg, .pdf), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DOT_SUFFIXES:
        data = to_dot(G, gates, title).encode("utf-8")
    elif suffix in IMAGE_SUFFIXES:
        data = render_image(G, suffix[1:], gates, title)
    else:
        raise ValueError(f"cannot tell the picture format from '{path.name}': use one of "
                         f"{', '.join(DOT_SUFFIXES + IMAGE_SUFFIXES)}")
    write_atomic(path, data)
    return path


