"""What a symbolic expression reads: the one dependency walker over leaves, through lets and neural calls.

An expression's free symbols are leaves (see lower.py). A let reads what its value reads; a neural call site
reads what its arguments read. `Dependencies.reads` follows both, memoised per symbol (so a chain of n lets is
walked once, not once per query), and `steps` names what a path crosses on the way to one leaf: the let names and
the `slot.arg` formal arguments of neural function calls (the interaction graph's `via`).
"""
from __future__ import annotations

import sympy

from .events import event_expressions
from .lower import SymbolicModel


class Dependencies:
    """Dependency queries over one SymbolicModel (build one per use: it memoises, and the model must not change)."""

    def __init__(self, sm: SymbolicModel):
        self.sm = sm
        self.lets = sm.let_values()
        self.calls = {c.symbol: c for c in sm.calls}
        self._closure: dict = {}  # Symbol -> frozenset of the symbols it reads, itself included

    def direct(self, sym: sympy.Symbol) -> list[tuple[str, sympy.Expr]]:
        """What a let or call site evaluates, one step down: (step name, expression) pairs; nothing for a leaf
        that is read, not computed (state, input, param, slot output, t)."""
        leaf = self.sm.leaves[sym]
        if leaf.kind in ("let", "derivative"):
            return [(leaf.name, self.lets[sym])]
        if leaf.kind == "call":
            site = self.calls[sym]
            slot = self.sm.model.slot(site.slot)
            return [(f"{slot.name}.{arg.name}", expr) for arg, expr in zip(slot.args, site.args)]
        return []

    def reads(self, *exprs: sympy.Expr) -> frozenset:
        """Every leaf Symbol the expressions read, directly or through lets and calls (those included)."""
        return frozenset().union(*(self._symbol(sym) for expr in exprs for sym in expr.free_symbols))

    def steps(self, expr: sympy.Expr, target: sympy.Symbol) -> frozenset:
        """The let names and `slot.arg` arguments crossed on some path from the expression to the leaf `target`
        (empty when it reads the target directly, or not at all)."""
        return frozenset(step for sym in self.reads(expr) for step, inner in self.direct(sym)
                         if self._reaches(inner, target))

    def _reaches(self, expr: sympy.Expr, target: sympy.Symbol) -> bool:
        """Whether the expression reads `target`: membership in each symbol's closure, without building their
        union (which made `steps` quadratic in the length of a chain of lets)."""
        return any(target in self._symbol(sym) for sym in expr.free_symbols)

    def _symbol(self, root) -> frozenset:
        # Post-order with an explicit stack: a long chain of lets must not exhaust Python's recursion limit.
        stack = [root]
        while stack:
            sym = stack[-1]
            if sym in self._closure:
                stack.pop()
                continue
            inner = [s for _, expr in self.direct(sym) for s in expr.free_symbols]
            pending = [s for s in inner if s not in self._closure]
            if pending:
                stack += pending
                continue
            self._closure[sym] = frozenset({sym}).union(*(self._closure[s] for s in inner))
            stack.pop()
        return self._closure[root]

    def reads_kind(self, expr: sympy.Expr, kinds: set) -> bool:
        """Whether the expression reads (directly or through lets and call arguments) a leaf of the given kinds."""
        return any(self.sm.leaves[s].kind in kinds for s in self.reads(expr))

    def names(self, kind: str, *exprs: sympy.Expr) -> set:
        """User names of the leaves of one kind (param, state, ...) the expressions read."""
        return {self.sm.leaves[s].name for s in self.reads(*exprs) if self.sm.leaves[s].kind == kind}


def used_params(sm: SymbolicModel, exprs=None) -> set:
    """Names of the params read by some initial value, rate, observable, event or compartment size (or by `exprs`
    when given)."""
    if exprs is None:
        exprs = list(sm.initial) + [f.rate for f in sm.fluxes] + list(sm.observables) + event_expressions(sm.events)
        exprs += list(sm.sizes)
    return Dependencies(sm).names("param", *exprs)
