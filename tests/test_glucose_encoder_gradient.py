"""Regression (found by the glucose benchmark's mechanistic row): a state that is not on the encoder's log scale
(some value <= 0) but whose centre is large (a stomach content of thousands of mg) made exp(z) inf in torch.where's
unselected branch, and the encoder's gradient NaN from the first epoch."""
import numpy as np
import torch

from hodec.compiler import compile_text
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.loop import Trainer

SPEC = """
model Gut
param k = 0.05 positive
input meal
state q = 0
state g = 100
der q = 1000 * meal - k * q
der g = 0.001 * k * q - 0.01 * (g - 100)
observe cgm = g
"""


def test_the_encoders_gradient_is_finite_with_a_large_state_that_is_not_on_the_log_scale():
    t = np.arange(0.0, 300.0, 5.0)
    meal = np.where((t >= 60) & (t < 75), 5.0, 0.0)
    model = compile_text(SPEC, "gut.hode").model_class()()
    data = make_dataset(model, t, {"cgm": 100 + 0.1 * t}, {"meal": meal})
    config = load_config({"method": "forecast", "dtype": "float64", "solver": {"method": "rk4", "step_size": 5.0},
                          "forecast": {"history": 50, "horizon": 30, "stride": 20, "hidden": 4}})
    torch.manual_seed(0)
    tr = Trainer(model, data, config)
    estimator = tr.method.estimator
    q = model.state_names.index("q")
    assert not estimator.log[q] and float(estimator.center[q]) > 100  # exp(center) overflows
    loss, _ = tr.method.loss(0.0)
    grads = torch.autograd.grad(loss, [p for p in estimator.parameters()])
    assert torch.isfinite(loss)
    assert all(torch.isfinite(g).all() for g in grads)
