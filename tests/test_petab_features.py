"""`hodec petab evaluate` on what the PEtab-SciML suite does not exercise, each against an independent reference
(scipy's DOP853 at rtol 1e-12, closed-form steady states, hand-written normal densities and their derivatives,
finite differences): noise and observable placeholders filled per measurement row (PEtab v2's declared ones and
v1's noiseParameter{n}_{obs}), PEtab v1 problems (wide conditions, pre-equilibration and simulation condition
pairs), steady-state measurements (time inf), pre-equilibration and several periods per experiment; bad input
located with exit code 1 and nothing written.

The model: A' = k1 - k2 A, B' = k3 A - k4 B (A(0) = 1, B(0) = 0.2); its steady state A* = k1/k2, B* = k3 A*/k4."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.integrate import solve_ivp

from benchmarks.petab_sciml_problems import read_tsv
from hodec.cli import main
from hodec.interop.petab.evaluate import evaluate_problem
from hodec.interop.petab.problem import read_problem

MODEL = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2">
  <model id="chain">
    <listOfParameters>
      <parameter id="k1" value="2" constant="true"/>
      <parameter id="k2" value="0.5" constant="true"/>
      <parameter id="k3" value="1.5" constant="true"/>
      <parameter id="k4" value="0.8" constant="true"/>
      <parameter id="A" value="1" constant="false"/>
      <parameter id="B" value="0.2" constant="false"/>
    </listOfParameters>
    <listOfRules>
      <rateRule variable="A"><math xmlns="http://www.w3.org/1998/Math/MathML">
        <apply><minus/><ci>k1</ci><apply><times/><ci>k2</ci><ci>A</ci></apply></apply></math></rateRule>
      <rateRule variable="B"><math xmlns="http://www.w3.org/1998/Math/MathML">
        <apply><minus/><apply><times/><ci>k3</ci><ci>A</ci></apply><apply><times/><ci>k4</ci><ci>B</ci></apply>
        </apply></math></rateRule>
    </listOfRules>
  </model>
</sbml>
"""
K = {"k1": 2.0, "k2": 0.5, "k3": 1.5, "k4": 0.8}
V2 = """format_version: "2.0.0"
model_files:
  chain: {location: model.xml, language: sbml}
measurement_files: [measurements.tsv]
observable_files: [observables.tsv]
experiment_files: [experiments.tsv]
condition_files: [conditions.tsv]
parameter_files: [parameters.tsv]
"""
V1 = """format_version: 1
parameter_file: parameters.tsv
problems:
  - sbml_files: [model.xml]
    condition_files: [conditions.tsv]
    measurement_files: [measurements.tsv]
    observable_files: [observables.tsv]
"""


def _tsv(rows: list) -> str:
    return "\n".join("\t".join(str(cell) for cell in row) for row in rows) + "\n"


def _parameters(extra: list = ()) -> str:
    rows = [["parameterId", "parameterScale", "lowerBound", "upperBound", "nominalValue", "estimate"],
            ["k1", "lin", 0, 10, 2.0, 0], ["k2", "log10", 0.01, 10, 0.5, 1], ["k3", "lin", 0, 10, 1.5, 1],
            ["k4", "lin", 0, 10, 0.8, 0], *extra]
    return _tsv(rows)


def _folder(tmp_path: Path, files: dict) -> Path:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "model.xml").write_text(MODEL)
    for name, text in files.items():
        (folder / name).write_text(text)
    (tmp_path / "out").mkdir()
    return folder


def _evaluate(folder: Path) -> int:
    return main(["petab", "evaluate", str(folder / "problem.yaml"), "--out", str(folder.parent / "out")])


def _results(folder: Path):
    out = folder.parent / "out"
    llh = yaml.safe_load((out / "result.yaml").read_text())["llh"]
    sims = [float(row["simulation"]) for row in read_tsv(out / "simulations.tsv")]
    grads = {row["parameterId"]: float(row["value"]) for row in read_tsv(out / "grad_mech.tsv")}
    return llh, sims, grads


def _solve(k: dict, start: tuple, t0: float, times: list) -> np.ndarray:
    """[len(times), 2]: A and B at the times from (A, B) = start at t0, by scipy."""
    grid = sorted(set(times))
    solved = solve_ivp(lambda t, y: [k["k1"] - k["k2"] * y[0], k["k3"] * y[0] - k["k4"] * y[1]],
                       (t0, grid[-1]), list(start), method="DOP853", rtol=1e-12, atol=1e-14, t_eval=grid)
    return solved.y.T[[grid.index(t) for t in times]]


def _steady(k: dict) -> tuple:
    a = k["k1"] / k["k2"]
    return a, k["k3"] * a / k["k4"]


def _normal(y: float, mu: float, sigma: float) -> float:
    return -0.5 * math.log(2 * math.pi * sigma ** 2) - (y - mu) ** 2 / (2 * sigma ** 2)


def _fd(function, k: dict, name: str, log10: bool = False) -> float:
    """d function(k) / d k[name] (on log10 when asked) by central differences."""
    h = 1e-5
    def at(step):
        value = dict(k)
        value[name] = k[name] * 10 ** step if log10 else k[name] + step
        return function(value)
    return (at(h) - at(-h)) / (2 * h)


def _agrees(folder: Path, reference, differenced=(("k2", True), ("k3", False))) -> dict:
    """Evaluate the problem: its llh and simulations those of reference(K), its gradients with respect to the
    `differenced` parameters (name, on log10) those of central differences of the reference's llh; the gradients."""
    assert _evaluate(folder) == 0
    llh, sims, grads = _results(folder)
    want, want_sims = reference(K)
    assert sims == pytest.approx(want_sims, rel=1e-9)
    assert llh == pytest.approx(want, rel=1e-9)
    for name, log10 in differenced:
        assert grads[name] == pytest.approx(_fd(lambda k: reference(k)[0], K, name, log10), rel=1e-6)
    return grads


def _refused(folder: Path, capsys, where: str, message: str) -> None:
    """Evaluating the problem exits 1 with an error naming `where` (FILE:LINE:) and saying `message`; nothing is
    written."""
    assert _evaluate(folder) == 1
    err = capsys.readouterr().err
    assert where in err and message in err, err
    assert list((folder.parent / "out").iterdir()) == []


# ------------------------------------------------------------------------------------------------ placeholders
PLACEHOLDER_OBSERVABLES = _tsv([
    ["observableId", "observableFormula", "noiseFormula", "observablePlaceholders", "noisePlaceholders"],
    ["obs_a", "s * A + off", "sd", "s;off", "sd"],
    ["obs_b", "B", "sigma_b", "", ""]])
PLACEHOLDER_ROWS = [  # observable, time, measurement, observableParameters, noiseParameters
    ("obs_a", 1.0, 3.1, "2;0.5", "0.4"), ("obs_a", 2.0, 4.0, "scale_p;0", "sd_p"),
    ("obs_a", 4.0, 5.2, "scale_p;0.1", "sd_p"), ("obs_b", 1.5, 1.9, "", ""), ("obs_b", 3.0, 3.0, "", "")]


def _placeholder_problem(tmp_path: Path, rows=PLACEHOLDER_ROWS) -> Path:
    measurements = [["observableId", "experimentId", "time", "measurement", "observableParameters",
                     "noiseParameters"]] + [[o, "e1", t, m, op, npar] for o, t, m, op, npar in rows]
    return _folder(tmp_path, {
        "problem.yaml": V2, "observables.tsv": PLACEHOLDER_OBSERVABLES, "measurements.tsv": _tsv(measurements),
        "experiments.tsv": "experimentId\ttime\tconditionId\ne1\t0\tc0\n",
        "conditions.tsv": "conditionId\ttargetId\ttargetValue\nc0\tk4\t0.8\n",
        "parameters.tsv": _parameters([["scale_p", "lin", 0, 10, 1.7, 1], ["sd_p", "lin", 0, 10, 0.3, 1],
                                       ["sigma_b", "lin", 0, 10, 0.25, 0]])})


def _placeholder_reference(k: dict, scale: float = 1.7, sd: float = 0.3) -> tuple:
    """(llh, simulations) by hand: each row's placeholders from its own columns."""
    values = {"scale_p": scale, "sd_p": sd}
    states = _solve(k, (1.0, 0.2), 0.0, [t for _, t, *_ in PLACEHOLDER_ROWS])
    llh, sims = 0.0, []
    for (obs, _, y, op, npar), (a, b) in zip(PLACEHOLDER_ROWS, states):
        if obs == "obs_a":
            s, off = (values.get(v) or float(v) for v in op.split(";"))
            mu, sigma = s * a + off, values.get(npar) or float(npar)
        else:
            mu, sigma = b, 0.25
        llh += _normal(y, mu, sigma)
        sims.append(mu)
    return llh, sims


def test_placeholders_per_measurement_row(tmp_path):
    grads = _agrees(_placeholder_problem(tmp_path), _placeholder_reference)
    # d llh / d scale_p and d sd_p: the rows that read them, by hand
    states = _solve(K, (1.0, 0.2), 0.0, [2.0, 4.0])
    residuals = [(4.0 - 1.7 * states[0, 0], states[0, 0]), (5.2 - 1.7 * states[1, 0] - 0.1, states[1, 0])]
    assert grads["scale_p"] == pytest.approx(sum(r * a / 0.09 for r, a in residuals), rel=1e-8)
    assert grads["sd_p"] == pytest.approx(sum(-1 / 0.3 + r * r / 0.027 for r, _ in residuals), rel=1e-8)


@pytest.mark.parametrize("column, cells, message", [
    ("observableParameters", ("2", "0.4"), "observableParameters: 1 value(s) for the 2 placeholder(s)"),
    ("noiseParameters", ("", "0.4"), "noiseParameters: 1 value(s) for the 0 placeholder(s) of observable 'obs_b'"),
    ("noiseParameters", ("2;0", "nosuch"), "'nosuch' in 'nosuch' is not a parameter")])
def test_bad_placeholder_values_are_located(tmp_path, capsys, column, cells, message):
    bad = ("obs_b", 2.0, 1.0, *cells) if column == "noiseParameters" and cells[0] == "" else ("obs_a", 2.0, 1.0, *cells)
    _refused(_placeholder_problem(tmp_path, PLACEHOLDER_ROWS[:2] + [bad]), capsys, "measurements.tsv:4:", message)


# ------------------------------------------------------------------------------------------------ PEtab v1
V1_CONDITIONS = _tsv([["conditionId", "conditionName", "k1", "A"], ["c0", "base", 2.0, "NaN"],
                      ["c_pre", "", 4.0, ""], ["c_hi", "", 1.0, 3.0]])
V1_OBSERVABLES = _tsv([
    ["observableId", "observableFormula", "noiseFormula", "noiseDistribution", "observableTransformation"],
    ["obs_a", "A", "noiseParameter1_obs_a", "normal", "lin"],
    ["obs_b", "observableParameter1_obs_b * B", "0.5", "normal", ""],
    ["obs_c", "A + B", "0.1", "normal", "log10"]])
V1_ROWS = [  # observable, pre-equilibration, simulation condition, time, measurement, observable-, noiseParameters
    ("obs_a", "", "c0", 1.0, 1.9, "", "0.3"), ("obs_a", "", "c0", "inf", 4.1, "", "0.2"),
    ("obs_b", "c_pre", "c_hi", 2.0, 9.0, "1.1", ""), ("obs_b", "", "c_hi", 2.0, 3.5, "k3", ""),
    ("obs_a", "c_pre", "c_hi", 0.0, 3.2, "", "0.3"), ("obs_c", "", "c0", 1.0, 2.5, "", "")]


def _v1_problem(tmp_path: Path, rows=V1_ROWS) -> Path:
    header = ["observableId", "preequilibrationConditionId", "simulationConditionId", "time", "measurement",
              "observableParameters", "noiseParameters"]
    return _folder(tmp_path, {"problem.yaml": V1, "conditions.tsv": V1_CONDITIONS,
                              "observables.tsv": V1_OBSERVABLES, "measurements.tsv": _tsv([header, *rows]),
                              "parameters.tsv": _parameters()})


def _v1_reference(k: dict) -> tuple:
    """(llh, simulations): c0 from the model's start (A 1, B 0.2), its steady state at inf; c_hi (k1 1) from A 3,
    B 0.2, or from the steady state of c_pre (k1 4) with A set to 3."""
    base, pre, hi = dict(k, k1=2.0), dict(k, k1=4.0), dict(k, k1=1.0)
    a1 = _solve(base, (1.0, 0.2), 0.0, [1.0])[0, 0]
    a_inf = _steady(base)[0]
    b_pre = _solve(hi, (3.0, _steady(pre)[1]), 0.0, [2.0])[0, 1]
    b_hi = _solve(hi, (3.0, 0.2), 0.0, [2.0])[0, 1]
    c1 = sum(_solve(base, (1.0, 0.2), 0.0, [1.0])[0])
    sims = [a1, a_inf, 1.1 * b_pre, k["k3"] * b_hi, 3.0, c1]
    sigmas = [0.3, 0.2, 0.5, 0.5, 0.3]
    llh = sum(_normal(row[4], mu, s) for row, mu, s in zip(V1_ROWS, sims, sigmas))
    # log10 y ~ N(log10 mu, 0.1): the density of log10 y times d log10 y / d y
    return llh + _normal(math.log10(2.5), math.log10(c1), 0.1) - math.log(2.5 * math.log(10)), sims


def test_petab_v1_problem(tmp_path):
    """Also a log10-transformed observable (common in v1 problems)."""
    _agrees(_v1_problem(tmp_path), _v1_reference)  # k3's gradient: through simulations, steady states, a placeholder
    experiments = [row["experimentId"] for row in read_tsv(tmp_path / "out" / "simulations.tsv")]
    assert experiments == ["c0", "c0", "c_pre:c_hi", "c_hi", "c_pre:c_hi", "c0"]


def test_petab_v1_unknown_condition_is_located(tmp_path, capsys):
    _refused(_v1_problem(tmp_path, V1_ROWS[:3] + [("obs_a", "", "c9", 1.0, 1.0, "", "0.3")]), capsys,
             "measurements.tsv:5:", "conditionId 'c9' is not in the conditions table")


def test_petab_v1_duplicate_condition_is_located(tmp_path, capsys):
    folder = _v1_problem(tmp_path)
    (folder / "conditions.tsv").write_text(V1_CONDITIONS + "c0\t\t3.0\t\n")
    _refused(folder, capsys, "conditions.tsv:5:", "'c0' is defined twice")


def test_petab_v1_unknown_condition_target_is_located(tmp_path, capsys):
    folder = _v1_problem(tmp_path)
    (folder / "conditions.tsv").write_text(V1_CONDITIONS.replace("\tA\n", "\tAx\n"))
    _refused(folder, capsys, "conditions.tsv:4:", "targetId 'Ax' is no parameter or species")


def test_other_format_versions_are_refused(tmp_path, capsys):
    folder = _v1_problem(tmp_path)
    (folder / "problem.yaml").write_text(V1.replace("format_version: 1", "format_version: 3"))
    _refused(folder, capsys, "problem.yaml", "format_version 3: PEtab v1 and v2 problems are read")


# ------------------------------------------------------------------------------------------------ periods
PERIOD_EXPERIMENTS = _tsv([["experimentId", "time", "conditionId"], ["e_pre", "-inf", "c_pre"], ["e_pre", 0, "c_hi"],
                           ["e_per", 0, "c0"], ["e_per", 5, "c_step"], ["e_ss", 0, "c0"]])
PERIOD_CONDITIONS = _tsv([["conditionId", "targetId", "targetValue"], ["c0", "k1", 2.0], ["c_pre", "k1", 4.0],
                          ["c_hi", "k1", 1.0], ["c_step", "k1", "5E-01"], ["c_step", "A", "2 * k4 + 1.4"]])
PERIOD_ROWS = [  # observable, experiment, time, measurement
    ("obs_a", "e_pre", 0.0, 7.5), ("obs_b", "e_pre", 1.5, 12.0), ("obs_b", "e_per", 2.0, 2.0),
    ("obs_a", "e_per", 5.0, 3.1), ("obs_b", "e_per", 7.0, 3.0), ("obs_b", "e_per", "inf", 1.8),
    ("obs_a", "e_ss", "inf", 4.2), ("obs_b", "e_ss", "inf", 7.0)]


def _period_problem(tmp_path: Path, rows=PERIOD_ROWS, experiments=PERIOD_EXPERIMENTS) -> Path:
    observables = _tsv([["observableId", "observableFormula", "noiseFormula"], ["obs_a", "A", 0.4],
                        ["obs_b", "B", 0.6]])
    measurements = [["observableId", "experimentId", "time", "measurement"], *rows]
    return _folder(tmp_path, {"problem.yaml": V2, "observables.tsv": observables, "measurements.tsv":
                              _tsv(measurements), "experiments.tsv": experiments,
                              "conditions.tsv": PERIOD_CONDITIONS, "parameters.tsv": _parameters()})


def _period_reference(k: dict) -> tuple:
    """e_pre: the steady state of k1 4, then k1 1 from time 0; e_per: k1 2 from the model's start, at time 5 k1
    0.5 (written 5E-01: no name E) and A 2 k4 + 1.4 (3.0), its steady state at inf; e_ss: the steady state of
    k1 2."""
    pre, hi, base, step = dict(k, k1=4.0), dict(k, k1=1.0), dict(k, k1=2.0), dict(k, k1=0.5)
    e_pre = _solve(hi, _steady(pre), 0.0, [0.0, 1.5])
    first = _solve(base, (1.0, 0.2), 0.0, [2.0, 5.0])
    second = _solve(step, (2 * k["k4"] + 1.4, first[1, 1]), 5.0, [5.0, 7.0])
    sims = [e_pre[0, 0], e_pre[1, 1], first[0, 1], second[0, 0], second[1, 1], _steady(step)[1],
            *_steady(base)]
    sigmas = [0.4 if obs == "obs_a" else 0.6 for obs, *_ in PERIOD_ROWS]
    llh = sum(_normal(float(row[3]), mu, s) for row, mu, s in zip(PERIOD_ROWS, sims, sigmas))
    return llh, sims


def test_periods_preequilibration_and_steady_states(tmp_path):
    _agrees(_period_problem(tmp_path), _period_reference)


@pytest.mark.parametrize("rows, experiments, where, message", [
    (PERIOD_ROWS, PERIOD_EXPERIMENTS + "e_per\t5\tc0\n", "experiments.tsv:7:", "two periods starting at time 5.0"),
    (PERIOD_ROWS, PERIOD_EXPERIMENTS + "e_pre\t-inf\tc0\n", "experiments.tsv:7:",
     "two periods starting at time -inf"),
    (PERIOD_ROWS, PERIOD_EXPERIMENTS + "e_per\tinf\tc0\n", "experiments.tsv:7:", "periods start at finite times"),
    (PERIOD_ROWS[:4] + [("obs_a", "e_per", -1.0, 1.0)], PERIOD_EXPERIMENTS, "measurements.tsv:6:",
     "lies before experiment 'e_per' starts"),
    (PERIOD_ROWS[:4] + [("obs_a", "e_per", "-inf", 1.0)], PERIOD_EXPERIMENTS, "measurements.tsv:6:",
     "a measurement at time -inf")])
def test_bad_periods_are_located(tmp_path, capsys, rows, experiments, where, message):
    _refused(_period_problem(tmp_path, rows, experiments), capsys, where, message)


def test_llh_without_gradients(tmp_path):
    evaluation = evaluate_problem(read_problem(_period_problem(tmp_path) / "problem.yaml"), gradients=False)
    assert evaluation.llh == pytest.approx(_period_reference(K)[0], rel=1e-9)
    assert evaluation.grad_mech == [] and evaluation.grad_nets == {}
