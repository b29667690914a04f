"""`hodec fit SPEC --data DATA.csv [--config FIT.yaml] [--out RUNDIR] [--resume [RUNDIR]] [--force]`."""
from __future__ import annotations

import argparse

from ..training.config import FitConfig
from ..training.options import config_help


def add_parser(sub):
    p = sub.add_parser("fit", help="train a spec's params and neural slots on data (homotopy, vanilla, "
                                   "multiple shooting)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"FIT.yaml keys (all optional), with their defaults:\n{config_help(FitConfig)}")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", required=True, metavar="DATA.csv",
                   help="columns: t, optional id, observables/states (fitted), inputs (fed); empty cell = missing")
    p.add_argument("--config", metavar="FIT.yaml", help="training options: the keys below")
    p.add_argument("--out", metavar="RUNDIR", help="run folder (default: runs/<spec name>)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUNDIR",
                   help="continue the run in RUNDIR (default: --out) from its checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite the outputs of an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from ..training.starts import run_fit_starts  # torch loads only for the commands that train
    from ..training.torchrun import launched, run_fit_distributed

    fit = run_fit_distributed if launched() else run_fit_starts  # one of several processes under torchrun
    return fit(args.spec, args.data, config=args.config, out=args.out, resume=args.resume, force=args.force,
               progress=not args.quiet)
