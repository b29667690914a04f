"""Gradients of generated models: torch.autograd.gradcheck (float64) of the vector field and the observables with
respect to the states, every trainable raw parameter and every slot weight; and, for a simulate loss, a non-zero
finite gradient on every trainable parameter (of a small hybrid model and of every example spec)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

import hodec
from hodec.compiler import load_source

SPEC_DIR = Path(__file__).resolve().parent.parent / "specs"

# Every kind of trainable quantity: a free, a positive and a bounded param, a fixed one (not trainable), an input,
# a residual slot (with an input among its arguments) and a positive scalar function slot called in a let.
HYBRID = """
model Hybrid "SIR with a learned contact function and a residual correction"
param beta = 0.4 positive
param gamma = 0.2 in (0.05, 0.9)
param shift = 0.1
param N = 10 fixed
input u
state S = N - 1
state I = 1
state R = 0
let force = beta * I / N * contact(S / N, u)
reaction infection: S + I -> 2 I ; force * S
reaction recovery: I -> R ; gamma * I + shift * u * I
neural contact(s, v) hidden 5 positive
neural resid(S, I, u) -> S, I hidden 4 activation tanh
observe prevalence = I / N
observe pressure = force * sqrt(S + 1)
"""


def hybrid(seed=0):
    torch.manual_seed(seed)
    cls = load_source(hodec.compile_source(HYBRID, "hybrid.hode"), "hodec_test_gradients_hybrid")
    m = cls().double()
    m.set_inputs({"u": ([0.0, 1.0, 2.0, 4.0], [0.5, 1.5, 0.2, 0.8])})
    return m


def trainable(m):
    """(name, parameter) of everything an optimizer would train: raw params and slot weights, not fixed ones."""
    return [(n, p) for n, p in m.named_parameters() if p.requires_grad and p.numel() > 0]


def random_states(n):
    g = torch.Generator().manual_seed(3)
    return (torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor([9.0, 5.0, 4.0])
            + 0.5).requires_grad_()


def test_trainable_set_is_raw_params_and_slot_weights():
    m = hybrid()
    names = {n for n, _ in trainable(m)}
    assert {"raw_free", "raw_positive", "raw_bounded"} <= names
    assert any(n.startswith("slot_modules.0.") for n in names) and any(n.startswith("slot_modules.1.") for n in names)
    assert "fixed_values" not in names and "fixed_values" in dict(m.named_buffers())
    assert m.raw_free.numel() == m.raw_positive.numel() == m.raw_bounded.numel() == 1
    assert all(p.dtype == torch.float64 for _, p in trainable(m))


def test_gradcheck_forward_wrt_states():
    m = hybrid()
    t = torch.tensor(1.3, dtype=torch.float64)
    assert gradcheck(lambda y: m(t, y), (random_states(4),))
    assert gradcheck(lambda y: m(t, y), (random_states(1)[0].detach().requires_grad_(),))


def test_gradcheck_observables_wrt_states():
    m = hybrid()
    ts = torch.tensor([0.0, 0.7, 2.5], dtype=torch.float64)
    ys = random_states(6).detach().reshape(3, 2, 3).requires_grad_()
    assert gradcheck(lambda y: m.observe(y, ts), (ys,))


def _functional(m, names, fn):
    """A function of the given parameter tensors: fn(m) with m's named parameters replaced by them."""
    class Wrapper(torch.nn.Module):  # functional_call swaps parameters for one forward() call
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self):
            return fn(self.inner)

    wrapper = Wrapper(m)

    def call(*tensors):
        return functional_call(wrapper, {f"inner.{n}": x for n, x in zip(names, tensors)}, ())
    return call


@pytest.mark.parametrize("which", ["raw", "slots", "all"])
def test_gradcheck_forward_wrt_parameters(which):
    m = hybrid()
    t = torch.tensor(2.2, dtype=torch.float64)
    y = random_states(3).detach()
    chosen = [(n, p) for n, p in trainable(m)
              if which == "all" or (which == "raw") == n.startswith("raw_")]
    assert chosen
    names = [n for n, _ in chosen]
    inputs = tuple(p.detach().clone().requires_grad_() for _, p in chosen)
    fn = _functional(m, names, lambda mod: mod(t, y))
    # the wrapper really uses the given tensors: perturbing one changes the output
    base = fn(*inputs).detach()
    bumped = fn(*(x + 0.1 for x in inputs)).detach()
    assert not torch.equal(base, bumped)
    assert gradcheck(fn, inputs)


def test_gradcheck_observables_wrt_raw_parameters():
    m = hybrid()
    ts = torch.tensor([0.3, 1.1], dtype=torch.float64)
    ys = random_states(4).detach().reshape(2, 2, 3)
    chosen = trainable(m)
    fn = _functional(m, [n for n, _ in chosen], lambda mod: mod.observe(ys, ts))
    assert gradcheck(fn, tuple(p.detach().clone().requires_grad_() for _, p in chosen))


def test_gradcheck_simulate_fixed_step():
    """Through the solver: a fixed-step RK4 trajectory is a smooth function of every trainable parameter."""
    m = hybrid()
    ts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    chosen = trainable(m)
    fn = _functional(m, [n for n, _ in chosen],
                     lambda mod: mod.simulate(ts, method="rk4", step_size=0.25))
    assert gradcheck(fn, tuple(p.detach().clone().requires_grad_() for _, p in chosen))


def _assert_all_grads_nonzero_finite(m):
    for name, p in trainable(m):
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient {p.grad}"
        assert (p.grad != 0).all(), f"{name}: zero gradient entries at {torch.nonzero(p.grad == 0).tolist()}"


def test_simulate_loss_gives_every_parameter_a_gradient():
    m = hybrid()
    ts = torch.linspace(0.0, 4.0, 9, dtype=torch.float64)
    ys = m.simulate(ts)
    obs = m.observe(ys, ts)
    loss = ((obs - 0.3) ** 2).mean() + ys[-1].pow(2).mean()
    loss.backward()
    _assert_all_grads_nonzero_finite(m)


INPUTS = {"bergman": {"meal": ([0.0, 30.0, 60.0], [0.0, 6.0, 0.0]), "insulin": ([0.0], [0.3])},
          "pk_two_compartment": {"infusion": ([0.0, 2.0], [50.0, 0.0], "previous")},
          "uva_padova": {"meal": ([0.0, 0.5, 1.5], [5.0, 5.0, 0.0], "previous"),
                         "insulin": ([0.0, 1.0], [1.0, 0.02], "previous"),
                         "Dbar": ([0.0, 1.0], [5000.0, 10000.0], "previous")}}


@pytest.mark.parametrize("spec", sorted(SPEC_DIR.glob("*.hode")), ids=lambda p: p.stem)
def test_example_simulate_loss_gives_every_parameter_a_gradient(spec):
    torch.manual_seed(0)
    m = hodec.load(spec)().double()
    m.set_inputs(INPUTS.get(spec.stem, {}))
    ts = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    ys = m.simulate(ts, rtol=1e-7, atol=1e-9)
    obs = m.observe(ys, ts)
    loss = obs.pow(2).mean() + ys.pow(2).mean()
    if m.noise_table:  # params only the noise models read (sigma) train through the likelihood
        loss = loss + m.noise_scale(ts[:, None], ys, obs).pow(2).mean()
    loss.backward()
    assert trainable(m), "every example has something to train"
    _assert_all_grads_nonzero_finite(m)
