"""`hodec graph SPEC [-o graph.svg|.png|.pdf|.dot] [--gates FILE]`: draw the interaction graph."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..compiler import compile as compile_spec
from ..errors import HodecError
from .outputs import check_outputs


def add_parser(sub):
    p = sub.add_parser("graph", help="draw a spec's interaction graph (states, inputs, reactions, neural slots)",
                       description="Draw the interaction graph of a spec: an edge u -> v when u appears in v's "
                                   "derivative, labelled with the reactions, der terms and neural-slot "
                                   "arguments responsible. Without -o, DOT text goes to standard output.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="FILE", help="picture file: .dot/.gv (DOT text), .png, .svg or .pdf")
    p.add_argument("--gates", metavar="FILE",
                   help="gate values to show as edge width and label: a JSON/YAML mapping name -> value, or a "
                        "sparsify report.json (its 'edges' list)")
    return p


def run(args) -> int:
    from ..graph.draw import to_dot, write_graph  # networkx and matplotlib load only for this command

    G = compile_spec(args.spec).graph
    gates = load_gates(args.gates, G) if getattr(args, "gates", None) else None
    if not args.output:
        sys.stdout.write(to_dot(G, gates))
        return 0
    check_outputs([args.spec] + ([args.gates] if args.gates else []), [args.output])
    try:
        write_graph(G, args.output, gates)
    except (ValueError, FileNotFoundError) as err:
        raise HodecError(str(err)) from None
    print(f"{args.spec} -> {args.output} ({G.number_of_nodes()} nodes, {G.number_of_edges()} edges)")
    return 0


def load_gates(path: str, G=None) -> dict[str, float]:
    """Gate values from a JSON/YAML file: a mapping name -> value, or an object with an 'edges' list of
    {name, gate}. Names the graph does not have are reported on standard error and ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise HodecError(f"cannot read gates file {path}: {err.strerror}") from None
    try:
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # JSON or YAML syntax
        raise HodecError(f"{path}: not valid {'YAML' if path.endswith(('yaml', 'yml')) else 'JSON'}: {err}") \
            from None
    if isinstance(data, dict) and isinstance(data.get("edges"), list):
        try:
            data = {e["name"]: e["gate"] for e in data["edges"]}
        except (TypeError, KeyError):
            raise HodecError(f"{path}: each entry of 'edges' needs 'name' and 'gate'") from None
    if not isinstance(data, dict):
        raise HodecError(f"{path}: expected a mapping gate name -> value")
    gates = {}
    for name, value in data.items():
        try:
            gates[str(name)] = float(value)
        except (TypeError, ValueError):
            raise HodecError(f"{path}: gate '{name}' has a non-numeric value {value!r}") from None
    if G is not None:
        known = {c.name for _, _, causes in G.edges(data="causes", default=()) for c in causes}
        unknown = sorted(set(gates) - known)
        if unknown:
            print(f"hodec graph: ignoring gates with no edge in the graph: {', '.join(unknown)}", file=sys.stderr)
    return gates
