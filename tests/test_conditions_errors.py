"""Bad conditions, pre-equilibration, priors and scales in FIT.yaml: located errors naming the key, exit code 1
from `hodec fit`, no traceback, no run folder written."""
import numpy as np
import pytest

from hodec.cli import main

SPEC = """model Turnover
param k = 0.5 positive
param k_a = 0.4 positive
param g = 0.1
param c = 2 in (1, 5)
param s = 1 fixed
state x = 2
der x = s - k * x + 0 * (g + c + k_a)
observe obs = x
"""
GROWTH = """model Growth
param r = 0.5 positive
state x = 1
der x = r
observe obs = x
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "turnover.hode").write_text(SPEC)
    (tmp_path / "growth.hode").write_text(GROWTH)
    t = np.linspace(0, 2, 5)
    rows = ["t,id,obs"] + [f"{ti},{i},{2 * np.exp(-0.5 * ti) + 2 * (1 - np.exp(-0.5 * ti))}"
                           for i in (1, 2) for ti in t]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def fit(files, capsys, config: str, spec="turnover.hode"):
    (files / "fit.yaml").write_text("method: vanilla\nepochs: 2\n" + config)
    code = main(["fit", str(files / spec), "--data", str(files / "data.csv"), "--config", str(files / "fit.yaml"),
                 "--out", str(files / "run")])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("config, message", [
    ("conditions: {7: {k: k_a}}", "conditions: no trajectory has id '7'"),
    ("conditions: {1: {kk: 1}}", "conditions.1: 'kk' is neither a param nor a state of Turnover; did you mean 'k'?"),
    ("conditions: {1: {k: x}}", "conditions.1.k: 'x' is not a param of Turnover"),
    ("conditions: {1: {x: kq}}", "conditions.1.x: 'kq' is not a param of Turnover"),
    ("conditions: {1: {k: -1}}", "conditions.1.k: param 'k' is positive; cannot set it to -1"),
    ("conditions: {1: {c: 7}}", "conditions.1.c: param 'c' must lie strictly inside (1, 5); got 7"),
    ("conditions: {1: {k: null}}", "conditions.1.k: expected a finite number or a param's name, got None"),
    ("conditions: [1, 2]", "conditions: expected a mapping of data ids to values"),
    ("conditions: {1: 3}", "conditions.1: expected a mapping of param or state names to values"),
    ("priors: {1: [normal, 0, 1]}", "priors: 1 is not a name"),
    ("conditions: {1: {k: 1}, '1': {k: 2}}", "conditions: data id 1 is given twice"),
    ("conditions: {1: {k: 1}, '1.0': {k: 2}}", "conditions: '1' and '1.0' are one data id"),
    ("preequilibrate: {3: {s: 0}}", "preequilibrate: no trajectory has id '3'"),
    ("preequilibrate: {1: {q: 0}}", "preequilibrate.1: 'q' is neither a param nor a state"),
    ("priors: {s: [normal, 1, 1]}", "priors.s: param 's' is fixed"),
    ("priors: {kx: [normal, 1, 1]}", "priors: 'kx' is not a param of Turnover; did you mean 'k'?"),
    ("priors: {g: [lognormal, 0, 1]}", "priors.g: lognormal is a density of p > 0, but param 'g' can be <= 0"),
    ("priors: {k: [uniform, 0, 1]}", "priors.k: uniform(0, 1) is 0 outside [0, 1], but param 'k' is positive"),
    ("priors: {c: [uniform, 2, 6]}", "priors.c: uniform(2, 6) is 0 outside [2, 6], but param 'c' is in (1, 5)"),
    ("priors: {k: [gauss, 0, 1]}", "priors.k[0]: 'gauss' is not one of normal, laplace"),
    ("priors: {k: [normal, 0, 0]}", "priors.k: normal's scale (its third entry) must be > 0, got 0"),
    ("priors: {k: [uniform, 3, 1]}", "priors.k: uniform needs lower < upper, got 3 and 1"),
    ("priors: {k: normal}", "priors.k: expected [distribution, a, b]"),
    ("scales: {k: ln}", "scales.k: 'ln' is not one of lin, log, log10"),
])
def test_bad_keys_are_located_errors_with_exit_1(files, capsys, config, message):
    code, err = fit(files, capsys, config)
    assert code == 1
    assert message in err, err
    assert not (files / "run" / "report.json").exists()


def test_no_steady_state_names_the_trajectory(files, capsys):
    code, err = fit(files, capsys, "preequilibrate: {2: {}}\nsolver: {method: auto}\n", spec="growth.hode")
    assert code == 1
    assert "pre-equilibration" in err and "no steady state found for trajectory 2" in err, err
    assert "'x' still changes at rate 0.5" in err, err
