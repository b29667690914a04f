"""The glucose benchmark's own pieces: its metrics against hand computation, its scaled MNODE spec keeping the
expert's interaction graph of specs/uva_padova.hode, and its state estimator against the closed-form MAP of a
linear-Gaussian model."""
import numpy as np
import pytest

from benchmarks.glucose import compare as C  # python -m pytest puts the repo root on sys.path
from hodec.compiler import symbolic
from hodec.graph.extract import interaction_graph


class _Day:
    def __init__(self, cgm):
        self.cgm = np.asarray(cgm, dtype=float)


def test_metrics_against_hand_computation():
    horizon = np.arange(C.HORIZON, dtype=float)
    true_a = 100 + 10 * horizon  # rises to 210: a post-meal peak (> 180)
    true_b = np.full(C.HORIZON, 60.0)  # hypoglycaemic, no peak
    day_a = _Day(np.concatenate([np.zeros(C.HISTORY), true_a]))
    day_b = _Day(np.concatenate([np.zeros(C.HISTORY), true_b]))
    pred = np.stack([true_a - 20, true_b + 15], 1)  # [12, 2]: a 20 low everywhere, b 15 high everywhere
    m = C.metrics(pred, [(day_a, 0), (day_b, 0)])
    assert m["rmse"] == pytest.approx(np.sqrt((20 ** 2 + 15 ** 2) / 2))
    assert m["peak_rmse"] == pytest.approx(20.0)  # only window a peaks above 180
    # classes: a true 100..210, predicted 80..190 -> hyper (>180) only where true > 180 and pred > 180
    true_cls = np.digitize(true_a, [70, 180 + 1e-9])
    pred_cls = np.digitize(true_a - 20, [70, 180 + 1e-9])
    agree_a = (true_cls == pred_cls).sum()
    agree_b = 0  # b: true 60 (hypo), predicted 75 (normal)
    assert m["accuracy"] == pytest.approx((agree_a + agree_b) / (2 * C.HORIZON))
    assert m["accuracy_hypo"] == 0.0
    assert m["accuracy_hyper"] == pytest.approx(((true_cls == 2) & (pred_cls == 2)).sum() / (true_cls == 2).sum())
    diverged = pred.copy()
    diverged[3, 1] = np.nan
    assert C.metrics(diverged, [(day_a, 0), (day_b, 0)])["diverged"] == 1


def test_scaled_mnode_keeps_the_expert_graph():
    expert = interaction_graph(symbolic(C.SPEC.read_text(), "uva_padova.hode"))
    scaled = interaction_graph(symbolic(C.scaled_mnode(), "mnode.hode"))
    assert set(scaled.edges) == set(expert.edges)
    assert set(scaled.nodes) == set(expert.nodes)


LINEAR = """model Linear
input meal
state A = 1
state B = 2
der A = -0.05 * A + 0.02 * B + meal
der B = -0.03 * B
observe CGM = 120 + 50 * A - 30 * B
"""


def test_state_estimator_is_the_linear_gaussian_map():
    """On a linear model with a linear observation the MAP state is closed-form: history = c + H S z (c the
    response from basal to the inputs, H the responses to unit initial states, here from scipy's solve_ivp, S
    the state scales); z* solves (S H^T H S / s^2 + P^-1) z = S H^T (y - c) / s^2 + P^-1 mu."""
    import torch
    from scipy.integrate import solve_ivp

    from hodec.compiler import load_text
    from hodec.runtime.signals import Signal

    rng = np.random.default_rng(3)
    tau = np.arange(C.HISTORY + C.HORIZON) * 5.0
    meal = np.abs(rng.normal(0.02, 0.02, (len(tau), 3)))  # three windows
    basal, scale = np.array([1.0, 2.0]), np.array([2.0, 0.5])
    mean, cov = np.array([0.3, -0.2]), np.array([[0.5, 0.1], [0.1, 0.2]])

    def response(y0, inputs):  # CGM over the history, exact solution of the linear ODE
        f = lambda t, y: [-0.05 * y[0] + 0.02 * y[1] + np.interp(t, tau, inputs), -0.03 * y[1]]  # noqa: E731
        y = solve_ivp(f, (0, tau[C.HISTORY - 1]), y0, t_eval=tau[:C.HISTORY], rtol=1e-10, atol=1e-10).y
        return 50 * y[0] - 30 * y[1]

    H = np.stack([response(e, 0 * tau) for e in np.eye(2)], 1)  # [42, 2]
    z_true = rng.multivariate_normal(mean, cov, 3)
    model = load_text(LINEAR, "linear.hode")().double()
    model.set_inputs({"meal": Signal(torch.tensor(tau), torch.tensor(meal)[..., None])})
    hist, expected = [], []
    for b in range(3):
        c = 120 + response(basal, meal[:, b])
        y = c + H @ (scale * z_true[b]) + rng.normal(0, C.NOISE_MG_DL, C.HISTORY)
        hs = H * scale
        lhs = hs.T @ hs / C.NOISE_MG_DL ** 2 + np.linalg.inv(cov)
        expected.append(np.linalg.solve(lhs, hs.T @ (y - c) / C.NOISE_MG_DL ** 2 + np.linalg.solve(cov, mean)))
        hist.append(y)
    fc = C.Forecaster(C.View(1.0, {}, True), {"method": "rk4", "step_size": 1.0},
                      torch.tensor(scale), (torch.tensor(mean), torch.tensor(cov)))
    with torch.no_grad():
        z = C.estimate_state(model, fc, torch.tensor(tau), torch.tensor(np.array(hist)))
    np.testing.assert_allclose(z.numpy(), np.array(expected), atol=1e-4)
    assert not np.allclose(np.array(expected), mean, atol=0.05)  # the data moved the estimate off the prior
