"""method forecast (hodec/training/methods/forecast.py): the horizon objective against hand-computed closed forms
(inputs and per-trajectory params read at each window's own absolute times; -llh with a noise model), the best
epoch's estimator kept with the best model, --resume, and the config's errors."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from hodec.cli import main
from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.forecast import forecast
from hodec.training.loop import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations

# x relaxes to c + u / k: x(origin + s) = x_inf + (x(origin) - x_inf) exp(-k s) for u constant over the window
SPEC = """
model Relax
param k = 0.7 positive
param c = 1.0 fixed
input u
state x = 1
der x = -k * (x - c) + u
observe obs = x
"""
TIGHT = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-12}
T = np.arange(0.0, 8.01, 0.5)


def relax_problem(extra=None, spec=SPEC):
    """Two trajectories, each its own constant u and its own c (a param column): noisy-looking data."""
    model = compile_text(spec, "relax.hode").model_class()()
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 3.0, 2 * len(T))
    u = np.repeat([0.2, -0.1], len(T))
    c = np.repeat([1.0, 2.0], len(T))
    data = make_dataset(model, np.concatenate([T, T]), {"x": x}, {"u": u, "c": c}, ids=np.repeat([1, 2], len(T)))
    config = {"method": "forecast", "solver": TIGHT, "epochs": 3,
              "forecast": {"history": 2.0, "horizon": 1.5, "stride": 1.5, "observed": True}, **(extra or {})}
    torch.manual_seed(0)  # the encoder's initial weights
    return Trainer(model, data, load_config(config)), x, u, c


def hand_predictions(tr, x, u, c, k=0.7):
    """Per window: the closed form from the last history value, [Tf, W]."""
    w = tr.method.windows
    out = np.zeros(tuple(w.horizon_t.shape))
    for i in range(w.size):
        b = int(w.trajectory[i])
        rows = slice(b * len(T), (b + 1) * len(T))
        origin = float(w.origin[i])
        x0 = x[rows][np.searchsorted(T, origin)]
        x_inf = c[rows][0] + u[rows][0] / k
        out[:, i] = x_inf + (x0 - x_inf) * np.exp(-k * (w.horizon_t[:, i].numpy() - origin))
    return out


def test_the_horizon_objective_is_the_mean_squared_error_of_the_closed_form_forecasts():
    tr, x, u, c = relax_problem()
    w = tr.method.windows
    assert w.size == 2 * 4 and w.horizon_t.shape[0] == 3  # t0 = 0, 1.5, 3, 4.5 per trajectory; 3 horizon samples
    expected = hand_predictions(tr, x, u, c)
    mask = w.horizon_mask[..., 0].numpy()
    mse = ((expected - w.horizon_y[..., 0].numpy()) ** 2)[mask].mean()
    loss, evaluation = tr.method.loss(0.0)
    assert float(loss.detach()) == pytest.approx(mse, rel=1e-8) and evaluation == float(loss.detach())
    assert tr.evaluate() == pytest.approx(mse, rel=1e-8)
    pred = forecast(tr.model, tr.method.estimator, w, tr.problem)[..., 0].detach().numpy()
    np.testing.assert_allclose(pred, expected, rtol=1e-8)
    sse, cells = tr.trajectory_errors()
    assert cells.tolist() == [12, 12] and sse.sum() / cells.sum() == pytest.approx(mse, rel=1e-8)


def test_the_objective_with_a_noise_model_is_minus_the_log_likelihood_per_horizon_cell():
    spec = SPEC.replace("observe obs = x", "param s = 0.3 positive\nobserve obs = x ~ normal(s)")
    model = compile_text(spec, "relax.hode").model_class()()
    rng = np.random.default_rng(1)
    obs = rng.uniform(0.5, 3.0, len(T))
    data = make_dataset(model, T, {"obs": obs}, {"u": np.full(len(T), 0.2), "c": np.ones(len(T))})
    tr = Trainer(model, data, load_config({"method": "forecast", "solver": TIGHT, "forecast": {
        "history": 2.0, "horizon": 1.5, "stride": 1.5, "estimator": "mlp", "hidden": 4}}))
    w = tr.method.windows
    y0 = tr.method.estimator(tr.model, w).detach().numpy()[:, 0]  # the encoder's estimate: closed form from it
    pred = 1.0 + 0.2 / 0.7 + (y0 - 1.0 - 0.2 / 0.7) * np.exp(-0.7 * (w.horizon_t.numpy() - w.origin.numpy()))
    mask = w.horizon_mask[..., 0].numpy()
    nll = 0.5 * math.log(2 * math.pi * 0.3 ** 2) + (pred - w.horizon_y[..., 0].numpy()) ** 2 / (2 * 0.3 ** 2)
    assert float(tr.method.loss(0.0)[0].detach()) == pytest.approx(nll[mask].mean(), rel=1e-8)


def test_the_best_epochs_estimator_is_kept_with_the_best_model():
    """The estimator's weights at the best epoch give, with the best model, exactly the best objective (lr large:
    every epoch moves them)."""
    tr, *_ = relax_problem({"epochs": 8, "lr": 0.3, "forecast": {"history": 2.0, "horizon": 1.5, "stride": 1.5,
                                                                    "hidden": 4}})
    tr.train()
    assert tr.best_epoch < 8 or tr.history[-1]["mse"] == tr.best_mse
    state = tr.method.state()
    assert set(state) == {"estimator", "estimator_last"}
    assert state["estimator"]["options"]["estimator"] == "gru" and state["estimator"]["options"]["hidden"] == 4
    best = tr.best_model()
    tr.method.estimator.load_state_dict(state["estimator"]["state"])
    assert tr.method.evaluate(best) == pytest.approx(tr.best_mse, rel=1e-12)
    tr.method.estimator.load_state_dict(state["estimator_last"]["state"])
    if tr.best_epoch != tr.epoch:
        assert tr.method.evaluate(best) != pytest.approx(tr.best_mse, rel=1e-6)


def test_resume_continues_the_estimator_where_it_stopped():
    extra = {"epochs": 6, "lr": 0.05, "forecast": {"history": 2.0, "horizon": 1.5, "stride": 1.5, "hidden": 4}}
    whole, *_ = relax_problem(extra)
    whole.train()
    first, *_ = relax_problem({**extra, "epochs": 6})
    for _ in range(3):
        first.step()
    state = first.state()
    torch.manual_seed(1)
    second, *_ = relax_problem(extra)
    with torch.no_grad():  # a fresh trainer's own weights: the restore replaces them
        next(second.method.estimator.parameters()).add_(1.0)
    second.restore(state)
    second.train()
    for a, b in zip(whole.method.estimator.parameters(), second.method.estimator.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert whole.best_mse == pytest.approx(second.best_mse, rel=1e-9)
    assert second.method.state()["estimator"]["state"].keys() == whole.method.state()["estimator"]["state"].keys()


def test_bad_forecast_keys_are_errors_naming_the_file_and_key(tmp_path):
    path = tmp_path / "FIT.yaml"
    path.write_text("method: forecast\nforecast:\n  history: -1\n  horizon: 2\n  estimator: kalman\n  strid: 3\n")
    with pytest.raises(HodecError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "forecast.history: must be > 0" in message and "forecast.estimator: 'kalman' is not one of" in message
    assert "forecast: unknown key 'strid'; did you mean 'stride'" in message
    with pytest.raises(HodecError, match="forecast.horizon: needed by method forecast"):
        load_config({"method": "forecast", "forecast": {"history": 1}})
    with pytest.raises(HodecError, match="forecast: expected a mapping"):
        load_config({"forecast": 3})


def test_fit_help_lists_the_forecast_keys(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    block = out.split("forecast: (method forecast) takes these keys:")[1]
    for key in ("history: null", "horizon: null", "stride: null", "estimator: gru", "hidden: 64", "observed: false"):
        assert f"  {key}" in block


def test_doses_are_refused_with_a_located_error():
    model = compile_text("model D\nparam k = 1 positive\nstate x = 0\nder x = -k * x\n", "d.hode").model_class()()
    t = np.arange(0.0, 6.0)
    data = make_dataset(model, np.concatenate([[0.0], t]), {"x": np.concatenate([[np.nan], np.exp(-t)]),
                                                             "evid": np.r_[1, np.zeros(6)],
                                                             "amt": np.r_[1, np.zeros(6)],
                                                             "cmt": np.r_[1, np.zeros(6)]})
    with pytest.raises(HodecError, match="method forecast does not take dose records"):
        Trainer(model, data, load_config({"method": "forecast", "forecast": {"history": 2, "horizon": 2}}))


RECOVERY = """model Lin
param a = 0.5 positive
param c = 0.3 positive
state x = 1
state z = 1
der x = -a * x + z
der z = -c * z
"""


def recovery_data():
    """The model to fit (a = 0.8, c = 0.6) and four trajectories of x from the truth a = 0.5, c = 0.3 (scipy's matrix
    exponential of the linear field), x with noise sd 0.005."""
    t = np.arange(0.0, 10.01, 0.25)
    rng = np.random.default_rng(0)
    M = np.array([[-0.5, 1.0], [0.0, -0.3]])
    x, ids = [], []
    for i in range(4):
        y0 = np.array([rng.uniform(0.5, 2.0), rng.uniform(0.5, 3.0)])
        x.append(np.array([(scipy.linalg.expm(M * s) @ y0)[0] for s in t]) + 0.005 * rng.standard_normal(len(t)))
        ids.append(np.full(len(t), i))
    model = compile_text(RECOVERY, "lin.hode").model_class()(a=0.8, c=0.6).double()
    return model, make_dataset(model, np.tile(t, 4), {"x": np.concatenate(x)}, ids=np.concatenate(ids))


def test_forecast_training_recovers_a_known_models_params_from_windows():
    """x observed (noise sd 0.005), z hidden and estimated per window by the gru from the history; four
    trajectories from other initial states; the fit starts 60 % and 100 % off (a = 0.8, c = 0.6). The truth comes
    from an independent solve (scipy's matrix exponential of the linear field)."""
    model, data = recovery_data()
    config = load_config({"method": "forecast", "epochs": 600, "lr": 0.02, "lr_end": 0.1,
                          "solver": {"method": "rk4", "step_size": 0.25},
                          "forecast": {"history": 1.5, "horizon": 5.0, "stride": 0.5, "estimator": "gru",
                                       "hidden": 16, "observed": True}})
    torch.manual_seed(0)
    tr = Trainer(model, data, config)
    tr.train()
    fitted = tr.best_model().params()
    assert fitted["a"] == pytest.approx(0.5, rel=0.05) and fitted["c"] == pytest.approx(0.3, rel=0.05)
    assert tr.best_mse < 4 * 0.005 ** 2 + 1e-4


def test_windows_of_trajectories_with_other_start_times_forecast_in_their_own_groups():
    """Trajectories starting at 0 and 0.25 (two groups of the problem, two solves): each window's forecast is still
    its closed form, in the windows' order."""
    model = compile_text(SPEC, "relax.hode").model_class()()
    rng = np.random.default_rng(2)
    t = np.concatenate([T, T + 0.25, T])
    x = rng.uniform(0.5, 3.0, len(t))
    u, c = np.repeat([0.2, -0.1, 0.0], len(T)), np.repeat([1.0, 2.0, 1.5], len(T))
    data = make_dataset(model, t, {"x": x}, {"u": u, "c": c}, ids=np.repeat([1, 2, 3], len(T)))
    tr = Trainer(model, data, load_config({"method": "forecast", "solver": TIGHT, "forecast": {
        "history": 2.0, "horizon": 1.5, "stride": 1.5, "observed": True}}))
    assert len(tr.problem.groups) == 2 and tr.method.windows.trajectory.tolist()[::4] == [0, 1, 2]
    w = tr.method.windows
    expected = np.zeros(tuple(w.horizon_t.shape))
    for i in range(w.size):
        rows = slice(int(w.trajectory[i]) * len(T), (int(w.trajectory[i]) + 1) * len(T))
        origin = float(w.origin[i])
        x_inf = c[rows][0] + u[rows][0] / 0.7
        x0 = x[rows][np.searchsorted(t[rows], origin)]
        expected[:, i] = x_inf + (x0 - x_inf) * np.exp(-0.7 * (w.horizon_t[:, i].numpy() - origin))
    pred = forecast(tr.model, tr.method.estimator, w, tr.problem)[..., 0].detach().numpy()
    np.testing.assert_allclose(pred, expected, rtol=1e-8)


def test_minibatches_partition_the_windows_each_epoch_and_each_steps_loss_is_its_windows_mse():
    """forecast.batch 3 over 8 windows: 3 AdamW steps an epoch, each window once; each step's loss is the closed
    form's MSE over that step's windows at the params the step starts from (k moves between steps)."""
    tr, x, u, c = relax_problem({"lr": 0.05, "forecast": {"history": 2.0, "horizon": 1.5, "stride": 1.5,
                                                           "observed": True, "batch": 3}})
    w = tr.method.windows
    keys = [(int(w.trajectory[i]), float(w.t0[i])) for i in range(w.size)]
    data = w.horizon_y[..., 0].numpy()
    seen, checked = [], []
    loss_of = tr.method.loss

    def spy(lam):
        windows = tr.method.active[0]
        loss, mse = loss_of(lam)
        rows = [keys.index((int(a), float(b))) for a, b in zip(windows.trajectory, windows.t0)]
        k = float(tr.model.params()["k"])
        err = (hand_predictions(tr, x, u, c, k) - data)[:, rows]
        expected = (err ** 2)[w.horizon_mask[:, rows, 0].numpy()].mean()
        checked.append(float(loss.detach()) == pytest.approx(expected, rel=1e-7))
        seen.append(rows)
        assert mse is None
        return loss, mse

    tr.method.loss = spy
    for epoch in (1, 2):
        k_before = float(tr.model.params()["k"])
        entry = tr.step()
        epoch_rows = seen[-3:]
        assert len(seen) == 3 * epoch and sorted(r for rows in epoch_rows for r in rows) == list(range(8))
        full = ((hand_predictions(tr, x, u, c, k_before) - data) ** 2)[w.horizon_mask[..., 0].numpy()].mean()
        assert entry["mse"] == pytest.approx(full, rel=1e-7)  # the epoch's MSE: every window, before its steps
    assert all(checked) and len({float(v) for v in tr.model.params().values()}) > 0
    assert seen[:3] != seen[3:]  # a fresh partition each epoch


def test_a_batch_as_large_as_the_data_is_the_full_batch_step():
    one, *_ = relax_problem({"lr": 0.05, "forecast": {"history": 2.0, "horizon": 1.5, "stride": 1.5,
                                                       "observed": True}})
    big, *_ = relax_problem({"lr": 0.05, "forecast": {"history": 2.0, "horizon": 1.5, "stride": 1.5,
                                                       "observed": True, "batch": 8}})
    for tr in (one, big):
        tr.train()
    assert one.model.params()["k"] == big.model.params()["k"] and one.best_mse == big.best_mse


def test_minibatch_training_recovers_a_known_models_params():
    """As the full-batch recovery above, with 8 windows a step and a quarter of its epochs."""
    model, data = recovery_data()
    config = load_config({"method": "forecast", "epochs": 150, "lr": 0.02, "lr_end": 0.1,
                          "solver": {"method": "rk4", "step_size": 0.25},
                          "forecast": {"history": 1.5, "horizon": 5.0, "stride": 0.5, "estimator": "gru",
                                       "hidden": 16, "observed": True, "batch": 8}})
    torch.manual_seed(0)
    tr = Trainer(model, data, config)
    assert tr.method.windows.size == 32  # 4 steps an epoch
    tr.train()
    fitted = tr.best_model().params()
    assert fitted["a"] == pytest.approx(0.5, rel=0.05) and fitted["c"] == pytest.approx(0.3, rel=0.05)


def test_a_batch_below_one_is_a_located_config_error():
    with pytest.raises(HodecError, match="forecast.batch"):
        load_config({"method": "forecast", "forecast": {"history": 1, "horizon": 1, "batch": 0}})
