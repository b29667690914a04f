"""`hodec export SPEC --sbml OUT.xml | --petab DIR`: a spec as SBML Level 3 Version 2 (what `hodec import` reads
back), or as a PEtab v2 / PEtab-SciML problem folder (what `hodec petab evaluate` reads back)."""
from __future__ import annotations

from pathlib import Path

from ..compiler import compile as compile_spec
from ..errors import HodecError
from ..files import write_atomic
from ..interop.petab_export import write_petab
from ..interop.sbml_export import export_sbml
from .outputs import check_outputs


def add_parser(sub):
    p = sub.add_parser("export", help="write a spec as SBML (level 3 version 2) or a PEtab(-SciML) problem",
                       description="Write a .hode spec as an SBML Level 3 Version 2 model (--sbml): params, states "
                                   "(species), lets (assignment rules), reactions, der terms (rate rules, or one "
                                   "reaction per term for a state that reactions change), events, functions, "
                                   "observables (as assignment rules; their noise models are left out); neural "
                                   "slots and inputs have no SBML form and are refused. Or as a PEtab v2 problem "
                                   "folder (--petab): that SBML, the observables with their noise models, every "
                                   "param with its bounds (estimated unless fixed), and per neural slot a "
                                   "PEtab-SciML network YAML, its weights (HDF5) and hybridization and mapping "
                                   "rows; inputs and slots without outputs are refused.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--sbml", metavar="OUT.xml", help="the SBML file to write (atomically)")
    p.add_argument("--petab", metavar="DIR", help="the PEtab problem folder to write (a new or empty folder; "
                                                  "written whole or not at all)")
    p.add_argument("--data", metavar="DATA.csv", help="with --petab: hodec fit's data as the measurement table "
                                                      "(observable columns; one experiment per id, from its "
                                                      "first time and the spec's initial values)")
    return p


def run(args) -> int:
    if not args.sbml and not args.petab:
        raise HodecError("hodec export: give --sbml OUT.xml, --petab DIR or both")
    if args.data and not args.petab:
        raise HodecError("hodec export: --data goes with --petab (the measurement table)")
    outputs = [Path(p) for p in (args.sbml, args.petab) if p]
    check_outputs([args.spec, *([args.data] if args.data else [])], outputs)
    compilation = compile_spec(args.spec)
    if args.sbml:
        sbml = export_sbml(compilation.model, compilation.source)  # checked before anything is written
    if args.petab:
        write_petab(compilation, args.petab, data=args.data)
    if args.sbml:
        write_atomic(Path(args.sbml), sbml)
    print(f"{args.spec} -> {', '.join(map(str, outputs))}")
    return 0
