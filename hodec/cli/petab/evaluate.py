"""`hodec petab evaluate PROBLEM.yaml --out DIR`: a PEtab-SciML problem evaluated at its nominal parameters,
written in the PEtab-SciML test suite's layout (result.yaml, simulations.tsv, grad_mech.tsv, grad_NET.hdf5)."""
from __future__ import annotations

from pathlib import Path

from .net import add_gelu_option


def add_parser(sub):
    p = sub.add_parser("evaluate", help="evaluate a PEtab-SciML problem at its nominal parameters: llh, "
                                        "simulations and gradients in the test suite's files")
    p.add_argument("problem", metavar="PROBLEM.yaml")
    p.add_argument("--out", required=True, metavar="DIR", help="folder (existing) for result.yaml, "
                   "simulations.tsv, grad_mech.tsv and grad_NET.hdf5 per network")
    add_gelu_option(p)
    return p


def run(args) -> int:
    from ...interop.petab.evaluate import evaluate_problem, write_evaluation  # torch loads only for this command
    from ...interop.petab.problem import read_problem

    evaluation = evaluate_problem(read_problem(args.problem), gelu=args.gelu)
    write_evaluation(evaluation, Path(args.out))
    print(f"{args.problem}: llh {evaluation.llh:.10g}, {len(evaluation.simulations)} simulations, "
          f"{len(evaluation.grad_mech)} mechanistic gradients, {len(evaluation.grad_nets)} network(s) -> {args.out}")
    return 0
