"""The trainable vectors of a compiled model (raw parameters by kind, sparsity gates), registered so that tools
which flatten a module's parameters into one vector (torchdiffeq's adjoint, parameters_to_vector) can take it."""
from __future__ import annotations

import torch
from torch import nn


def register_trainable(module: nn.Module, name: str, values: torch.Tensor):
    """`values` as an nn.Parameter, or, when empty, as a non-persistent buffer: a parameter of size 0 trains
    nothing and breaks torchdiffeq's odeint_adjoint (its flattened adjoint state cannot hold a view of an empty
    storage). The attribute exists either way, in the module's dtype and device, so callers need not test which."""
    if values.numel():
        setattr(module, name, nn.Parameter(values))
    else:
        module.register_buffer(name, values, persistent=False)


def drop_empty_entries(module: nn.Module, state_dict: dict, prefix: str):
    """Remove from a state dict the empty vectors that checkpoints written before register_trainable hold as
    parameters of size 0, so that those checkpoints still load strictly."""
    for name in module._non_persistent_buffers_set:
        key = prefix + name
        if key in state_dict and state_dict[key].numel() == 0:
            del state_dict[key]
