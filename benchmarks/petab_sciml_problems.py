"""The PEtab-SciML test suite's problem-import cases (test_cases/sciml_problem_import/, 39 cases) run through
`hodec petab evaluate` and judged at issue 17's tolerances, tighter than the suite's own (1e-3 on llh and
simulations, 0.1 on gradients): llh (or log_posterior) and every simulation within 1e-6 relative; every
mechanistic gradient within 1e-4 relative; every network gradient array within 1e-4 of the reference relative to
the array's largest magnitude (a frozen array: empty in both). Also its 3 initialization cases
(test_cases/initialization/): the networks of the imported problem hold the reference arrays (net_ref.hdf5) to
1e-12 of each array's largest magnitude.

    python benchmarks/petab_sciml_problems.py [--suite DIR] [--results DIR]
    (or: python benchmarks/conformance.py petab-problems ...)

Writes benchmarks/results/petab_sciml_problems.json (per case) and .md (the count and every failure's reason), and
petab_sciml_initialization.json and .md for the initialization cases."""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from hodec.errors import HodecError
from hodec.files import write_atomic
from hodec.interop.petab.evaluate import evaluate_problem, write_evaluation
from hodec.interop.petab.mapping import build
from hodec.interop.petab.problem import read_problem
from hodec.interop.petab_sciml.arrays import read_parameters

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SUITE = ROOT.parent / "shared" / "data" / "petab_sciml_testsuite" / "test_cases" / "sciml_problem_import"
INIT_SUITE = SUITE.parent / "initialization"
VALUE_RTOL, GRAD_RTOL, ARRAY_RTOL = 1e-6, 1e-4, 1e-12
PROBLEM_CRITERION = ("llh and simulations to 1e-6 relative, gradients to 1e-4; `python benchmarks/conformance.py "
                     "petab-problems`")
INIT_CRITERION = "the imported problem's network arrays against the case's reference arrays, to 1e-12 relative"


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def _close(got: float, want: float, rtol: float) -> bool:
    return abs(got - want) <= rtol * max(abs(want), 1e-12)


def judge(folder: Path, out: Path) -> list[str]:
    """What differs between the files in `out` and the case's references (empty: the case passes)."""
    solutions = yaml.safe_load((folder / "solutions.yaml").read_text())
    return (_judge_llh(solutions, out) + _judge_simulations(folder, solutions, out)
            + _judge_grads(folder, solutions, out))


def _judge_llh(solutions: dict, out: Path) -> list[str]:
    key = "llh" if "llh" in solutions else "log_posterior"
    got = yaml.safe_load((out / "result.yaml").read_text()).get(key)
    return [] if got is not None and _close(got, solutions[key], VALUE_RTOL) else [
        f"{key} {got!r} != {solutions[key]!r}"]


def _judge_simulations(folder: Path, solutions: dict, out: Path) -> list[str]:
    want = [row for name in solutions["simulation_files"] for row in read_tsv(folder / name)]
    got = read_tsv(out / "simulations.tsv")
    if len(got) != len(want):
        return [f"{len(got)} simulations, {len(want)} expected"]
    problems = []
    for k, (g, w) in enumerate(zip(got, want)):
        if (g["observableId"], float(g["time"])) != (w["observableId"], float(w["time"])):
            problems.append(f"simulation row {k + 2}: {g['observableId']} at {g['time']}, expected "
                            f"{w['observableId']} at {w['time']}")
        elif not _close(float(g["simulation"]), float(w["simulation"]), VALUE_RTOL):
            error = abs(float(g["simulation"]) / float(w["simulation"]) - 1)
            problems.append(f"simulation row {k + 2} ({w['observableId']}, t = {w['time']}): {g['simulation']} != "
                            f"{w['simulation']} (relative {error:.2g})")
    return problems


def _judge_grads(folder: Path, solutions: dict, out: Path) -> list[str]:
    problems = []
    for key, name in solutions.get("grad_files", {}).items():
        if key == "mech":
            got = {row["parameterId"]: float(row["value"]) for row in read_tsv(out / "grad_mech.tsv")}
            problems += [f"gradient {row['parameterId']}: {got.get(row['parameterId'])} != {row['value']}"
                         for row in read_tsv(folder / name)
                         if not _close(got.get(row["parameterId"], np.nan), float(row["value"]), GRAD_RTOL)]
        else:
            problems += _judge_arrays(folder / name, out / f"grad_{key}.hdf5")
    return problems


def _judge_arrays(reference: Path, mine: Path) -> list[str]:
    if not mine.is_file():
        return [f"no {mine.name}"]
    problems: list[str] = []
    with h5py.File(reference, "r") as ref, h5py.File(mine, "r") as got:
        def compare(path, item):
            if not isinstance(item, h5py.Dataset) or not path.startswith("parameters/"):
                return
            if path not in got:
                problems.append(f"{mine.name}: no {path}")
                return
            w, g = np.asarray(item[()]), np.asarray(got[path][()])
            scale = max(float(np.abs(w).max(initial=0.0)), 1e-12)
            if w.shape != g.shape or (w.size and float(np.abs(g - w).max()) > GRAD_RTOL * scale):
                problems.append(f"{mine.name}: {path} differs")
        ref.visititems(compare)
    return problems


def run_case(folder: Path) -> dict:
    with tempfile.TemporaryDirectory() as out:
        try:
            write_evaluation(evaluate_problem(read_problem(folder / "petab" / "problem.yaml")), Path(out))
        except HodecError as err:
            return {"status": "refused", "reason": str(err).strip().splitlines()[0]}
        problems = judge(folder, Path(out))
    return {"status": "fail" if problems else "pass", "reason": "; ".join(problems)}


def judge_initialization(folder: Path) -> list[str]:
    """What differs between the networks of the case's imported problem and its reference arrays (empty: the
    case passes)."""
    solutions = yaml.safe_load((folder / "solutions.yaml").read_text())
    nets = build(read_problem(folder / "petab" / "problem.yaml")).nets
    problems = []
    for net_id, name in solutions["parameter_files"].items():
        tensors = nets[net_id].network.petab_arrays()
        for layer, arrays in read_parameters(folder / name, net_id).items():
            for array, want in arrays.items():
                got = tensors[(layer, array)].detach().numpy()
                scale = max(float(np.abs(want).max(initial=0.0)), 1e-12)
                if got.shape != want.shape or float(np.abs(got - want).max()) > ARRAY_RTOL * scale:
                    problems.append(f"{net_id}/{layer}/{array} differs")
    return problems


def run_initialization_case(folder: Path) -> dict:
    try:
        problems = judge_initialization(folder)
    except HodecError as err:
        return {"status": "refused", "reason": str(err).strip().splitlines()[0]}
    return {"status": "fail" if problems else "pass", "reason": "; ".join(problems)}


def report(results: dict, title: str = "problem-import", criterion: str = PROBLEM_CRITERION) -> str:
    passed = sum(r["status"] == "pass" for r in results.values())
    lines = [f"# PEtab-SciML {title} cases: {passed} of {len(results)} pass", "", f"({criterion})", "",
             "| case | status | reason |", "|---|---|---|"]
    lines += [f"| {case} | {r['status']} | {r['reason'].replace('|', '/')} |" for case, r in sorted(results.items())]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--suite", type=Path, default=SUITE, help="the sciml_problem_import folder")
    parser.add_argument("--init-suite", type=Path, default=INIT_SUITE, help="the initialization folder")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    return parser


def run(args) -> None:
    torch.set_num_threads(1)  # small models: more threads only contend
    results = {folder.name: run_case(folder) for folder in sorted(args.suite.iterdir()) if folder.is_dir()}
    store = args.results / "petab_sciml_problems.json"
    write_atomic(store, json.dumps(results, indent=0) + "\n")
    write_atomic(store.with_suffix(".md"), report(results))
    init = {folder.name: run_initialization_case(folder) for folder in sorted(args.init_suite.iterdir())
            if folder.is_dir()}
    store = args.results / "petab_sciml_initialization.json"
    write_atomic(store, json.dumps(init, indent=0) + "\n")
    write_atomic(store.with_suffix(".md"), report(init, "initialization", INIT_CRITERION))


def main(argv=None):
    run(add_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
