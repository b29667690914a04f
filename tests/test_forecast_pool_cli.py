"""forecast.pool in `hodec forecast` and `hodec fit --test`: a run with pool reads the history's earlier windows.
The run's param head is set to random weights (each history its own factor of k); the forecast of HIST.csv (origin
5.5) is checked against scipy's solve_ivp with k = population value x the geometric mean, by hand, of the factors
the run's encoder infers from the two histories in reach (t0 = 4, its own, and t0 = 2, origin 3.5 within pool 3
of 5.5; t0 = 0, origin 1.5, is not), and seen to differ from the forecast with its own history's factor alone."""
import json
import math

import numpy as np
import pytest
import torch

from hodec.cli import main
from hodec.compiler import compile_text
from hodec.training.config import load_config
from hodec.training.data import read_data
from hodec.training.forecast import make_windows
from hodec.training.forecast.heldout import Scoring, read_heldout, saved, saved_model, score_run
from hodec.training.problem import Problem
from hodec.training.report import load_checkpoint

from test_forecast_cli import FIT, HISTORY, HORIZON, SPEC, STRIDE, fit_run, history_files, read_csv, reference

POOL = FIT.replace("observed: true}", "observed: true, estimate: [k], estimate_factor: 2.0, pool: 3.0}")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A forecast fit with pool, its checkpoint's param head random: (folder, run)."""
    folder = tmp_path_factory.mktemp("pool")
    run = fit_run(folder, POOL)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["resume"]["estimator"]["options"]["pool"] == 3.0
    head = checkpoint["resume"]["estimator"]["state"]["param_head.weight"]
    head.copy_(torch.randn(head.shape, generator=torch.Generator().manual_seed(1), dtype=head.dtype) * 2)
    torch.save(checkpoint, run / "checkpoint.pt")
    return folder, run


def factors(folder, run) -> dict:
    """(id, t0) -> the factor of k the run's encoder infers from the test window (t0, no pooling) alone."""
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    config = load_config(checkpoint["config"])
    model_class = compile_text(SPEC, "decay.hode").model_class()
    model = saved_model(model_class, checkpoint, config, run)
    problem = Problem(model, read_data(folder / "test.csv", model_class, config), config)
    w = make_windows(problem, history=HISTORY, horizon=HORIZON, stride=STRIDE)
    _, f = saved(problem, checkpoint["resume"]["estimator"]).infer(model, w)
    ids = [tr.id for tr in problem.data.trajectories]
    return {(ids[int(i)], float(t0)): float(v) for i, t0, v in zip(w.trajectory, w.t0, f[:, 0].detach())}


def test_forecast_pools_the_earlier_histories_of_hist_csv(fitted):
    folder, run = fitted
    population = json.loads((run / "report.json").read_text())["params"]["k"]
    f = factors(folder, run)
    rows = history_files(folder, origin=5.5, end=7.5)
    out = folder / "forecast.csv"
    assert main(["forecast", str(folder / "decay.hode"), "--run", str(run), "--history", str(folder / "hist.csv"),
                 "--inputs", str(folder / "inputs.csv"), "--horizon", "1.6", "--out", str(out)]) == 0
    _, got = read_csv(out)
    for i in ("2", "3"):
        assert f[(i, 2.0)] != pytest.approx(f[(i, 4.0)], rel=1e-3)  # the histories give different factors
        pooled = population * math.sqrt(f[(i, 2.0)] * f[(i, 4.0)])
        mine = [r for r in rows if r[1] == i]
        t_all, x_all, u_all = (np.array([float(r[c]) for r in mine]) for c in (0, 2, 3))
        times = np.array([float(r[1]) for r in got if r[0] == i])
        values = np.array([float(r[2]) for r in got if r[0] == i])
        x0, known = float(x_all[t_all == 5.5][0]), t_all <= 7.5
        np.testing.assert_allclose(values, reference(pooled, x0, 5.5, times, t_all[known], u_all[known]), rtol=1e-5)
        own = reference(population * f[(i, 4.0)], x0, 5.5, times, t_all[known], u_all[known])
        assert not np.allclose(values, own, rtol=1e-4)


def test_fit_test_scoring_pools_each_windows_earlier_histories(fitted):
    """score_run (`hodec fit --test`'s scoring) of the run: the test windows t0 = 0, 2, 4 with k pooled over the
    histories t0 = 0; 0, 2; 2, 4 (origins within 3 of their own), each solved by scipy from its last history
    value."""
    folder, run = fitted
    population = json.loads((run / "report.json").read_text())["params"]["k"]
    f = factors(folder, run)
    pools = {0.0: (0.0,), 2.0: (0.0, 2.0), 4.0: (2.0, 4.0)}
    _, rows = read_csv(folder / "test.csv")
    errors = []
    for i in ("2", "3"):
        t, x, u = (np.array([float(r[c]) for r in rows if r[1] == i]) for c in (0, 2, 3))
        for t0, pooled in pools.items():
            k = population * math.exp(np.mean([math.log(f[(i, s)]) for s in pooled]))
            origin = t0 + HISTORY - 0.5
            ahead = (t > origin + 1e-9) & (t <= origin + HORIZON + 1e-9)
            errors += list(reference(k, float(x[np.isclose(t, origin)][0]), origin, t[ahead], t, u) - x[ahead])
    model_class = compile_text(SPEC, "decay.hode").model_class()
    heldout = read_heldout(Scoring(str(folder / "test.csv")), model_class, load_config(folder / "fit.yaml"), ("x",))
    section = score_run(heldout, model_class, run)
    assert section["windows"] == 6
    assert section["columns"]["x"]["rmse"] == pytest.approx(math.sqrt(np.mean(np.square(errors))), rel=1e-5)
