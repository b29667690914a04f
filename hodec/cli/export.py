"""`hodec export SPEC --sbml OUT.xml`: a spec as SBML Level 3 Version 2 (what `hodec import` reads back)."""
from __future__ import annotations

from pathlib import Path

from ..compiler import compile as compile_spec
from ..files import write_atomic
from ..interop.sbml_export import export_sbml
from .outputs import check_outputs


def add_parser(sub):
    p = sub.add_parser("export", help="write a spec as SBML (level 3 version 2)",
                       description="Write a .hode spec as an SBML Level 3 Version 2 model: params, states (species), "
                                   "lets (assignment rules), reactions, der terms (rate rules, or one reaction per "
                                   "term for a state that reactions change), events, functions, observables (as "
                                   "assignment rules; their noise models are left out). Neural slots and inputs "
                                   "have no SBML form and are refused. The PEtab half (--petab DIR: conditions, "
                                   "measurements, noise models) is not implemented yet.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--sbml", metavar="OUT.xml", required=True, help="the SBML file to write (atomically)")
    return p


def run(args) -> int:
    output = Path(args.sbml)
    check_outputs([args.spec], [output])
    compilation = compile_spec(args.spec)
    write_atomic(output, export_sbml(compilation.model, compilation.source))
    print(f"{args.spec} -> {output}")
    return 0
