"""Interaction graph (issue 4): extraction from the SymPy form of small specs, the HGS graph edits, pictures."""
import json

import networkx as nx
import pytest

from hodec.graph import (EdgeCause, cut_vertices, edge_names, edges_by_cause, full_transitive_closure,
                         gate_edges, merge_sccs, partial_transitive_closure, resolve_nodes,
                         shortcut_edges)
from hodec.cli import build_parser
from hodec.cli.graph import load_gates
from hodec.graph import draw
from hodec.graph.draw import layered_layout, to_dot, write_graph
from hodec.compiler import compile_text


def graph_of_source(source: str, filename: str = "<spec>"):
    return compile_text(source, filename).graph


def edge_table(G):
    """{(u, v): {cause name, ...}} — the hand-written form the tests compare against."""
    return {(u, v): {c.name for c in d["causes"]} for u, v, d in G.edges(data=True)}


def causes(G, u, v):
    return {c.name: c for c in G.edges[u, v]["causes"]}


# ---------------------------------------------------------------- extraction
REACTIONS = """
model Chain
param k1 = 1
param k2 = 2
input u
state A = 1
state B = 0
state C = 0
reaction feed: 0 -> A ; k1 * u
reaction conv: A -> B ; k1 * A
reaction deg: B -> 0 ; k2 * B
reaction leak: B -> C ; k2          # zeroth order: reads no node, so no edge
reaction dimer: 2 A -> C ; k1 * A^2 keep
observe y = B
"""


def test_reactions_inputs_and_self_loops():
    G = graph_of_source(REACTIONS)
    assert edge_table(G) == {
        ("u", "A"): {"feed"},
        ("A", "A"): {"conv", "dimer"},
        ("A", "B"): {"conv"},
        ("A", "C"): {"dimer"},
        ("B", "B"): {"deg"},
    }
    assert [n for n in G if G.nodes[n]["kind"] == "state"] == ["A", "B", "C"]
    assert G.nodes["u"]["kind"] == "input" and G.in_degree("u") == 0
    assert {n for n in G if G.nodes[n]["observed"]} == {"B"}
    assert G.nodes["B"]["observables"] == ("y",)
    assert G.edges["A", "A"]["self_loop"] and G.edges["B", "B"]["self_loop"]
    assert not G.edges["A", "B"]["self_loop"]
    c = causes(G, "A", "A")
    assert c["conv"] == EdgeCause("reaction", "conv", False, ())
    assert c["dimer"].keep
    assert G.graph["name"] == "Chain" and G.graph["observables"] == {"y": ("B",)}


DERS_AND_LETS = """
model Lets
param a = 1
input u
state x = 1
state y = 0
let v = a * x * u
let w = v + y
der x = -v + a
der y = w - a * y keep
observe o = w
"""


def test_der_terms_and_lets_are_traced():
    G = graph_of_source(DERS_AND_LETS)
    assert edge_table(G) == {
        ("x", "x"): {"der_x.0"},
        ("u", "x"): {"der_x.0"},
        ("x", "y"): {"der_y.0"},
        ("u", "y"): {"der_y.0"},
        ("y", "y"): {"der_y.0", "der_y.1"},
    }  # der_x.1 = a reads no node
    assert causes(G, "x", "y")["der_y.0"] == EdgeCause("term", "der_y.0", True, ("v", "w"))
    assert causes(G, "y", "y")["der_y.0"].via == ("w",)
    assert causes(G, "y", "y")["der_y.1"].via == ()
    assert causes(G, "x", "x")["der_x.0"].via == ("v",) and not causes(G, "x", "x")["der_x.0"].keep
    assert all(G.nodes[n]["observed"] for n in G)  # o = w reads x and u (through v) and y


NEURAL = """
model Hybrid
param k = 1
input u
state S = 1
state P = 0
state Q = 0
let z = S / k
neural mm(s)
neural f(S, keep u, t) -> Q, P
reaction r: S -> P ; mm(z)
der Q = -k * Q + mm(z) * u
observe y = P
"""


def test_residual_slots_and_neural_function_calls():
    G = graph_of_source(NEURAL)
    assert edge_table(G) == {
        ("S", "S"): {"r"},
        ("S", "P"): {"r", "f.S"},
        ("S", "Q"): {"der_Q.1", "f.S"},
        ("u", "Q"): {"der_Q.1", "f.u"},
        ("u", "P"): {"f.u"},
        ("Q", "Q"): {"der_Q.0"},
    }  # the argument t of f is no node: no edge
    assert causes(G, "S", "P")["r"] == EdgeCause("reaction", "r", False, ("mm.s", "z"))
    assert causes(G, "S", "P")["f.S"] == EdgeCause("neural_input", "f.S", False, ())
    assert causes(G, "u", "Q")["f.u"].keep and causes(G, "u", "Q")["der_Q.1"].via == ()
    assert G.edges["S", "S"]["self_loop"]


def test_function_call_through_nested_calls_and_let_arguments():
    G = graph_of_source("""
model Nested
param k = 1
state A = 1
state B = 0
state C = 0
let h = g(B)
neural g(b)
neural n2(p, q)
reaction r: A -> C ; n2(A, h) * k
observe y = C
""")
    assert edge_table(G) == {("A", "A"): {"r"}, ("A", "C"): {"r"}, ("B", "A"): {"r"}, ("B", "C"): {"r"}}
    assert causes(G, "B", "C")["r"].via == ("g.b", "h", "n2.q")
    assert causes(G, "A", "C")["r"].via == ("n2.p",)


def test_catalyst_changes_nothing_so_gets_no_self_loop():
    # E appears on both sides: net coefficient 0, so the rate enters dS/dt and dP/dt but not dE/dt
    G = graph_of_source("model Cat\nparam k = 1\nstate S = 1\nstate E = 1\nstate P = 0\n"
                        "reaction cat: S + E -> P + E ; k * S * E\n")
    assert edge_table(G) == {("S", "S"): {"cat"}, ("S", "P"): {"cat"}, ("E", "S"): {"cat"}, ("E", "P"): {"cat"}}


def test_cancelled_dependence_gives_no_edge():
    # SymPy folds x - x to 0: the graph comes from the expressions, not from the names in the text
    G = graph_of_source("model Z\nparam a = 1\nstate x = 1\nstate y = 0\nder y = a * (x - x) + a * y\n")
    assert edge_table(G) == {("y", "y"): {"der_y.1"}}  # der_y.0 = a*(x - x) = 0


def test_lotka_volterra_spec():
    from pathlib import Path

    source = (Path(__file__).parent.parent / "specs" / "lotka_volterra.hode").read_text()
    G = graph_of_source(source)
    assert edge_table(G) == {
        ("x", "x"): {"prey_birth", "predation"},
        ("y", "x"): {"predation"},
        ("x", "y"): {"predator_growth"},
        ("y", "y"): {"predator_growth", "predator_death"},
    }
    assert G.nodes["x"]["observed"] and G.nodes["y"]["observed"]


def test_gate_table_and_queries():
    G = graph_of_source(NEURAL)
    table = {(e["kind"], e["name"]): e for e in gate_edges(G)}
    assert set(table) == {("reaction", "r"), ("term", "der_Q.0"), ("term", "der_Q.1"),
                          ("neural_input", "f.S"), ("neural_input", "f.u")}
    assert sorted(table["reaction", "r"]["source"]) == ["S"]
    assert sorted(table["reaction", "r"]["target"]) == ["P", "S"]
    assert sorted(table["neural_input", "f.S"]["target"]) == ["P", "Q"]
    assert table["neural_input", "f.u"]["keep"] and not table["term", "der_Q.1"]["keep"]
    assert sorted(edges_by_cause(G, ["f.u"])) == [("u", "P"), ("u", "Q")]
    assert sorted(edge_names(G, "S", "P")) == ["f.S", "r"]
    assert resolve_nodes(G, "y") == ("P",) and resolve_nodes(G, "Q") == ("Q",)
    with pytest.raises(KeyError):
        resolve_nodes(G, "nothing")


# ---------------------------------------------------------------- SCC merge
def two_loops():
    # u -> {A <-> B} -> {C <-> D} -> E (self-loop)
    return nx.DiGraph([("u", "A"), ("A", "B"), ("B", "A"), ("B", "C"), ("C", "D"), ("D", "C"), ("D", "E"),
                       ("E", "E")])


def test_merge_sccs():
    H, mapping = merge_sccs(two_loops())
    assert set(H.nodes) == {"u", "A_B", "C_D", "E"}
    assert set(H.edges) == {("u", "A_B"), ("A_B", "A_B"), ("A_B", "C_D"), ("C_D", "C_D"), ("C_D", "E"),
                            ("E", "E")}
    assert mapping == {"u": "u", "A": "A_B", "B": "A_B", "C": "C_D", "D": "C_D", "E": "E"}
    assert H.nodes["A_B"]["members"] == ("A", "B") and H.graph["merged"] == {"A_B": ("A", "B"),
                                                                            "C_D": ("C", "D")}
    assert set(H.edges["A_B", "A_B"]["merged_from"]) == {("A", "B"), ("B", "A")}
    assert H.edges["A_B", "A_B"]["self_loop"]
    relaxed = H.copy()
    relaxed.remove_edges_from(nx.selfloop_edges(H))
    assert nx.is_directed_acyclic_graph(relaxed)


def test_merge_sccs_keep_loops():
    H, mapping = merge_sccs(two_loops(), keep_loops=[{"C", "D"}])
    assert set(H.nodes) == {"u", "A_B", "C", "D", "E"}
    assert set(H.edges) == {("u", "A_B"), ("A_B", "A_B"), ("A_B", "C"), ("C", "D"), ("D", "C"), ("D", "E"),
                            ("E", "E")}
    assert mapping["C"] == "C" and mapping["A"] == "A_B"
    H, _ = merge_sccs(two_loops(), keep_loops=[["A", "B"], ["D", "C"]])
    assert set(H.nodes) == set(two_loops().nodes) and set(H.edges) == set(two_loops().edges)
    with pytest.raises(ValueError, match="common cycle"):
        merge_sccs(two_loops(), keep_loops=[{"A", "C"}])
    with pytest.raises(ValueError, match="unknown"):
        merge_sccs(two_loops(), keep_loops=[{"A", "Z"}])


def test_merge_sccs_nested_cycle_and_input_graph_unchanged():
    # one SCC {a, b, c} made of two cycles a->b->a and b->c->b; keep-loop {a, b} exempts the whole component
    G = nx.DiGraph([("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("c", "d")])
    before = set(G.edges)
    H, mapping = merge_sccs(G)
    assert set(H.edges) == {("a_b_c", "a_b_c"), ("a_b_c", "d")}
    assert set(G.edges) == before  # pure
    H, _ = merge_sccs(G, keep_loops=[{"a", "b"}])
    assert set(H.edges) == before


def test_merge_sccs_name_collision_and_extracted_graph():
    G = nx.DiGraph([("A", "B"), ("B", "A"), ("A_B", "A")])
    H, mapping = merge_sccs(G)
    assert mapping["A"] == "A_B_scc" and set(H.edges) == {("A_B", "A_B_scc"), ("A_B_scc", "A_B_scc")}

    G = graph_of_source(REACTIONS.replace("reaction leak: B -> C ; k2", "reaction back: B -> A ; k2 * B"))
    H, mapping = merge_sccs(G)
    assert mapping == {"A": "A_B", "B": "A_B", "C": "C", "u": "u"}
    assert edge_table(H) == {("u", "A_B"): {"feed"}, ("A_B", "A_B"): {"conv", "dimer", "deg", "back"},
                             ("A_B", "C"): {"dimer"}}
    assert H.nodes["A_B"]["kind"] == "state" and H.nodes["A_B"]["observed"]
    assert H.graph["observables"] == {"y": ("A_B",)} and resolve_nodes(H, "y") == ("A_B",)


# ---------------------------------------------------------------- closures
def pathway():
    # u -> a -> {b, c} -> d -> y; a -> z (z does not reach y); w -> b (w not reached from u)
    return nx.DiGraph([("u", "a"), ("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "y"), ("a", "z"),
                       ("w", "b"), ("y", "y")])


def test_cut_vertices_are_the_dominators():
    assert cut_vertices(pathway(), "u", "y") == ["a", "d"]
    assert cut_vertices(nx.DiGraph([("u", "p"), ("u", "q"), ("p", "y"), ("q", "y")]), "u", "y") == []
    with pytest.raises(ValueError, match="no pathway"):
        cut_vertices(pathway(), "w", "u")
    with pytest.raises(ValueError, match="unknown"):
        cut_vertices(pathway(), "u", "nope")


def test_partial_transitive_closure():
    G = pathway()
    H = partial_transitive_closure(G, "u", "y")
    assert set(shortcut_edges(H)) == {("u", "d"), ("a", "d"), ("a", "y")}  # never u -> y
    assert set(H.edges) - set(G.edges) == {("u", "d"), ("a", "d"), ("a", "y")}
    assert H.edges["a", "y"]["causes"] == () and not G.has_edge("a", "y")  # G is untouched
    H = partial_transitive_closure(G, "u", "y", exclude=[("a", "y")])
    assert set(shortcut_edges(H)) == {("u", "d"), ("a", "d")}
    with pytest.raises(ValueError, match="unknown"):
        partial_transitive_closure(G, "u", "y", exclude=[("a", "nope")])
    # no cut vertex: nothing to add (the direct edge is never added)
    G = nx.DiGraph([("u", "p"), ("u", "q"), ("p", "y"), ("q", "y")])
    assert shortcut_edges(partial_transitive_closure(G, "u", "y")) == []
    # cut vertex reached by two routes: only the shortcut u -> a is missing
    G = nx.DiGraph([("u", "p"), ("u", "q"), ("p", "a"), ("q", "a"), ("a", "y")])
    assert shortcut_edges(partial_transitive_closure(G, "u", "y")) == [("u", "a")]


def test_full_transitive_closure():
    G = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "d"), ("a", "c"), ("d", "d")])
    H = full_transitive_closure(G)
    assert set(shortcut_edges(H)) == {("a", "d"), ("b", "d")}
    assert set(H.edges) == set(G.edges) | {("a", "d"), ("b", "d")}
    H = full_transitive_closure(G, exclude=[("a", "d")])
    assert set(shortcut_edges(H)) == {("b", "d")}
    # on a graph with a cycle no self-loops are added
    H = full_transitive_closure(nx.DiGraph([("a", "b"), ("b", "a"), ("b", "c")]))
    assert set(shortcut_edges(H)) == {("a", "c")}


def test_pipeline_on_a_spec_merge_then_partial_closure():
    spec = """
model Path
param k = 1
input u
state A = 0
state B = 0
state C = 0
state D = 0
reaction in_: 0 -> A ; k * u
reaction ab: A -> B ; k * A
reaction ba: B -> A ; k * B
reaction bc: B -> C ; k * B
reaction cd: C -> D ; k * C
observe obs = D
"""
    G = graph_of_source(spec)
    H, mapping = merge_sccs(G)
    (target,) = resolve_nodes(H, "obs")
    assert target == "D" and mapping["A"] == "A_B"
    H2 = partial_transitive_closure(H, "u", target)
    assert set(shortcut_edges(H2)) == {("u", "C"), ("A_B", "D")}  # chain u, A_B, C, D; A_B -> C exists
    assert set(shortcut_edges(full_transitive_closure(H))) == {("u", "C"), ("u", "D"), ("A_B", "D")}


# ---------------------------------------------------------------- pictures and CLI
def test_dot_output():
    G = graph_of_source(NEURAL)
    dot = to_dot(G)
    assert dot.startswith('digraph "Hybrid" {') and dot.rstrip().endswith("}")
    for n in ("S", "P", "Q"):
        assert f'"{n}" [label="{n}", shape="ellipse"' in dot
    assert '"u" [label="u", shape="box"' in dot
    assert '"P" [label="P", shape="ellipse", peripheries=2]' in dot  # observed
    assert '"S" -> "P" [label="r\\nf.S"]' in dot
    assert '"S" -> "S" [label="r"]' in dot
    assert '"u" -> "P" [label="f.u"]' in dot
    assert dot.count(" -> ") == G.number_of_edges()
    gated = to_dot(G, gates={"r": 0.25, "f.S": 0.0})
    assert '"S" -> "P" [label="r=0.25\\nf.S=0", penwidth=0.925]' in gated
    merged, _ = merge_sccs(nx.DiGraph([("a", "b"), ("b", "a")]))
    assert '"a_b" [label="a_b\\n(a, b)"' in to_dot(merged)
    assert 'style="dashed"' in to_dot(full_transitive_closure(nx.DiGraph([("a", "b"), ("b", "c")])))


@pytest.mark.parametrize("dot", ["as-installed", "absent"])  # absent: matplotlib draws gates, super-nodes, shortcuts
def test_pictures_are_written(tmp_path, monkeypatch, dot):
    if dot == "absent":
        monkeypatch.setattr(draw, "find_dot", lambda: None)
    G = graph_of_source(NEURAL)
    png = write_graph(G, tmp_path / "g.png", gates={"r": 0.5})
    data = png.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG")
    H, _ = merge_sccs(graph_of_source(REACTIONS.replace("leak: B -> C ; k2", "back: B -> A ; k2 * B")))
    svg = write_graph(full_transitive_closure(H), tmp_path / "g.svg")
    assert "<svg" in svg.read_text()
    assert (write_graph(G, tmp_path / "g.dot")).read_text() == to_dot(G)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot", "g.png", "g.svg"]  # no temp files left
    with pytest.raises(ValueError, match="format"):
        write_graph(G, tmp_path / "g.txt")


def test_layout_puts_inputs_first():
    pos = layered_layout(graph_of_source(REACTIONS))
    assert pos["u"][0] < pos["A"][0] < pos["B"][0]


def run_cli(argv):
    args = build_parser().parse_args(argv)
    return args.run(args)


def test_cli(tmp_path, capsys):
    spec = tmp_path / "hybrid.hode"
    spec.write_text(NEURAL)
    assert run_cli(["graph", str(spec)]) == 0
    assert '"S" -> "P"' in capsys.readouterr().out
    out = tmp_path / "graph.dot"
    gates = tmp_path / "report.json"
    gates.write_text(json.dumps({"edges": [{"name": "r", "gate": 0.5}, {"name": "gone", "gate": 0.1}]}))
    assert run_cli(["graph", str(spec), "-o", str(out), "--gates", str(gates)]) == 0
    assert "r=0.5" in out.read_text()
    captured = capsys.readouterr()
    assert "graph.dot" in captured.out and "gone" in captured.err
    assert run_cli(["graph", str(spec), "-o", str(tmp_path / "graph.png")]) == 0
    assert (tmp_path / "graph.png").stat().st_size > 0


def test_cli_errors(tmp_path):
    from hodec.errors import HodecError

    spec = tmp_path / "hybrid.hode"
    spec.write_text(NEURAL)
    with pytest.raises(HodecError, match="picture format"):
        run_cli(["graph", str(spec), "-o", str(tmp_path / "graph.jpg")])
    with pytest.raises(HodecError, match="does not exist"):
        run_cli(["graph", str(spec), "-o", str(tmp_path / "missing" / "graph.dot")])
    bad = tmp_path / "gates.json"
    bad.write_text('{"r": "high"}')
    with pytest.raises(HodecError, match="non-numeric"):
        load_gates(str(bad))
    yaml_gates = tmp_path / "gates.yaml"
    yaml_gates.write_text("r: 0.5\nf.S: 1\n")
    assert load_gates(str(yaml_gates)) == {"r": 0.5, "f.S": 1.0}
