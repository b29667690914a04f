"""The state Jacobian J = ∂f/∂u of the vector field f(u) = S·v(u), for the stiff (Rosenbrock) solvers.

It is built on the flux structure, as the forward is: each flux v_f is differentiated once with respect to each
state it reads (through lets by the chain rule of jacobian.py, derivative leaves shared), and the generated code
accumulates those derivatives through the stoichiometry, J[i, j] = Σ_f S[f, i]·∂v_f/∂u_j. So J is exactly as
sparse as the network: a mass-action flux k·A·B has the two entries k·B and k·A, whatever the number of states.

Gates (a model compiled with gates) multiply fluxes at run time, so they multiply these entries at run time too.
A flux that reads a neural slot (a residual slot's output, or a function slot called in its rate) has no
symbolic derivative: `slots` names them, and the generated Jacobian of such a model is computed by autodiff.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .jacobian import ChainRule
from .lower import SymbolicModel

SLOT_KINDS = {"call", "out"}


@dataclass(frozen=True)
class StateJacobian:
    entries: tuple  # (flux index, state index, ∂flux/∂state): nonzero ones, of the fluxes that read no slot
    slots: tuple  # names of the neural slots some flux reads (those fluxes have no entries): sorted
    model: SymbolicModel  # the symbolic model with the derivative leaves the entries read (kind "derivative")

    def state_entries(self) -> list:
        """(i, j, ∂(du_i/dt)/∂u_j) for every structurally nonzero entry, the stoichiometry applied symbolically
        (the generated code applies it numerically instead; this is the same sum, for inspection and tests)."""
        total: dict = {}
        for f, j, d in self.entries:
            for i, coefficient in self.model.fluxes[f].stoichiometry:
                total[i, j] = total.get((i, j), 0) + sympy.nsimplify(coefficient) * d
        return [(i, j, total[i, j]) for i, j in sorted(total)]


def state_jacobian(sm: SymbolicModel) -> StateJacobian:
    states = [sm.symbols[s.name] for s in sm.model.states]
    chain = ChainRule(sm)
    entries, slots = [], set()
    for f, flux in enumerate(sm.fluxes):
        reads = chain.deps.reads(flux.rate)
        called = {_slot_name(chain, sym) for sym in reads if sm.leaves[sym].kind in SLOT_KINDS}
        if called:
            slots |= called
            continue
        for j, sym in enumerate(states):
            if sym in reads:
                d = chain.total(flux.rate, sym)
                if d != 0:
                    entries.append((f, j, d))
    return StateJacobian(tuple(entries), tuple(sorted(slots)), chain.model())


def _slot_name(chain: ChainRule, sym) -> str:
    leaf = chain.sm.leaves[sym]
    return leaf.source if leaf.kind == "out" else chain.deps.calls[sym].slot
