"""forecast.pool (hodec/training/forecast/pool.py): each window's per-window params pooled over its trajectory's
earlier histories. The pooled factors against a hand computation on a few windows (a stub estimator whose factor
is a known function of each history), including a history whose window is not scored (its horizon has no data);
causality end to end (data changed after a window's origin, even so that a later window stops being scored, leaves
that window's forecast as it was; the later windows' forecasts change); the key's errors, located in the file;
`hodec sparsify` with pool."""
import math

import numpy as np
import pytest
import torch

from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.forecast import forecast, make_windows
from hodec.training.forecast.base import Estimator
from hodec.training.forecast.pool import pooled_infer
from hodec.training.loop import Trainer
from hodec.training.problem import Problem
from hodec.training.sparsify import data_mse, sparsify

from test_forecast_method import SPEC, TIGHT
from test_forecast_sparsify import ABC, FORECAST, synthetic

pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations

T = np.arange(0.0, 8.01, 0.5)
HISTORY, HORIZON, STRIDE = 2.0, 1.5, 1.0  # t0 = 0, 1, ...: 4 history samples, origin t0 + 1.5, 3 horizon samples


def data_of(x):
    """Two trajectories (ids 1, 2) on T with the given x column [2 len(T)], u and c constant per trajectory."""
    model = compile_text(SPEC, "relax.hode").model_class()()
    u, c = np.repeat([0.2, -0.1], len(T)), np.repeat([1.0, 2.0], len(T))
    return model, make_dataset(model, np.concatenate([T, T]), {"x": x}, {"u": u, "c": c},
                               ids=np.repeat([1, 2], len(T)))


def raw_x():
    x = np.random.default_rng(3).uniform(0.5, 3.0, 2 * len(T))
    x[[10, 11, 12]] = np.nan  # trajectory 1 at t = 5, 5.5, 6: the window t0 = 3 (origin 4.5) has no horizon data
    return x


class Stub(Estimator):
    """The state at the origin: the last history value; the factor of k: exp(mean of the history's data)."""
    columns = (0,)

    def infer(self, model, windows):
        mask = windows.hist_mask[..., 0]
        mean = (windows.hist_y[..., 0] * mask).sum(0) / mask.sum(0)
        last = windows.hist_y[windows.hist_len - 1, torch.arange(windows.size), 0]
        return last.unsqueeze(1), mean.exp().unsqueeze(1)


def by_hand(x, trajectory: int, t0: float, span: float) -> float:
    """The pooled factor of the window (trajectory, t0): exp of the mean, over the window starts s = 0, 1, ... <= t0
    whose origin s + 1.5 lies within span of t0 + 1.5 and whose history [s, s + 2) has data, of the mean of that
    history's data."""
    xs = x[trajectory * len(T):(trajectory + 1) * len(T)]
    means = []
    for s in np.arange(0.0, t0 + 1e-9, STRIDE):
        if s + 1.5 < t0 + 1.5 - span - 1e-9:
            continue
        values = xs[(T >= s - 1e-9) & (T < s + HISTORY - 1e-9)]
        if np.isfinite(values).any():
            means.append(np.nanmean(values))
    return math.exp(np.mean(means))


def last_by_hand(x, trajectory: int, t0: float, span: float) -> float:
    """The pooled state of the window (trajectory, t0) when the stub's state (each history's last value, 0 where it
    is missing) is in pool_states: its mean over the histories by_hand pools."""
    xs = x[trajectory * len(T):(trajectory + 1) * len(T)]
    values = []
    for s in np.arange(0.0, t0 + 1e-9, STRIDE):
        rows = np.flatnonzero((T >= s - 1e-9) & (T < s + HISTORY - 1e-9))
        if s + 1.5 >= t0 + 1.5 - span - 1e-9 and np.isfinite(xs[rows]).any():
            values.append(np.nan_to_num(xs[rows[-1]]))
    return float(np.mean(values))


@pytest.mark.parametrize("span", [0.5, 1.0, 2.0, 100.0])
def test_pooled_factors_are_the_geometric_mean_over_the_earlier_histories(span):
    x = raw_x()
    model, data = data_of(x)
    problem = Problem(model, data, load_config({"method": "vanilla"}))
    w = make_windows(problem, history=HISTORY, horizon=HORIZON, stride=STRIDE, pool=span)
    starts = list(zip(w.trajectory.tolist(), w.t0.tolist()))
    assert (0, 3.0) not in starts and (0, 4.0) in starts  # t0 = 3 not scored: its horizon has no data
    assert len(starts) == 2 * 6 - 1  # t0 = 0 .. 5 per trajectory (origin + 1.5 <= 8), less that one
    y0, factors = pooled_infer(Stub(problem, None), model, w)
    expected = [by_hand(x, i, t0, span) for i, t0 in starts]
    np.testing.assert_allclose(factors[:, 0].numpy(), expected, rtol=1e-12)
    own = Stub(problem, None).infer(model, w)  # the state: each window's own history
    np.testing.assert_allclose(y0.numpy(), own[0].numpy(), rtol=0)
    if span == 2.0:  # the window t0 = 4 pools t0 = 2, 3 (not scored) and 4
        mine = starts.index((0, 4.0))
        xs = x[:len(T)]
        hand = math.exp(np.mean([np.nanmean(xs[(T >= s) & (T < s + 2)]) for s in (2.0, 3.0, 4.0)]))
        assert float(factors[mine, 0]) == pytest.approx(hand, rel=1e-12)
    stub = Stub(problem, load_config({"forecast": {"pool": span, "pool_states": ["x"]}}).forecast_options)
    states = pooled_infer(stub, model, w)[0][:, 0].numpy()  # x: a state pooled as a plain mean of the last values
    np.testing.assert_allclose(states, [last_by_hand(x, i, t0, span) for i, t0 in starts], rtol=1e-12)
    sub = torch.tensor([7, 2, 4])  # a selection keeps each window's pool, over only the histories it reads
    np.testing.assert_allclose(pooled_infer(Stub(problem, None), model, w.select(sub))[1].numpy(),
                               factors[sub].numpy(), rtol=0)
    assert w.select(sub).pool.context.size < w.pool.context.size


def estimating_trainer(x, pool, **keys):
    """A forecast fit's trainer (gru with estimate [k], pool), its param head random (so each window's factor
    depends on its history)."""
    model, data = data_of(x)
    keys = {"history": HISTORY, "horizon": HORIZON, "stride": STRIDE, "hidden": 4, "estimate": ["k"],
            "estimate_factor": 3.0, "pool": pool, **keys}
    torch.manual_seed(0)
    tr = Trainer(model, data, load_config({"method": "forecast", "solver": TIGHT, "forecast": keys}))
    with torch.no_grad():
        torch.nn.init.normal_(tr.method.estimator.param_head.weight, std=2.0)
    return tr


def forecasts(tr, x):
    """(trajectory, t0) -> the forecast [Tf] of that window of the data with x, by the trainer's model and
    estimator (its normalisation fixed: set up on the trainer's data)."""
    model, data = data_of(x)
    problem = Problem(tr.model, data, tr.config)
    o = tr.config.forecast_options
    w = make_windows(problem, history=o.history, horizon=o.horizon, stride=o.stride, pool=o.pool)
    pred = forecast(tr.model, tr.method.estimator, w, problem)[..., 0].detach().numpy()
    return {(i, t0): pred[:, k] for k, (i, t0) in enumerate(zip(w.trajectory.tolist(), w.t0.tolist()))}


def test_data_after_a_windows_origin_does_not_change_its_pooled_forecast():
    x = raw_x()
    tr = estimating_trainer(x, pool=3.0)
    before = forecasts(tr, x)
    changed = x.copy()
    changed[:len(T)][T >= 4.0 - 1e-9] *= 1.7  # trajectory 1 from t = 4 on (the origins up to 3.5 precede it)
    changed[len(T):][np.isin(T, [5.0, 5.5, 6.0])] = np.nan  # trajectory 2: its window t0 = 3 is no longer scored
    after = forecasts(tr, changed)
    assert (1, 3.0) in before and (1, 3.0) not in after
    kept = [(i, t0) for i, t0 in before if t0 + 1.5 < (4.0 if i == 0 else 4.5)]  # trajectory 2: before t0 = 3
    assert len(kept) == 6
    for key in kept:
        np.testing.assert_array_equal(after[key], before[key])
    for t0 in (4.0, 5.0):  # the later windows of trajectory 1 change
        assert not np.allclose(after[(0, t0)], before[(0, t0)])


def test_pooling_changes_the_later_windows_only():
    """The first window of each trajectory pools only its own history: the same forecast as without pool; a later
    one pools earlier histories too, and its forecast differs."""
    x = raw_x()
    own, pooled = estimating_trainer(x, pool=None), estimating_trainer(x, pool=100.0)
    a, b = forecasts(own, x), forecasts(pooled, x)
    for i in (0, 1):
        np.testing.assert_allclose(b[(i, 0.0)], a[(i, 0.0)], rtol=1e-12)
        assert not np.allclose(b[(i, 5.0)], a[(i, 5.0)], rtol=1e-6)


def test_training_with_pool_reaches_every_pooled_history():
    """The loss's gradient reaches the param head through the pooled mean (training may pool)."""
    tr = estimating_trainer(raw_x(), pool=2.0)
    loss, _ = tr.method.loss(0.0)
    loss.backward()
    grad = tr.method.estimator.param_head.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("keys, fragment", [
    ("  pool: 0\n  estimate: [k]\n", "forecast.pool: must be > 0, got 0"),
    ("  pool: -2\n  estimate: [k]\n", "forecast.pool: must be > 0, got -2"),
    ("  pool: day\n  estimate: [k]\n", "forecast.pool: expected a finite number, got 'day'"),
    ("  pool: 3\n", "forecast.pool: pools the params of forecast.estimate and the states of "
                    "forecast.pool_states over earlier histories, and both are empty"),
    ("  pool_states: [x]\n", "forecast.pool_states: needs forecast.pool"),
    ("  pool: 3\n  pool_states: [x, x]\n", "forecast.pool_states[1]: 'x' is listed twice"),
    ("  estimate: [k]\n  pool_adjust: 2\n", "forecast.pool_adjust: adjusts the pooled params of forecast.estimate "
                                            "per window, so it needs forecast.pool and forecast.estimate"),
    ("  pool: 3\n  pool_states: [x]\n  pool_adjust: 2\n", "so it needs forecast.pool and forecast.estimate"),
    ("  pool: 3\n  estimate: [k]\n  pool_adjust: 0.5\n", "forecast.pool_adjust: must be >= 1, got 0.5"),
])
def test_pool_config_errors_name_the_file_and_key(tmp_path, keys, fragment):
    path = tmp_path / "FIT.yaml"
    path.write_text("method: forecast\nforecast:\n  history: 2\n  horizon: 1\n" + keys)
    with pytest.raises(HodecError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value), str(info.value)


def test_sparsify_with_pool_scores_every_model_on_pooled_windows():
    """`hodec sparsify` with method forecast, estimate and pool: the path, the refit and the test score run, every
    fit's windows (and the test data's) carrying their pool."""
    data, test = synthetic(4), synthetic(2, seed=1)
    forecast_keys = {**FORECAST["forecast"], "estimate": ["k1"], "pool": 2.0}
    config = {**FORECAST, "forecast": forecast_keys, "lambda1": [0.0, 0.01], "refit_epochs": 2, "folds": 2}
    r = sparsify(ABC, data, config, filename="abc.hode", test=test)
    assert all(e["val_mse"] is not None and np.isfinite(e["val_mse"]) for e in r.path)
    assert r.refit_trainer.method.windows.pool is not None and np.isfinite(r.test_mse)
    assert r.test_mse == pytest.approx(data_mse(r.model, test, r.config.refit,
                                                carried=r.refit_trainer.method.carry(best=True)), rel=1e-12)


def test_pool_states_must_be_states_of_the_model():
    x = raw_x()
    with pytest.raises(HodecError) as info:
        estimating_trainer(x, pool=2.0, pool_states=["k"])
    assert "forecast.pool_states[0]: 'k' is not a state of Relax" in str(info.value)
    assert "fit config" in str(info.value)


def test_minibatches_with_pool_are_whole_trajectories_and_forecast_as_the_full_batch():
    """forecast.batch with pool: each step takes whole trajectories (here one: batch 3 < 5 windows each), every
    window once an epoch; a step's loss equals the full batch's cells of its windows (the pool read right)."""
    tr = estimating_trainer(raw_x(), 100.0, batch=3)
    full = _cells_by_window(tr, None)
    keys = list(zip(tr.method.windows.trajectory.tolist(), tr.method.windows.t0.tolist()))
    seen = []
    for _ in tr.method.steps(1):
        windows, _groups = tr.method.active
        assert len(set(windows.trajectory.tolist())) == 1
        index = [keys.index(key) for key in zip(windows.trajectory.tolist(), windows.t0.tolist())]
        part = _cells_by_window(tr, tr.method.active)
        for k, w in enumerate(index):
            torch.testing.assert_close(part[k], full[w], rtol=1e-12, atol=0)
        seen += index
    assert sorted(seen) == list(range(tr.method.windows.size))


def _cells_by_window(tr, part):
    """Window -> its horizon cells' losses [1 + Tf, m] (part's windows, or all)."""
    out = {}
    with torch.no_grad():
        for index, cells in tr.method.cell_losses(tr.model, "test", part=part):
            for k, w in enumerate(index.tolist()):
                out[w] = cells[:, k]
    return out
