"""`hodec simulate SPEC --t-end T --points N [--set name=value] [--input name=value|file.csv] [--dose ...]
[-o traj.csv]`."""
from __future__ import annotations

import csv
import io
import sys

from ..compiler import compile as compile_spec
from ..errors import HodecError
from ..files import write_atomic
from .doses import SYNTAX, parse_doses
from .outputs import check_outputs


def add_parser(sub):
    p = sub.add_parser("simulate", help="simulate a spec at its default (or --set) parameters, write CSV")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--t-end", type=float, required=True)
    p.add_argument("--points", type=int, required=True)
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a param")
    p.add_argument("--input", action="append", metavar="NAME=VALUE|CSV",
                   help="bind an input to a constant, or to a CSV file with columns t,value")
    p.add_argument("--dose", action="append", metavar=SYNTAX,
                   help="a bolus (or with rate/dur a zero-order infusion) of AMOUNT into STATE at TIME; ii and "
                        "addl repeat it (NONMEM's names); several --dose options add up")
    p.add_argument("--method", default="auto",
                   help="ODE solver: auto (tsit5, switching to the stiff rodas5p when needed), tsit5, dopri5, "
                        "rodas5p, ..., or a torchdiffeq method; hodec's methods solve in C where the model allows "
                        "(no neural slots, events or doses; HODEC_NATIVE=0 in the environment: never)")
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=1e-10)
    p.add_argument("-o", "--output", help="CSV file (default: standard output)")
    return p


def run(args) -> int:
    import torch  # torch loads only for the commands that simulate or train

    from ..runtime import UnboundInputError

    model_class = compile_spec(args.spec).model_class()
    model = model_class(assignments(args.set, "--set")).double()
    inputs = {name: _signal(value) for name, value in assignments(args.input, "--input", numeric=False).items()}
    doses = parse_doses(args.dose, model.state_names)
    if args.points < 2 or not args.t_end > 0:
        raise HodecError("--points must be at least 2 and --t-end positive")
    if args.output:
        check_outputs([args.spec, *[v for v in inputs_files(args.input)]], [args.output])
    ts = torch.linspace(0.0, args.t_end, args.points, dtype=torch.float64)
    try:
        with torch.no_grad():
            ys = model.simulate(ts, inputs=inputs, method=args.method, rtol=args.rtol, atol=args.atol, doses=doses)
            obs = model.observe(ys, ts)
    except UnboundInputError as err:  # the runtime speaks Python (set_inputs); here the user wrote a command
        raise HodecError(f"{args.spec}: input {', '.join(repr(n) for n in err.names)} has no value: bind "
                         + " ".join(f"--input {n}=VALUE|FILE.csv" for n in err.names)) from None
    text = _table(ts, ys, obs, model)
    if args.output:
        write_atomic(args.output, text)
        print(f"{args.spec} -> {args.output} ({args.points} points)")
    else:
        sys.stdout.write(text)
    return 0


def _table(ts, ys, obs, model) -> str:
    import torch

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["t", *model.state_names, *model.observable_names])
    for i in range(len(ts)):
        writer.writerow([repr(float(ts[i]))] + [repr(float(v)) for v in torch.cat([ys[i], obs[i]])])
    return buffer.getvalue()


def assignments(items, flag: str, numeric: bool = True) -> dict:
    """NAME=VALUE options as a mapping (values as floats when numeric)."""
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


def inputs_files(items) -> list:
    """The CSV files named by --input options (the values that are not numbers)."""
    return [v for v in assignments(items, "--input", numeric=False).values() if _number(v) is None]


def _number(value: str):
    try:
        return float(value)
    except ValueError:
        return None


def _signal(value: str):
    """A constant (a number) or a CSV file with columns t, value."""
    if _number(value) is not None:
        return ([0.0], [float(value)])
    from ..tables import read_signal_csv

    return read_signal_csv(value)
