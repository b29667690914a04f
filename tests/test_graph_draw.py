"""Graph pictures (issue 13 defect 9): laid out by Graphviz dot where it is installed, matplotlib otherwise.

The layout check reads dot's own coordinates (`dot -Tjson`) of the DOT text hodec emits: no edge label may cover
a node, another edge label, or another edge's curve.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hodec.compiler import compile_text
from hodec.graph import draw
from hodec.graph.draw import to_dot, write_graph

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` is not installed (apt-get install graphviz)")
SPECS = Path(__file__).resolve().parent.parent / "specs"

# The reported picture: Z -> X carries a label, Y has a self-loop (its der term), Z too (the reaction's loss).
OVERLAP = """
model Overlap
param k = 1
state X = 0
state Y = 1
state Z = 1
reaction zx: Z -> X ; k * Z
der Y = -k * Y
"""


# ---------------------------------------------------------------- geometry of dot's layout (points, y up)
def dot_json(dot_text: str) -> dict:
    done = subprocess.run(["dot", "-Tjson"], input=dot_text.encode(), capture_output=True, check=True, timeout=60)
    return json.loads(done.stdout)


def layout_boxes(js: dict):
    """(node boxes, edge-label text boxes, points along the edge curves) of a `dot -Tjson` layout."""
    names = {o["_gvid"]: o["name"] for o in js["objects"]}
    nodes = {}
    for o in js["objects"]:
        x, y = map(float, o["pos"].split(","))
        half_w, half_h = 36.0 * float(o["width"]), 36.0 * float(o["height"])  # inches -> points, halved
        nodes[o["name"]] = (x - half_w, y - half_h, x + half_w, y + half_h)
    labels, curves = [], []
    for e in js.get("edges", []):
        edge = (names[e["tail"]], names[e["head"]])
        labels += [(edge, box) for box in text_boxes(e.get("_ldraw_", []))]
        curves += [(edge, point) for op in e["_draw_"] if op["op"] == "b" for point in bezier(op["points"])]
    return nodes, labels, curves


def text_boxes(ops):
    """The box of each text line drawn by xdot operations: width from dot, ascent 0.75 and descent 0.25 of the
    font size around the baseline."""
    size, boxes = 14.0, []
    for op in ops:
        if op["op"] == "F":
            size = float(op["size"])
        elif op["op"] == "T":
            (x, y), width = op["pt"], float(op["width"])
            left = {"l": x, "c": x - width / 2, "r": x - width}[op["align"]]
            boxes.append((left, y - 0.25 * size, left + width, y + 0.75 * size))
    return boxes


def bezier(points, steps=24):
    """Points along a piecewise cubic Bezier curve (dot's spline: 1 + 3k control points)."""
    out = []
    for i in range(0, len(points) - 3, 3):
        controls = points[i:i + 4]
        for k in range(steps + 1):
            t = k / steps
            w = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3)
            out.append(tuple(sum(wi * p[j] for wi, p in zip(w, controls)) for j in range(2)))
    return out


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(point, box) -> bool:
    return box[0] < point[0] < box[2] and box[1] < point[1] < box[3]


def collisions(js: dict) -> list[str]:
    """Each edge label that covers a node, another edge label, or another edge's curve (its own edge it touches)."""
    nodes, labels, curves = layout_boxes(js)
    found = []
    for i, (edge, box) in enumerate(labels):
        found += [f"{edge} label on node {n}" for n, node in nodes.items() if overlap(box, node)]
        found += [f"{edge} label on {other} label" for other, box2 in labels[i + 1:] if overlap(box, box2)]
        found += sorted({f"{edge} label on {other} edge" for other, p in curves if other != edge and inside(p, box)})
    return found


def test_collision_check_finds_the_reported_overlap():
    # the checker itself, on a hand-made layout in dot's JSON form: Z -> X's label drawn on Y's self-loop
    node = {"width": "0.75", "height": "0.5"}
    label = [{"op": "F", "size": 10.0, "face": "Helvetica"}]
    js = {"objects": [{"_gvid": 0, "name": "X", "pos": "129,18", **node},
                      {"_gvid": 1, "name": "Y", "pos": "27,101", **node},
                      {"_gvid": 2, "name": "Z", "pos": "27,18", **node}],
          "edges": [{"tail": 1, "head": 1, "_draw_": [{"op": "b", "points": [[18, 118], [16, 128], [19, 137], [27, 137],
                                                                            [32, 137], [35, 133], [36, 128]]}],
                     "_ldraw_": label + [{"op": "T", "pt": [27, 140], "align": "c", "width": 40.0}]},
                    {"tail": 2, "head": 0, "_draw_": [{"op": "b", "points": [[54, 18], [65, 18], [79, 18], [92, 18]]}],
                     "_ldraw_": label + [{"op": "T", "pt": [27, 134], "align": "c", "width": 12.0}]}]}
    assert collisions(js) == ["('Y', 'Y') label on ('Z', 'X') label", "('Z', 'X') label on ('Y', 'Y') edge"]
    js["edges"][1]["_ldraw_"][1]["pt"] = [73, 21]  # where dot puts it: above its own edge, clear of the rest
    assert collisions(js) == []


@needs_dot
@pytest.mark.parametrize("spec, gates", [
    (None, None),  # OVERLAP
    ("lotka_volterra_graybox", {"U.x": 0.25, "der_y.0": 1.5}),  # neural-slot causes, two-line gated labels on loops
    ("michaelis_menten", None),  # loops with two causes, edges both ways
    ("uva_padova", None),  # 16 nodes, inputs drawn as boxes, three-line loop labels
])
def test_dot_layout_has_no_label_collisions(spec, gates):
    G = compile_text(OVERLAP if spec is None else (SPECS / f"{spec}.hode").read_text()).graph
    js = dot_json(to_dot(G, gates))
    nodes, labels, _ = layout_boxes(js)
    assert set(nodes) == set(G.nodes)
    lines = sum(len(draw.edge_label(d, gates).split("\n")) for _, _, d in G.edges(data=True))
    assert len(labels) == lines  # every line of every edge label is checked
    assert collisions(js) == []


@needs_dot
def test_pictures_come_from_dot(tmp_path):
    G = compile_text(OVERLAP).graph
    svg = write_graph(G, tmp_path / "g.svg").read_text()
    assert "<!-- Generated by graphviz" in svg
    expected = subprocess.run(["dot", "-Tsvg"], input=to_dot(G).encode(), capture_output=True, check=True).stdout
    assert svg.encode() == expected
    for name in ("Overlap", "X", "Y", "Z", "zx", "der_Y.0"):  # the title, nodes and edge labels are all drawn
        assert f">{name}</text>" in svg
    png = write_graph(G, tmp_path / "g.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Matplotlib" not in png
    assert write_graph(G, tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pdf", "g.png", "g.svg"]  # no temp files left


def test_without_dot_matplotlib_draws(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(draw, "find_dot", lambda: None)
    G = compile_text(OVERLAP).graph
    png = write_graph(G, tmp_path / "g.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Matplotlib" in png
    assert "<dc:title>Matplotlib" in write_graph(G, tmp_path / "g.svg").read_text()
    assert capsys.readouterr().err == ""  # a missing dot is not news


def test_failing_dot_falls_back_with_a_note(tmp_path, monkeypatch, capsys):
    failing = tmp_path / "dot"
    failing.write_text("#!/bin/sh\necho 'Error: <stdin>: syntax error in line 1' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(draw, "find_dot", lambda: str(failing))
    G = compile_text(OVERLAP).graph
    assert b"Matplotlib" in write_graph(G, tmp_path / "g.png").read_bytes()
    assert capsys.readouterr().err == ("hodec: Graphviz dot failed (Error: <stdin>: syntax error in line 1); "
                                       "drawing with matplotlib instead\n")
    failing.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    monkeypatch.setattr(draw, "DOT_TIMEOUT_S", 0.3)
    assert b"Matplotlib" in write_graph(G, tmp_path / "g.png").read_bytes()
    assert "Graphviz dot failed (no picture after 0.3 s)" in capsys.readouterr().err
