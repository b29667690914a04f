"""Neural slots: the default MLP factory and the wrapper that applies a slot's options to any network."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
               "softplus": nn.Softplus, "sigmoid": nn.Sigmoid}


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return nn.functional.softplus(out) if self.positive else out
