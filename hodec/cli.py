"""The `hodec` command line. Every user error ends with a located message and exit code 1, never a traceback."""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

from .errors import HodecError
from .files import write_atomic
from .graph.cli import add_graph_parser, add_transform_parser


def _at(spec: str, err: HodecError) -> HodecError:
    """The error located at the spec's path as given, not just its name (which the compiler uses, so that the
    generated code does not depend on where the spec lies)."""
    if err.filename == Path(spec).name and err.filename != spec:
        return HodecError(err.diagnostics, spec, err.source)
    return err


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
            compiled.append((spec, compile_source(read_source(spec), Path(spec).name, gates=args.gates)))
        except HodecError as err:
            errors.append(_at(spec, err))
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

    try:
        model_class = load(args.spec)
    except HodecError as err:
        raise _at(args.spec, err) from None
    model = model_class(_assignments(args.set, "--set")).double()
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


def cmd_fit(args) -> int:
    from .training.run import run_fit

    return run_fit(args.spec, args.data, config=args.config, out=args.out, resume=args.resume, force=args.force,
                   progress=not args.quiet)


def cmd_sparsify(args) -> int:
    from .training.sparsify import run_sparsify

    return run_sparsify(args.spec, args.data, test=args.test, config=args.config, out=args.out, force=args.force,
                        progress=not args.quiet)


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
    p.add_argument("--gates", action="store_true", help="compile in one sparsity gate per prunable edge")
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

    p = sub.add_parser("fit", help="train a spec's params and neural slots on data (homotopy, vanilla, "
                                   "multiple shooting)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", required=True, metavar="DATA.csv",
                   help="columns: t, optional id, observables/states (fitted), inputs (fed); empty cell = missing")
    p.add_argument("--config", metavar="FIT.yaml", help="training options (see hodec/training/config.py)")
    p.add_argument("--out", metavar="RUNDIR", help="run folder (default: runs/<spec name>)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUNDIR",
                   help="continue the run in RUNDIR (default: --out) from its checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite the outputs of an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_fit)

    p = sub.add_parser("sparsify", help="prune a spec's edges and states by L1 sparsity gates (HGS step 5), "
                                        "refit, write RUNDIR/pruned.hode")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", required=True, metavar="DATA.csv", help="training data, the format of hodec fit")
    p.add_argument("--test", metavar="TEST.csv", help="held-out data: report.json gets test_mse")
    p.add_argument("--config", metavar="SPARSIFY.yaml",
                   help="FIT.yaml keys plus lambda1, lambda2, folds, threshold, refit_epochs "
                        "(see hodec/training/sparsify_config.py)")
    p.add_argument("--out", metavar="RUNDIR", help="run folder (default: runs/<spec name>_sparse)")
    p.add_argument("--force", action="store_true", help="overwrite the outputs of an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=cmd_sparsify)

    add_graph_parser(sub)
    add_transform_parser(sub)
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
