"""`hodec petab write PROBLEM.yaml --out DIR`: a PEtab / PEtab-SciML problem as hodec fit's files (DIR/model.hode,
DIR/data.csv, DIR/FIT.yaml and, with networks, DIR/slot_weights.pt), to run `hodec fit DIR/model.hode --data
DIR/data.csv --config DIR/FIT.yaml`."""
from __future__ import annotations

from pathlib import Path

from .net import add_gelu_option


def add_parser(sub):
    p = sub.add_parser("write", help="write a PEtab / PEtab-SciML problem as hodec fit's model.hode, data.csv, "
                                     "FIT.yaml (and slot_weights.pt)")
    p.add_argument("problem", metavar="PROBLEM.yaml")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for model.hode, data.csv and FIT.yaml "
                   "(created if missing)")
    add_gelu_option(p)
    return p


def run(args) -> int:
    from ...interop.petab.problem import read_problem  # torch loads only for this command
    from ...interop.petab.write import fit_files, write_fit_files

    files = fit_files(read_problem(args.problem), gelu=args.gelu)
    write_fit_files(files, Path(args.out))
    out = Path(args.out)
    print(f"{args.problem} -> {out / 'model.hode'}, {out / 'data.csv'}, {out / 'FIT.yaml'}; fit with: hodec fit "
          f"{out / 'model.hode'} --data {out / 'data.csv'} --config {out / 'FIT.yaml'}")
    return 0
