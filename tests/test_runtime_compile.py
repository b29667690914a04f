"""torch.compile(model, fullgraph=True) traces every example spec's forward and observables in one graph, inputs
bound (the input interpolation used to read a 0-d index tensor as a Python int: a graph break, or an error with
fullgraph=True). The "eager" backend runs dynamo's full tracing without code generation, which keeps this fast."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hodec
from hodec.runtime import Signal, UnboundInputError

SPEC_DIR = Path(__file__).resolve().parent.parent / "specs"
INPUTS = {"meal": ([0.0, 10.0, 20.0], [0.0, 5.0, 0.0]), "insulin": ([0.0, 30.0], [1.0, 0.5]),
          "infusion": ([0.0, 1.0, 2.0], [3.0, 0.0, 1.0], "previous"), "Dbar": ([0.0, 5.0], [0.0, 1000.0])}


@pytest.mark.parametrize("spec", sorted(p.name for p in SPEC_DIR.glob("*.hode")))
def test_torch_compile_fullgraph(spec):
    torch._dynamo.reset()
    m = hodec.load(SPEC_DIR / spec)().double()
    m.set_inputs({name: signal for name, signal in INPUTS.items() if name in m.input_names})
    assert set(m.input_names) <= set(INPUTS)
    y = m.initial_state((2,)).detach() * torch.tensor([1.0, 1.1], dtype=torch.float64)[:, None]
    t = torch.tensor(1.5, dtype=torch.float64)
    torch.testing.assert_close(torch.compile(m, fullgraph=True, backend="eager")(t, y), m(t, y))
    ts = torch.tensor([0.5, 12.0], dtype=torch.float64)[:, None]
    observables = torch.compile(m.observables, fullgraph=True, backend="eager")
    torch.testing.assert_close(observables(ts, y), m.observables(ts, y))


def test_signal_interpolates_as_numpy():
    times, values = [0.0, 1.0, 3.0], [2.0, -1.0, 5.0]
    t = torch.tensor([-1.0, 0.0, 0.25, 1.0, 2.5, 3.0, 7.0], dtype=torch.float64)
    linear, previous = Signal(times, values), Signal(times, values, "previous")
    np.testing.assert_allclose(linear(t).numpy(), np.interp(t.numpy(), times, values), rtol=1e-15)
    np.testing.assert_array_equal(previous(t).numpy(), [2.0, 2.0, 2.0, -1.0, -1.0, 5.0, 5.0])
    assert float(linear(t[2])) == np.interp(0.25, times, values) and linear(t[2]).dim() == 0
    vector = Signal(times, [[1.0, 0.0], [3.0, 2.0], [3.0, 6.0]])
    np.testing.assert_allclose(vector(torch.tensor([0.5, 2.0], dtype=torch.float64)).numpy(), [[2.0, 1.0], [3.0, 4.0]])


def test_unbound_inputs_raise_a_structured_error():
    m = hodec.load(SPEC_DIR / "bergman.hode")()
    with pytest.raises(UnboundInputError, match=r"inputs 'meal', 'insulin' are not bound: call set_inputs") as err:
        m.simulate([0.0, 1.0])
    assert err.value.names == ("meal", "insulin")
    assert isinstance(err.value, hodec.HodecError)
    m.set_inputs({"meal": INPUTS["meal"]})
    with pytest.raises(UnboundInputError) as err:
        m(torch.tensor(0.0), m.initial_state())
    assert err.value.names == ("insulin",)
