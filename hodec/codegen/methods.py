"""Bodies of the generated methods: initial_state, forward (the fused vector field), observables and the two
Jacobians (of the observables and of the vector field)."""
from __future__ import annotations

import graphlib
from dataclasses import dataclass
from typing import Optional

import sympy

from ..symbolic.jacobian import ObservationJacobian, SlotGradient
from ..symbolic.state_jacobian import StateJacobian
from ..symbolic.dependencies import Dependencies
from ..symbolic.lower import SymbolicModel, flux_scales
from .printer import formula, print_expr
from .vectorize import Columns, Scope, emit_columns, read

BATCHED_KINDS = {"state", "input", "out", "call", "slotgrad"}
COMPUTED_KINDS = ("let", "call", "derivative", "slotgrad")  # leaves a method computes (in dependency order)
LEAF_ORDER = ("state", "input", "param", "let", "call", "derivative", "slotgrad", "out", "time")
PREFIX = {"state": "s_", "input": "u_", "param": "p_", "let": "l_", "call": "c_"}


def scalar_names(sm: SymbolicModel) -> dict:
    """Symbol → the local variable that holds it. Prefixed user names cannot clash with each other, with Python
    keywords, or with the generator's own locals (none of which has the form '<letter>_...')."""
    names = {}
    for sym, leaf in sm.leaves.items():
        if leaf.kind == "time":
            names[sym] = "t"
        elif leaf.kind == "out":
            names[sym] = f"n_{leaf.source}[..., {leaf.index}]"
        elif leaf.kind == "derivative":
            names[sym] = f"d_{leaf.index}"
        elif leaf.kind == "slotgrad":  # a column of the slot's Jacobian: j + the name of the value it differentiates
            names[sym] = f"j{leaf.source}[..., {leaf.index}]"
        else:
            names[sym] = PREFIX[leaf.kind] + leaf.name
    return names


def formula_names(sm: SymbolicModel) -> dict:
    """Symbol → how the spec writes it, for comments: the user's name, or `slot(arguments)` for a neural call."""
    names = {sym: leaf.name for sym, leaf in sm.leaves.items()}
    for site in sm.calls:  # in order of creation: a call's arguments only contain calls made before it
        names[site.symbol] = f"{site.slot}({', '.join(formula(a, names) for a in site.args)})"
    return names


@dataclass
class Body:
    """A generated method's body and what the module's tables say about it."""

    lines: list
    reads_time: bool = False  # reads t, directly or through inputs
    columns: Optional[Columns] = None  # forward: the flux columns, in their order


class MethodWriter:
    """Collects the lines of one method: reads of leaves, lets and neural calls it needs, then its result."""

    def __init__(self, sm: SymbolicModel, tables: dict, batch: str | None, like: str, has_states: bool,
                 gradients: tuple = (), gates: Optional[list] = None):
        """`gradients`: the SlotGradients whose 'slotgrad' leaves the method may read (computed by autodiff, with
        the `gates` of the slots' arguments)."""
        self.sm = sm
        vectors = {"param": ("p", len(sm.param_order))}
        if has_states:
            vectors.update(state=("y", len(sm.state_names)), input=("u", len(sm.model.inputs)))
            for slot in sm.model.slots:
                if not slot.is_function:
                    vectors[f"out:{slot.name}"] = (f"n_{slot.name}", slot.n_out)
        self.gradients = {g.source: g for g in gradients}
        self.gates = gates
        self.reads_gates = False  # whether a line written so far reads the gate vector g
        for g in gradients:
            vectors[f"slotgrad:{g.source}"] = (f"j{g.source}", g.width)
        self.let_values = sm.let_values()
        self.deps = Dependencies(sm)
        names = formula_names(sm)
        self.scope = Scope(sm.leaves, scalar_names(sm), vectors, self._batched, batch, like, tables,
                           varying=self._varying, describe=lambda expr: formula(expr, names))
        self.reads_time = False

    def _batched(self, expr) -> bool:
        return self.deps.reads_kind(expr, BATCHED_KINDS)

    def _varying(self, expr) -> bool:
        # Also t: inside observe() it is [T, 1, ...], so it needs the trailing axis as much as a state does; and
        # params: per-sample ones are [*batch] (see CompiledModel.set_params).
        return self.deps.reads_kind(expr, BATCHED_KINDS | {"time", "param"})

    def columns(self, exprs: list, label: str, names: list) -> Columns:
        return emit_columns(self.scope, exprs, label, names)

    def prologue(self, params: str = "p = self.parameter_values()", batch: bool = False) -> list[str]:
        """Definitions of every local used so far, in dependency order: the parameter vector, the batch shape
        (or `batch` True: the caller's lines read it), t, the inputs, the leaves read, and the lets and neural
        calls computed (and what those need)."""
        computed = self._computed_leaves()
        uses = {k: k in self.scope.gathered or any(self.sm.leaves[s].kind == k for s in self.scope.used)
                for k in ("time", "input", "param")}
        self.reads_time = uses["time"] or uses["input"]
        tail = []
        if self.reads_time:
            tail.append("t = torch.as_tensor(t, dtype=y.dtype, device=y.device)")
        if uses["input"]:
            tail.append(f"u = self.input_values(t, {self.scope.batch_shape()})")
        lines = [params] if uses["param"] else []
        if batch or self.scope.batch_used:
            lines.append(f"{self.scope.batch} = {self.scope.like}.shape[:-1]")
        lines += tail
        used = sorted(self.scope.used, key=self._leaf_order)
        params = [sym for sym in used if self.sm.leaves[sym].kind == "param"]
        unbind = 3 * len(params) >= len(self.sm.param_order)
        if params and unbind:  # p.unbind(-1) costs about as much as reading a third of p one by one (measured)
            names = ["_"] * len(self.sm.param_order)
            for sym in params:
                names[self.sm.leaves[sym].index] = self.scope.scalar[sym]
            lines.append(f"{', '.join(names)}{',' if len(names) == 1 else ''} = p.unbind(-1)")
        for sym in used:
            leaf = self.sm.leaves[sym]
            if leaf.kind in ("state", "input") or (leaf.kind == "param" and not unbind):
                vector = {"state": "y[..., ", "input": "u[..., ", "param": "p[..., "}[leaf.kind]
                lines.append(f"{self.scope.scalar[sym]} = {vector}{leaf.index}]")
        return lines + computed

    def _leaf_order(self, sym):
        leaf = self.sm.leaves[sym]
        return LEAF_ORDER.index(leaf.kind), leaf.index, leaf.name

    def _computed_leaves(self) -> list[str]:
        """Lines for the lets, neural calls and slot gradients used, and those they read, in dependency order."""
        calls = self.deps.calls
        gathered = [s for s, leaf in self.sm.leaves.items()  # slot gradients read as whole vectors
                    if leaf.kind == "slotgrad" and f"slotgrad:{leaf.source}" in self.scope.gathered]
        reads = self.deps.reads(*self.scope.used, *gathered)
        reads |= self.deps.reads(*(a for s in reads if self._gradient(s) for a in self._gradient(s).args))
        needed = [s for s in reads if self.sm.leaves[s].kind in COMPUTED_KINDS]
        graph = {sym: sorted((d for e in self._inputs(sym) for d in e.free_symbols
                              if self.sm.leaves[d].kind in COMPUTED_KINDS), key=self._leaf_order) for sym in needed}
        order = graphlib.TopologicalSorter({k: graph[k] for k in sorted(graph, key=self._leaf_order)}).static_order()
        lines, done = [], set()
        for sym in order:
            if sym in self.let_values:
                lines += self._let_line(sym)
            elif sym in calls:
                lines += self._call_lines(calls[sym])
            elif self._gradient(sym).source not in done:  # one autodiff call gives all columns of a gradient
                done.add(self._gradient(sym).source)
                lines += self._gradient_lines(self._gradient(sym))
        return lines

    def _gradient(self, sym) -> Optional[SlotGradient]:
        leaf = self.sm.leaves[sym]
        return self.gradients[leaf.source] if leaf.kind == "slotgrad" else None

    def _inputs(self, sym) -> list:
        """The expressions a computed leaf evaluates (a slot gradient: its slot's arguments)."""
        gradient = self._gradient(sym)
        return list(gradient.args) if gradient else [e for _, e in self.deps.direct(sym)]

    def _gradient_lines(self, gradient: SlotGradient) -> list[str]:
        slots = self.sm.model.slots
        index = [s.name for s in slots].index(gradient.slot)
        # Its own table: the forward's fused call of a group starting at this slot owns `slot{index}_gates`.
        scale = _slot_gates([slots[index]], self.gates, self.scope.tables, f"slot{index}_alone")
        self.reads_gates |= bool(scale)
        return [f"j{gradient.source} = self.slot_jacobian({index}, {self.stack(list(gradient.args))}"
                f"{', ' + scale if scale else ''})  # d {gradient.slot} / d arguments"]

    def _let_line(self, sym) -> list[str]:
        code = print_expr(self.let_values[sym], _Reads(self.scope), self.scope.like)
        return [f"{self.scope.scalar[sym]} = {code}"]

    def _call_lines(self, site) -> list[str]:
        index = [s.name for s in self.sm.model.slots].index(site.slot)
        args = self.stack(list(site.args))
        return [f"{self.scope.scalar[site.symbol]} = self.slot_modules[{index}]({args})[..., 0]  # {site.slot}"]

    def stack(self, exprs: list) -> str:
        """Columns of arbitrary expressions in the given order, broadcast to the batch (for neural inputs)."""
        cols = []
        for e in exprs:
            code = print_expr(e, _Reads(self.scope), self.scope.like)
            if e.is_number:  # a Python number: make it a tensor of the model's dtype first
                code = f"{self.scope.like}.new_tensor({code})"
            cols.append(code if self._batched(e) else f"({code}).expand({self.scope.batch_shape()})")
        return "torch.stack([" + ", ".join(cols) + "], -1)"


class _Reads(dict):
    def __init__(self, scope: Scope):
        super().__init__()
        self.scope = scope

    def __missing__(self, sym):
        return read(self.scope, sym)


# ---------------------------------------------------------------- the three methods
def initial_state_body(sm: SymbolicModel, tables: dict) -> Body:
    # Batched like p: [*pbatch, n], pbatch being the per-sample params' batch shape (() when all are shared).
    w = MethodWriter(sm, tables, batch="pbatch", like="p", has_states=False)
    later = {sm.leaves[s].index for s in sm.initial_reads if sm.leaves[s].kind == "state"}  # by initial_from
    exprs = [sympy.S.Zero if i in later else expr for i, expr in enumerate(sm.initial)]
    names = [f"{name} (initial_from)" if i in later else name for i, name in enumerate(sm.state_names)]
    cols = w.columns(exprs, "initial", names)
    w.scope.gathered.add("param")  # p is read for its batch shape even where no initial value reads a param
    body = cols.lines + [f"y0 = {_ordered(cols, 'initial', tables)}"]
    if later:
        body.append("y0 = self.initial_from(y0, torch.zeros_like(y0, dtype=torch.bool))  # those reading states")
    return Body(w.prologue() + body + [f"return y0.expand(*self.state_batch(batch), {len(sm.initial)})"])


def compartment_sizes_body(sm: SymbolicModel, tables: dict) -> Body:
    """Each state's compartment size [*pbatch, n] (1 without one), from the params: a dose gives an amount, which
    a state in a compartment (a concentration) receives divided by its size."""
    w = MethodWriter(sm, tables, batch="pbatch", like="p", has_states=False)
    w.scope.gathered.add("param")  # p is read for its batch shape
    if not sm.sizes:
        return Body(w.prologue(batch=True) + [f"return p.new_ones((*pbatch, {len(sm.state_names)}))"])
    cols = w.columns(sm.sizes, "size", sm.state_names)
    return Body(w.prologue() + cols.lines + [f"return {_ordered(cols, 'size', tables)}"])


def initial_from_body(sm: SymbolicModel, tables: dict) -> Body:
    """States y [..., n] with each initial value that reads other states recomputed from y's values of those, in
    dependency order, except where keep [..., n] holds (a value given from data stays, and what reads it reads
    it). Straight-line code, one state or let at a time: each reads the values computed before it."""
    if not sm.initial_reads:
        return Body(["return y"])
    w = MethodWriter(sm, tables, batch="batch", like="y", has_states=True)
    steps = set(sm.initial_reads)
    reads = _Reads(w.scope)
    names = _Steps(w.scope, steps)  # a let computed here is read under its name, never by the prologue
    lines, states = [], []
    for sym in sm.initial_reads:
        leaf = sm.leaves[sym]
        if leaf.kind == "let":
            lines.append(f"{w.scope.scalar[sym]} = {print_expr(w.let_values[sym], names, 'y')}")
            continue
        name = reads[sym]  # defined from y by the prologue, then replaced here
        lines.append(f"{name} = torch.where(keep[..., {leaf.index}], {name}, "
                     f"{print_expr(sm.initial[leaf.index], names, 'y')})  # {leaf.name}")
        states.append((leaf.index, name))
    tables["initial_from_index"] = tuple(index for index, _ in states)
    stacked = ", ".join(name for _, name in states)
    return Body(w.prologue() + lines + [f"values = torch.stack(torch.broadcast_tensors({stacked}), -1)",
                                        "y = y.expand(*values.shape[:-1], y.shape[-1])",
                                        "return y.index_copy(-1, self.initial_from_index, values)"])


class _Steps(_Reads):
    """Symbol → code: the lets that initial_from computes itself under their names, every other leaf read
    through the scope."""

    def __init__(self, scope: Scope, steps: set):
        super().__init__(scope)
        self.steps = steps

    def __missing__(self, sym):
        leaf = self.scope.leaves[sym]
        return self.scope.scalar[sym] if sym in self.steps and leaf.kind == "let" else read(self.scope, sym)


def forward_body(sm: SymbolicModel, tables: dict, gates: Optional[list] = None) -> Body:
    """The fused vector field. With `gates` (a gate table), gate values multiply fluxes and slot arguments."""
    w = MethodWriter(sm, tables, batch="batch", like="y", has_states=True)
    cols = w.columns([f.rate for f in sm.fluxes], "flux", [f.name for f in sm.fluxes])
    slot_lines = []
    for group in _slot_groups(sm.model.slots):
        slot_lines += _slot_call(w, sm, group, gates, tables)
    flux = [f"flux = {cols.code}"] + _flux_gates(cols, gates, tables)
    flux += _compartments(w, sm, tables, cols.order, "flux", "flux")
    tail = COUPLING_TAIL if not sm.sizes else \
        ["dy = self.accumulate(flux) / size  # a state in a compartment is a concentration"] + COUPLING_TAIL[1:]
    head = w.prologue()
    if gates:
        head.append("g = self.gate_values()  # the gates, then a constant 1 read by ungated edges")
    return Body(head + slot_lines + cols.lines + flux + tail, w.reads_time, cols)


def _compartments(w: MethodWriter, sm: SymbolicModel, tables: dict, fluxes: list, values: str, label: str) -> list:
    """Lines computing `size` (each state's compartment size, 1 without one) and multiplying the columns of
    `values`, which belong to `fluxes` (indices into sm.fluxes), by the flux scales that make der terms and slot
    outputs of states in compartments amounts per time (see lower.flux_scales); nothing without compartments."""
    if not sm.sizes:
        return []
    sizes = w.columns(sm.sizes, "size", sm.state_names)
    lines = sizes.lines + [f"size = {_ordered(sizes, 'size', tables)}"]
    scales = flux_scales(sm)
    if any(scales[f] != 1 for f in fluxes):
        cols = w.columns([scales[f] for f in fluxes], f"{label}_scale", [sm.fluxes[f].name for f in fluxes])
        lines += cols.lines + [f"{values} = {values} * {_ordered(cols, f'{label}_scale', tables)}  # amounts "
                               f"per time"]
    return lines


def _flux_gates(cols: Columns, gates: Optional[list], tables: dict) -> list[str]:
    by_flux = {g.flux: i for i, g in enumerate(gates or ()) if g.flux is not None}
    if not by_flux:
        return []
    tables["flux_gates"] = tuple(by_flux.get(f, len(gates)) for f in cols.order)
    return ["flux = flux * g.index_select(0, self.flux_gates)"]


def _slot_groups(slots) -> list[list[tuple[int, object]]]:
    """The residual slots, grouped by network shape (hidden widths, activation, positive) in declaration order:
    a group of several is evaluated as one block-diagonal network (many small slots, as MNODE makes, otherwise
    cost a dozen tiny kernels and module calls each)."""
    groups: dict = {}
    for index, slot in enumerate(slots):
        if not slot.is_function:
            groups.setdefault((tuple(slot.hidden), slot.activation, slot.positive), []).append((index, slot))
    return list(groups.values())


def _slot_call(w: MethodWriter, sm: SymbolicModel, group: list, gates: Optional[list], tables: dict) -> list[str]:
    if len(group) == 1:
        index, slot = group[0]
        args = w.stack([sm.symbols[a.name] for a in slot.args]) + _times(_slot_gates([slot], gates, tables,
                                                                                     f"slot{index}"))
        return [f"n_{slot.name} = self.slot_modules[{index}]({args})"]
    slots = [slot for _, slot in group]
    key = f"slot{group[0][0]}"
    args = w.stack([sm.symbols[a.name] for slot in slots for a in slot.args])
    names = ", ".join(f"n_{slot.name}" for slot in slots)
    signature = ", ".join(f"{slot.name}({', '.join(a.name for a in slot.args)})" for slot in slots)
    return [f"# slots {signature}: one block-diagonal network",
            f"{names} = self.run_slots({tuple(i for i, _ in group)}, "
            f"{args}{_times(_slot_gates(slots, gates, tables, key))})"]


def _times(factor: str) -> str:
    return f" * {factor}" if factor else ""


def _slot_gates(slots: list, gates: Optional[list], tables: dict, key: str) -> str:
    """The gate factor of the slots' stacked arguments (a constant 1 for ungated ones), or nothing. (A function
    slot's arguments have no gates: they are gated through the rates that call it.)"""
    columns, any_gated = [], False
    for slot in slots:
        by_arg = {g.argument: i for i, g in enumerate(gates or ()) if g.slot == slot.name}
        any_gated |= bool(by_arg)
        columns += [by_arg.get(j, len(gates or ())) for j in range(len(slot.args))]
    if not any_gated:
        return ""
    tables[f"{key}_gates"] = tuple(columns)
    return f"g.index_select(0, self.{key}_gates)"


# The synchronisation coupling of `hodec fit` (runtime.Coupling, attached by set_coupling): a cheap attribute
# test, and when no coupling is active (none attached, or lambda = 0) the plain field, untouched.
COUPLING_TAIL = [
    "dy = self.accumulate(flux)",
    "if self._coupling is None:",
    "    return dy",
    "return dy + self._coupling(self, t, y)",
]
JACOBIAN_COUPLING_TAIL = [
    "if self._coupling is None:",
    "    return J",
    "return J + self._coupling.jacobian_term(self, t, y)",
]


def observables_body(sm: SymbolicModel, tables: dict) -> Body:
    w = MethodWriter(sm, tables, batch="batch", like="y", has_states=True)
    cols = w.columns(sm.observables, "observe", [o.name for o in sm.model.observables])
    result = [f"return {_ordered(cols, 'observe', tables)}"]
    return Body(w.prologue() + cols.lines + result, w.reads_time)


def _ordered(cols: Columns, label: str, tables: dict) -> str:
    """Columns back in declaration order (one gather, or none when groups kept the order)."""
    if cols.order == sorted(cols.order):
        return cols.code
    position = {expr_index: j for j, expr_index in enumerate(cols.order)}
    tables[f"{label}_order"] = tuple(position[i] for i in range(len(cols.order)))
    return f"({cols.code}).index_select(-1, self.{label}_order)"


def observation_jacobian_body(sm: SymbolicModel, tables: dict, jac: ObservationJacobian) -> Body:
    """J = ∂(observables)/∂(states), [*batch, n_obs, n_states], with every param read detached from autograd
    (so training cannot lower a coupled loss by making the coupling itself stronger). Only the symbolically
    nonzero entries are computed; they are scattered into a zero tensor."""
    n_obs, n_states = len(sm.model.observables), len(sm.state_names)
    w = MethodWriter(jac.model, tables, batch="batch", like="y", has_states=True)
    observables, states = sm.model.observables, sm.state_names
    cols = w.columns([e for _, _, e in jac.entries], "jacobian",
                     [f"d {observables[i].name} / d {states[j]}" for i, j, _ in jac.entries])
    head = w.prologue("p = self.parameter_values().detach()", batch=True)
    if not jac.entries:
        return Body(head + [f"return y.new_zeros(*batch, {n_obs}, {n_states})"])
    tables["jacobian_index"] = tuple(i * n_states + j for i, j, _ in jac.entries)
    return Body(head + cols.lines + [
        f"values = {_ordered(cols, 'jacobian', tables)}",
        f"J = y.new_zeros(*batch, {n_obs * n_states})",
        "J = J.index_copy(-1, self.jacobian_index, values)",
        f"return J.reshape(*batch, {n_obs}, {n_states})",
    ])


def state_jacobian_body(sm: SymbolicModel, tables: dict, jac: StateJacobian, gates: Optional[list] = None) -> Body:
    """J = d(dy/dt)/dy, [*batch, n, n]: the flux derivatives (vectorised like the fluxes themselves), gated like
    the fluxes, then accumulated through the stoichiometry by one scatter, J[i, j] += S[f, i] * dv_f/dy_j. The
    derivatives of neural slots with respect to their arguments come from the slots by autodiff."""
    n = len(sm.state_names)
    w = MethodWriter(jac.model, tables, batch="batch", like="y", has_states=True, gradients=jac.gradients,
                     gates=gates)
    states = sm.state_names
    cols = w.columns([d for _, _, d in jac.entries], "state_jacobian",
                     [f"d {sm.fluxes[f].name} / d {states[j]}" for f, j, _ in jac.entries])
    if not jac.entries:
        head = w.prologue(batch=True)
        return Body(head + [f"J = y.new_zeros(*batch, {n}, {n})"] + JACOBIAN_COUPLING_TAIL, w.reads_time)
    entries = [jac.entries[k] for k in cols.order]  # column c of `values` holds entries[c]
    gate_of = {g.flux: i for i, g in enumerate(gates or ()) if g.flux is not None}
    lines = [f"values = {cols.code}"] + _compartments(w, sm, tables, [f for f, _, _ in entries], "values",
                                                      "state_jacobian")
    head = w.prologue()
    gated = any(f in gate_of for f, _, _ in entries)
    if gated:
        tables["state_jacobian_gates"] = tuple(gate_of.get(f, len(gates)) for f, _, _ in entries)
        lines.append("values = values * g.index_select(0, self.state_jacobian_gates)  # a gated flux's derivatives")
    if gated or w.reads_gates:
        head = ["g = self.gate_values()  # the gates, then a constant 1 read by ungated edges"] + head
    terms = [(c, i * n + j, coefficient) for c, (f, j, _) in enumerate(entries)
             for i, coefficient in sm.fluxes[f].stoichiometry]
    tables["state_jacobian_to"] = tuple(at for _, at, _ in terms)
    if [c for c, _, _ in terms] != list(range(len(entries))) or any(k != 1 for _, _, k in terms):
        tables["state_jacobian_from"] = tuple(c for c, _, _ in terms)
        tables["state_jacobian_coef"] = tuple(float(k) for _, _, k in terms)
        lines.append("values = values.index_select(-1, self.state_jacobian_from) * self.state_jacobian_coef")
    lines += ["# J[i, j] = sum over fluxes f of S[f, i] * dv_f/dy_j (stoichiometry_table)",
              "J = self.scatter_jacobian(values, self.state_jacobian_to)"]
    if sm.sizes:
        lines.append("J = J / size[..., None]  # rows of states in compartments: concentrations")
    return Body(head + cols.lines + lines + JACOBIAN_COUPLING_TAIL, w.reads_time)
