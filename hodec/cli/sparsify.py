"""`hodec sparsify SPEC --data DATA.csv [--test TEST.csv] [--config SPARSIFY.yaml] [--out RUNDIR] [--force]`."""
from __future__ import annotations

import argparse

from ..training.sparsify_config import SparsifyConfig
from ..training.options import config_help


def add_parser(sub):
    p = sub.add_parser("sparsify", help="prune a spec's edges and states by L1 sparsity gates (HGS step 5), "
                                        "refit, write RUNDIR/pruned.hode",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"SPARSIFY.yaml keys (all optional), with their defaults:\n{config_help(SparsifyConfig)}")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", required=True, metavar="DATA.csv", help="training data, the format of hodec fit")
    p.add_argument("--test", metavar="TEST.csv", help="held-out data: report.json gets test_mse")
    p.add_argument("--config", metavar="SPARSIFY.yaml", help="sparsify options: the keys below")
    p.add_argument("--out", metavar="RUNDIR", help="run folder (default: runs/<spec name>_sparse)")
    p.add_argument("--force", action="store_true", help="overwrite the outputs of an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def run(args) -> int:
    from ..training.sparsify import run_sparsify  # torch loads only for the commands that train

    return run_sparsify(args.spec, args.data, test=args.test, config=args.config, out=args.out, force=args.force,
                        progress=not args.quiet)
