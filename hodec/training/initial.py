"""Which trainable quantities each state's initial value reads: `initial: data` pins only the states whose
initial value reads none (a param the user declared trainable is never ignored)."""
from __future__ import annotations

import copy

import torch

KINDS = ("free", "positive", "bounded")  # the order of the model's raw parameter vectors


def trainable_entries(model) -> list:
    """(name, tensor, index or None) of every trainable quantity: one entry of a raw parameter vector per
    trainable param, and each neural slot as a whole (index None)."""
    out = []
    for kind, raw in zip(KINDS, model.mechanistic_parameters()):
        rows = [row[0] for row in model.parameters_table if row[2] == kind]
        out += [(name, raw, i) for i, name in enumerate(rows)]
    return out + [(row[0], module, None) for row, module in zip(model.slots_table, model.slot_modules)]


@torch.no_grad()
def initial_sources(model) -> dict:
    """Per state, the names of the trainable params and neural slots its initial value reads.

    Found on a copy of the model with one quantity at a time set to NaN: NaN propagates through the arithmetic
    and functions an initial value is made of, so the value becomes NaN exactly when its expression reads that
    quantity, whatever the values (x ** 0 and 1 ** x, which do not, the compiler has already folded to 1). No
    symbolic model is needed: this works for any compiled model instance, also one loaded from generated code."""
    probe = copy.deepcopy(model)
    reads = {name: [] for name in model.state_names}
    for name, target, index in trainable_entries(probe):
        tensors = list(target.parameters()) if index is None else [target]
        saved = [t.detach().clone() for t in tensors]
        for t in tensors:
            if index is None:
                t.fill_(torch.nan)
            else:
                t[index] = torch.nan
        y0 = probe.initial_state()
        for t, value in zip(tensors, saved):
            t.copy_(value)
        for state, v in zip(model.state_names, y0.tolist()):
            if v != v:  # NaN
                reads[state].append(name)
    return {state: tuple(names) for state, names in reads.items()}
