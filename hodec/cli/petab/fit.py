"""`hodec petab fit PROBLEM.yaml --out RUNDIR [--config FIT.yaml]`: `hodec petab write` into RUNDIR-problem/, then
`hodec fit` on those files into RUNDIR (the files stay: report.json names them, `hodec fit --resume` reads them).
A network that no `.hode` slot declaration makes is put into its slots as it is (`Model(slots=...)`)."""
from __future__ import annotations

from pathlib import Path

from .net import add_gelu_option


def add_parser(sub):
    p = sub.add_parser("fit", help="fit a PEtab / PEtab-SciML problem: hodec petab write, then hodec fit")
    p.add_argument("problem", metavar="PROBLEM.yaml")
    p.add_argument("--out", required=True, metavar="RUNDIR", help="run folder; the written problem goes to "
                   "RUNDIR-problem/")
    p.add_argument("--config", metavar="FIT.yaml", help="training options over the problem's (each key given "
                   "replaces the written one: method, epochs, ..., or conditions/priors/scales themselves)")
    p.add_argument("--force", action="store_true", help="overwrite the outputs of an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_gelu_option(p)
    return p


def run(args) -> int:
    from ...interop.petab.problem import read_problem  # torch loads only for this command
    from ...interop.petab.write import fit_files, write_fit_files
    from ...training.config import config_source, validate
    from ...training.starts import run_fit_starts

    files = fit_files(read_problem(args.problem), gelu=args.gelu, modules=True)
    if args.config:
        raw, filename = config_source(args.config, {})
        files.config.update(raw)
        validate(files.config, filename)  # the merged keys checked before anything is written
    folder = Path(f"{Path(args.out)}-problem")
    write_fit_files(files, folder)
    return run_fit_starts(folder / "model.hode", folder / "data.csv", config=str(folder / "FIT.yaml"), out=args.out,
                          force=args.force, progress=not args.quiet, slots=files.modules)
