"""Sparsity gates (Zou & Tian, ICLR 2026, "HGS"): one per prunable edge cause of the interaction graph.

A gate multiplies a reaction's rate (so stoichiometry and mass balance are kept), one additive term of a `der`,
or one argument of a residual slot before it enters the network (w·u, as HGS does). Edges marked `keep` get none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .lower import SymbolicModel


@dataclass(frozen=True)
class Gate:
    name: str  # reaction name, der_<state>.<i>, or <slot>.<argument>
    kind: str  # reaction | term | neural_input
    flux: Optional[int] = None  # index into sm.fluxes
    slot: Optional[str] = None
    argument: Optional[int] = None


def gate_table(sm: SymbolicModel) -> list[Gate]:
    gates = [Gate(f.name, f.kind, flux=i) for i, f in enumerate(sm.fluxes) if f.kind != "slot" and not f.keep]
    for slot in sm.model.slots:
        if slot.is_function:
            continue  # a function's arguments are gated through the rates that call it
        gates += [Gate(f"{slot.name}.{a.name}", "neural_input", slot=slot.name, argument=j)
                  for j, a in enumerate(slot.args) if not a.keep]
    return gates
