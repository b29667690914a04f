"""Dose rows end to end: a one-compartment PK spec, data with bolus and infusion dose rows (NONMEM style, upper-case
names, ADDL/II repeats and a DUR) generated from the closed-form superposition, simulated through the fit problem's
groups and fitted by `hodec fit`."""
import json
import math

import numpy as np
import pytest

from hodec.cli import main
from hodec.compiler import load_text
from hodec.training.config import load_config
from hodec.training.data import read_data
from hodec.training.problem import Problem
from test_data_dosing import PKPD, WARFARIN, needs_data

SPEC = """model PK1
param CL = 2 positive
param V = 20 positive
state central = 0
der central = -CL / V * central
observe conc = central / V
"""
CL, V = 3.0, 12.0
# id -> doses (time, amount, rate; rate 0: bolus) into central. Subject 1's second bolus is at an observation time
# (the observation sees it: NONMEM's dose-before-observation order); subject 2 has an infusion then a bolus.
REGIMENS = {1: [(0.0, 100.0, 0.0), (12.0, 100.0, 0.0)], 2: [(0.0, 100.0, 50.0), (8.0, 50.0, 0.0)],
            3: [(1.0, 60.0, 20.0)]}
TIMES = [0.5, 1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 20, 24]


def amount(t: float, regimen, cl: float = CL, v: float = V) -> float:
    """The closed-form amount in the central compartment: the superposition of every dose's response."""
    k, total = cl / v, 0.0
    for start, dose, rate in regimen:
        if t < start:
            continue
        if rate == 0:
            total += dose * math.exp(-k * (t - start))
        else:
            end = start + dose / rate
            plateau = rate / k * (1 - math.exp(-k * (min(t, end) - start)))
            total += plateau * math.exp(-k * max(t - end, 0.0))
    return total


# How the file writes them: subject 1's two boluses as one row with ADDL and II, subject 3's infusion by its DUR.
DOSE_ROWS = {1: ["1,0,1,100,,,central,1,12,"], 2: ["2,0,1,100,50,,central,,,", "2,8,1,50,,,central,,,"],
             3: ["3,1,1,60,,3,central,,,"]}


@pytest.fixture
def files(tmp_path):
    lines = ["ID,TIME,EVID,AMT,RATE,DUR,CMT,ADDL,II,DV"]
    for i, regimen in REGIMENS.items():
        rows = [(float(line.split(",")[1]), 0, line) for line in DOSE_ROWS[i]]
        rows += [(t, 1, f"{i},{t},0,,,,,,,{amount(t, regimen) / V!r}") for t in TIMES]
        lines += [line for _, _, line in sorted(rows)]
    (tmp_path / "pk.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "pk1.hode").write_text(SPEC)
    return tmp_path / "pk1.hode", tmp_path / "pk.csv"


def test_the_fit_problem_simulates_the_data_doses_as_the_closed_form(files):
    spec, data_path = files
    model_class = load_text(SPEC, "pk1.hode")
    config = load_config({"dv": "conc", "initial": "spec"})
    data = read_data(data_path, model_class, config)
    assert [len(tr.doses) for tr in data.trajectories] == [2, 2, 1]
    problem = Problem(model_class({"CL": CL, "V": V}), data, config)
    for g, (ts, pred) in zip(problem.groups, problem.predictions(problem.model)):
        for b, member in enumerate(g.members):
            regimen = REGIMENS[int(data.trajectories[member].id)]
            want = np.array([amount(float(t), regimen) / V for t in ts])
            observed = g.mask[:, b, 0].numpy()
            np.testing.assert_allclose(pred[observed, b, 0].numpy(), want[observed], rtol=1e-6, atol=1e-9)
    wrong = Problem(model_class({"CL": CL, "V": V}), read_data(data_path, model_class, config), config)
    for g in wrong.groups:
        g.doses = None  # the same data without its doses: nothing but zeros, far from the data
    assert wrong.evaluate() > 1.0


def test_hodec_fit_recovers_clearance_and_volume_from_bolus_and_infusion_rows(files, tmp_path):
    spec, data = files
    config = tmp_path / "fit.yaml"
    config.write_text("method: vanilla\nepochs: 40\nlr: 0.15\nlr_end: 0.02\ninitial: spec\ndv: conc\n")
    out = tmp_path / "run"
    assert main(["fit", str(spec), "--data", str(data), "--config", str(config), "--out", str(out), "--quiet"]) == 0
    params = json.loads((out / "report.json").read_text())["params"]
    assert params["CL"] == pytest.approx(CL, rel=1e-2) and params["V"] == pytest.approx(V, rel=1e-2)


@needs_data
def test_hodec_fit_reads_warfarin_as_it_is(tmp_path, capsys):
    """The weight column is the spec's fixed param wt (each patient's own), age and sex are ignored, the doses go
    into depot: two epochs run and write their outputs."""
    spec = tmp_path / "pkpd.hode"
    spec.write_text(PKPD.replace("der central = ka * depot - CL / V * central",
                                 "der central = ka * depot - CL / (V * wt / 70) * central"))
    config = tmp_path / "fit.yaml"
    config.write_text("method: vanilla\nepochs: 2\ninitial: spec\ndose_state: depot\nignore_columns: [age, sex]\n")
    out = tmp_path / "run"
    assert main(["fit", str(spec), "--data", str(WARFARIN), "--config", str(config), "--out", str(out)]) == 0
    assert f"{WARFARIN}: 33 trajectories, 483 values in cp, pca" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["best_epoch"] in (1, 2) and math.isfinite(report["best_mse"])


def test_resume_without_config_reads_the_data_with_the_runs_data_keys(files, tmp_path):
    """--resume without --config reads DATA.csv with the checkpoint's config: its dv and ignore_columns apply."""
    spec, data = files
    text = data.read_text().splitlines()
    data.write_text("\n".join([text[0] + ",SEX"] + [line + ",f" for line in text[1:]]) + "\n")
    config = tmp_path / "fit.yaml"
    config.write_text("method: vanilla\nepochs: 1\ninitial: spec\ndv: conc\nignore_columns: [SEX]\n")
    args = ["fit", str(spec), "--data", str(data), "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args + ["--config", str(config)]) == 0
    assert main(args + ["--resume"]) == 0  # complete: its outputs rewritten
