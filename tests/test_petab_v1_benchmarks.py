"""Real PEtab v1 problems: models of the PEtab benchmark collection through `hodec petab evaluate`, their llh at
the nominal parameters against the reference AMICI's tests keep (benchmarks/petab_v1_benchmarks.py), and
Crauste_CellSystems2017, whose reference is 6.5e-6 off, against libRoadRunner. The collection is read from
PETAB_BENCHMARK_COLLECTION or ../shared/data/benchmark_models_petab/Benchmark-Models."""
from __future__ import annotations

import csv
import math

import pytest

from benchmarks.petab_v1_benchmarks import COLLECTION, run_model
from hodec.interop.petab.evaluate import evaluate_problem
from hodec.interop.petab.problem import read_problem

pytestmark = pytest.mark.skipif(not COLLECTION.is_dir(), reason="the PEtab benchmark collection is not there")


# Boehm: noise parameters by parameter id; Zheng, Bruno: several conditions, numeric noise parameters
@pytest.mark.parametrize("model", ["Boehm_JProteomeRes2014", "Zheng_PNAS2012", "Bruno_JExpBot2016"])
def test_benchmark_collection_llh(model):
    result = run_model(COLLECTION / model, 600)
    assert result["status"] == "pass", result


def _rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def test_crauste_against_roadrunner():
    """One condition, observables that are species, numeric noise parameters: CVODE's solution at the
    parameters table's values and the normal llh written out by hand."""
    roadrunner = pytest.importorskip("roadrunner")
    name = "Crauste_CellSystems2017"
    folder = COLLECTION / name
    runner = roadrunner.RoadRunner(str(folder / f"model_{name}.xml"))
    for row in _rows(folder / f"parameters_{name}.tsv"):
        if row["parameterId"] in runner.model.getGlobalParameterIds():
            runner[row["parameterId"]] = float(row["nominalValue"])
    observables = {row["observableId"]: row["observableFormula"] for row in _rows(folder / f"observables_{name}.tsv")}
    measurements = _rows(folder / f"measurementData_{name}.tsv")
    times = sorted({float(row["time"]) for row in measurements} | {0.0})
    runner.integrator.relative_tolerance = runner.integrator.absolute_tolerance = 1e-12
    selections = ["time", *dict.fromkeys(observables.values())]
    solved = runner.simulate(times=times, selections=selections)
    want = 0.0
    for row in measurements:
        mu = solved[times.index(float(row["time"])), selections.index(observables[row["observableId"]])]
        sigma, y = float(row["noiseParameters"]), float(row["measurement"])
        want += -0.5 * math.log(2 * math.pi * sigma ** 2) - (y - mu) ** 2 / (2 * sigma ** 2)
    got = evaluate_problem(read_problem(folder / f"{name}.yaml"), gradients=False).llh
    assert got == pytest.approx(want, rel=1e-9)
