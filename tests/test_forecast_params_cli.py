"""forecast.estimate end to end: `hodec fit` saves the encoder's param head in the checkpoint, and `hodec forecast`
and `hodec fit --test`'s scoring (score_run) rebuild it and forecast with each window's inferred value. The head is
set in the checkpoint to a known bias (zero weights), so every window's k is p · exp(ln f · tanh z) by hand, and the
forecasts are checked against scipy's solve_ivp with that k (and seen to differ from the population k's)."""
import json
import math

import numpy as np
import pytest
import torch

from hodec.cli import main
from hodec.compiler import compile_text
from hodec.training.config import load_config
from hodec.training.forecast.heldout import Scoring, read_heldout, score_run
from hodec.training.report import load_checkpoint

from test_forecast_cli import FIT, SPEC, by_hand, fit_run, history_files, read_csv, reference, rms

ESTIMATE = FIT.replace("observed: true}", "observed: true, estimate: [k], estimate_factor: 2.0}")
Z = 0.6  # the head's output for every window


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A forecast fit with forecast.estimate, its checkpoint's param head set to Z: (folder, run, k of the
    windows, the population k)."""
    folder = tmp_path_factory.mktemp("estimate")
    run = fit_run(folder, ESTIMATE)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    state = checkpoint["resume"]["estimator"]["state"]
    assert checkpoint["resume"]["estimator"]["options"]["estimate"] == ["k"]
    assert state["param_head.weight"].shape == (1, 4)  # the extra head is saved
    state["param_head.weight"].zero_()
    state["param_head.bias"].fill_(Z)
    torch.save(checkpoint, run / "checkpoint.pt")
    population = json.loads((run / "report.json").read_text())["params"]["k"]
    return folder, run, population * math.exp(math.log(2.0) * math.tanh(Z)), population


def test_forecast_uses_each_windows_inferred_value(fitted):
    folder, run, k, population = fitted
    rows = history_files(folder)
    out = folder / "forecast.csv"
    assert main(["forecast", str(folder / "decay.hode"), "--run", str(run), "--history", str(folder / "hist.csv"),
                 "--inputs", str(folder / "inputs.csv"), "--horizon", "1.6", "--out", str(out)]) == 0
    _, got = read_csv(out)
    for i in ("2", "3"):
        mine = [r for r in rows if r[1] == i]
        t_all, x_all, u_all = (np.array([float(r[c]) for r in mine]) for c in (0, 2, 3))
        times = np.array([float(r[1]) for r in got if r[0] == i])
        values = np.array([float(r[2]) for r in got if r[0] == i])
        x0, known = float(x_all[t_all == 5.0][0]), t_all <= 7.0
        np.testing.assert_allclose(values, reference(k, x0, 5.0, times, t_all[known], u_all[known]), rtol=1e-5)
        assert not np.allclose(values, reference(population, x0, 5.0, times, t_all[known], u_all[known]),
                               rtol=1e-3)


def test_fit_test_scoring_uses_each_windows_inferred_value(fitted):
    """score_run (what `hodec fit --test` runs after the fit) on the edited checkpoint: the test RMSE of by-hand
    solves with the windows' k."""
    folder, run, k, _ = fitted
    model_class = compile_text(SPEC, "decay.hode").model_class()
    heldout = read_heldout(Scoring(str(folder / "test.csv")), model_class, load_config(folder / "fit.yaml"), ("x",))
    section = score_run(heldout, model_class, run)
    assert section["columns"]["x"]["rmse"] == pytest.approx(rms(by_hand(folder / "test.csv", k)[0]), rel=1e-4)
