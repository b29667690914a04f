"""Forecast windows (hodec.training.forecast.windows): edges, missing samples, inputs aligned, against hand-made data
whose windows are written out here."""

import numpy as np
import pytest
import torch

from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.forecast import make_windows
from hodec.training.problem import Problem

pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations

SPEC = """
model Lin
param k = 0.5 positive
input u
state x = 1
state z = 0
der x = -k * x + u
der z = x - z
observe obs = x + z
"""


def problem_of(t, values, inputs=None, ids=None):
    model = compile_text(SPEC, "lin.hode").model_class()()
    data = make_dataset(model, t, values, {"u": np.zeros(len(t))} if inputs is None else inputs, ids)
    return Problem(model, data, load_config({"method": "vanilla"}))


def test_windows_cut_at_the_stride_with_history_origin_and_horizon():
    t = np.arange(10.0)  # 0..9
    p = problem_of(t, {"x": t * 10}, {"u": 100 + t})
    w = make_windows(p, history=3, horizon=2, stride=2)
    # t0 = 0, 2, 4: history [t0, t0 + 3) -> 3 samples, origin t0 + 2, horizon (origin, origin + 2] -> 2 samples;
    # t0 = 6: origin 8, its horizon would end at 10 > 9: dropped (and every later one)
    assert w.t0.tolist() == [0, 2, 4] and w.origin.tolist() == [2, 4, 6]
    assert w.hist_t[:, 1].tolist() == [2, 3, 4] and w.horizon_t[:, 2].tolist() == [7, 8]
    assert w.hist_y[:, 0, 0].tolist() == [0, 10, 20] and w.horizon_y[:, 0, 0].tolist() == [30, 40]
    assert w.hist_mask.all() and w.horizon_mask.all() and w.hist_len.tolist() == [3, 3, 3]
    assert w.hist_u[:, 2, 0].tolist() == [104, 105, 106]  # the input at the history times
    assert w.columns == ("x",) and w.trajectory.tolist() == [0, 0, 0]


def test_stride_that_does_not_divide_and_the_last_window_ending_on_the_last_sample():
    t = np.arange(11.0)  # 0..10
    p = problem_of(t, {"x": t})
    w = make_windows(p, history=2.5, horizon=3, stride=2.5)
    # t0 = 0, 2.5, 5: history [0, 2.5) = {0, 1, 2}, origin 2, horizon {3, 4, 5}; [2.5, 5) = {3, 4}, origin 4,
    # horizon {5, 6, 7}; [5, 7.5) = {5, 6, 7}, origin 7, horizon {8, 9, 10}, ending on the last sample: kept;
    # t0 = 7.5: origin 9, horizon to 12 > 10: dropped
    assert w.t0.tolist() == [0, 2.5, 5] and w.origin.tolist() == [2, 4, 7]
    assert w.hist_len.tolist() == [3, 2, 3]
    assert w.hist_t[:, 1].tolist() == [3, 4, 4]  # padded by repeating the last time, masked
    assert w.hist_mask[:, 1, 0].tolist() == [True, True, False] and w.hist_y[2, 1, 0] == 0
    assert w.horizon_t.tolist() == [[3, 5, 8], [4, 6, 9], [5, 7, 10]]


def test_a_trajectory_shorter_than_history_plus_horizon_has_no_window():
    t = np.concatenate([np.arange(4.0), np.arange(10.0)])  # id 1: 0..3 (too short), id 2: 0..9
    p = problem_of(t, {"x": t + 1}, ids=[1] * 4 + [2] * 10)
    w = make_windows(p, history=3, horizon=2, stride=5)
    assert w.trajectory.tolist() == [1, 1] and w.origin.tolist() == [2, 7]  # t0 = 5: horizon {8, 9}, whole
    with pytest.raises(HodecError, match="no forecast window fits the data"):
        make_windows(p, [0], history=3, horizon=2, stride=5)


def test_missing_samples_are_masked_and_windows_without_data_on_either_side_dropped():
    t = np.arange(16.0)
    x = t.copy()
    x[[1, 3]] = np.nan  # missing inside the first window's history and inside its horizon
    obs = np.where(t % 2 == 0, 10 * t, np.nan)
    x[8:11] = obs[8:11] = np.nan  # the history of the window at t0 = 8 ([8, 11)) has no data: dropped
    p = problem_of(t, {"x": x, "obs": obs})
    w = make_windows(p, history=3, horizon=2, stride=4)
    assert w.t0.tolist() == [0, 4]  # t0 = 8: no history data; t0 = 12: its horizon (15, 16] runs past the end
    assert w.columns == ("x", "obs")
    assert w.hist_mask[:, 0].tolist() == [[True, True], [False, False], [True, True]]
    assert w.horizon_mask[:, 0].tolist() == [[False, False], [True, True]]
    assert w.horizon_y[:, 0].tolist() == [[0, 0], [4, 40]]
    assert w.horizon_mask[:, 1].tolist() == [[True, False], [False, False]]  # x at 7; 8 missing in both
    assert torch.isfinite(w.hist_y).all() and torch.isfinite(w.horizon_y).all()


def test_inputs_are_the_trajectorys_own_interpolated_at_the_history_times():
    """Two trajectories with their own input samples (one missing): each window reads its own trajectory's input,
    linearly interpolated between that trajectory's samples, at its history times."""
    t = np.concatenate([np.arange(6.0), np.arange(6.0)])
    u = np.concatenate([[0, 10, 20, np.nan, 40, 50], [5, 5, 5, 5, 5, 5]])
    p = problem_of(t, {"x": np.ones(12)}, {"u": u}, ids=[1] * 6 + [2] * 6)
    w = make_windows(p, history=3, horizon=2, stride=1)
    assert w.trajectory.tolist() == [0, 0, 1, 1]
    assert w.hist_t[:, 1].tolist() == [1, 2, 3]
    assert w.hist_u[:, 1, 0].tolist() == [10, 20, 30]  # t = 3: missing, interpolated between 20 and 40
    assert w.hist_u[:, 3, 0].tolist() == [5, 5, 5]
    assert w.hist_u.shape == (3, 4, 1)


def test_a_model_without_inputs_has_zero_input_columns():
    model = compile_text("model A\nparam k = 1 positive\nstate x = 1\nder x = -k * x\n", "a.hode").model_class()()
    data = make_dataset(model, np.arange(6.0), {"x": np.exp(-np.arange(6.0))})
    w = make_windows(Problem(model, data, load_config({"method": "vanilla"})), history=2, horizon=2, stride=1)
    assert w.hist_u.shape == (2, 3, 0) and w.origin.tolist() == [1, 2, 3]


def test_bad_lengths_are_refused():
    p = problem_of(np.arange(5.0), {"x": np.ones(5)})
    with pytest.raises(HodecError, match="forecast.stride must be > 0"):
        make_windows(p, history=1, horizon=1, stride=0)
