"""`hodec forecast SPEC --run RUNDIR --history HIST.csv [--inputs INPUTS.csv] --horizon H [--step DT]
[--out FORECAST.csv]`: forecasts with a forecast fit's best model and state estimator
(hodec/training/forecast/history.py says how the history, the inputs and the forecast's times are read)."""
from __future__ import annotations

import csv
import io
import math
import sys

from ..compiler import compile as compile_spec
from ..errors import HodecError
from ..files import write_atomic
from .outputs import check_outputs


def add_parser(sub):
    p = sub.add_parser("forecast", help="forecast from a history with a forecast fit's model and state estimator")
    p.add_argument("spec", metavar="SPEC", help="the spec the run was fitted with")
    p.add_argument("--run", required=True, dest="rundir", metavar="RUNDIR",
                   help="the run folder of `hodec fit` (method forecast)")
    p.add_argument("--history", required=True, metavar="HIST.csv",
                   help="DATA.csv's format; each trajectory (id) is forecast from its last time on, from the "
                        "run's forecast.history time units before it")
    p.add_argument("--inputs", metavar="INPUTS.csv",
                   help="t, optional id, the model's inputs: read as if its rows were in HIST.csv; the inputs must "
                        "reach the forecast's end")
    p.add_argument("--horizon", required=True, type=float, metavar="H", help="time units to forecast")
    p.add_argument("--step", type=float, metavar="DT",
                   help="spacing of the forecast's times (default: the history's median sampling step)")
    p.add_argument("--out", metavar="FORECAST.csv", help="columns id, t and the fitted columns (default: stdout)")
    return p


def run(args) -> int:
    from ..training.data import read_data  # torch loads only for the commands that simulate or train
    from ..training.forecast.history import forecast_history, load_forecaster, read_inputs

    for flag, value in (("--horizon", args.horizon), ("--step", args.step)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise HodecError(f"{flag} must be a positive number, got {value:g}")
    inputs = [args.spec, args.history] + ([args.inputs] if args.inputs else [])
    if args.out:
        check_outputs(inputs, [args.out])
    compilation = compile_spec(args.spec)
    forecaster = load_forecaster(compilation, args.rundir)
    model_class = compilation.model_class()
    history = read_data(args.history, model_class, forecaster.config)
    given = read_inputs(args.inputs, model_class, forecaster.config) if args.inputs else None
    result = forecast_history(forecaster, history, given, args.horizon, args.step)
    text = _table(result)
    if args.out:
        write_atomic(args.out, text)
        print(f"{args.spec} ({args.rundir}) -> {args.out}: {len(result.rows)} trajectories, {args.horizon:g} ahead",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _table(result) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "t", *result.columns])
    for label, times, values in result.rows:
        for t, row in zip(times, values):
            writer.writerow([label, repr(float(t))] + [repr(float(v)) for v in row])
    return buffer.getvalue()
