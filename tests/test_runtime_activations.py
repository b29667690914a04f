"""Neural slot activations: every name PyTorch and PEtab-SciML give an elementwise activation, each checked
against its formula written out here, and the compiler's name list equal to the runtime's table."""
from __future__ import annotations

import math

import pytest
import torch

import hodec
from hodec.compiler import load_text
from hodec.model.model import ACTIVATIONS as NAMES
from hodec.runtime.neural import ACTIVATIONS


def _softplus(x):
    return torch.log1p(torch.exp(-x.abs())) + x.clamp(min=0)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
FORMULAS = {  # PyTorch's definitions and defaults, from its documentation, written out
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "softplus": _softplus,
    "relu": lambda x: torch.where(x > 0, x, 0 * x),
    "relu6": lambda x: torch.where(x > 6, 6 + 0 * x, torch.where(x > 0, x, 0 * x)),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "celu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),  # alpha = 1
    "selu": lambda x: SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1)),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "silu": lambda x: x / (1 + torch.exp(-x)),
    "swish": lambda x: x / (1 + torch.exp(-x)),
    "mish": lambda x: x * torch.tanh(_softplus(x)),
    "hardtanh": lambda x: torch.where(x > 1, 1 + 0 * x, torch.where(x < -1, -1 + 0 * x, x)),
    "hardswish": lambda x: torch.where(x <= -3, 0 * x, torch.where(x >= 3, x, x * (x + 3) / 6)),
    "hardsigmoid": lambda x: torch.where(x <= -3, 0 * x, torch.where(x >= 3, 1 + 0 * x, x / 6 + 0.5)),
    "logsigmoid": lambda x: -_softplus(-x),
    "softsign": lambda x: x / (1 + x.abs()),
    "tanhshrink": lambda x: x - torch.tanh(x),
    "hardshrink": lambda x: torch.where(x.abs() > 0.5, x, 0 * x),
    "softshrink": lambda x: torch.where(x > 0.5, x - 0.5, torch.where(x < -0.5, x + 0.5, 0 * x)),
    "identity": lambda x: x,
}


def test_compiler_names_are_the_runtime_table():
    assert tuple(NAMES) == tuple(ACTIVATIONS)
    assert set(FORMULAS) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_matches_its_formula(name):
    x = torch.cat([torch.linspace(-8, 8, 161, dtype=torch.float64), torch.tensor([-3.0, 3.0, 0.5, -0.5, 6.0],
                                                                                 dtype=torch.float64)])
    x = x[(x.abs() - 0.5).abs() > 1e-12] if name.endswith("shrink") and name != "tanhshrink" else x
    torch.testing.assert_close(ACTIVATIONS[name]()(x), FORMULAS[name](x), rtol=1e-12, atol=1e-14)


def test_gelu_is_exact_and_gelu_tanh_is_the_approximation():
    x = torch.tensor([1.0], dtype=torch.float64)
    exact, approximate = ACTIVATIONS["gelu"]()(x), ACTIVATIONS["gelu_tanh"]()(x)
    assert abs(float(exact) - 0.8413447460685429) < 1e-15  # Phi(1)
    assert abs(float(approximate - exact)) > 1e-4


@pytest.mark.parametrize("name", ["gelu_tanh", "leaky_relu", "identity"])
def test_a_compiled_slot_uses_the_named_activation(name):
    src = f"model A\nstate x = 1\nstate y = 2\nneural f(x, y) -> x hidden 3 activation {name}\n"
    m = load_text(src, "act.hode")().double()
    net = m.slot("f").net
    y = torch.tensor([[0.3, -1.7], [2.0, 0.1]], dtype=torch.float64)
    hidden = FORMULAS[name](y @ net[0].weight.T + net[0].bias)
    expected = hidden @ net[2].weight.T + net[2].bias
    torch.testing.assert_close(m(torch.tensor(0.0), y)[:, :1], expected)


def test_unknown_activation_is_a_located_error():
    with pytest.raises(hodec.HodecError, match="act.hode:2:.*unknown activation 'gelu_erf'.*gelu_tanh"):
        load_text("model A\nneural f(x) hidden 3 activation gelu_erf\nstate x = 1\n", "act.hode")
