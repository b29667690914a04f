"""The observation Jacobian J = ∂h/∂u: each observable differentiated by SymPy with respect to each state.

It feeds the synchronisation coupling −λ·k·J⁺(h(u) − ŷ(t)) of `hodec fit`. Lets are inlined first, so J sees
through them; observables that call neural slots get no rows (they cannot be coupled) and are reported by name.
Derivatives that SymPy leaves in non-smooth forms become printable Piecewise expressions: sign(x) and
Heaviside(x) (from abs, min, max) turn into explicit branches; the derivative of floor/ceil is 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .lower import SymbolicModel, substitute_lets


@dataclass(frozen=True)
class ObservationJacobian:
    entries: tuple  # (observable index, state index, expr), nonzero entries only, neural observables skipped
    support: tuple  # per observable: state indices its value depends on (sorted)
    state_of: tuple  # per observable: the index of the state it is identically equal to, or None
    slots: tuple  # per observable: names of the neural slots it calls (empty if none)


def observation_jacobian(sm: SymbolicModel) -> ObservationJacobian:
    states = [sm.symbols[s.name] for s in sm.model.states]
    state_index = {sym: i for i, sym in enumerate(states)}
    calls = {c.symbol: c.slot for c in sm.calls}
    entries, support, state_of, slots = [], [], [], []
    for i, expr in enumerate(sm.observables):
        expr = substitute_lets(sm, expr)
        called = tuple(sorted({calls[s] for s in expr.free_symbols if s in calls}))
        slots.append(called)
        state_of.append(state_index.get(expr))
        if called:
            support.append(())
            continue
        row = []
        for j, sym in enumerate(states):
            if sym not in expr.free_symbols:
                continue
            d = smooth_derivative(expr, sym)
            if d != 0:
                entries.append((i, j, d))
                row.append(j)
        support.append(tuple(row))
    return ObservationJacobian(tuple(entries), tuple(support), tuple(state_of), tuple(slots))


def smooth_derivative(expr: sympy.Expr, sym: sympy.Symbol) -> sympy.Expr:
    """∂expr/∂sym with the non-smooth pieces SymPy produces replaced by expressions the printer supports."""
    d = sympy.diff(expr, sym)
    d = d.replace(lambda e: isinstance(e, sympy.Derivative), lambda e: sympy.S.Zero)  # d floor(x)/dx, ...
    # the chain rule wraps them as Subs(Derivative(floor(xi), xi), xi, 3*x): now Subs(0, ...), which SymPy keeps
    d = d.replace(lambda e: isinstance(e, sympy.Subs), lambda e: e.doit())
    d = d.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.S.Zero)
    d = d.replace(lambda e: isinstance(e, sympy.sign),
                  lambda e: sympy.Piecewise((1, e.args[0] > 0), (-1, e.args[0] < 0), (0, True)))
    d = d.replace(lambda e: isinstance(e, sympy.Heaviside),
                  lambda e: sympy.Piecewise((1, e.args[0] > 0), (0, True)))
    return d
