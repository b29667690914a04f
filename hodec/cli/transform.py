"""`hodec transform SPEC (--mnode | --merge-scc [--keep-loop A,B ...] | --closure INPUT:OBSERVABLE ... |
--full-closure) [--exclude U:V ...] [-o OUT.hode]`: spec-to-spec graph edits of HGS."""
from __future__ import annotations

import sys

from ..compiler import compile as compile_spec
from ..errors import HodecError
from ..files import write_atomic
from .outputs import check_outputs


def add_parser(sub):
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
    return p


def run(args) -> int:
    from ..graph.transform import DEFAULT_ACTIVATION, DEFAULT_HIDDEN, transform  # networkx: this command only

    mnode = bool(getattr(args, "mnode", False))
    hidden, activation = getattr(args, "hidden", None), getattr(args, "activation", None)
    if (hidden is not None or activation is not None) and not mnode:
        raise HodecError("--hidden and --activation only apply with --mnode")
    spec = compile_spec(args.spec)
    text = transform(spec, mnode=mnode,
                     merge=bool(getattr(args, "merge_scc", False)), keep_loops=getattr(args, "keep_loop", []),
                     pairs=getattr(args, "closure", []), full=bool(getattr(args, "full_closure", False)),
                     exclude=getattr(args, "exclude", []), hidden=hidden or DEFAULT_HIDDEN,
                     activation=activation or DEFAULT_ACTIVATION)
    if not getattr(args, "output", None):
        sys.stdout.write(text)
        return 0
    check_outputs([args.spec], [args.output])
    write_atomic(args.output, text)
    print(f"{args.spec} -> {args.output}")
    return 0


