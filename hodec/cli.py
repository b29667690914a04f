"""The `hodec` command line. Every user error ends with a located message and exit code 1, never a traceback."""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
from pathlib import Path

from .errors import HodecError


def write_atomic(path: str | Path, text: str):
    """Write through a temporary file in the same folder, then rename: never a half-written output."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise HodecError(f"output folder does not exist: {path.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- commands
def cmd_check(args) -> int:
    from .compiler import analyse, read_source

    errors = []
    for spec in args.specs:
        try:
            model = analyse(read_source(spec), spec)
            print(f"{spec}: ok ({len(model.states)} states, {len(model.reactions)} reactions, "
                  f"{len(model.params)} params, {len(model.slots)} neural slots)")
        except HodecError as err:
            errors.append(err)
    for err in errors:
        print(err.render(), file=sys.stderr)
    return 1 if errors else 0


def cmd_compile(args) -> int:
    from .compiler import compile_source, read_source

    if args.output and len(args.specs) > 1:
        raise HodecError("-o names one output file; use --out-dir for several specs")
    compiled, errors = [], []
    for spec in args.specs:
        try:  # compile everything first: a bad spec leaves no output at all
            compiled.append((spec, compile_source(read_source(spec), Path(spec).name)))
        except HodecError as err:
            errors.append(err)
    if errors:
        for err in errors:
            print(err.render(), file=sys.stderr)
        return 1
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    for spec, code in compiled:
        target = Path(args.output) if args.output else (out_dir or Path(spec).parent) / (Path(spec).stem + ".py")
        write_atomic(target, code)
        print(f"{spec} -> {target}")
    return 0


def cmd_simulate(args) -> int:
    import torch

    from .compiler import load

    model = load(args.spec)(_assignments(args.set, "--set")).double()
    inputs = {name: _signal(value) for name, value in _assignments(args.input, "--input", numeric=False).items()}
    if args.points < 2 or not args.t_end > 0:
        raise HodecError("--points must be at least 2 and --t-end positive")
    ts = torch.linspace(0.0, args.t_end, args.points, dtype=torch.float64)
    with torch.no_grad():
        ys = model.simulate(ts, inputs=inputs, method=args.method, rtol=args.rtol, atol=args.atol)
        obs = model.observe(ys, ts)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["t", *model.state_names, *model.observable_names])
    for i in range(len(ts)):
        writer.writerow([repr(float(ts[i]))] + [repr(float(v)) for v in torch.cat([ys[i], obs[i]])])
    if args.output:
        write_atomic(args.output, buffer.getvalue())
        print(f"{args.spec} -> {args.output} ({args.points} points)")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0


def _assignments(items, flag: str, numeric: bool = True) -> dict:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise HodecError(f"{flag} expects name=value, got {item!r}")
        if numeric:
            try:
                value = float(value)
            except ValueError:
                raise HodecError(f"{flag} {name}: {value!r} is not a number") from None
        out[name] = value
    return out


def _signal(value: str):
    """A constant (a number) or a CSV file with columns t, value."""
    try:
        return ([0.0], [float(value)])
    except ValueError:
        pass
    from .data import read_signal_csv

    return read_signal_csv(value)


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hodec", description="Compile hybrid neural ODE specs (.hode) to PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile specs to Python modules")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-o", "--output", help="output file (one spec)")
    group.add_argument("--out-dir", help="output folder: DIR/<spec stem>.py")
    p.set_defaults(run=cmd_compile)

    p = sub.add_parser("check", help="validate specs without writing anything")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("simulate", help="simulate a spec at its default (or --set) parameters, write CSV")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--t-end", type=float, required=True)
    p.add_argument("--points", type=int, required=True)
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a param")
    p.add_argument("--input", action="append", metavar="NAME=VALUE|CSV",
                   help="bind an input to a constant, or to a CSV file with columns t,value")
    p.add_argument("--method", default="dopri5")
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=1e-10)
    p.add_argument("-o", "--output", help="CSV file (default: standard output)")
    p.set_defaults(run=cmd_simulate)
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


if __name__ == "__main__":
    sys.exit(main())
