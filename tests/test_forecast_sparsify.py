"""`hodec sparsify` with method forecast: the validation score is the horizon objective on the validation
trajectories' windows, forecast by the estimator the fit trained (carried to warm starts, refits and the pruned
model, row by kept state), checked against the closed form of a linear model."""
import numpy as np
import pytest
import scipy.linalg
import torch
import yaml

from hodec.compiler import compile_text
from hodec.training.config import load_config
from hodec.training.data import Dataset, Trajectory
from hodec.training.loop import Trainer
from hodec.training.sparsify import data_mse, sparsify, trajectory_errors
from hodec.training.sparsify.run import run_sparsify
from hodec.training.sparsify_config import load_sparsify_config

from test_sparsify import ABC  # A -> B -> C with a planted shortcut A -> C

pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations

FORECAST = {"method": "forecast", "solver": {"method": "rk4", "step_size": 0.05}, "lr": 0.05, "epochs": 3,
            "forecast": {"history": 1.0, "horizon": 1.0, "stride": 1.0, "observed": True, "hidden": 4}}


def synthetic(n=4, seed=0):
    """A -> B -> C from random initial states (k1 = 1, k2 = 0.5, no shortcut), every state a data column."""
    rng = np.random.default_rng(seed)
    M = np.array([[-1.0, 0, 0], [1.0, -0.5, 0], [0, 0.5, 0]])
    t = np.arange(0.0, 5.01, 0.5)
    out = []
    for i in range(n):
        y0 = np.array([rng.uniform(0.5, 2), rng.uniform(0, 1), rng.uniform(0, 0.5)])
        ys = np.stack([scipy.linalg.expm(M * s) @ y0 for s in t]) + 0.01 * rng.standard_normal((len(t), 3))
        out.append(Trajectory(str(i), t, ys, np.zeros((len(t), 0))))
    return Dataset(("A", "B", "C"), (), out)


def closed_form_errors(params: dict, data: Dataset) -> tuple:
    """Per trajectory: the squared errors of forecasts from each window's last history values (observed: every
    state is a column) by the matrix exponential, and the cells (windows as FORECAST cuts them, by hand)."""
    k1, k2, k3 = params["k1"], params["k2"], params["k3"]
    M = np.array([[-k1 - k3, 0, 0], [k1, -k2, 0], [k3, k2, 0]])
    sse, cells = [], []
    for tr in data.trajectories:
        total, count = 0.0, 0
        for origin in (0.5, 1.5, 2.5, 3.5):  # t0 = 0, 1, 2, 3: history {t0, t0 + 0.5}; t0 = 4's horizon ends at 5.5
            i = int(origin / 0.5)
            for step in (1, 2):  # horizon (origin, origin + 1]: two samples
                pred = scipy.linalg.expm(M * 0.5 * step) @ tr.y[i]
                total += float(((pred - tr.y[i + step]) ** 2).sum())
                count += 3
        sse.append(total)
        cells.append(count)
    return np.array(sse), np.array(cells)


def test_the_validation_score_is_the_horizon_objective_of_the_validation_windows():
    data = synthetic()
    model = compile_text(ABC, "abc.hode").model_class()().double()  # no gates: its params are its field
    cfg = load_sparsify_config(FORECAST).fit
    torch.manual_seed(0)
    trainer = Trainer(model, Dataset(data.columns, (), data.trajectories[:2]), cfg)
    trainer.train()
    val = Dataset(data.columns, (), data.trajectories[2:])
    sse, cells = trajectory_errors(trainer.model, val, cfg, carried=trainer.method.carry())
    want_sse, want_cells = closed_form_errors(trainer.model.params(), val)
    np.testing.assert_allclose(cells, want_cells)
    np.testing.assert_allclose(sse, want_sse, rtol=1e-6)  # rk4 at 0.05 against the exact exponential
    assert data_mse(trainer.model, val, cfg, carried=trainer.method.carry()) == pytest.approx(
        want_sse.sum() / want_cells.sum(), rel=1e-6)


def test_the_estimator_moves_to_a_pruned_model_row_by_state_name():
    data = synthetic(2)
    cfg = load_config(FORECAST)
    big = Trainer(compile_text(ABC, "abc.hode").model_class()().double(), data, cfg)
    with torch.no_grad():
        for p in big.method.estimator.parameters():
            p.normal_()
    small_spec = ABC.replace("state B = 0\n", "").replace("reaction r1: A -> B ; k1 * A\n", "").replace(
        "reaction r2: B -> C ; k2 * B\n", "")
    small_data = Dataset(("A", "C"), (), [Trajectory(tr.id, tr.t, tr.y[:, [0, 2]], tr.u)
                                          for tr in data.trajectories])
    small = Trainer(compile_text(small_spec, "ac.hode").model_class()().double(), small_data, cfg)
    small.method.take(big.method.carry())
    a, b = big.method.estimator, small.method.estimator
    torch.testing.assert_close(b.head.weight, a.head.weight[[0, 2]])
    torch.testing.assert_close(b.center, a.center[[0, 2]])
    for name in ("net.weight_hh_l0", "net.bias_ih_l0"):
        torch.testing.assert_close(b.state_dict()[name], a.state_dict()[name])
    assert b.y_mean.shape == (2,)  # columns differ (A, C against A, B, C): the small model's own set-up kept


def test_sparsify_with_method_forecast_runs_the_path_refit_and_test_on_horizons():
    data, test = synthetic(4), synthetic(2, seed=1)
    config = {**FORECAST, "lambda1": [0.0, 0.01], "refit_epochs": 2, "folds": 2}
    r = sparsify(ABC, data, config, filename="abc.hode", test=test)
    assert all(e["val_mse"] is not None and np.isfinite(e["val_mse"]) for e in r.path)
    assert r.refit_trainer.method.name == "forecast" and r.test_mse is not None
    assert r.test_mse == pytest.approx(data_mse(r.model, test, r.config.refit,
                                                carried=r.refit_trainer.method.carry(best=True)), rel=1e-12)
    # the refit model forecasts the test windows as the closed form does (observed: every state from the data)
    sse, cells = closed_form_errors({"k3": 0.0, **r.model.params()}, test)
    assert r.test_mse == pytest.approx(sse.sum() / cells.sum(), rel=1e-5)


def test_the_sparsify_checkpoint_holds_the_refits_best_estimator(tmp_path):
    data = synthetic(3)
    lines = ["id,t,A,B,C"] + [",".join([tr.id, repr(float(t))] + [repr(float(v)) for v in row])
                              for tr in data.trajectories for t, row in zip(tr.t, tr.y)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "abc.hode").write_text(ABC)
    (tmp_path / "SPARSIFY.yaml").write_text(yaml.safe_dump({**FORECAST, "lambda1": [0.01], "refit_epochs": 2}))
    assert run_sparsify(tmp_path / "abc.hode", tmp_path / "data.csv", config=tmp_path / "SPARSIFY.yaml",
                        out=tmp_path / "run", progress=False) == 0
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["estimator"]
    assert saved["options"]["estimator"] == "gru" and saved["options"]["hidden"] == 4
    assert {"head.weight", "center", "scale"} <= set(saved["state"])
