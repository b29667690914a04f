"""torchdiffeq's odeint_adjoint on generated models, called as a torchdiffeq user writes it, gives the gradients
that backpropagating through odeint gives. Models have kinds of trainable vectors with no entries (no free
param, no bounded param, no gates): those must not be parameters of size 0, which the adjoint cannot flatten."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchdiffeq

import hodec

SPEC_DIR = Path(__file__).resolve().parent.parent / "specs"

CASES = [  # spec, compiled with gates, input bindings
    ("michaelis_menten.hode", False, {}),  # positive params only
    ("sir.hode", False, {}),  # a neural slot, positive, bounded and fixed params
    ("lotka_volterra.hode", True, {}),  # sparsity gates
    ("pk_two_compartment.hode", False, {"infusion": ([0.0, 0.5, 1.0], [3.0, 0.0, 1.0], "previous")}),
]


def _model(spec, gates, inputs):
    torch.manual_seed(0)
    m = hodec.load(SPEC_DIR / spec, gates=gates)().double()
    m.set_inputs(inputs)
    with torch.no_grad():  # gates away from 1 and params away from their defaults: no accidental symmetry
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def _gradients(m, solve):
    y0 = m.initial_state().detach()
    ts = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    ys = solve(m, y0, ts, rtol=1e-10, atol=1e-10)
    (ys.square() * torch.linspace(1.0, 2.0, ys.shape[-1], dtype=torch.float64)).sum().backward()
    return {name: p.grad.clone() for name, p in m.named_parameters()}


@pytest.mark.parametrize("spec, gates, inputs", CASES, ids=[c[0] + (" gated" if c[1] else "") for c in CASES])
def test_odeint_adjoint_matches_backprop(spec, gates, inputs):
    m = _model(spec, gates, inputs)
    adjoint = _gradients(m, torchdiffeq.odeint_adjoint)  # failed with "setStorage: sizes [] ..." on size-0 params
    m.zero_grad(set_to_none=True)
    backprop = _gradients(m, torchdiffeq.odeint)
    assert adjoint.keys() == backprop.keys() and backprop
    for name in backprop:
        torch.testing.assert_close(adjoint[name], backprop[name], rtol=1e-6, atol=1e-9, msg=name)
    if gates:
        assert "gate_weights" in backprop and backprop["gate_weights"].abs().sum() > 0


def test_empty_vectors_are_attributes_not_parameters_and_old_checkpoints_load():
    m = hodec.load(SPEC_DIR / "michaelis_menten.hode")()
    assert m.raw_free.numel() == m.raw_bounded.numel() == m.gate_weights.numel() == 0
    assert {"raw_free", "raw_bounded", "gate_weights"}.isdisjoint(dict(m.named_parameters()))
    assert [p.numel() for p in m.mechanistic_parameters()] == [0, 5, 0]
    m.double()
    assert m.raw_free.dtype == m.gate_weights.dtype == torch.float64
    # a checkpoint written when these were parameters of size 0 still loads strictly
    old = {**m.state_dict(), "raw_free": torch.zeros(0), "raw_bounded": torch.zeros(0), "gate_weights": torch.ones(0)}
    old["raw_positive"] = torch.full((5,), 0.25, dtype=torch.float64)
    m.load_state_dict(old)
    assert torch.equal(m.raw_positive.detach(), old["raw_positive"])


def _simulate(adjoint: bool):
    def solve(m, y0, ts, **tol):
        return m.simulate(ts, y0=y0, adjoint=adjoint, **tol)
    return solve


@pytest.mark.parametrize("spec, gates, inputs", CASES, ids=[c[0] + (" gated" if c[1] else "") for c in CASES])
def test_simulate_with_hodecs_adjoint_matches_backprop(spec, gates, inputs):
    """m.simulate(ts, adjoint=True): hodec.solvers.solve_adjoint over every trainable tensor of the model."""
    m = _model(spec, gates, inputs)
    adjoint = _gradients(m, _simulate(True))
    m.zero_grad(set_to_none=True)
    backprop = _gradients(m, _simulate(False))
    assert adjoint.keys() == backprop.keys() and backprop
    for name in backprop:
        torch.testing.assert_close(adjoint[name], backprop[name], rtol=1e-6, atol=1e-9, msg=name)


def test_simulate_adjoint_reaches_per_sample_params():
    """A per-sample param trains through batch_raw, one row per member: the adjoint's member_params."""
    m = _model("lotka_volterra.hode", False, {})
    m.set_params({m.param_names[0]: torch.linspace(0.5, 1.5, 3, dtype=torch.float64)})
    y0 = m.initial_state(batch=(3,)).detach()
    ts = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    grads = []
    for adjoint in (True, False):
        m.zero_grad(set_to_none=True)
        m.simulate(ts, y0=y0, rtol=1e-10, atol=1e-10, adjoint=adjoint).square().sum().backward()
        grads.append(m.batch_raw.grad.clone())
    assert grads[1].abs().min() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-9)
