"""`hodec petab SUBCOMMAND`: PEtab and PEtab-SciML problems and networks. One module per subcommand, each with
`add_parser(sub)` and `run(args)`, as for the top-level commands."""
from __future__ import annotations

from . import evaluate, fit, net, write

SUBCOMMANDS = (net, evaluate, write, fit)


def add_parser(sub):
    p = sub.add_parser("petab", help="PEtab / PEtab-SciML problems and networks (see 'hodec petab -h')")
    petab_sub = p.add_subparsers(dest="petab_command", required=True, metavar="SUBCOMMAND")
    for command in SUBCOMMANDS:
        command.add_parser(petab_sub).set_defaults(petab_run=command.run)
    return p


def run(args) -> int:
    return args.petab_run(args)
