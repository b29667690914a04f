"""`hodec sweep SPEC --data DATA.csv --grid GRID.yaml [--config FIT.yaml] [--out DIR] [--resume | --force]`."""
from __future__ import annotations

import argparse

GRID_HELP = """GRID.yaml: a grid of every combination, or `random:` samples drawn from the lists:
  grid:                      random: {lr: [0.003, 0.01, 0.03], k: [2, 4, 6]}
    lr: [0.01, 0.03]         samples: 5
    k: [2, 6]                seed: 0
Keys: any FIT.yaml key (see hodec fit --help) but starts (each point is one fit) and executor, workers and
ray_address, which come from --config and say how the trials run (executor: ray runs them in parallel)."""


def add_parser(sub):
    p = sub.add_parser("sweep", help="fit a spec for every point of a grid or random search over FIT.yaml keys; "
                                     "DIR/results.csv and the best run in DIR/best",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=GRID_HELP)
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", required=True, metavar="DATA.csv", help="training data, the format of hodec fit")
    p.add_argument("--grid", required=True, metavar="GRID.yaml", help="the points: see below")
    p.add_argument("--config", metavar="FIT.yaml", help="the keys every point shares (and the executor)")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: runs/<spec name>_sweep)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in DIR: finished trials are skipped")
    p.add_argument("--force", action="store_true", help="start the sweep in DIR over")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def run(args) -> int:
    from ..training.sweep import run_sweep  # torch loads only for the commands that train

    return run_sweep(args.spec, args.data, args.grid, config=args.config, out=args.out, resume=args.resume,
                     force=args.force, progress=not args.quiet)
