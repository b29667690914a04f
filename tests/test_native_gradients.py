"""Gradients of native solves (hodec/solvers/native/sensitivity.py, runtime/native.py's Sensitivities): forward
sensitivities against the closed form of a decay, central finite differences of the native solve, the torch
solvers' backpropagation, per-member params, float32 models, inputs, and the solves that must leave them to the
torch solvers (stiff under `auto`, neural slots, a time grid that requires grad)."""
from __future__ import annotations

import math

import pytest
import torch

import hodec
from hodec.compiler import compile_source, load_source
from hodec.solvers.errors import StiffnessDetected

f64 = torch.float64
SPECS = "specs"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HODEC_CACHE", str(tmp_path / "native"))


def model_of(source: str, name: str):
    return load_source(compile_source(source, f"{name}.hode"), f"hodec_test_native_gradients_{name}")().double()


DECAY = "model Decay\nparam k = 0.7 positive\nstate x = 2.0\nder x = -k * x\n"


def test_decay_against_its_closed_form():
    m = model_of(DECAY, "decay")
    ts = torch.linspace(0, 3, 7, dtype=f64)
    y0 = torch.tensor([2.0], dtype=f64, requires_grad=True)
    ys = m.simulate(ts, y0=y0, method="dopri5", rtol=1e-12, atol=1e-14, native=True)
    weights = torch.linspace(1, 2, 7, dtype=f64)
    (weights * ys[:, 0]).sum().backward()
    k = m.parameter_values()[0].item()
    d_k = sum(w * -t * 2.0 * math.exp(-k * t) for w, t in zip(weights.tolist(), ts.tolist()))  # d/dk
    d_x0 = sum(w * math.exp(-k * t) for w, t in zip(weights.tolist(), ts.tolist()))
    raw = next(m.parameters())  # k = exp(raw): d/draw = k d/dk
    assert raw.grad.item() == pytest.approx(k * d_k, rel=1e-9)
    assert y0.grad.item() == pytest.approx(d_x0, rel=1e-9)


def lv():
    return hodec.compile(f"{SPECS}/lotka_volterra.hode").model_class()().double()


def loss(m, ts, y0=None, native=None, **kw):
    ys = m.simulate(ts, y0=y0, native=native, **kw)
    return (ys * torch.linspace(0.5, 1.5, ys.shape[-1], dtype=ys.dtype)).square().sum()


def test_lotka_volterra_against_finite_differences_and_torch_backprop():
    m = lv()
    ts = torch.linspace(0, 8, 41, dtype=f64)
    y0 = torch.tensor([1.0, 0.5], dtype=f64, requires_grad=True)
    raw = next(m.parameters())
    value = loss(m, ts, y0, native=True, rtol=1e-11, atol=1e-13)
    g_raw, g_y0 = torch.autograd.grad(value, [raw, y0])
    with torch.no_grad():  # central differences of the native solve without sensitivities
        for j in range(raw.numel()):
            h = 1e-6
            raw[j] += h
            up = loss(m, ts, y0, native=True, rtol=1e-12, atol=1e-14)
            raw[j] -= 2 * h
            down = loss(m, ts, y0, native=True, rtol=1e-12, atol=1e-14)
            raw[j] += h
            assert g_raw[j].item() == pytest.approx(((up - down) / (2 * h)).item(), rel=1e-5)
        for j in range(2):
            e = torch.zeros(2, dtype=f64)
            e[j] = 1e-6
            fd = (loss(m, ts, y0 + e, native=True, rtol=1e-12, atol=1e-14)
                  - loss(m, ts, y0 - e, native=True, rtol=1e-12, atol=1e-14)) / 2e-6
            assert g_y0[j].item() == pytest.approx(fd.item(), rel=1e-5)
    reference = loss(m, ts, y0, native=False, method="tsit5", rtol=1e-11, atol=1e-13)
    r_raw, r_y0 = torch.autograd.grad(reference, [raw, y0])
    torch.testing.assert_close(g_raw, r_raw, rtol=1e-7, atol=0)
    torch.testing.assert_close(g_y0, r_y0, rtol=1e-7, atol=0)


def test_per_member_params_and_float32():
    m = lv()
    ts = torch.linspace(0, 5, 21, dtype=f64)
    m.set_params({"a": [1.0, 1.3, 1.6]})  # per member, trained through batch_raw
    y0 = torch.tensor([[1.0, 0.5], [0.8, 0.6], [1.2, 0.4]], dtype=f64)
    trained = list(m.parameters())
    assert any(p is m.batch_raw for p in trained)
    got, want = (torch.autograd.grad(loss(m, ts, y0, native=native, method="tsit5", rtol=1e-11, atol=1e-13), trained)
                 for native in (True, False))
    for g, w in zip(got, want):
        assert g.abs().max() > 0
        torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9)
    m32, m64 = lv().float(), lv()
    g32, = torch.autograd.grad(loss(m32, ts.float(), native=True, rtol=1e-9, atol=1e-11), [next(m32.parameters())])
    g64, = torch.autograd.grad(loss(m64, ts, native=True, rtol=1e-9, atol=1e-11), [next(m64.parameters())])
    assert g32.dtype == torch.float32
    torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=1e-4)


def test_inputs_and_the_paths_that_stay_on_torch():
    pk = hodec.compile(f"{SPECS}/pk_two_compartment.hode").model_class()().double()
    pk.set_inputs({"infusion": (torch.tensor([0.0, 1.0, 1.0001, 24.0], dtype=f64),
                                torch.tensor([100.0, 100.0, 0.0, 0.0], dtype=f64))})
    ts = torch.linspace(0, 24, 25, dtype=f64)
    raw = [p for p in pk.parameters()]
    g_native = torch.autograd.grad(loss(pk, ts, native=True, rtol=1e-10, atol=1e-12), raw)
    g_torch = torch.autograd.grad(loss(pk, ts, native=False, method="tsit5", rtol=1e-10, atol=1e-12), raw)
    for g, w in zip(g_native, g_torch):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-9)
    robertson = model_of("model Rob\nparam k1 = 0.04 positive\nparam k2 = 3e7 positive\nparam k3 = 1e4 positive\n"
                         "state a = 1\nstate b = 0\nstate c = 0\nreaction r1: a -> b ; k1 * a\n"
                         "reaction r2: 2 b -> b + c ; k2 * b^2\nreaction r3: b + c -> a + c ; k3 * b * c\n", "rob")
    ts = torch.tensor([0.0, 1.0, 100.0], dtype=f64)
    with pytest.raises(StiffnessDetected):
        robertson.simulate(ts, native=True, rtol=1e-6, atol=1e-10)
    ys = robertson.simulate(ts, rtol=1e-6, atol=1e-10)  # auto: the torch solvers' rodas5p, with gradients
    assert ys.requires_grad and abs(ys[-1].sum().item() - 1) < 1e-6
    slots = hodec.compile(f"{SPECS}/sir.hode").model_class()().double()
    with pytest.raises(hodec.HodecError, match="neural slot 'correction' requires grad"):
        slots.simulate(torch.linspace(0, 1, 3, dtype=f64), native=True)
    slots.slot_modules.requires_grad_(False)  # the params alone: still a model with slots
    with pytest.raises(hodec.HodecError, match="native sensitivities do not differentiate neural slots"):
        slots.simulate(torch.linspace(0, 1, 3, dtype=f64), native=True)
    assert slots.simulate(torch.linspace(0, 1, 3, dtype=f64)).requires_grad  # auto: the torch solvers
    with pytest.raises(hodec.HodecError, match="the time grid requires grad"):
        lv().simulate(torch.linspace(0, 1, 3, dtype=f64, requires_grad=True), native=True)


def test_a_second_derivative_is_the_torch_solvers_not_a_silent_zero():
    """create_graph=True (a Hessian, as hodec fit's standard errors take it): the backward solves again on the
    torch solvers; against the closed form of the decay's d2/d(log k)2."""
    m = model_of(DECAY, "decay2")
    ts = torch.linspace(0, 3, 7, dtype=f64)
    raw = next(m.parameters())
    value = m.simulate(ts, method="tsit5", rtol=1e-12, atol=1e-14)[:, 0].sum()
    first, = torch.autograd.grad(value, raw, create_graph=True)
    second, = torch.autograd.grad(first.sum(), raw)
    k = m.parameter_values()[0].item()
    d1 = sum(-t * 2.0 * math.exp(-k * t) for t in ts.tolist())
    d2 = sum(t * t * 2.0 * math.exp(-k * t) for t in ts.tolist())
    assert first.item() == pytest.approx(k * d1, rel=1e-8)
    assert second.item() == pytest.approx(k * d1 + k * k * d2, rel=1e-6)
