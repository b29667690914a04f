"""Neural slots: the default MLP factory and the wrapper that applies a slot's options to any network."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

# `activation NAME` of a neural slot: NAME -> the layer it puts between linear layers, with PyTorch's defaults
# (PEtab-SciML names the same functions by the same names and defaults). `gelu` is the exact GELU, x * Phi(x),
# PyTorch's default; `gelu_tanh` the tanh approximation that Julia's Lux/Flux and the PEtab-SciML reference
# problems use. Every entry is elementwise: fused slots apply it to several slots' layers side by side, so
# softmax-like functions of a whole layer cannot be offered. hodec.model.model.ACTIVATIONS lists these names.
ACTIVATIONS = {
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "relu": nn.ReLU, "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "celu": nn.CELU, "selu": nn.SELU, "gelu": nn.GELU,
    "gelu_tanh": partial(nn.GELU, approximate="tanh"), "silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish,
    "hardtanh": nn.Hardtanh, "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "logsigmoid": nn.LogSigmoid,
    "softsign": nn.Softsign, "tanhshrink": nn.Tanhshrink, "hardshrink": nn.Hardshrink, "softshrink": nn.Softshrink,
    "identity": nn.Identity,
}


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int, activation: str = "tanh") -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class NeuralSlot(nn.Module):
    """Maps [..., n_in] to [..., n_out] through `net`; `positive` applies softplus to the output, whatever
    network a user puts in the slot."""

    def __init__(self, n_in: int, n_out: int, hidden=(32,), activation="tanh", positive=False,
                 net: nn.Module | None = None):
        super().__init__()
        self.n_in, self.n_out, self.positive = n_in, n_out, positive
        self.net = net if net is not None else mlp(n_in, tuple(hidden), n_out, activation)
        self._factory_net = (None if net is not None else self.net,)  # a tuple: not registered a second time

    @property
    def is_factory_mlp(self) -> bool:
        """True while the slot holds the MLP its declaration made (not a network a user put in)."""
        return self.net is self._factory_net[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return nn.functional.softplus(out) if self.positive else out


class FusedSlots:
    """Several factory MLPs of one shape (hidden widths, activation, positive) run as ONE block-diagonal network:
    two kernels per layer instead of a dozen small ones and module calls per slot. The result equals the
    separate evaluation up to the rounding of the matrix products."""

    def __init__(self, slots: list):
        self.nets = tuple(slot.net for slot in slots)
        self.layers = [[net[k] for net in self.nets] for k in range(len(self.nets[0]))]
        self.linear = [isinstance(layer[0], nn.Linear) for layer in self.layers]
        self.n_out = [slot.n_out for slot in slots]
        self.positive = slots[0].positive

    def holds(self, slots: list) -> bool:
        """Whether the slots still hold the networks this plan was made from (a user may swap one in)."""
        return all(slot.net is net for slot, net in zip(slots, self.nets))

    def __call__(self, x: torch.Tensor) -> list:
        for layer, linear in zip(self.layers, self.linear):
            if linear:
                x = nn.functional.linear(x, torch.block_diag(*[m.weight for m in layer]),
                                         torch.cat([m.bias for m in layer]))
            else:
                x = layer[0](x)  # the activation: the same module type in every slot of the group
        if self.positive:
            x = nn.functional.softplus(x)
        return list(x.split(self.n_out, -1))


def run_slots(slots: list, x: torch.Tensor, plan: FusedSlots | None = None) -> tuple[list, FusedSlots | None]:
    """Evaluate slots of one shape on their concatenated arguments x [..., sum of n_in]; returns each slot's
    output and the fused plan to pass next time (None when a user network makes them run one by one)."""
    if plan is None or not plan.holds(slots):
        plan = FusedSlots(slots) if all(slot.is_factory_mlp for slot in slots) else None
    if plan is None:
        return [slot(part) for slot, part in zip(slots, x.split([s.n_in for s in slots], -1))], None
    return plan(x), plan
