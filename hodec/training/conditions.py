"""Each trajectory's own param values and initial states: FIT.yaml `conditions` and `preequilibrate` (keyed by the
data's id) and the data's param columns (Trajectory.params), applied to a group's solves as one parameter table
(CompiledModel.member_values), and pre-equilibration to a steady state.

A trajectory's params are, by precedence: its condition's (a number, or another param's value: `k: k_a`, whose
gradient then reaches k_a), its data columns', the spec's. A condition may also set states' initial values (a
number or a param's value), which win over `initial: data`. A trajectory with a `preequilibrate` entry first runs
to steady state (hodec.solvers.steady_state) under its own values overlaid with the entry's (params; states as the
start of that run), the inputs held at their values at its start time and no events; its simulation starts there,
except in the states its condition sets.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import HodecError, did_you_mean
from ..solvers import SteadyStateError, steady_state
from .config import number_text
from .data import Dataset
from .options import show
from .result import FitError

Entry = dict  # column -> a number, or the column of the param whose value it takes ("param", index)


@dataclass
class Assignments:
    """Values assigned per member to some of K columns (params or states): a number, or a param read from p."""
    assigned: torch.Tensor  # [B, K] bool
    source: torch.Tensor  # [B, K] long: the param column read where the value is not a number
    number: torch.Tensor  # [B, K]
    is_number: torch.Tensor  # [B, K] bool

    @classmethod
    def of(cls, entries: list, width: int, dtype) -> "Assignments":
        shape = (len(entries), width)
        assigned, is_number = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)
        source, number = torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=dtype)
        for b, entry in enumerate(entries):
            for column, value in entry.items():
                assigned[b, column] = True
                if isinstance(value, tuple):
                    source[b, column] = value[1]
                else:
                    is_number[b, column], number[b, column] = True, value
        return cls(assigned, source, number, is_number)

    def apply(self, p: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """base [B, K] with the assigned columns replaced; p [P]: the params the named values are read from."""
        read = p.expand(base.shape[0], p.shape[-1]).gather(-1, self.source)
        return torch.where(self.assigned, torch.where(self.is_number, self.number, read), base)


@dataclass
class Plan:
    """A group's assignments: params and states of its simulation, and of its pre-equilibration."""
    params: Assignments
    states: Assignments
    preequilibrated: torch.Tensor  # [B] bool
    pre_params: Assignments
    pre_states: Assignments


class Conditions:
    def __init__(self, model, data: Dataset, config, dtype, scales):
        self.model, self.dtype, self.scales = model, dtype, scales
        self.params = {row[0]: i for i, row in enumerate(model.parameters_table)}
        self.rows = {row[0]: row for row in model.parameters_table}
        self.states = {name: j for j, name in enumerate(model.state_names)}
        members = _members_by_id(data, config.conditions, "conditions")
        pre_members = _members_by_id(data, config.preequilibrate, "preequilibrate")
        n = len(data.trajectories)
        self.simulation: list = [{"params": {}, "states": {}} for _ in range(n)]
        self.preequilibration: list = [None] * n
        for key, entry in config.conditions.items():
            parsed = self._entry(entry, f"conditions.{key}")
            for i in members[key]:
                for part in ("params", "states"):
                    self.simulation[i][part].update(parsed[part])
        for key, entry in config.preequilibrate.items():
            parsed = self._entry(entry, f"preequilibrate.{key}")
            for i in pre_members[key]:
                self.preequilibration[i] = parsed
        self.active = (any(s["params"] or s["states"] for s in self.simulation) or
                       any(pre is not None for pre in self.preequilibration) or
                       any(tr.params for tr in data.trajectories) or scales.active)
        if self.active and model.param_batch_shape():
            raise HodecError("conditions and per-trajectory param columns need a model whose params are shared "
                             f"(this one has per-sample params of batch shape {list(model.param_batch_shape())})",
                             "fit config")
        self._plans: dict = {}

    # ---------------------------------------------------------------- checks
    def _entry(self, entry: dict, key: str) -> dict:
        """A condition's values checked against the model: {"params": {column: value}, "states": {...}}."""
        out: dict = {"params": {}, "states": {}}
        for name, value in entry.items():
            where = f"{key}.{name}"
            if name in self.params:
                out["params"][self.params[name]] = self._param_value(name, value, where)
            elif name in self.states:
                out["states"][self.states[name]] = self._source(value, where)
            else:
                hint = did_you_mean(name, [*self.params, *self.states])
                raise HodecError(f"{key}: '{name}' is neither a param nor a state of {type(self.model).__name__}"
                                 + (f"; {hint}" if hint else ""), "fit config")
        return out

    def _source(self, value, where: str):
        """A number, or ("param", column) for a param's name."""
        if not isinstance(value, str):
            return float(value)
        if value not in self.params:
            hint = did_you_mean(value, self.params)
            raise HodecError(f"{where}: '{value}' is not a param of {type(self.model).__name__} (a value is a number "
                             f"or a param's name)" + (f"; {hint}" if hint else ""), "fit config")
        return ("param", self.params[value])

    def _param_value(self, name: str, value, where: str):
        source = self._source(value, where)
        _, _, kind, lower, upper = self.rows[name]
        if isinstance(source, float):
            if kind == "positive" and not source > 0:
                raise HodecError(f"{where}: param '{name}' is positive; cannot set it to {source:g}", "fit config")
            if kind == "bounded" and not lower < source < upper:
                raise HodecError(f"{where}: param '{name}' must lie strictly inside ({lower:g}, {upper:g}); got "
                                 f"{source:g}", "fit config")
        return source

    def unread(self) -> set:
        """The params no trajectory reads: replaced in every trajectory's values (its pre-equilibration's too) and
        the value of no other param or state. They are not estimated (k when every experiment reads k_a or k_b)."""
        if not self.simulation:
            return set()
        replaced = set.intersection(*(set(s["params"]) for s in self.simulation))
        entries = [*self.simulation, *(pre for pre in self.preequilibration if pre is not None)]
        read = {value[1] for e in entries for part in ("params", "states") for value in e[part].values()
                if isinstance(value, tuple)}
        names = {column: name for name, column in self.params.items()}
        return {names[column] for column in replaced - read}

    # ---------------------------------------------------------------- per group
    def plan(self, g) -> Plan:
        """The group's assignments (cached by its members: a torchrun shard's groups are their own)."""
        key = tuple(g.members)
        if key not in self._plans:
            P, n = len(self.params), len(self.states)
            sims = [{**{self.params[name]: float(values[b]) for name, values in g.params.items()},  # data columns
                     **self.simulation[i]["params"]} for b, i in enumerate(g.members)]
            pres = [self.preequilibration[i] or {"params": {}, "states": {}} for i in g.members]
            self._plans[key] = Plan(
                Assignments.of(sims, P, self.dtype),
                Assignments.of([self.simulation[i]["states"] for i in g.members], n, self.dtype),
                torch.tensor([self.preequilibration[i] is not None for i in g.members]),
                Assignments.of([{**s, **pre["params"]} for s, pre in zip(sims, pres)], P, self.dtype),
                Assignments.of([pre["states"] for pre in pres], n, self.dtype))
        return self._plans[key]

    def table(self, model, g, preequilibration: bool = False) -> Optional[torch.Tensor]:
        """The group's parameter table [B, P] (None without conditions: the model reads its own params)."""
        if not self.active:
            return None
        plan = self.plan(g)
        p = self.values(model)
        assignments = plan.pre_params if preequilibration else plan.params
        return assignments.apply(p, p.expand(g.size, p.shape[-1]))

    def values(self, model) -> torch.Tensor:
        """The fit's parameter vector [P]: the model's, with the params trained on other scales from theirs."""
        return self.scales.apply(model, model.parameter_values())

    def applied(self, model, g):
        """`with conditions.applied(model, g):` the model reads the group's table for the block. Without conditions
        nothing changes: a table the caller set stays (forecast's per-window params, forecast/params.py), and with
        them it is the base the group's values are assigned over."""
        return model.member_values(self.table(model, g)) if self.active else contextlib.nullcontext()

    def start(self, model, g, y0: torch.Tensor, where: str) -> torch.Tensor:
        """The group's initial states: y0 [B, n] (the spec's, or data-pinned, under the group's table) with the
        states its conditions set, and the pre-equilibrated members' steady states."""
        if not self.active:
            return y0
        plan = self.plan(g)
        p = self.values(model)
        y0 = plan.states.apply(p, y0)
        if not bool(plan.preequilibrated.any()):
            return y0
        if g.inputs:
            model.set_inputs(g.inputs)
        t0 = g.t[0]
        with model.member_values(self.table(model, g, preequilibration=True)):
            start = plan.pre_states.apply(p, model.initial_state((g.size,)))
            jacobian = getattr(model, "jacobian", None)
            try:
                steady = steady_state(lambda y: model(t0, y), start,
                                      None if jacobian is None else (lambda y: jacobian(t0, y)),
                                      active=plan.preequilibrated, state_names=model.state_names)
            except SteadyStateError as err:
                raise FitError(f"{where}: no steady state found for trajectory {g.ids[err.member]}: "
                               f"{err.detail}") from None
        keep = plan.states.assigned | ~plan.preequilibrated.unsqueeze(-1)
        return torch.where(keep, y0, steady)


def _members_by_id(data: Dataset, entries: dict, key: str) -> dict:
    """Config key (a data id) -> the indices of the trajectories with that id (replicates included)."""
    by_id: dict = {}
    for i, tr in enumerate(data.trajectories):
        by_id.setdefault(tr.subject, []).append(i)
    out, seen = {}, {}
    for name in entries:
        label = number_text(name)
        if label not in by_id:
            shown = ", ".join(list(by_id)[:20]) + (", ..." if len(by_id) > 20 else "")
            raise HodecError(f"{key}: no trajectory has id {show(name)} in {data.source} (ids: {shown})", "fit config")
        if label in seen:
            raise HodecError(f"{key}: {show(seen[label])} and {show(name)} are one data id", "fit config")
        out[name], seen[label] = by_id[label], name
    return out
