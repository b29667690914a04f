"""Forecast windows (hodec.training.forecast.windows): edges, missing samples, inputs aligned, against hand-made data
whose windows are written out here."""
import math

import numpy as np
import pytest
import torch

from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.forecast import make_windows
from hodec.training.problem import Problem

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
    data = make_dataset(model, t, values, inputs, ids)
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
