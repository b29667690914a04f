"""The `hodec` command line: one module per command, each with `add_parser(sub)` and `run(args)`. Every user
error ends with a located message and exit code 1, never a traceback."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import HodecError
from . import check, compile, export, fit, forecast, graph, import_, petab, simulate, sparsify, sweep, transform

COMMANDS = (compile, check, simulate, fit, forecast, sparsify, sweep, graph, transform, import_, export, petab)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hodec", description="Compile hybrid neural ODE specs (.hode) to PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub).set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HodecError as err:
        print(err.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hodec: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug in hodec, not in the user's input: say so, briefly
        if os.environ.get("HODEC_DEBUG"):
            raise
        print(f"hodec: internal error: {type(err).__name__}: {err}\n"
              f"(set HODEC_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 2
