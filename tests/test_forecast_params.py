"""forecast.estimate (hodec/training/forecast/params.py): params the encoder infers per window. The key's errors;
the objective with the inferred values against hand-computed closed forms (a uniform factor exp(ln f tanh z) from
the head's bias, and given per-window factors: each window solved with its own value); the gradients of the extra
head and of the population value against finite differences; and a synthetic case where windows come from
trajectories of different true rates and forecast training with `estimate` recovers each window's rate and beats
the same training without it."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.forecast import forecast
from hodec.training.forecast.predict import inferred
from hodec.training.loop import Trainer

from test_forecast_method import SPEC, TIGHT, T, hand_predictions, relax_problem

pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations

WINDOWS = {"history": 2.0, "horizon": 1.5, "stride": 1.5, "observed": True, "hidden": 4}


def estimating(extra=None, **keys):
    """relax_problem (two trajectories, u and c their own) with forecast.estimate: [k]."""
    return relax_problem({"forecast": {**WINDOWS, "estimate": ["k"], **keys}, **(extra or {})})


def force_factor(estimator, z: float):
    """The param head set to give every window z (so the factor exp(ln f tanh z))."""
    with torch.no_grad():
        estimator.param_head.weight.zero_()
        estimator.param_head.bias.fill_(z)


# ---------------------------------------------------------------- the objective with inferred params
def test_every_window_solves_with_the_population_value_times_the_bounded_factor():
    tr, x, u, c = estimating(estimate_factor=2.5)
    force_factor(tr.method.estimator, 0.8)
    k = 0.7 * math.exp(math.log(2.5) * math.tanh(0.8))
    w = tr.method.windows
    expected = hand_predictions(tr, x, u, c, k=k)  # c: each trajectory's data column (conditions) still applies
    mask = w.horizon_mask[..., 0].numpy()
    assert float(tr.method.loss(0.0)[0].detach()) == pytest.approx(
        ((expected - w.horizon_y[..., 0].numpy()) ** 2)[mask].mean(), rel=1e-8)
    pred = forecast(tr.model, tr.method.estimator, w, tr.problem)[..., 0].detach().numpy()
    np.testing.assert_allclose(pred, expected, rtol=1e-8)
    assert tr.model.params()["k"] == pytest.approx(0.7)  # the population value is the model's own


def without_conditions():
    """relax_problem's data without the c column: the model's own c = 1 (no conditions: the windows' table is the
    only per-window one)."""
    model = compile_text(SPEC, "relax.hode").model_class()()
    x = np.random.default_rng(0).uniform(0.5, 3.0, 2 * len(T))
    u = np.repeat([0.2, -0.1], len(T))
    data = make_dataset(model, np.concatenate([T, T]), {"x": x}, {"u": u}, ids=np.repeat([1, 2], len(T)))
    config = {"method": "forecast", "solver": TIGHT, "forecast": {**WINDOWS, "estimate": ["k"]}}
    torch.manual_seed(0)
    tr = Trainer(model, data, load_config(config))
    assert not tr.problem.conditions.active
    return tr, x, u, np.ones(len(x))


@pytest.mark.parametrize("make", [estimating, without_conditions])
def test_each_window_reads_its_own_factor(make):
    """Given factors 0.5, 0.6, ... per window (the estimator's infer replaced), each window's forecast is the
    closed form with its own k, with and without per-trajectory conditions (c: a data column)."""
    tr, x, u, c = make()
    w = tr.method.windows
    given = 0.5 + 0.1 * torch.arange(w.size, dtype=torch.float64)
    estimator = tr.method.estimator
    y0 = estimator(tr.model, w)
    estimator.infer = lambda model, windows: (y0, given.unsqueeze(1))
    pred = forecast(tr.model, estimator, w, tr.problem)[..., 0].detach().numpy()
    for i in range(w.size):
        np.testing.assert_allclose(pred[:, i], hand_predictions(tr, x, u, c, k=0.7 * float(given[i]))[:, i],
                                   rtol=1e-8)


def test_the_factor_stays_within_its_bound():
    tr, *_ = estimating(estimate_factor=3.0)
    for z, factor in ((50.0, 3.0), (-50.0, 1 / 3.0), (0.0, 1.0)):
        force_factor(tr.method.estimator, z)
        _, tables = inferred(tr.problem, tr.model, tr.method.estimator, tr.method.windows, tr.method.groups)
        column = tr.model.param_names.index("k")
        for table in tables:
            np.testing.assert_allclose(table[:, column].detach().numpy(), 0.7 * factor, rtol=1e-12)


# ---------------------------------------------------------------- gradients
def test_gradients_reach_the_param_head_and_the_population_value():
    """d loss / d (param head's bias) and d loss / d k (population) against central differences."""
    tr, *_ = estimating({"solver": {"method": "dopri5", "rtol": 1e-11, "atol": 1e-13}})
    estimator = tr.method.estimator
    with torch.no_grad():
        estimator.param_head.weight.normal_(0.0, 0.3)  # windows' factors differ
    loss = tr.method.loss(0.0)[0]
    bias, raw = estimator.param_head.bias, tr.model.raw_positive
    grad_bias, grad_raw = torch.autograd.grad(loss, [bias, raw])
    assert float(grad_bias.abs().sum()) > 1e-4

    def central(tensor, index, eps=1e-6):
        with torch.no_grad():
            tensor[index] += eps
            up = float(tr.method.loss(0.0)[0])
            tensor[index] -= 2 * eps
            down = float(tr.method.loss(0.0)[0])
            tensor[index] += eps
        return (up - down) / (2 * eps)

    assert float(grad_bias[0]) == pytest.approx(central(bias, 0), rel=1e-5, abs=1e-9)
    k = tr.model.parameters_table[0][0]
    assert k == "k"
    assert float(grad_raw[0]) == pytest.approx(central(raw, 0), rel=1e-5, abs=1e-9)


# ---------------------------------------------------------------- recovery of each window's value
DECAY = """
model Decay
param k = 0.7 positive
input u
state x = 1
der x = -k * x + u
observe obs = x
"""
RATES = (0.25, 0.5, 1.0, 2.0)  # each trajectory's true k
GRID = np.arange(0.0, 20.01, 0.25)


def decay_data(model):
    """One trajectory per rate of dx/dt = -k x + 1 + sin t from x(0) = 1 (solve_ivp)."""
    t, x, u, ids = [], [], [], []
    for i, k in enumerate(RATES):
        sol = solve_ivp(lambda s, y: -k * y + 1 + np.sin(s), (0, GRID[-1]), [1.0], t_eval=GRID, rtol=1e-10,
                        atol=1e-12)
        t.append(GRID), x.append(sol.y[0]), u.append(1 + np.sin(GRID)), ids.append(np.full(len(GRID), i + 1))
    return make_dataset(model, np.concatenate(t), {"x": np.concatenate(x)}, {"u": np.concatenate(u)},
                        ids=np.concatenate(ids))


def decay_fit(estimate: bool) -> Trainer:
    torch.manual_seed(0)
    model = compile_text(DECAY, "decay.hode").model_class()()
    keys = {"estimate": ["k"], "estimate_factor": 4.0} if estimate else {}
    config = {"method": "forecast", "epochs": 300, "lr": 0.03, "solver": {"method": "rk4", "step_size": 0.05},
              "forecast": {"history": 3.0, "horizon": 2.0, "stride": 1.0, "observed": True, "estimator": "mlp",
                           "hidden": 16, **keys}}
    tr = Trainer(model, decay_data(model), load_config(config))
    tr.train()
    return tr


def test_forecast_training_with_estimate_recovers_each_windows_rate_and_forecasts_better():
    plain, estimating_k = decay_fit(False), decay_fit(True)
    assert estimating_k.best_mse < 0.05 * plain.best_mse  # one k for all four rates cannot fit them
    method = estimating_k.method
    method.estimator.load_state_dict(method.state()["estimator"]["state"])
    best = estimating_k.best_model()
    _, tables = inferred(estimating_k.problem, best, method.estimator, method.windows, method.groups)
    got, truth = [], []
    for (index, _), table in zip(method.groups, tables):
        got += table[:, 0].tolist()
        truth += [RATES[i] for i in method.windows.trajectory[index].tolist()]
    error = np.abs(np.array(got) / np.array(truth) - 1)
    assert len(got) == 4 * 16 and np.median(error) < 0.05 and error.max() < 0.25, (np.median(error), error.max())


# ---------------------------------------------------------------- the key's errors
CHECKED = """
model Checked
param k = 0.7 positive
param c = 1.0 fixed
param q = 0.1
param b = 0.5 in (0, 1)
param h = 1 positive
input u
state x = 1
der x = -k * (x - c) + u + q * b * h
at t = 1: h = 2
observe obs = x
"""


def checked_trainer(estimate, **extra):
    model = compile_text(CHECKED, "checked.hode").model_class()()
    t = np.tile(np.arange(0.0, 8.01, 0.5), 2)
    ids = np.repeat([1, 2], len(t) // 2)
    data = make_dataset(model, t, {"x": np.linspace(1.0, 2.0, len(t))}, {"u": np.full(len(t), 0.2)}, ids=ids)
    config = {"method": "forecast", "forecast": {"history": 2.0, "horizon": 1.5, "estimate": estimate}, **extra}
    return Trainer(model, data, load_config(config))


@pytest.mark.parametrize("estimate, extra, fragment", [
    (["kk"], {}, "forecast.estimate[0]: 'kk' is not a param of Checked; did you mean 'k'"),
    (["k", "x"], {}, "forecast.estimate[1]: 'x' is a state of Checked, not a param"),
    (["u"], {}, "'u' is an input of Checked, not a param"),
    (["obs"], {}, "'obs' is an observable of Checked, not a param"),
    (["c"], {}, "'c' is a fixed param; only positive params"),
    (["q"], {}, "'q' is a free param; only positive params"),
    (["b"], {}, "'b' is a bounded param; only positive params"),
    (["h"], {}, "'h' is assigned by an event"),
    (["k"], {"conditions": {1: {"k": 0.5}}}, "'k' is set by conditions.1"),
    (["k"], {"scales": {"h": "log10"}}, "forecast.estimate: not supported yet in a fit with scales"),
])
def test_estimate_names_a_positive_param_the_windows_can_move(estimate, extra, fragment):
    with pytest.raises(HodecError) as info:
        checked_trainer(estimate, **extra)
    assert fragment in str(info.value), str(info.value)
    assert "fit config" in str(info.value)


def test_estimate_config_errors_name_the_file(tmp_path):
    path = tmp_path / "FIT.yaml"
    path.write_text("method: forecast\nforecast:\n  history: 2\n  horizon: 1\n  estimator: ekf\n"
                    "  estimate: [k, k]\n  estimate_factor: 0.5\n")
    with pytest.raises(HodecError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "forecast.estimate[1]: 'k' is listed twice" in message
    assert "forecast.estimate: needs a learned encoder (estimator gru, lstm or mlp); the ekf filter" in message
    assert "forecast.estimate_factor: must be >= 1" in message


def test_without_estimate_the_encoder_has_no_param_head():
    """Checkpoints of fits without the key keep their layout."""
    tr, *_ = relax_problem({"forecast": WINDOWS})
    assert not any(key.startswith("param_head") for key in tr.method.estimator.state_dict())
    assert tr.method.estimator.infer(tr.model, tr.method.windows)[1] is None
