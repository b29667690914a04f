"""`hodec check SPEC...`: validate specs, write nothing."""
from __future__ import annotations

import sys

from ..compiler import compile as compile_spec
from ..errors import HodecError


def add_parser(sub):
    p = sub.add_parser("check", help="validate specs without writing anything")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    return p


def run(args) -> int:
    errors = []
    for spec in args.specs:
        try:
            model = compile_spec(spec).model
            print(f"{spec}: ok ({len(model.states)} states, {len(model.reactions)} reactions, "
                  f"{len(model.params)} params, {len(model.slots)} neural slots)")
        except HodecError as err:
            errors.append(err)
    for err in errors:
        print(err.render(), file=sys.stderr)
    return 1 if errors else 0
