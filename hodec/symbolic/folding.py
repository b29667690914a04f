"""Sparsity gates folded into rate constants: a reaction or der term scaled by its gate w is the same flux with
one param p replaced by w * p, when the flux's rate is p times something without p and nothing else reads p."""
from __future__ import annotations

import sympy

from .dependencies import used_params
from .events import event_expressions
from .lower import SymbolicModel, substitute_lets


def folded_gates(sm: SymbolicModel, model, gates: dict) -> dict:
    """New values of params into which a reaction's or der term's gate folds exactly: p <- w * p when the flux's
    rate is p times something without p, and no other rate, initial value, observable or event reads p (and w * p
    is a valid value of p's kind). Gates that cannot be folded are left out (the refit absorbs them). `model` is a
    compiled model of `sm` (its parameters_table and current values)."""
    rates = {f.name: f.rate for f in sm.fluxes if f.kind != "slot" and f.rate is not None}
    readers = _readers(sm, rates)
    calls = {c.symbol for c in sm.calls}
    rows = {row[0]: row for row in model.parameters_table}
    values = model.params()
    out = {}
    for name, w in gates.items():
        if name not in rates or w == 1.0:
            continue
        rate = substitute_lets(sm, rates[name])
        if rate.free_symbols & calls:
            continue  # a neural call: its arguments may read params non-linearly
        for sym in rate.free_symbols:
            leaf = sm.leaves.get(sym)
            if leaf is None or leaf.kind != "param" or readers.get(leaf.name) != [name]:
                continue
            if sympy.expand(sym * sympy.diff(rate, sym) - rate) != 0:
                continue  # not linear and homogeneous in p
            value = w * values[leaf.name]
            if _valid(rows[leaf.name], value):
                out[leaf.name] = value
                break
    return out


def _readers(sm: SymbolicModel, rates: dict) -> dict:
    """param -> the fluxes reading it (None for an initial value, observable, event or compartment size), in
    declaration order."""
    owners = [(name, rate) for name, rate in rates.items()]
    owners += [(None, e) for e in list(sm.initial) + list(sm.observables) + event_expressions(sm.events)]
    owners += [(None, size) for size in sm.sizes]  # a size divides every reaction into its compartment
    readers: dict = {}
    for owner, expr in owners:
        for p in used_params(sm, [expr]):
            readers.setdefault(p, []).append(owner)
    return readers


def _valid(row: tuple, value: float) -> bool:
    _, _, kind, lower, upper = row
    if kind == "fixed":
        return False
    if kind == "positive":
        return value > 0
    return kind != "bounded" or lower < value < upper
