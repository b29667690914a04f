"""`hodec compile SPEC... [-o OUT | --out-dir DIR] [--gates]`: specs to Python modules, all or nothing."""
from __future__ import annotations

import sys
from pathlib import Path

from ..compiler import compile as compile_spec
from ..errors import HodecError
from ..files import write_atomic
from .outputs import check_folder, check_outputs, output_folder


def add_parser(sub):
    p = sub.add_parser("compile", help="compile specs to Python modules")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-o", "--output", help="output file (one spec)")
    group.add_argument("--out-dir", help="output folder: DIR/<spec stem>.py")
    p.add_argument("--gates", action="store_true", help="compile in one sparsity gate per prunable edge")
    return p


def run(args) -> int:
    if args.output and len(args.specs) > 1:
        raise HodecError("-o names one output file; use --out-dir for several specs")
    compiled, errors = [], []
    for spec in args.specs:
        try:  # compile everything first: a bad spec leaves no output at all
            compiled.append((spec, compile_spec(spec).code(args.gates)))
        except HodecError as err:
            errors.append(err)
    if errors:
        for err in errors:
            print(err.render(), file=sys.stderr)
        return 1
    if args.out_dir:
        check_folder(args.out_dir)
    targets = [_target(args, spec) for spec, _ in compiled]
    check_outputs(args.specs, targets)
    if args.out_dir:
        output_folder(args.out_dir)
    for (spec, code), target in zip(compiled, targets):
        write_atomic(target, code)
        print(f"{spec} -> {target}")
    return 0


def _target(args, spec: str) -> Path:
    if args.output:
        return Path(args.output)
    folder = Path(args.out_dir) if args.out_dir else Path(spec).parent
    return folder / (Path(spec).stem + ".py")
