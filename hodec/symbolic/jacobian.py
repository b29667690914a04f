"""The observation Jacobian J = ∂h/∂u: each observable differentiated by SymPy with respect to each state.

It feeds the synchronisation coupling −λ·k·J⁺(h(u) − ŷ(t)) of `hodec fit`. J sees through lets by the chain
rule (ChainRule, shared with the state Jacobian of state_jacobian.py), let by let, never by inlining them (a
chain `let v_i = sin(v_{i-1}) + cos(v_{i-1})` inlined is exponentially large): dh/dx = ∂h/∂x + Σ_v ∂h/∂v · dv/dx
over the lets v that h reads, where each total derivative dv/dx is computed once and, unless it is small, becomes
a *derivative* leaf of its own (a local of the generated method, like a let). Observables that call neural slots
get no rows (they cannot be coupled) and are reported by name. Derivatives that SymPy leaves in non-smooth forms
become printable Piecewise expressions: sign(x) and Heaviside(x) (from abs, min, max) turn into explicit branches;
the derivative of floor/ceil is 0.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from .dependencies import Dependencies
from .lower import Leaf, SymbolicModel

INLINE_OPS = 4  # a let's derivative with at most this many operations is written out where used, not named


@dataclass(frozen=True)
class ObservationJacobian:
    entries: tuple  # (observable index, state index, expr), nonzero entries only, neural observables skipped
    support: tuple  # per observable: state indices its value depends on (sorted)
    state_of: tuple  # per observable: the index of the state it is identically equal to, or None
    slots: tuple  # per observable: names of the neural slots it calls (empty if none)
    model: SymbolicModel  # the symbolic model with the derivative leaves the entries read (kind "derivative")


def observation_jacobian(sm: SymbolicModel) -> ObservationJacobian:
    states = [sm.symbols[s.name] for s in sm.model.states]
    state_index = {sym: i for i, sym in enumerate(states)}
    lets = sm.let_values()
    chain = ChainRule(sm)
    entries, support, state_of, slots = [], [], [], []
    for i, expr in enumerate(sm.observables):
        reads = chain.deps.reads(expr)
        called = tuple(sorted({chain.deps.calls[s].slot for s in reads if s in chain.deps.calls}))
        slots.append(called)
        value = expr
        while value in lets:  # `observe o = v` with `let v = x` equals the state x
            value = lets[value]
        state_of.append(state_index.get(value))
        if called:
            support.append(())
            continue
        row = []
        for j, sym in enumerate(states):
            if sym in reads:
                d = chain.total(expr, sym)
                if d != 0:
                    entries.append((i, j, d))
                    row.append(j)
        support.append(tuple(row))
    return ObservationJacobian(tuple(entries), tuple(support), tuple(state_of), tuple(slots), chain.model())


class ChainRule:
    """Total derivatives with respect to states through lets, each let's computed once (memoised)."""

    def __init__(self, sm: SymbolicModel):
        self.sm = sm
        self.deps = Dependencies(sm)
        self.lets = sm.let_values()
        self.memo: dict = {}  # (let, state) -> its total derivative: an expression or a derivative leaf
        self.leaves: dict = {}  # derivative leaf -> Leaf
        self.values: list = []  # (derivative leaf, expr), each after those it reads

    def total(self, expr, state):
        """d expr / d state, reading lets' derivatives as leaves."""
        d = smooth_derivative(expr, state)
        for let in sorted(expr.free_symbols & self.lets.keys(), key=sympy.default_sort_key):
            if state in self.deps.reads(let):
                d += smooth_derivative(expr, let) * self._let(let, state)
        return d

    def _let(self, let, state):
        # Recursion depth grows with the let chain: reach the chain's bottom first (lets in dependency order).
        if (let, state) not in self.memo:
            for inner, _ in self.sm.lets:
                if inner is let:
                    break
                if (inner, state) not in self.memo and state in self.deps.reads(inner) and \
                        inner in self.deps.reads(let):
                    self._let(inner, state)
            self.memo[let, state] = self._name(let, state, self.total(self.lets[let], state))
        return self.memo[let, state]

    def _name(self, let, state, value):
        if value.count_ops() <= INLINE_OPS:
            return value
        leaf = Leaf("derivative", f"d{self.sm.leaves[let].name}/d{self.sm.leaves[state].name}", len(self.values))
        sym = sympy.Dummy(f"d{len(self.values)}", real=True)
        self.leaves[sym] = leaf
        self.values.append((sym, value))
        return sym

    def model(self) -> SymbolicModel:
        return replace(self.sm, leaves={**self.sm.leaves, **self.leaves}, lets=self.sm.lets + self.values)


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
