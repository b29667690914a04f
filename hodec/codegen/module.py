"""Symbolic model → the source text of a Python module (Jinja2 template in templates/module.py.j2)."""
from __future__ import annotations

import builtins
import keyword
from typing import Optional

import jinja2

from .. import resources
from ..symbolic.dependencies import Dependencies
from ..symbolic.edges import interaction_edges
from ..symbolic.lower import SymbolicModel
from ..symbolic.gates import gate_table
from ..symbolic.jacobian import observation_jacobian
from ..symbolic.state_jacobian import state_jacobian
from ..version import __version__
from .events import event_assign_body, event_conditions_body, event_tables, event_times_body
from .methods import (compartment_sizes_body, forward_body, initial_from_body, initial_state_body, observables_body,
                      observation_jacobian_body, state_jacobian_body)
from .native import native_source
from .noise import noise_scale_body, noise_table
from .printer import float_literal

DENSE_LIMIT = 40_000  # flux x state entries up to which a dense matmul accumulates faster than a scatter
_MODULE_NAMES = {"torch", "runtime", "Model"}


def class_name(model_name: str) -> str:
    """The model name, unless it would shadow Python or the module's own imports."""
    taken = keyword.iskeyword(model_name) or keyword.issoftkeyword(model_name) or hasattr(builtins, model_name)
    return model_name + "_" if taken or model_name in _MODULE_NAMES else model_name


def render_module(sm: SymbolicModel, gates: bool = False) -> str:
    """The module's source; `gates` compiles in one sparsity gate per prunable edge (hodec sparsify)."""
    tables: dict = {}
    gate_list = gate_table(sm) if gates else []
    initial = initial_state_body(sm, tables)
    initial_from = initial_from_body(sm, tables)
    sizes = compartment_sizes_body(sm, tables)
    forward = forward_body(sm, tables, gate_list)
    observe = observables_body(sm, tables)
    jac = observation_jacobian(sm)
    jacobian = observation_jacobian_body(sm, tables, jac)
    state_jac = state_jacobian(sm)
    field_jacobian = state_jacobian_body(sm, tables, state_jac, gate_list)
    events = [event_times_body(sm, tables), event_conditions_body(sm, tables), event_assign_body(sm, tables)]
    fluxes = [sm.fluxes[i] for i in forward.columns.order]
    stoich = [(f, state, coef) for f, flux in enumerate(fluxes) for state, coef in flux.stoichiometry]
    native, unsupported = native_source(sm, gates)
    m = sm.model
    context = dict(
        version=__version__,
        class_name=class_name(m.name),
        doc=repr(m.doc or f"{m.name}: a model compiled by hodec."),
        source=repr(m.filename),
        state_names=literal(tuple(sm.state_names)),
        param_names=literal(tuple(p.name for p in m.params)),
        input_names=literal(tuple(i.name for i in m.inputs)),
        observable_names=literal(tuple(o.name for o in m.observables)),
        parameters_table=rows([(p.name, p.value, p.kind, p.lower, p.upper) for p in sm.param_order]),
        slots_table=rows([(s.name, tuple(a.name for a in s.args), s.outputs, s.hidden, s.activation, s.positive)
                          for s in m.slots]),
        fluxes_table=rows([(f.name, f.kind) for f in fluxes]),
        stoichiometry_table=literal(tuple(stoich)),
        accumulation=repr("dense" if len(fluxes) * len(sm.state_names) <= DENSE_LIMIT else "scatter"),
        index_tables=mapping({k: v for k, v in tables.items() if all(isinstance(x, int) for x in v)}),
        constant_tables=mapping({k: v for k, v in tables.items() if not all(isinstance(x, int) for x in v)}),
        observables_use_time=observe.reads_time,
        forward_uses_time=forward.reads_time,
        gates_table=rows([(g.name, g.kind) for g in gate_list]),
        edges_table=rows(_edges(sm) if gates else []),
        initial_table=rows(_initial_reads(sm)),
        compartments_table=rows([(s.name, s.size) for s in m.states if s.size is not None]),
        observation_table=rows([(o.name, support, state, slots) for o, support, state, slots
                                in zip(m.observables, jac.support, jac.state_of, jac.slots)]),
        n_states=len(sm.state_names),
        n_observables=len(m.observables),
        n_noise=sum(o.noise is not None for o in m.observables),
        initial_body=indent(initial.lines),
        initial_from_body=indent(initial_from.lines),
        compartment_sizes_body=indent(sizes.lines),
        forward_body=indent(forward.lines),
        observables_body=indent(observe.lines),
        jacobian_body=indent(jacobian.lines),
        state_jacobian_body=indent(field_jacobian.lines),
        jacobian_slots=", ".join(sorted({g.slot for g in state_jac.gradients})),
        **{name: rows(table) if name == "events_table" else literal(table) for name, table in event_tables(sm).items()},
        event_times_body=indent(events[0].lines),
        event_conditions_body=indent(events[1].lines),
        event_assign_body=indent(events[2].lines),
        noise_table=rows(noise_table(sm)),
        noise_scale_body=indent(noise_scale_body(sm)),
        native_source=text_lines(native),
        native_unsupported=repr(unsupported),
    )
    return _template().render(**context)


def _initial_reads(sm: SymbolicModel) -> list:
    """(state, the params its initial value reads through lets and the initial values of the states it reads):
    what `initial: data` may pin (a state whose value reads a trainable param keeps it, so the param trains).
    Initial values call no neural slot (a check)."""
    deps = Dependencies(sm)
    order = {p.name: i for i, p in enumerate(sm.param_order)}
    index = {name: i for i, name in enumerate(sm.state_names)}
    later = [sm.leaves[s].index for s in sm.initial_reads if sm.leaves[s].kind == "state"]  # dependency order
    params = {}
    for i in [i for i in range(len(sm.initial)) if i not in later] + later:
        read = deps.names("state", sm.initial[i])
        params[i] = deps.names("param", sm.initial[i]).union(*(params[index[name]] for name in read))
    return [(state, tuple(sorted(params[i], key=order.get))) for i, state in enumerate(sm.state_names)]


def _edges(sm: SymbolicModel) -> list:
    """(source, target, kind, name) for every cause of every interaction-graph edge."""
    return [(u, v, c.kind, c.name) for (u, v), causes in interaction_edges(sm).items() for c in causes]


def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.folder("templates"))),
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    return env.get_template("module.py.j2")


def indent(lines: list[str], depth: int = 8) -> str:
    pad = " " * depth
    return "\n".join(pad + line.replace("\n", "\n" + pad) for line in lines)


def literal(value, width: int = 100, depth: int = 4) -> str:
    """repr of a (possibly long) tuple, wrapped so that no line grows past `width`; NaN and infinities as code that
    evaluates to them (a constant Jacobian entry such as d(0^A)/dA is NaN; repr would print a bare name `nan`)."""
    if not isinstance(value, tuple):
        return repr(value)
    items = [float_literal(v) if isinstance(v, float) else repr(v) for v in value]
    text = "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if len(text) <= width:
        return text
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) + 2 > width:
            lines.append(line)
            line = ""
        line += item + ", "
    lines.append(line)
    pad = " " * (depth + 4)
    return "(\n" + "\n".join(pad + ln.rstrip() for ln in lines) + "\n" + " " * depth + ")"


def text_lines(text: Optional[str]) -> str:
    """A long text as a Python literal: one string per line, concatenated (None as None)."""
    if text is None:
        return "None"
    return "(\n" + "".join(f"        {line!r}\n" for line in text.splitlines(keepends=True)) + "    )"


def rows(items: list) -> str:
    if not items:
        return "()"
    return "(\n" + "".join(f"        {item!r},\n" for item in items) + "    )"


def mapping(tables: dict) -> str:
    if not tables:
        return "{}"
    return "{\n" + "".join(f"        {k!r}: {literal(v, depth=8)},\n" for k, v in tables.items()) + "    }"
