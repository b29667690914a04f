"""`hodec petab evaluate` against the PEtab-SciML test suite's problem-import cases (read from ../shared/data):
llh and simulations within 1e-6 relative, gradients within 1e-4 relative (the issue's tolerances, tighter than
the suite's own), and bad input located with exit code 1."""
from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from hodec.cli import main

SUITE = Path(__file__).resolve().parents[2] / "shared/data/petab_sciml_testsuite/test_cases/sciml_problem_import"
PASSING = [f"{k:03d}" for k in range(1, 40) if k not in (9, 36, 38)]  # why not those: README

pytestmark = pytest.mark.skipif(not SUITE.is_dir(), reason="the PEtab-SciML test suite is not in ../shared/data")


def _tsv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def _close(got: float, want: float, rtol: float) -> bool:
    return abs(got - want) <= rtol * max(abs(want), 1e-12)


def judge(case: str, out: Path) -> list[str]:
    """What differs between `out` and the case's references (empty: the case passes)."""
    folder = SUITE / case
    solutions = yaml.safe_load((folder / "solutions.yaml").read_text())
    problems = []
    key = "llh" if "llh" in solutions else "log_posterior"
    llh = yaml.safe_load((out / "result.yaml").read_text())[key]
    if not _close(llh, solutions[key], 1e-6):
        problems.append(f"{key} {llh!r} != {solutions[key]!r}")
    want = [r for f in solutions["simulation_files"] for r in _tsv(folder / f)]
    got = _tsv(out / "simulations.tsv")
    if len(got) != len(want):
        problems.append(f"{len(got)} simulations, {len(want)} expected")
    for g, w in zip(got, want):
        if (g["observableId"], float(g["time"])) != (w["observableId"], float(w["time"])) or not _close(
                float(g["simulation"]), float(w["simulation"]), 1e-6):
            problems.append(f"simulation {g} != {w}")
            break
    for key, name in solutions.get("grad_files", {}).items():
        if key == "mech":
            got_mech = {r["parameterId"]: float(r["value"]) for r in _tsv(out / "grad_mech.tsv")}
            for r in _tsv(folder / name):
                if not _close(got_mech.get(r["parameterId"], np.nan), float(r["value"]), 1e-4):
                    problems.append(f"grad {r['parameterId']}: {got_mech.get(r['parameterId'])} != {r['value']}")
        else:
            with h5py.File(folder / name) as ref, h5py.File(out / f"grad_{key}.hdf5") as mine:
                def compare(path, item):
                    if isinstance(item, h5py.Dataset) and path.startswith("parameters/"):
                        w, g = np.asarray(item[()]), np.asarray(mine[path][()])
                        scale = max(np.abs(w).max(initial=0.0), 1e-12)
                        if w.shape != g.shape or (w.size and np.abs(g - w).max() > 1e-4 * scale):
                            problems.append(f"grad {path} differs")
                ref.visititems(compare)
    return problems


@pytest.mark.parametrize("case", PASSING)
def test_problem_case(case, tmp_path):
    assert main(["petab", "evaluate", str(SUITE / case / "petab" / "problem.yaml"), "--out", str(tmp_path)]) == 0
    assert judge(case, tmp_path) == []


def test_missing_problem_file(tmp_path, capsys):
    assert main(["petab", "evaluate", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)]) == 1
    assert "nope.yaml" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unknown_observable_is_located(tmp_path, capsys):
    import shutil
    shutil.copytree(SUITE / "001" / "petab", tmp_path / "p")
    path = tmp_path / "p" / "measurements.tsv"
    lines = path.read_text().split("\n")
    lines[3] = lines[3].replace("prey_o", "nosuch_o", 1)
    path.write_text("\n".join(lines))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["petab", "evaluate", str(tmp_path / "p" / "problem.yaml"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "measurements.tsv:4:" in err and "nosuch_o" in err
    assert list(out.iterdir()) == []
