"""Per-window params (FIT.yaml forecast.estimate): positive params whose value the encoder infers for each window
from its history, besides the state at the origin. The encoder gives one number z per listed param; the window's
value is p · exp(ln(f) · tanh(z)), p the population value (the model's own param, still trained) and f
forecast.estimate_factor, so it stays positive and within [p / f, p · f]. A window's solve and observation read the
group's parameter table with those columns replaced (CompiledModel.member_values), so gradients reach both the
encoder and p.

Only params the forecast can move freely are accepted: positive params of a model whose params are shared, not
assigned by an event (such a param is a state, estimated at the origin already), not set per trajectory by
conditions or preequilibrate (a data column sets fixed params only), in a fit without scales (params trained on
another scale)."""
from __future__ import annotations

import contextlib
import math

import torch

from ...errors import HodecError, did_you_mean

KEY = "forecast.estimate"


def estimated_columns(problem, options) -> tuple:
    """The parameters_table columns of options.estimate, in its order; a HodecError naming the key for a name the
    model cannot infer per window."""
    model = problem.model
    columns = {row[0]: (j, row[2]) for j, row in enumerate(model.parameters_table)}
    out = []
    for k, name in enumerate(options.estimate):
        where = f"{KEY}[{k}]: '{name}'"
        if name not in columns:
            raise _error(f"{where} is {_what(model, name)}")
        column, kind = columns[name]
        if name in model.state_names:
            raise _error(f"{where} is assigned by an event, so it is a state of {type(model).__name__}: its value "
                         f"at the origin is estimated with the state already")
        if kind != "positive":
            raise _error(f"{where} is a {kind} param; only positive params are estimated per window (a factor of "
                         f"their population value)")
        reason = _set_elsewhere(problem, name)
        if reason:
            raise _error(f"{where} is {reason}; a per-window value would replace it")
        out.append(column)
    if out and problem.scales.active:
        raise _error(f"{KEY}: not supported yet in a fit with scales (a param trained on another scale)")
    if out and model.param_batch_shape():
        raise _error(f"{KEY}: needs a model whose params are shared (this one has per-sample params of batch shape "
                     f"{list(model.param_batch_shape())})")
    return tuple(out)


def _what(model, name: str) -> str:
    """What a name that is not a param is, for the error."""
    for kind, names in (("a state", model.state_names), ("an input", model.input_names),
                        ("an observable", model.observable_names)):
        if name in names:
            return f"{kind} of {type(model).__name__}, not a param"
    hint = did_you_mean(name, model.param_names)
    return f"not a param of {type(model).__name__}" + (f"; {hint}" if hint else "")


def _set_elsewhere(problem, name: str) -> str:
    """Where else the fit sets the param per trajectory ('' if nowhere)."""
    config = problem.config
    for key in ("conditions", "preequilibrate"):
        for label, entry in getattr(config, key).items():
            if name in entry:
                return f"set by {key}.{label}"
    return ""


def _error(message: str) -> HodecError:
    return HodecError(message, "fit config")


def factors(z: torch.Tensor, bound: float) -> torch.Tensor:
    """The multiplicative factors exp(ln(bound) · tanh(z)) of the population values, in [1 / bound, bound]."""
    return torch.exp(math.log(bound) * torch.tanh(z))


def window_tables(problem, model, columns: tuple, scale, groups: list) -> list:
    """Per window group: the parameter table [W', P] its windows' solves read (the population values with the
    estimated columns multiplied by each window's factor from scale [W, K]); None per group without estimates."""
    if scale is None:
        return [None] * len(groups)
    p = problem.conditions.values(model)
    index_k = torch.tensor(columns, dtype=torch.long, device=p.device)
    out = []
    for index, _ in groups:
        base = p.expand(len(index), p.shape[-1])
        out.append(base.index_copy(1, index_k, base.index_select(1, index_k) * scale.index_select(0, index)))
    return out


def applied(model, table):
    """`with applied(model, table):` the model reads the windows' parameter table (nothing without one); inside,
    a group's conditions assign their columns over it (Conditions.applied)."""
    return contextlib.nullcontext() if table is None else model.member_values(table)
