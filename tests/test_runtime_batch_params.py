"""Per-sample parameters: a param with batch dimensions gives each batch member its own value (issue 15, item 1).
References: each member solved alone, scipy's solve_ivp on hand-written vector fields, finite differences."""
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import hodec
from hodec.compiler import load_text
from hodec.errors import HodecError

LV = "specs/lotka_volterra.hode"
SIR = "specs/sir.hode"
DECAY = """
model Decay
param k = 0.5
param x0 = 2.0 fixed
state x = x0
reaction decay: x -> 0 ; k * x
observe level = x
"""
TS = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-12)


def model(spec, **values):
    cls = load_text(spec, "decay.hode") if "\n" in spec else hodec.load(spec)
    return cls(**values).double()


def lv_scipy(a, b, c, d, y0):
    def f(_, z):
        x, y = z
        return [a * x - b * x * y, c * x * y - d * y]
    return solve_ivp(f, (0.0, 3.0), y0, method="DOP853", t_eval=TS.numpy(), rtol=1e-12, atol=1e-12).y.T


def test_lv_per_sample_rate_matches_scipy_and_each_member_alone():
    a = torch.linspace(0.5, 1.5, 8, dtype=torch.float64)
    m = model(LV, a=a)
    ys = m.simulate(TS, **TIGHT)
    assert ys.shape == (7, 8, 2)
    for i in range(8):
        alone = model(LV, a=float(a[i])).simulate(TS, **TIGHT)
        torch.testing.assert_close(ys[:, i], alone, rtol=1e-9, atol=1e-10)
        ref = lv_scipy(float(a[i]), 0.9, 0.8, 1.8, [0.44249296, 4.6280594])
        np.testing.assert_allclose(ys[:, i].detach().numpy(), ref, rtol=1e-7, atol=1e-8)


def test_decay_free_and_fixed_per_sample_match_the_closed_form():
    k = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    x0 = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    m = model(DECAY, k=k, x0=x0)
    torch.testing.assert_close(m.initial_state(), x0[:, None])
    ys = m.simulate(TS, **TIGHT)
    ref = x0 * torch.exp(-k * TS[:, None])
    torch.testing.assert_close(ys[..., 0], ref, rtol=1e-8, atol=1e-10)


def test_sir_every_kind_per_sample_with_batched_initial_state():
    torch.manual_seed(0)
    beta = torch.tensor([0.2, 0.3, 0.4, 0.5], dtype=torch.float64)  # positive
    gamma = torch.tensor([0.05, 0.1, 0.2, 0.4], dtype=torch.float64)  # bounded
    n = torch.tensor([500.0, 1000.0, 2000.0, 4000.0], dtype=torch.float64)  # fixed, read by the initial state
    m = model(SIR, beta=beta, gamma=gamma, N=n)
    y0 = m.initial_state(batch=(4,))
    ys = m.simulate(TS, **TIGHT)
    obs = m.observe(ys)
    for i in range(4):
        alone = model(SIR, beta=float(beta[i]), gamma=float(gamma[i]), N=float(n[i]))
        alone.load_state_dict({k: v for k, v in m.state_dict().items() if k.startswith("slot")}, strict=False)
        torch.testing.assert_close(y0[i], alone.initial_state())
        torch.testing.assert_close(ys[:, i], alone.simulate(TS, **TIGHT), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(obs[:, i], alone.observe(alone.simulate(TS, **TIGHT)), rtol=1e-9, atol=1e-8)
    assert m.params()["gamma"].shape == (4,) and isinstance(m.params()["I0"], float)


def test_forward_on_a_batch_and_the_table_call():
    table = torch.tensor([[1.0, 0.9, 0.8, 1.8], [1.3, 0.5, 0.7, 1.0], [0.7, 1.1, 0.6, 2.0]], dtype=torch.float64)
    m = model(LV)
    m.set_params_table(table)  # columns in param_names order: a, b, c, d
    y = torch.tensor([[1.0, 2.0], [0.5, 0.3], [2.0, 1.0]], dtype=torch.float64)
    dy = m(torch.tensor(0.0), y)
    a, b, c, d = table.T
    x_, y_ = y.T
    torch.testing.assert_close(dy, torch.stack([a * x_ - b * x_ * y_, c * x_ * y_ - d * y_], -1))
    m.set_params({"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8})  # plain numbers: shared again
    assert m.param_batch_shape() == () and m.parameter_values().shape == (4,)


def test_gradients_reach_each_member_value():
    a = torch.tensor([0.6, 1.0, 1.4], dtype=torch.float64)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def loss(m):
        return (m.simulate(TS, **TIGHT)[-1, ..., 0] * weights).sum()

    m = model(LV, a=a)
    loss(m).backward()
    grad_a = m.batch_raw.grad[:, 0] / a  # a is positive: trained as log a
    for i in range(3):
        h = 1e-6
        up, down = a.clone(), a.clone()
        up[i] += h
        down[i] -= h
        fd = (loss(model(LV, a=up)) - loss(model(LV, a=down))).detach() / (2 * h)
        assert float(grad_a[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
    assert m.raw_positive.grad is not None  # the shared params b, c, d still train


def test_shape_errors_name_the_params():
    with pytest.raises(HodecError, match=r"'a' \[3\].*'b' \[4\]"):
        model(LV, a=torch.ones(3), b=torch.ones(4))
    m = model(LV, a=torch.linspace(0.5, 1.5, 3))
    with pytest.raises(HodecError, match=r"\[4\].*\[3\] \(a\)"):
        m.simulate(TS, y0=torch.ones(4, 2))
    with pytest.raises(HodecError, match=r"\[5\].*\[3\] \(a\)"):
        m.initial_state(batch=(5,))
    with pytest.raises(HodecError, match=r"'a' is positive.*-1.0 at batch index \[1\]"):
        model(LV, a=torch.tensor([1.0, -1.0]))
    with pytest.raises(HodecError, match=r"shape \(2, 3\).*\[\*batch, 4\]"):
        model(LV).set_params_table(torch.ones(2, 3))
