"""Trained values copied from one compiled model into another of an edited spec (a pruned one): params by name,
neural slot weights by argument and output name."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def transfer(src, dst, gates: Optional[dict] = None, values: Optional[dict] = None):
    """Copy trained values from `src` into `dst`: params by name (`values` overrides src's, e.g. gates folded
    into rate constants); slot weights by argument and output name, each argument's gate (gates: 'slot.arg' -> w)
    folded into the first layer (w * u enters the network as u with the column scaled by w). A slot whose layers
    do not match keeps its initialisation."""
    gates = gates or {}
    params = {**src.params(), **(values or {})}
    dst.set_params({n: v for n, v in params.items() if n in dst.param_names})
    by_name = {row[0]: (row, module) for row, module in zip(src.slots_table, src.slot_modules)}
    for row, module in zip(dst.slots_table, dst.slot_modules):
        if row[0] in by_name:
            _copy_slot(*by_name[row[0]], row, module, gates)


def _copy_slot(srow, smod, drow, dmod, gates: dict):
    name, args, outputs = drow[0], list(drow[1]), drow[2]
    s_lin = [layer for layer in smod.net.modules() if isinstance(layer, nn.Linear)]
    d_lin = [layer for layer in dmod.net.modules() if isinstance(layer, nn.Linear)]
    if len(s_lin) != len(d_lin) or not s_lin:
        return
    columns = [list(srow[1]).index(a) for a in args]
    scale = torch.tensor([gates.get(f"{name}.{a}", 1.0) for a in args], dtype=s_lin[0].weight.dtype)
    rows = None if outputs is None else [list(srow[2]).index(o) for o in outputs]
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(s_lin, d_lin)):
            weight, bias = a.weight.detach().clone(), None if a.bias is None else a.bias.detach().clone()
            if i == 0:
                weight = weight[:, columns] * scale
            if i == len(s_lin) - 1 and rows is not None:
                weight = weight[rows]
                bias = None if bias is None else bias[rows]
            if weight.shape != b.weight.shape:
                return
            b.weight.copy_(weight.to(b.weight.dtype))
            if bias is not None and b.bias is not None:
                b.bias.copy_(bias.to(b.bias.dtype))
