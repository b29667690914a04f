"""Forecast encoders (gru, lstm, mlp): the gradient of the horizon objective with respect to the encoder's weights
and the model's params, through the ODE solve, against central finite differences (float64, a tiny model)."""
import numpy as np
import pytest
import torch

from hodec.compiler import compile_text
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.loop import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations

SPEC = """
model Two
param k = 0.6 positive
param c = 0.4 positive
input u
state x = 1
state z = 0.5
der x = -k * x + c * z + u
der z = -c * z
observe obs = x
"""

SOLVERS = {"rk4": {"method": "rk4", "step_size": 0.1}, "dopri5": {"method": "dopri5", "rtol": 1e-11, "atol": 1e-12}}


def trainer(estimator: str, solver: str) -> Trainer:
    t = np.arange(0.0, 6.01, 0.5)
    model = compile_text(SPEC, "two.hode").model_class()()
    obs = np.exp(-0.5 * t) + 0.1 * np.sin(t)
    data = make_dataset(model, np.concatenate([t, t]), {"obs": np.concatenate([obs, 1.2 * obs])},
                        {"u": np.concatenate([0.1 * t, 0.3 + 0 * t])}, ids=[1] * len(t) + [2] * len(t))
    config = load_config({"method": "forecast", "solver": SOLVERS[solver], "forecast": {
        "history": 1.6, "horizon": 1.5, "stride": 1.0, "estimator": estimator, "hidden": 3}})
    torch.manual_seed(1)
    tr = Trainer(model, data, config)
    with torch.no_grad():  # the head starts at zero (no gradient reaches the encoder's body): move it
        tr.method.estimator.head.weight.normal_(0.0, 0.3)
    return tr


@pytest.mark.parametrize("estimator, solver", [("gru", "rk4"), ("lstm", "rk4"), ("mlp", "rk4"), ("gru", "dopri5")])
def test_the_objectives_gradient_matches_finite_differences(estimator, solver):
    tr = trainer(estimator, solver)
    assert tr.method.windows.size >= 6
    tensors = [p for p in tr.method.estimator.parameters()] + [tr.model.raw_positive]
    loss, _ = tr.method.loss(0.0)
    grads = torch.autograd.grad(loss, tensors)
    generator = torch.Generator().manual_seed(0)
    h = 1e-6
    checked = 0
    for tensor, grad in zip(tensors, grads):
        flat, gflat = tensor.data.view(-1), grad.reshape(-1)
        for i in torch.randperm(flat.numel(), generator=generator)[:3].tolist():
            keep = float(flat[i])
            with torch.no_grad():
                flat[i] = keep + h
                up = float(tr.method.objective(tr.model, "fd"))
                flat[i] = keep - h
                down = float(tr.method.objective(tr.model, "fd"))
                flat[i] = keep
            fd = (up - down) / (2 * h)
            assert abs(float(gflat[i]) - fd) <= 1e-5 * max(1.0, abs(fd)), (tensor.shape, i, float(gflat[i]), fd)
            checked += 1
    assert checked >= 10 and any(float(g.abs().max()) > 1e-4 for g in grads[:-1])


def test_the_heads_centres_and_scales_come_from_the_data_and_the_models_own_states():
    """x (a data column, positive): the mean and sd of the log of its history data; z (0 in every window under the
    initial model): not on a log scale, scale 0.01 (a scale of 0 would leave the encoder unable to move it)."""
    spec = "model M\nparam c = 0.5 positive\nstate x = 1\nstate z = 0\nder x = -c * x + z\nder z = -c * z\n"
    model = compile_text(spec, "m.hode").model_class()()
    t = np.arange(0.0, 4.01, 0.5)
    data = make_dataset(model, t, {"x": np.exp(-0.3 * t)})
    tr = Trainer(model, data, load_config({"method": "forecast", "forecast": {"history": 1.0, "horizon": 1.0,
                                                                               "stride": 1.0, "hidden": 2}}))
    est, w = tr.method.estimator, tr.method.windows
    seen = np.log(w.hist_y[..., 0][w.hist_mask[..., 0]].numpy())
    assert est.log.tolist() == [True, False]
    assert float(est.center[0]) == pytest.approx(seen.mean()) and float(est.scale[0]) == pytest.approx(seen.std())
    assert float(est.center[1]) == 0 and float(est.scale[1]) == pytest.approx(0.01)
    y0 = est(tr.model, w).detach()
    torch.testing.assert_close(y0[:, 0], torch.full((w.size,), float(np.exp(seen.mean())), dtype=y0.dtype))
