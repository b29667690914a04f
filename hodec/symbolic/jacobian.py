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
NEURAL_KINDS = ("call", "out")  # leaves whose value a neural slot computes


@dataclass(frozen=True)
class ObservationJacobian:
    entries: tuple  # (observable index, state index, expr), nonzero entries only, neural observables skipped
    support: tuple  # per observable: state indices its value depends on (sorted)
    state_of: tuple  # per observable: the index of the state it is identically equal to, or None
    slots: tuple  # per observable: names of the neural slots it calls (empty if none)
    model: SymbolicModel  # the symbolic model with the derivative leaves the entries read (kind "derivative")


def observation_jacobian(sm: SymbolicModel) -> ObservationJacobian:
    states = [sm.symbols[name] for name in sm.state_names]
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


@dataclass(frozen=True)
class SlotGradient:
    """The partial derivatives of one neural leaf (a call site, or a residual slot's outputs) with respect to its
    arguments, which generated code gets from the slot by autodiff: [*batch, n_out * n_args], output k and argument
    a at k * n_args + a. Its 'slotgrad' leaves read those columns."""

    source: str  # the code name of the neural value it differentiates (c_<call label>, n_<slot>); generated code
    # holds the gradient in 'j' + source
    slot: str
    args: tuple  # the argument expressions
    width: int  # n_out * n_args


class ChainRule:
    """Total derivatives with respect to states through lets and neural leaves, each computed once (memoised). A
    neural leaf v = slot(a_1, ...) has dv/dx = Σ_a ∂slot/∂a · da/dx, the partials ∂slot/∂a being 'slotgrad'
    leaves (see SlotGradient)."""

    def __init__(self, sm: SymbolicModel):
        self.sm = sm
        self.deps = Dependencies(sm)
        self.lets = sm.let_values()
        self.memo: dict = {}  # (let or neural leaf, state) -> its total derivative: an expression or a derivative leaf
        self.leaves: dict = {}  # derivative and slotgrad leaf -> Leaf
        self.values: list = []  # (derivative leaf, expr), each after those it reads
        self.gradients: dict = {}  # SlotGradient.source -> SlotGradient
        self._arguments: dict = {}  # neural leaf -> [(slotgrad leaf, argument expr)]

    def total(self, expr, state):
        """d expr / d state, reading the derivatives of lets and neural leaves as leaves (or written out)."""
        d = smooth_derivative(expr, state)
        inner = [s for s in expr.free_symbols if s in self.lets or self.sm.leaves[s].kind in NEURAL_KINDS]
        for sym in sorted(inner, key=sympy.default_sort_key):
            if self._reads(sym, state):
                d += smooth_derivative(expr, sym) * self._inner(sym, state)
        return d

    def _reads(self, sym, state) -> bool:
        return state in self.reads(sym)

    def reads(self, expr) -> frozenset:
        """The leaves an expression reads through lets and neural calls, and through residual slots' arguments."""
        direct = self.deps.reads(expr)
        slots = {self.sm.leaves[s].source for s in direct if self.sm.leaves[s].kind == "out"}
        return direct.union(*(self.deps.reads(self.sm.symbols[a.name]) for slot in sorted(slots)
                              for a in self.sm.model.slot(slot).args))

    def _inner(self, sym, state):
        if (sym, state) in self.memo:
            return self.memo[sym, state]
        if sym in self.lets:
            # Recursion depth grows with the let chain: reach the chain's bottom first (lets in dependency order).
            for inner, _ in self.sm.lets:
                if inner is sym:
                    break
                if (inner, state) not in self.memo and state in self.deps.reads(inner) and \
                        inner in self.deps.reads(sym):
                    self._inner(inner, state)
            value = self.total(self.lets[sym], state)
        else:
            value = sympy.Add(*(grad * self.total(arg, state) for grad, arg in self.arguments(sym)
                                if state in self.deps.reads(arg)))
        self.memo[sym, state] = self._name(sym, state, value)
        return self.memo[sym, state]

    def arguments(self, sym) -> list:
        """(slotgrad leaf, argument expression) per argument of a neural leaf, its SlotGradient made on first use."""
        if sym not in self._arguments:
            leaf = self.sm.leaves[sym]
            if leaf.kind == "call":
                site = self.deps.calls[sym]
                slot, args, source, row = self.sm.model.slot(site.slot), site.args, f"c_{leaf.name}", 0
            else:
                slot, row, source = self.sm.model.slot(leaf.source), leaf.index, f"n_{leaf.source}"
                args = tuple(self.sm.symbols[a.name] for a in slot.args)
            self.gradients.setdefault(source, SlotGradient(source, slot.name, args, slot.n_out * len(args)))
            grads = []
            for a, arg in enumerate(slot.args):
                grad = sympy.Dummy(f"g{len(self.leaves)}", real=True)
                self.leaves[grad] = Leaf("slotgrad", f"d{leaf.name}/d{arg.name}", row * len(args) + a, source)
                grads.append(grad)
            self._arguments[sym] = list(zip(grads, args))
        return self._arguments[sym]

    def _name(self, sym, state, value):
        if value.count_ops() <= INLINE_OPS:
            return value
        leaf = Leaf("derivative", f"d{self.sm.leaves[sym].name}/d{self.sm.leaves[state].name}", len(self.values))
        dummy = sympy.Dummy(f"d{len(self.values)}", real=True)
        self.leaves[dummy] = leaf
        self.values.append((dummy, value))
        return dummy

    def model(self) -> SymbolicModel:
        return replace(self.sm, leaves={**self.sm.leaves, **self.leaves}, lets=self.sm.lets + self.values)


def smooth_derivative(expr: sympy.Expr, sym: sympy.Symbol) -> sympy.Expr:
    """∂expr/∂sym with the non-smooth pieces SymPy produces replaced by expressions the printer supports."""
    if isinstance(expr, sympy.Mul) and expr.args.count(sym) == 1 and \
            all(a == sym or sym not in a.free_symbols for a in expr.args):
        # A product with sym as one plain factor (mass action: k*A*B) directly: SymPy's diff takes milliseconds
        # each (its assumption queries), most of the compile time of a large network's state Jacobian.
        return sympy.Mul(*(a for a in expr.args if a != sym))
    # d(0^e)/dx = 0^e ln(0) de/dx is nan as SymPy writes it; where e > 0 it is 0 (autograd's value too)
    expr = expr.replace(lambda e: isinstance(e, sympy.Pow) and e.base == 0 and sym in e.exp.free_symbols,
                        lambda e: sympy.Piecewise((0, e.exp > 0), (e, True)))
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
