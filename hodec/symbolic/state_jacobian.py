"""The state Jacobian J = ∂f/∂u of the vector field f(u) = S·v(u), for the stiff (Rosenbrock) solvers.

It is built on the flux structure, as the forward is: each flux v_f is differentiated once with respect to each
state it reads (through lets by the chain rule of jacobian.py, derivative leaves shared), and the generated code
accumulates those derivatives through the stoichiometry, J[i, j] = Σ_f S[f, i]·∂v_f/∂u_j. So J is exactly as
sparse as the network: a mass-action flux k·A·B has the two entries k·B and k·A, whatever the number of states.

Gates (a model compiled with gates) multiply fluxes at run time, so they multiply these entries at run time too.
A flux that reads a neural slot (a residual slot's output, or a function slot called in its rate) is
differentiated by the same chain rule, the slot's own partial derivatives with respect to its arguments being
leaves (`gradients`) that the generated code computes from the slot by autodiff.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .jacobian import ChainRule
from .lower import SymbolicModel


@dataclass(frozen=True)
class StateJacobian:
    entries: tuple  # (flux index, state index, ∂flux/∂state): the nonzero ones
    gradients: tuple  # SlotGradient of each neural leaf the entries differentiate through, in order of first use
    model: SymbolicModel  # the symbolic model with the leaves the entries read (kinds "derivative", "slotgrad")

    def state_entries(self) -> list:
        """(i, j, ∂(du_i/dt)/∂u_j) for every structurally nonzero entry, the stoichiometry applied symbolically
        (the generated code applies it numerically instead; this is the same sum, for inspection and tests)."""
        total: dict = {}
        for f, j, d in self.entries:
            for i, coefficient in self.model.fluxes[f].stoichiometry:
                total[i, j] = total.get((i, j), 0) + sympy.nsimplify(coefficient) * d
        return [(i, j, total[i, j]) for i, j in sorted(total)]


def state_jacobian(sm: SymbolicModel) -> StateJacobian:
    state_index = {sm.symbols[name]: j for j, name in enumerate(sm.state_names)}
    chain = ChainRule(sm)
    entries = []
    for f, flux in enumerate(sm.fluxes):
        for j, sym in sorted((state_index[s], s) for s in chain.reads(flux.rate) if s in state_index):
            d = chain.total(flux.rate, sym)
            if d != 0:
                entries.append((f, j, d))
    return StateJacobian(tuple(entries), tuple(chain.gradients.values()), chain.model())
