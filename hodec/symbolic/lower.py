"""Typed model → symbolic model: every quantity a SymPy expression over leaves, every flux with its stoichiometry.

A *leaf* is a value that generated code reads rather than computes: a state, input, param, let, a neural call
site, a residual slot's output column, or t. A *flux* is one column of the flux vector: a reaction rate, one
additive term of a `der`, or one output of a residual slot; dx/dt = Σ_f stoichiometry(f, x)·flux_f.
"""
from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from typing import Optional
import sympy

from ..model.model import TIME, Model
from ..syntax import ast
from .events import lower_events
from .expressions import Converter

PARAM_KIND_ORDER = ("free", "positive", "bounded", "fixed")


@dataclass(frozen=True)
class Leaf:
    kind: str  # state | input | param | let | call | out | time (and derivative: see jacobian.py)
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
    # The states whose initial value reads other states, and the lets such values read that read states: their
    # Symbols in dependency order, computed one at a time by the generated initial_from (see _initial_values)
    initial_reads: list = field(default_factory=list)
    fluxes: list = field(default_factory=list)
    observables: list = field(default_factory=list)  # expr per observable
    # The module's states: the declared ones, then the params an event assigns (see promote_event_params), whose
    # own param Symbols `promoted` keeps (name -> Symbol) for the initial values.
    state_names: list = field(default_factory=list)
    promoted: dict = field(default_factory=dict)
    events: list = field(default_factory=list)  # SymbolicEvent, in spec order
    # Per module state, the size of its compartment (1 without one); empty when no state is in a compartment.
    sizes: list = field(default_factory=list)

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
    functions = {f.name: f for f in model.functions}  # inlined where called
    convert = Converter(lambda name: constants.get(name, sm.symbols[name]),
                        lambda slot, args: _call_site(sm, slot, args), functions)
    for let in model.lets:  # dependency order: a let reads constants folded before it
        value = convert(let.value)
        sm.lets.append((sm.symbols[let.name], value))
        if value.is_number:
            constants[let.name] = value
    sm.initial, sm.initial_reads = _initial_values(sm, constants, functions)
    sm.fluxes = _fluxes(sm, convert)
    sm.sizes = _sizes(sm, constants)
    sm.observables = [convert(o.value) for o in model.observables]
    sm.events = lower_events(model.events, convert, sm.symbols, {n: i for i, n in enumerate(sm.state_names)})
    return sm


def _initial_values(sm: SymbolicModel, constants: dict, functions: dict) -> tuple[list, list]:
    """The initial value of every state of the module, and (sm.initial_reads) the Symbols of the states whose
    initial value reads other states and of the lets such values read that read states, in dependency order (the
    checks exclude cycles): generated code computes those one at a time, each from the values before it, never
    inlined (a chain of them would grow exponentially). Initial values read an event-assigned param as the param
    itself (the checks keep such params out of the lets an initial value reads), and a promoted param starts at
    its value."""
    model = sm.model
    names = {**sm.symbols, **sm.promoted}
    convert = Converter(lambda name: constants.get(name, names[name]), functions=functions)
    initial = [convert(s.initial) for s in model.states] + list(sm.promoted.values())
    exprs = {s.name: s.initial for s in model.states}
    lets = {let.name: let.value for let in model.lets if let.name not in constants}
    graph, reads_states = _initial_graph(exprs, lets), {}
    for name in graphlib.TopologicalSorter(graph).static_order():
        reads_states[name] = any(n in exprs or reads_states[n] for n in graph[name])
    return initial, [sm.symbols[name] for name, reads in reads_states.items() if reads]


def _initial_graph(exprs: dict, lets: dict) -> dict:
    """The states and lets that the initial values reach -> the states and lets each one reads."""
    graph, stack = {}, list(exprs)
    while stack:
        name = stack.pop()
        if name not in graph:
            expr = exprs[name] if name in exprs else lets[name]
            graph[name] = [n.id for n in ast.names_in(expr) if n.id in exprs or n.id in lets]
            stack += graph[name]
    return graph


def _sizes(sm: SymbolicModel, constants: dict) -> list:
    sizes = [s.size for s in sm.model.states]
    if not any(sizes):
        return []
    one = sympy.S.One
    return [constants.get(name, sm.symbols[name]) if name else one for name in sizes] + [one] * len(sm.promoted)


def flux_scales(sm: SymbolicModel) -> list:
    """Per flux, the factor that makes it an amount per time: a reaction rate is one, and a der term or residual
    slot output of a state in a compartment is a rate of the state itself (a concentration), so it is multiplied
    by the compartment's size, as dy/dt = (Σ_f stoichiometry(f, x)·flux_f·scale_f) / size(x). Empty when no state
    is in a compartment."""
    if not sm.sizes:
        return []
    return [sympy.S.One if f.kind == "reaction" else sm.sizes[f.stoichiometry[0][0]] for f in sm.fluxes]


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
    sm.state_names = [s.name for s in m.states]
    promote_event_params(sm)


def promote_event_params(sm: SymbolicModel):
    """A param that an event assigns becomes a state of the module (the generated code's y), after the declared
    states, under its own name: its initial value is the param (so it still trains), its derivative 0, and every
    expression but the initial values reads the state (so reads after an event see the assigned value)."""
    for name in sm.model.event_params:
        sm.promoted[name] = sm.symbols[name]
        sm.symbols[name] = _symbol(sm, Leaf("state", name, len(sm.state_names)))
        sm.state_names.append(name)


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


def inlined_lets(sm: SymbolicModel) -> dict:
    """Let Symbol → its value with every let inlined. Built in dependency order, each let once, so values share
    their inlined subexpressions (a chain of n lets costs n substitutions, though its inlined tree may be 2^n)."""
    out: dict = {}
    for sym, value in sm.lets:
        out[sym] = value.xreplace({s: out[s] for s in value.free_symbols if s in out})
    return out


def substitute_lets(sm: SymbolicModel, expr: sympy.Expr, inlined: Optional[dict] = None) -> sympy.Expr:
    """The expression with every let inlined (`inlined`: inlined_lets(sm), when the caller has it already)."""
    inlined = inlined_lets(sm) if inlined is None else inlined
    return expr.xreplace({s: inlined[s] for s in expr.free_symbols if s in inlined})
