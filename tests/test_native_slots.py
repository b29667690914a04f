"""Neural slots in the native (C) solves (hodec/codegen/native_slots.py, hodec/runtime/native.py): each slot's
declared MLP as C, against the generated torch forward (every activation, softplus outputs, function slots called
in lets and inside another call's arguments, residual slots reading t and an input), the derivatives by
differences against torch.func.jacrev, whole solves against the torch solvers, per-member params with slots, and
the solves that must stay on the torch solvers (a user's network in a slot, weights that need gradients)."""
from __future__ import annotations

import ctypes

import pytest
import torch

from hodec.compiler import compile_source, load_source
from hodec.runtime.native import weights
from hodec.runtime.neural import ACTIVATIONS
from hodec.solvers.native import library

f64 = torch.float64
NAMES = sorted(ACTIVATIONS)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HODEC_CACHE", str(tmp_path / "native"))


def every_activation_spec() -> str:
    """One function slot per activation (the odd ones with a softplus output), summed into dx/dt, called with
    arguments that read t, an input, a param, another slot's value or only numbers; a residual slot of two
    hidden layers reading a state, t and the input."""
    lines = ["model EveryActivation", "param k = 0.7", "input drive", "state x = 0.5", "state v = -0.3"]
    calls = []
    for j, name in enumerate(NAMES):
        lines.append(f"neural g{j}(a, b) hidden 3 activation {name}{' positive' if j % 2 else ''}")
        calls.append(f"g{j}(x * k - t / 3, v + drive)")
    lines.append("let nested = g0(g1(x, v), t) + g2(2, -0.5)")  # a call on numbers: SymPy calls it a number
    lines.append(f"der x = {' + '.join(calls)} + nested")
    lines.append("neural r(x, t, drive) -> v hidden 4 5 activation tanh")
    lines.append("der v = -k * v")
    return "\n".join(lines) + "\n"


def build(source: str):
    module = load_source(compile_source(source, "slots.hode"), "hodec_test_native_slots_" + str(abs(hash(source))))
    model = module().double()
    torch.manual_seed(3)
    with torch.no_grad():  # weights of order one, so that every activation's nonlinear region is reached
        for w in model.parameters():
            w.normal_()
    return model


def call(model, t: float, y: torch.Tensor, u: torch.Tensor, du: torch.Tensor):
    n = len(model.state_names)
    p = torch.cat([model.parameter_values().detach(), weights(model)]).contiguous()
    dy, J, df = torch.empty(n, dtype=f64), torch.full((n, n), float("nan"), dtype=f64), torch.empty(n, dtype=f64)
    args = [y.contiguous(), p, u.contiguous(), du.contiguous(), dy, J, df]
    library(model.native_source).hodec_eval(t, *(ctypes.c_void_p(a.data_ptr()) for a in args))
    return dy, J, df


def test_every_activation_and_call_form_against_the_torch_forward():
    model = build(every_activation_spec())
    assert model.native_unsupported is None and "hodec_m_act_gelu_tanh" in model.native_source
    times = torch.linspace(0, 4, 5, dtype=f64)
    values = torch.tensor([0.3, -1.2, 2.0, 0.1, -0.4], dtype=f64)
    model.set_inputs({"drive": (times, values)})
    t = 1.5  # inside the samples [1, 2]: drive = 0.8, its slope 3.2
    u, du = torch.tensor([-1.2 + 0.5 * 3.2], dtype=f64), torch.tensor([3.2], dtype=f64)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        y = torch.randn(2, generator=g, dtype=f64) * 2
        dy, J, df = call(model, t, y, u, du)
        tt = torch.tensor(t, dtype=f64)
        with torch.no_grad():
            want = model.forward(tt, y)
        torch.testing.assert_close(dy, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(J, torch.func.jacrev(lambda s: model.forward(tt, s))(y).detach(),
                                   rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(df, torch.func.jacrev(lambda s: model.forward(s, y))(tt).detach(),
                                   rtol=1e-6, atol=1e-7)


def test_each_activation_matches_torch_far_into_its_tails():
    """The C of every activation at points around its kinks and thresholds (softplus's 20, the shrinks' 0.5,
    hard* at -3 and 3): a state per activation, each the output of a one-unit MLP that is the identity around it."""
    spec = "model Each\n" + "".join(f"state x{j} = 0\nneural f{j}(x{j}) -> x{j} hidden 1 activation {name}\n"
                                    for j, name in enumerate(NAMES))
    model = build(spec)
    with torch.no_grad():
        for slot in model.slot_modules:
            first, _, last = slot.net
            first.weight.fill_(1), first.bias.zero_(), last.weight.fill_(1), last.bias.zero_()
    xs = [-30.0, -3.0, -2.5, -0.5, -0.25, 0.0, 0.3, 0.5, 0.75, 2.9, 3.0, 6.5, 19.9, 20.1, 40.0]
    zero = torch.zeros(1, dtype=f64)
    for x in xs:
        dy, _, _ = call(model, 0.0, torch.full((len(NAMES),), x, dtype=f64), zero, zero)
        for j, name in enumerate(NAMES):
            want = ACTIVATIONS[name]()(torch.tensor(x, dtype=f64))
            torch.testing.assert_close(dy[j], want, rtol=1e-14, atol=1e-15, msg=f"{name} at {x}")


LV = """model LV
param a = 1.3 positive
state x = 1.0
state y = 0.8
neural f(x, y) -> x, y hidden 16 activation tanh
der x = a * x - x * y
der y = x * y - y
"""


def test_solves_agree_with_the_torch_solvers_with_per_member_params():
    model = build(LV)
    ts = torch.linspace(0, 5, 26, dtype=f64)
    a = torch.tensor([0.6, 1.0, 1.4], dtype=f64)
    y0 = torch.tensor([[1.0, 0.8], [0.7, 0.9], [1.2, 0.5]], dtype=f64)
    with torch.no_grad():
        for w in model.slot_modules.parameters():
            w.mul_(0.05)  # a correction, not the whole field: the solution stays bounded
        model.a = a
        reference = model.simulate(ts, y0=y0, method="dopri5", rtol=1e-12, atol=1e-14, native=False)
        for method in ("tsit5", "rodas5p"):
            native = model.simulate(ts, y0=y0, method=method, rtol=1e-10, atol=1e-12, native=True)
            torch.testing.assert_close(native, reference, rtol=1e-7, atol=1e-9)
    assert reference[-1].std(0).min() > 0.05  # the members differ


def test_a_user_network_or_weights_that_need_gradients_stay_on_the_torch_solvers():
    model = build(LV)
    ts = torch.linspace(0, 0.1, 3, dtype=f64)  # (order-one random weights: this field blows up by t = 0.75)
    for w in model.parameters():
        w.requires_grad_(False)
    model.slot_modules[0].net[0].bias.requires_grad_(True)  # one weight the caller trains
    with pytest.raises(Exception, match="gradients are needed \\(neural slot 'f' requires grad\\)"):
        model.simulate(ts, native=True)
    with torch.no_grad():
        model.simulate(ts, native=True)  # without gradients it goes native
    model.slot_modules[0].net = torch.nn.Sequential(torch.nn.Linear(2, 2)).double()
    with torch.no_grad(), pytest.raises(Exception, match="neural slot 'f' holds a network other than its declared"):
        model.simulate(ts, native=True)
    model = build(LV)
    model.slot_modules[0].net[1] = torch.nn.ReLU()  # the factory MLP with another activation swapped in
    with torch.no_grad(), pytest.raises(Exception, match="neural slot 'f' holds a network other"):
        model.simulate(ts, native=True)
