"""forecast.pool_adjust (hodec/training/forecast/pool.py, encoders.py): a window's param is its trajectory's pooled
value (forecast.pool) times an adjustment its own history gives. Against a hand computation with a stub estimator
whose factors are known functions of each history; the encoder's second head within its bound and trained (its
gradient); the forecasts with the adjustment differ from the pooled ones. (The key's errors: test_forecast_pool.py.)"""
import math

import numpy as np
import pytest
import torch

from hodec.training.config import load_config
from hodec.training.forecast import make_windows
from hodec.training.forecast.base import Estimator
from hodec.training.forecast.pool import pooled_infer
from hodec.training.problem import Problem

from test_forecast_pool import HISTORY, HORIZON, STRIDE, T, by_hand, data_of, estimating_trainer, forecasts, raw_x

pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations


class Adjusting(Estimator):
    """The state: 0; the factor of k: exp(mean of the history's data); its adjustment: exp(last value / 10)."""
    columns = (0,)

    def infer(self, model, windows):
        mask = windows.hist_mask[..., 0]
        mean = (windows.hist_y[..., 0] * mask).sum(0) / mask.sum(0)
        last = windows.hist_y[windows.hist_len - 1, torch.arange(windows.size), 0]
        return torch.zeros(windows.size, 1, dtype=mean.dtype), torch.stack([mean.exp(), (last / 10).exp()], 1)


def last_value(x, trajectory: int, t0: float) -> float:
    """The last data value of the window's history [t0, t0 + 2) (0 where it is missing, as the windows pad)."""
    xs = x[trajectory * len(T):(trajectory + 1) * len(T)]
    return float(np.nan_to_num(xs[np.flatnonzero((T >= t0 - 1e-9) & (T < t0 + HISTORY - 1e-9))[-1]]))


@pytest.mark.parametrize("span", [1.0, 100.0, None])
def test_the_pooled_value_times_the_windows_own_adjustment(span):
    x = raw_x()
    model, data = data_of(x)
    problem = Problem(model, data, load_config({"method": "vanilla"}))
    w = make_windows(problem, history=HISTORY, horizon=HORIZON, stride=STRIDE, pool=span)
    _, factors = pooled_infer(Adjusting(problem, None), model, w)
    starts = list(zip(w.trajectory.tolist(), w.t0.tolist()))
    pooled = [by_hand(x, i, t0, span if span is not None else 0.0) for i, t0 in starts]  # None: its own history
    expected = [p * math.exp(last_value(x, i, t0) / 10) for p, (i, t0) in zip(pooled, starts)]
    assert factors.shape == (len(starts), 1)
    np.testing.assert_allclose(factors[:, 0].numpy(), expected, rtol=1e-12)


def test_the_encoder_adjusts_within_its_bound_and_trains_the_adjustment():
    x = raw_x()
    tr = estimating_trainer(x, pool=100.0, pool_adjust=1.5)
    estimator = tr.method.estimator
    assert estimator.param_head.out_features == 2  # k's pooled factor and its adjustment
    with torch.no_grad():
        _, raw = estimator.infer(tr.model, tr.method.windows)
    assert (raw[:, 0].max() <= 3.0) and (raw[:, 0].min() >= 1 / 3.0)  # estimate_factor 3
    assert (raw[:, 1].max() <= 1.5) and (raw[:, 1].min() >= 1 / 1.5) and raw[:, 1].std() > 0
    loss, _ = tr.method.loss(0.0)
    loss.backward()
    grad = estimator.param_head.weight.grad
    assert torch.isfinite(grad).all() and grad[1].abs().sum() > 0  # the adjustment's row trains
    pooled = forecasts(estimating_trainer(x, pool=100.0), x)
    adjusted = forecasts(tr, x)
    assert not np.allclose(adjusted[(0, 4.0)], pooled[(0, 4.0)], rtol=1e-6)
