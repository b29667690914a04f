"""`hodec fit SPEC --data DATA.csv [--config FIT.yaml] [--out RUNDIR] [--resume [RUNDIR]] [--force]
[--test TEST.csv [--peak COLUMN=VALUE] [--classes COLUMN=T1,T2,...]]`."""
from __future__ import annotations

import argparse
import math
import textwrap

from ..errors import HodecError
from ..training.config import FitConfig, ForecastConfig
from ..training.options import config_help
from .simulate import assignments


def add_parser(sub):
    p = sub.add_parser("fit", help="train a spec's params and neural slots on data (homotopy, vanilla, "
                                   "multiple shooting, forecast)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"FIT.yaml keys (all optional), with their defaults:\n{config_help(FitConfig)}\n\n"
                              f"forecast: (method forecast) takes these keys:\n"
                              f"{textwrap.indent(config_help(ForecastConfig), '  ')}")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", required=True, metavar="DATA.csv",
                   help="columns: t, optional id, observables/states (fitted), inputs (fed); empty cell = missing")
    p.add_argument("--config", metavar="FIT.yaml", help="training options: the keys below")
    p.add_argument("--out", metavar="RUNDIR", help="run folder (default: runs/<spec name>)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUNDIR",
                   help="continue the run in RUNDIR (default: --out) from its checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite the outputs of an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--test", metavar="TEST.csv",
                   help="held-out data (DATA.csv's format), scored after training into report.json's \"test\": "
                        "with method forecast the horizon metrics of its windows (and forecast.png), else the "
                        "objective and per-column MSE")
    p.add_argument("--peak", action="append", metavar="COLUMN=VALUE",
                   help="--test: peak RMSE over the windows whose horizon maximum exceeds VALUE (default: the 0.75 "
                        "quantile of the column's horizon data)")
    p.add_argument("--classes", action="append", metavar="COLUMN=T1,T2,...",
                   help="--test: accuracy of the classes the increasing thresholds make (glucose: CGM=70,180)")
    return p


def run(args) -> int:
    from ..training.forecast.heldout import Scoring  # torch loads only for the commands that train
    from ..training.starts import run_fit_starts
    from ..training.torchrun import launched, run_fit_distributed

    if args.test is None and (args.peak or args.classes):
        raise HodecError("--peak and --classes score the --test data: give --test TEST.csv")
    test = None if args.test is None else Scoring(args.test, peaks(args.peak), classes(args.classes))
    fit = run_fit_distributed if launched() else run_fit_starts  # one of several processes under torchrun
    return fit(args.spec, args.data, config=args.config, out=args.out, resume=args.resume, force=args.force,
               progress=not args.quiet, test=test)


def peaks(items) -> dict:
    """--peak COLUMN=VALUE: column -> its peak threshold, a finite number."""
    out = assignments(items, "--peak")
    for name, value in out.items():
        if not math.isfinite(value):
            raise HodecError(f"--peak {name}: the threshold must be a finite number, got {value}")
    return out


def classes(items) -> dict:
    """--classes COLUMN=T1,T2,...: column -> its thresholds, numbers in increasing order."""
    out = {}
    for name, text in assignments(items, "--classes", numeric=False).items():
        try:
            values = [float(cell) for cell in text.split(",")]
        except ValueError:
            values = [math.nan]
        if not all(math.isfinite(v) for v in values) or any(b <= a for a, b in zip(values, values[1:])):
            raise HodecError(f"--classes {name}: expected increasing numbers separated by commas (such as 70,180), "
                             f"got {text!r}")
        out[name] = values
    return out
