"""`hodec graph SPEC [-o graph.svg|.png|.pdf|.dot] [--gates FILE]` and
`hodec transform SPEC (--mnode | --merge-scc [--keep-loop A,B ...] | --closure INPUT:OBSERVABLE ... |
--full-closure) [--exclude U:V ...] [-o OUT.hode]`.

To register in hodec/cli.py (in build_parser):
    from .graph.cli import add_graph_parser, add_transform_parser
    add_graph_parser(sub)
    add_transform_parser(sub)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import HodecError
from ..files import write_atomic


def add_graph_parser(sub):
    p = sub.add_parser("graph", help="draw a spec's interaction graph (states, inputs, reactions, neural slots)",
                       description="Draw the interaction graph of a spec: an edge u -> v when u appears in v's "
                                   "derivative, labelled with the reactions, der terms and neural-slot "
                                   "arguments responsible. Without -o, DOT text goes to standard output.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="FILE", help="picture file: .dot/.gv (DOT text), .png, .svg or .pdf")
    p.add_argument("--gates", metavar="FILE",
                   help="gate values to show as edge width and label: a JSON/YAML mapping name -> value, or a "
                        "sparsify report.json (its 'edges' list)")
    p.set_defaults(run=cmd_graph)
    return p


def cmd_graph(args) -> int:
    from ..compiler import read_source
    from .draw import to_dot, write_graph
    from .extract import graph_of_source

    G = graph_of_source(read_source(args.spec), Path(args.spec).name)
    gates = load_gates(args.gates, G) if getattr(args, "gates", None) else None
    if not args.output:
        sys.stdout.write(to_dot(G, gates))
        return 0
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


# ---------------------------------------------------------------- hodec transform
def add_transform_parser(sub):
    p = sub.add_parser("transform", help="rewrite a spec for sparsification: MNODE form, SCC merge, closures",
                       description="Spec-to-spec steps of the structure-aware sparsification pipeline (HGS). "
                                   "Steps given together run in the order --mnode, --merge-scc, --closure or "
                                   "--full-closure; the result is a .hode file (standard output without -o).")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--mnode", action="store_true",
                   help="replace each state's right-hand side by its own neural slot over its graph parents")
    p.add_argument("--hidden", type=int, nargs="+", metavar="N",
                   help="hidden layer widths of the --mnode slots (default: 32)")
    p.add_argument("--activation", metavar="NAME", help="activation of the --mnode slots (default: gelu)")
    p.add_argument("--merge-scc", action="store_true",
                   help="merge each strongly connected component into one super-state with a single slot "
                        "(needs MNODE form: give --mnode too unless the spec already is)")
    p.add_argument("--keep-loop", action="extend", nargs="+", default=[], metavar="A,B",
                   help="with --merge-scc: leave the component holding these states as it is")
    p.add_argument("--closure", action="extend", nargs="+", default=[], metavar="INPUT:OBSERVABLE",
                   help="add the shortcut edges along the pathways from INPUT to OBSERVABLE (never the direct "
                        "edge) as slot arguments")
    p.add_argument("--full-closure", action="store_true", help="add every skip edge as a slot argument")
    p.add_argument("--exclude", action="extend", nargs="+", default=[], metavar="U:V",
                   help="with a closure: do not add the shortcut U -> V")
    p.add_argument("-o", "--output", metavar="OUT.hode", help="output file (written atomically)")
    p.set_defaults(run=cmd_transform)
    return p


def cmd_transform(args) -> int:
    from ..compiler import read_source
    from .transform import DEFAULT_ACTIVATION, DEFAULT_HIDDEN, transform

    mnode = bool(getattr(args, "mnode", False))
    hidden, activation = getattr(args, "hidden", None), getattr(args, "activation", None)
    if (hidden is not None or activation is not None) and not mnode:
        raise HodecError("--hidden and --activation only apply with --mnode")
    source = read_source(args.spec)
    text = transform(source, filename=Path(args.spec).name, mnode=mnode,
                     merge=bool(getattr(args, "merge_scc", False)), keep_loops=getattr(args, "keep_loop", []),
                     pairs=getattr(args, "closure", []), full=bool(getattr(args, "full_closure", False)),
                     exclude=getattr(args, "exclude", []), hidden=hidden or DEFAULT_HIDDEN,
                     activation=activation or DEFAULT_ACTIVATION)
    if not getattr(args, "output", None):
        sys.stdout.write(text)
        return 0
    write_atomic(args.output, text)
    print(f"{args.spec} -> {args.output}")
    return 0


