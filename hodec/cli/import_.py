"""`hodec import MODEL.xml [-o MODEL.hode]`: an SBML model as a .hode spec (checked by compiling it first)."""
from __future__ import annotations

from pathlib import Path

from ..compiler import compile_text
from ..errors import HodecError
from ..files import write_atomic
from ..interop.sbml import import_sbml
from .outputs import check_outputs


def add_parser(sub):
    p = sub.add_parser("import", help="translate an SBML model (levels 2 and 3) into a .hode spec",
                       description="Translate an SBML model into a .hode spec a person can read and edit: SBML ids "
                                   "as names, kinetic laws and rules as written. What .hode cannot say (delay(), "
                                   "event delays, fast reactions, algebraic rules not linear in their variable, "
                                   "...) is refused with an error naming the SBML element.")
    p.add_argument("model", metavar="MODEL.xml")
    p.add_argument("-o", "--output", metavar="MODEL.hode",
                   help="output file (default: beside the model, with the suffix .hode; written atomically)")
    return p


def run(args) -> int:
    output = Path(args.output) if args.output else Path(args.model).with_suffix(".hode")
    check_outputs([args.model], [output])
    imported = import_sbml(args.model)
    try:
        compile_text(imported.text, output.name, str(output))
    except HodecError as err:
        raise HodecError(f"the translation of {args.model} is not a valid .hode spec (a construct hodec import "
                         f"does not yet map):\n{err.render()}", args.model) from None
    write_atomic(output, imported.text)
    print(f"{args.model} -> {output}")
    return 0
