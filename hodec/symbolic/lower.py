"""Typed model → symbolic model: every quantity a SymPy expression over leaves, every flux with its stoichiometry.

A *leaf* is a value that generated code reads rather than computes: a state, input, param, let, a neural call
site, a residual slot's output column, or t. A *flux* is one column of the flux vector: a reaction rate, one
additive term of a `der`, or one output of a residual slot; dx/dt = Σ_f stoichiometry(f, x)·flux_f.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import sympy

from ..model.model import TIME, Model
from ..errors import Diagnostic, HodecError
from .expressions import Converter, undefined

PARAM_KIND_ORDER = ("free", "positive", "bounded", "fixed")


@dataclass(frozen=True)
class Leaf:
    kind: str  # state | input | param | let | call | out | time
    name: str  # user name (for call and out: an internal label)
    index: int = 0  # position in its source vector (state, input, param, out)
    source: str = ""  # for out: the slot's name


@dataclass(frozen=True)
class CallSite:
    symbol: sympy.Symbol
    slot: str
    args: tuple


@dataclass(frozen=True)
class Flux:
    name: str  # reaction name, der_<state>.<i>, or <slot>.<output>
    kind: str  # reaction | term | slot
    rate: sympy.Expr
    stoichiometry: tuple[tuple[int, float], ...]  # (state index, coefficient)
    keep: bool
    target: tuple[str, ...]  # names of the states it changes


@dataclass
class SymbolicModel:
    model: Model
    leaves: dict = field(default_factory=dict)  # Symbol -> Leaf
    symbols: dict = field(default_factory=dict)  # user name -> Symbol
    param_order: list = field(default_factory=list)  # Param objects, in parameter-vector order
    lets: list = field(default_factory=list)  # (Symbol, expr), dependency order
    calls: list = field(default_factory=list)  # CallSite, in order of first appearance
    initial: list = field(default_factory=list)  # expr per state
    fluxes: list = field(default_factory=list)
    observables: list = field(default_factory=list)  # expr per observable

    @property
    def time(self) -> sympy.Symbol:
        return self.symbols[TIME]

    def let_values(self) -> dict:
        return dict(self.lets)


def lower(model: Model) -> SymbolicModel:
    sm = SymbolicModel(model)
    _declare_leaves(sm)
    # A let whose value folds to a number is read as that number: generated code then never holds a constant in
    # a Python variable where it needs a tensor (defect 1 of issue 13: `let c = 0` gave `(-l_c).expand(batch)`).
    constants: dict = {}
    convert = Converter(lambda name: constants.get(name, sm.symbols[name]),
                        lambda slot, args: _call_site(sm, slot, args))
    for let in model.lets:  # dependency order: a let reads constants folded before it
        value = convert(let.value)
        sm.lets.append((sm.symbols[let.name], value))
        if value.is_number:
            constants[let.name] = value
    sm.initial = [convert(s.initial) for s in model.states]
    sm.fluxes = _fluxes(sm, convert)
    sm.observables = [convert(o.value) for o in model.observables]
    _check_inlined_observables(sm)
    return sm


def _check_inlined_observables(sm: SymbolicModel):
    """Observables are differentiated with their lets inlined (the observation Jacobian). Inlining lets SymPy
    evaluate what it kept symbolic ('let v = p - p' then log(v)): check the result here, where it can be located."""
    errors = []
    for observable, expr in zip(sm.model.observables, sm.observables):
        try:
            bad = undefined(substitute_lets(sm, expr))
        except (TypeError, ValueError):  # SymPy refusing to compare or order a non-real value it just produced
            bad = True
        if bad:
            errors.append(Diagnostic("with its lets substituted, this expression has no finite real value (like a "
                                     "division by zero or log(0))", observable.value.span))
    if errors:
        raise HodecError(errors)


def _symbol(sm: SymbolicModel, leaf: Leaf) -> sympy.Symbol:
    # Dummy symbols: unique by identity, so a user's name can never collide with another symbol or a SymPy name.
    sym = sympy.Dummy(leaf.name, real=True)
    sm.leaves[sym] = leaf
    return sym


def _declare_leaves(sm: SymbolicModel):
    m = sm.model
    sm.param_order = sorted(m.params, key=lambda p: PARAM_KIND_ORDER.index(p.kind))
    groups = (("state", m.states), ("input", m.inputs), ("param", sm.param_order), ("let", m.lets))
    for kind, items in groups:
        for index, item in enumerate(items):
            sm.symbols[item.name] = _symbol(sm, Leaf(kind, item.name, index))
    sm.symbols[TIME] = _symbol(sm, Leaf("time", TIME))


def _call_site(sm: SymbolicModel, slot: str, args: tuple) -> sympy.Symbol:
    for site in sm.calls:  # the same call twice is evaluated once
        if site.slot == slot and site.args == args:
            return site.symbol
    sym = _symbol(sm, Leaf("call", f"{slot}_{len(sm.calls)}"))
    sm.calls.append(CallSite(sym, slot, args))
    return sym


def _fluxes(sm: SymbolicModel, convert: Converter) -> list[Flux]:
    m = sm.model
    state_index = {s.name: i for i, s in enumerate(m.states)}
    fluxes = []
    for r in m.reactions:
        stoich = tuple((state_index[name], c) for name, c in r.stoichiometry.items())
        fluxes.append(Flux(r.name, "reaction", convert(r.rate), stoich, r.keep, tuple(r.stoichiometry)))
    for d in m.ders:
        for i, term in enumerate(d.terms):
            fluxes.append(Flux(f"der_{d.target}.{i}", "term", convert(term), ((state_index[d.target], 1.0),),
                               d.keep, (d.target,)))
    for slot in m.slots:
        if slot.is_function:
            continue
        for j, out in enumerate(slot.outputs):
            sym = _symbol(sm, Leaf("out", f"{slot.name}.{out}", j, slot.name))
            fluxes.append(Flux(f"{slot.name}.{out}", "slot", sym, ((state_index[out], 1.0),), True, (out,)))
    return fluxes


def substitute_lets(sm: SymbolicModel, expr: sympy.Expr) -> sympy.Expr:
    """Inline every let (lets are in dependency order, so substituting from the last one back suffices)."""
    for sym, value in reversed(sm.lets):
        if sym in expr.free_symbols:
            expr = expr.xreplace({sym: value})
    return expr
