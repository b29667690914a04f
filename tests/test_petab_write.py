"""`hodec petab write`: a mechanistic PEtab problem as hodec fit's files. The written spec, data and FIT.yaml,
read by hodec fit's own data and condition code, give the llh `hodec petab evaluate` computes from the PEtab
tables (two independent paths) and the prior a hand-written normal density gives; what hodec fit would mean
differently is refused, located."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from benchmarks.petab_sciml_problems import SUITE
from hodec.cli import main
from hodec.compiler import load
from hodec.interop.petab.evaluate import evaluate_problem
from hodec.interop.petab.problem import read_problem
from hodec.training.config import load_config
from hodec.training.data import read_data
from hodec.training.problem import Problem

pytestmark = pytest.mark.skipif(not SUITE.is_dir(), reason="the PEtab-SciML test suite is not in ../shared/data")

PROBLEM = """format_version: "2.0.0"
model_files:
  lv: {location: lv.xml, language: sbml}
measurement_files: [measurements.tsv]
observable_files: [observables.tsv]
experiment_files: [experiments.tsv]
condition_files: [conditions.tsv]
parameter_files: [parameters.tsv]
"""
PARAMETERS = """parameterId\tparameterScale\tlowerBound\tupperBound\tnominalValue\testimate\tpriorDistribution\tpriorParameters
alpha\tlog10\t0.01\t15.0\t1.3\ttrue\tnormal\t1.0;0.5
delta\tlin\t0.0\t15.0\t1.8\ttrue\t\t
beta\tlin\t0.0\t15.0\t0.9\ttrue\t\t
gamma\tlin\t0\t15\t0.8\tfalse\t\t
"""
CONDITIONS = "conditionId\ttargetId\ttargetValue\nc1\tgamma\t0.8\nc2\tgamma\t1.2\nc2\tprey\t0.7\n"


def _problem(tmp_path: Path) -> Path:
    """Lotka-Volterra (the suite's SBML, its network's target gamma a plain parameter here) in two experiments:
    gamma 0.8, and gamma 1.2 with prey starting at 0.7; alpha with a normal prior, on log10."""
    source = SUITE / "001" / "petab"
    folder = tmp_path / "p"
    folder.mkdir()
    for name in ("lv.xml", "observables.tsv"):
        shutil.copy(source / name, folder / name)
    (folder / "problem.yaml").write_text(PROBLEM)
    (folder / "parameters.tsv").write_text(PARAMETERS)
    (folder / "conditions.tsv").write_text(CONDITIONS)
    (folder / "experiments.tsv").write_text("experimentId\ttime\tconditionId\ne1\t0.0\tc1\ne2\t0.0\tc2\n")
    header, *rows = (source / "measurements.tsv").read_text().strip().split("\n")
    e2 = [row.replace("\te1\t", "\te2\t") for row in rows]
    (folder / "measurements.tsv").write_text("\n".join([header, *rows, *e2]) + "\n")
    return folder


def _write(folder: Path) -> int:
    return main(["petab", "write", str(folder / "problem.yaml"), "--out", str(folder.parent / "out")])


def test_written_files_give_evaluates_llh(tmp_path):
    folder = _problem(tmp_path)
    assert _write(folder) == 0
    out = tmp_path / "out"
    config = yaml.safe_load((out / "FIT.yaml").read_text())
    assert config["conditions"] == {"e1": {"gamma": 0.8}, "e2": {"gamma": 1.2, "prey": 0.7}}
    assert config["priors"] == {"alpha": ["normal", 1.0, 0.5]} and config["scales"]["alpha"] == "log10"
    assert config["initial"] == "spec"
    lines = (out / "data.csv").read_text().split("\n")
    assert lines[:3] == ["id,t,dv,dvid,evid", "e1,0.0,,,2", "e1,1.0,0.17301723066954827,prey_o,0"]
    spec = (out / "model.hode").read_text()
    assert "param alpha = 1.3 in (0.01, 15.0)" in spec and "param gamma = 0.8 fixed" in spec

    model = load(out / "model.hode")()
    cfg = load_config(out / "FIT.yaml", solver={"rtol": 1e-12, "atol": 1e-14})  # evaluate's tolerances
    fit_problem = Problem(model, read_data(out / "data.csv", model, cfg), cfg)
    llh = -float(sum(cells.sum() for _, cells in fit_problem.group_errors(fit_problem.model, "test", check=False)).detach())
    log_prior = -float(fit_problem.prior_term(fit_problem.model).detach()) * fit_problem.data.n_cells
    evaluation = evaluate_problem(read_problem(folder / "problem.yaml"))
    assert fit_problem.data.n_cells == 40
    assert llh == pytest.approx(evaluation.llh, rel=1e-8, abs=0)
    hand = -0.5 * math.log(2 * math.pi * 0.25) - (1.3 - 1.0) ** 2 / (2 * 0.25)
    assert log_prior == pytest.approx(hand, rel=1e-8)
    assert evaluation.log_posterior - evaluation.llh == pytest.approx(hand, rel=1e-8)


def test_expression_condition_is_located(tmp_path, capsys):
    folder = _problem(tmp_path)
    (folder / "conditions.tsv").write_text(CONDITIONS.replace("1.2", "2 * beta"))
    assert _write(folder) == 1
    err = capsys.readouterr().err
    assert "conditions.tsv:3" in err and "2 * beta" in err
    assert not (tmp_path / "out").exists()


def test_noise_parameters_without_placeholders_are_located(tmp_path, capsys):
    folder = _problem(tmp_path)
    path = folder / "measurements.tsv"
    header, first, *rest = path.read_text().strip().split("\n")
    path.write_text("\n".join([header + "\tnoiseParameters", first + "\tsd1", *(r + "\t" for r in rest)]) + "\n")
    assert _write(folder) == 1
    err = capsys.readouterr().err
    assert "measurements.tsv:2" in err and "noiseParameters" in err


def test_petab_fit_reports_evaluates_llh(tmp_path):
    """`hodec petab fit`, one vanilla epoch at lr 1e-12 (the parameters move by ~1e-12): report.json's llh is
    evaluate's."""
    folder = _problem(tmp_path)
    config = tmp_path / "user.yaml"
    config.write_text("method: vanilla\nepochs: 1\nlr: 1.0e-12\nsolver: {rtol: 1.0e-12, atol: 1.0e-14}\n")
    run = tmp_path / "run"
    assert main(["petab", "fit", str(folder / "problem.yaml"), "--out", str(run), "--config", str(config),
                 "--quiet"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["llh"] == pytest.approx(evaluate_problem(read_problem(folder / "problem.yaml")).llh, rel=1e-8)
    assert yaml.safe_load((tmp_path / "run-problem" / "FIT.yaml").read_text())["method"] == "vanilla"


def test_petab_fit_bad_config_key_writes_nothing(tmp_path, capsys):
    folder = _problem(tmp_path)
    config = tmp_path / "user.yaml"
    config.write_text("epochs: -3\n")
    run = tmp_path / "run"
    assert main(["petab", "fit", str(folder / "problem.yaml"), "--out", str(run), "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "user.yaml" in err and "epochs" in err
    assert not run.exists() and not (tmp_path / "run-problem").exists()


# ------------------------------------------------------------------------------------------------ placeholders
PLACEHOLDER_OBSERVABLES = ("observableId\tobservableFormula\tnoiseFormula\tobservableTransformation\tnoiseDistribution"
                           "\tnoisePlaceholders\nprey_o\tprey\tnoiseParameter1_prey_o\tlin\tnormal\tnoiseParameter1_prey_o"
                           "\npredator_o\tpredator\t0.05\tlin\tnormal\t\n")


def _placeholder_problem(tmp_path: Path, e2_values=("0.3",)) -> Path:
    """The two-experiment problem with prey's noise a placeholder: the estimated parameter sd_p in e1, numbers in
    e2 (one per prey row, in order)."""
    folder = _problem(tmp_path)
    (folder / "observables.tsv").write_text(PLACEHOLDER_OBSERVABLES)
    with (folder / "parameters.tsv").open("a") as f:
        f.write("sd_p\tlin\t0.01\t10\t0.07\ttrue\t\t\n")
    path = folder / "measurements.tsv"
    header, *rows = path.read_text().strip().split("\n")
    out, e2_prey = [header + "\tnoiseParameters"], 0
    for row in rows:
        value = ""
        if row.startswith("prey_o\te1"):
            value = "sd_p"
        elif row.startswith("prey_o\te2"):
            value = e2_values[min(e2_prey, len(e2_values) - 1)]
            e2_prey += 1
        out.append(row + "\t" + value)
    path.write_text("\n".join(out) + "\n")
    return folder


def test_noise_placeholders_become_conditions_with_evaluates_llh(tmp_path):
    folder = _placeholder_problem(tmp_path)
    assert _write(folder) == 0
    out = tmp_path / "out"
    config = yaml.safe_load((out / "FIT.yaml").read_text())
    assert config["conditions"]["e1"]["noiseParameter1_prey_o"] == "sd_p"
    assert config["conditions"]["e2"]["noiseParameter1_prey_o"] == 0.3
    llh = _written_llh(out)
    evaluation = evaluate_problem(read_problem(folder / "problem.yaml"))
    assert llh == pytest.approx(evaluation.llh, rel=1e-8, abs=0)
    # the placeholders matter: sd_p at 0.07 against 0.3 in e2 (a wrong pairing changes the llh)
    (folder / "measurements.tsv").write_text((folder / "measurements.tsv").read_text().replace("\t0.3\n", "\t0.07\n"))
    assert evaluate_problem(read_problem(folder / "problem.yaml")).llh != pytest.approx(llh, rel=1e-3)


def test_placeholder_values_that_differ_within_an_experiment_are_located(tmp_path, capsys):
    folder = _placeholder_problem(tmp_path, e2_values=("0.3", "0.4"))
    assert _write(folder) == 1
    err = capsys.readouterr().err
    assert "measurements.tsv:" in err and "noiseParameter1_prey_o" in err and "one value per trajectory" in err
    assert not (tmp_path / "out").exists()


def _written_llh(out: Path) -> float:
    """The llh of the written files through hodec fit's own data, conditions and pre-equilibration code."""
    model = load(out / "model.hode")()
    cfg = load_config(out / "FIT.yaml", solver={"rtol": 1e-12, "atol": 1e-14})
    fit_problem = Problem(model, read_data(out / "data.csv", model, cfg), cfg)
    return -float(sum(cells.sum() for _, cells in fit_problem.group_errors(fit_problem.model, "test",
                                                                           check=False)).detach())


def test_preequilibration_becomes_preequilibrate_with_evaluates_llh(tmp_path):
    """PEtab v1 pre-equilibration/simulation condition pairs (c_pre sets k1 4, then c_hi k1 1 and A 3): FIT.yaml's
    preequilibrate runs c_pre's values alone (k1 at its own value where c_pre set none), as PEtab does."""
    from test_petab_features import V1_ROWS, _v1_problem

    folder = _v1_problem(tmp_path, [V1_ROWS[k] for k in (0, 2, 3, 4, 5)])
    assert _write(folder) == 0
    config = yaml.safe_load((tmp_path / "out" / "FIT.yaml").read_text())
    assert config["preequilibrate"] == {"c_pre:c_hi": {"k1": 4.0}}
    assert config["conditions"]["c_pre:c_hi"]["k1"] == 1.0
    evaluation = evaluate_problem(read_problem(folder / "problem.yaml"))
    assert _written_llh(tmp_path / "out") == pytest.approx(evaluation.llh, rel=1e-8, abs=0)
    # c_hi also sets k4, which c_pre leaves at its value 0.8: the pre-equilibration must not run with c_hi's 0.5
    (folder / "conditions.tsv").write_text("conditionId\tconditionName\tk1\tA\tk4\nc0\tbase\t2.0\tNaN\t\n"
                                           "c_pre\t\t4.0\t\t\nc_hi\t\t1.0\t3.0\t0.5\n")
    shutil.rmtree(tmp_path / "out")
    assert _write(folder) == 0
    config = yaml.safe_load((tmp_path / "out" / "FIT.yaml").read_text())
    assert config["preequilibrate"] == {"c_pre:c_hi": {"k1": 4.0, "k4": "k4"}}
    changed = evaluate_problem(read_problem(folder / "problem.yaml")).llh
    assert changed != pytest.approx(evaluation.llh, rel=1e-6)
    assert _written_llh(tmp_path / "out") == pytest.approx(changed, rel=1e-8, abs=0)
