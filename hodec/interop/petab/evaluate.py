"""A PEtab-SciML problem evaluated at its nominal parameters: the log-likelihood, the simulations at the
measurement points and the gradient of the log-likelihood with respect to every estimated parameter (mechanistic
ones on their parameterScale, network arrays in the PEtab-SciML layout), by autograd through hodec's own solver;
and the files the PEtab-SciML test suite compares (result.yaml, simulations.tsv, grad_mech.tsv, grad_NET.hdf5)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import sympy
import torch

from ...errors import HodecError
from ...files import write_atomic
from ...runtime.likelihood import log_densities
from ...solvers import SteadyStateError, steady_state
from ..petab_sciml.arrays import write_parameters
from .mapping import NAME, ArrayInput, Hybrid, SlotNet, build, is_array_parameter
from .placeholders import assigned
from .problem import Problem
from .tables import Row

RTOL, ATOL = 1e-12, 1e-14  # far below the 1e-6 asked: backprop through steps sized for a kinked (relu) RHS needs it
# The solver: a stiff one for mechanistic models (systems-biology models mostly are; at rtol 1e-12 'auto' did not
# switch on Boehm_JProteomeRes2014 and ran tsit5 for over 5 min, rodas5p takes 22 s), 'auto' with a network in the
# right-hand side (the suite's cases pass so; a Rosenbrock step would need the network's Jacobian every step).
METHODS = {False: "rodas5p", True: "auto"}
SCALES = {"lin": lambda p: 1.0, "log": lambda p: p, "log10": lambda p: p * math.log(10.0)}  # d p / d (scaled p)
TORCH_FUNCTIONS = {"exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "tanh": torch.tanh, "sin": torch.sin,
                   "cos": torch.cos, "Abs": torch.abs}


@dataclass
class Evaluation:
    llh: float
    simulations: list  # (observableId, experimentId, time, simulation) per measurement row
    grad_mech: list  # (parameterId, value)
    grad_nets: dict  # net id -> {layer: {array: np.ndarray}} (frozen arrays empty)
    log_posterior: Optional[float] = None  # llh + log prior, when some parameter has a prior (the gradients: its)


def evaluate_problem(problem: Problem, gelu: str = "none", gradients: bool = True) -> Evaluation:
    """`gelu`: the GELU a network file's gelu means where it does not say (as Network's). gradients=False: the
    llh and simulations only (no graph kept: backpropagating through the steps of a long oscillating solve at
    rtol 1e-12 takes minutes), grad_mech and grad_nets empty."""
    with torch.set_grad_enabled(gradients):
        return _evaluate_problem(problem, gelu, gradients)


def _evaluate_problem(problem: Problem, gelu: str, gradients: bool) -> Evaluation:
    hybrid = build(problem, gelu)
    values = _parameter_values(problem)
    slots = {name: SlotNet(hybrid.nets[net], index, element) for name, (net, index, element) in hybrid.slots.items()}
    model = hybrid.model_class(slots=slots).double() if slots else hybrid.model_class().double()
    for net in hybrid.nets.values():
        for key, tensor in net.network.petab_arrays().items():
            tensor.requires_grad_(key not in net.frozen)
    llh = torch.zeros((), dtype=torch.float64)
    simulations: list = [None] * len(problem.measurements)
    for experiment, rows in _by_experiment(problem).items():
        part, simulated = _experiment(problem, hybrid, model, slots, values, experiment, rows, METHODS[bool(slots)])
        llh = llh + part
        for (k, _), value in zip(rows, simulated):
            simulations[k] = value
    prior = _log_prior(problem, values, hybrid)
    objective = llh if prior is None else llh + prior
    if objective.requires_grad:  # not without measurements or estimated parameters: every gradient is 0
        objective.backward()
    grad_mech = [(pid, _scaled_grad(problem.parameters[pid], values[pid])) for pid in values
                 if values[pid].requires_grad and gradients]
    grad_nets = {net_id: _net_grads(net) for net_id, net in hybrid.nets.items() if gradients}
    sims = [(row["observableId"], row["experimentId"], row.number("time"), value)
            for row, value in zip(problem.measurements, simulations)]
    llh = llh.detach()
    posterior = None if prior is None else float(llh + prior.detach())
    return Evaluation(float(llh), sims, grad_mech, grad_nets, posterior)


def _parameter_values(problem: Problem) -> dict:
    """{parameterId: 0-d tensor} of the numeric parameters at their nominal values, estimated ones requiring
    grad (network arrays, nominalValue 'array', are the networks' own tensors)."""
    values = {}
    for pid, row in problem.parameters.items():
        if row["nominalValue"] == "array" or is_array_parameter(problem, pid):
            continue
        scale = row["parameterScale"] or "lin"
        if scale not in SCALES:
            row.fail(f"parameterScale {scale!r}: expected lin, log or log10")
        estimated = row["estimate"].lower() in ("true", "1")
        values[pid] = torch.tensor(row.number("nominalValue"), dtype=torch.float64, requires_grad=estimated)
    return values


def _log_prior(problem: Problem, values: dict, hybrid: Hybrid) -> Optional[torch.Tensor]:
    """The sum of the log prior densities (priorDistribution, priorParameters) of the estimated parameters and
    network arrays; None when no parameter has a prior."""
    terms = [_prior_density(problem.parameters[pid], value) for pid, value in values.items()
             if value.requires_grad and problem.parameters[pid]["priorDistribution"]]
    for net in hybrid.nets.values():
        tensors = net.network.petab_arrays()
        terms += [_prior_density(row, tensors[key]).sum() for key, row in net.rows.items()
                  if key not in net.frozen and row["priorDistribution"]]
    return sum(terms) if terms else None


def _prior_density(row: Row, x: torch.Tensor) -> torch.Tensor:
    kind = row["priorDistribution"]
    try:
        a, b = (float(v) for v in row["priorParameters"].split(";"))
    except ValueError:
        row.fail(f"priorParameters {row['priorParameters']!r}: two numbers 'a;b' are expected")
    if kind == "normal":
        return -0.5 * math.log(2 * math.pi * b * b) - (x - a) ** 2 / (2 * b * b)
    if kind == "laplace":
        return -math.log(2 * b) - torch.abs(x - a) / b
    if kind == "uniform":
        return torch.where((x >= a) & (x <= b), -math.log(b - a), -math.inf) * torch.ones_like(x)
    row.fail(f"priorDistribution {kind!r} is not supported yet (normal, laplace, uniform)")


def _scaled_grad(row: Row, value: torch.Tensor) -> float:
    grad = 0.0 if value.grad is None else float(value.grad)
    return grad * SCALES[row["parameterScale"] or "lin"](float(value.detach()))


def _net_grads(net) -> dict:
    layers: dict = {}
    for (layer, name), tensor in net.network.petab_arrays().items():
        if (layer, name) in net.frozen:
            grad = np.zeros((0,))
        else:
            grad = np.zeros(tuple(tensor.shape)) if tensor.grad is None else tensor.grad.detach().numpy()
        layers.setdefault(layer, {})[name] = grad
    return layers


def _by_experiment(problem: Problem) -> dict:
    groups: dict = {}
    for k, row in enumerate(problem.measurements):
        experiment = row["experimentId"]  # it and the observableId name rows of their tables (read_problem)
        if row.number("time") == -math.inf:
            row.fail("a measurement at time -inf: only inf (the steady state) or a finite time is one")
        groups.setdefault(experiment, []).append((k, row))
    return groups


def _experiment(problem: Problem, hybrid: Hybrid, model, slots: dict, values: dict, experiment: str, rows: list,
                method: str):
    """The log-likelihood of one experiment's measurements and {measurement index: simulated value}. Its periods
    run in turn, each from the state the one before ended in, its conditions applied at its start (parameters
    keep the values set until a later period sets them again; states set are the period's initial values); a
    period starting at -inf is a pre-equilibration (its steady state); a measurement is observed in the period
    its time falls in, one at time inf at the last period's steady state."""
    env = dict(values)
    y, continued = None, False
    llh, simulated = torch.zeros((), dtype=torch.float64), {}
    for number, (start, end, period) in enumerate(_periods(problem, experiment, rows)):
        conditions = [c for c in period["conditionId"].split(";") if c]
        for slot in slots.values():
            slot.constants = {expr.entity: _array(hybrid, expr.entity, conditions, period)
                              for expr in slot.net.inputs.values() if isinstance(expr, ArrayInput)}
        table, initial = _experiment_values(problem, hybrid, model, env, conditions, period, number == 0)
        mine = [(k, row) for k, row in rows if _within(row.number("time"), start, end)]
        with model.member_values(table):
            y = model.initial_state(batch=(1,)) if y is None else y
            for index, value in initial.items():
                y = torch.cat([y[:, :index], value.reshape(1, 1), y[:, index + 1:]], 1)
            states, y, continued = _period_states(model, y, start, end, mine, period, continued, method)
        part, values_at = _observed(problem, hybrid, model, table, env, conditions, mine, states)
        llh = llh + part
        simulated.update(values_at)
    return llh, [simulated[k] for k, _ in rows]


def _within(time: float, start: float, end: float) -> bool:
    """Whether a measurement time falls in the period [start, end) (time inf: in the last one, which ends there)."""
    return start <= time < end or time == end == math.inf


def _periods(problem: Problem, experiment: str, rows: list) -> list:
    """(start, end, row) of an experiment's periods in time order, each ending where the next starts (the last
    at inf); measurements without an experiment: one period from time 0 without conditions."""
    if not experiment:
        periods = [Row({}, rows[0][1].line, rows[0][1].source)]
    else:
        periods = problem.experiments[experiment]
    starts = [period.number("time") if period["time"] else 0.0 for period in periods]
    order = sorted(range(len(periods)), key=starts.__getitem__)
    for before, after in zip(order, order[1:]):
        if starts[before] == starts[after]:
            periods[after].fail(f"experiment '{experiment}' has two periods starting at time {starts[after]!r}")
    if starts[order[-1]] == math.inf:
        periods[order[-1]].fail("a period starting at time inf: periods start at finite times (the first may at "
                                "-inf: a pre-equilibration)")
    for _, row in rows:
        if row.number("time") < starts[order[0]]:
            row.fail(f"time {row['time']} lies before experiment '{experiment}' starts (at {starts[order[0]]!r})")
    ends = [starts[k] for k in order[1:]] + [math.inf]
    return [(starts[k], end, periods[k]) for k, end in zip(order, ends)]


def _period_states(model, y: torch.Tensor, start: float, end: float, rows: list, period: Row, continued: bool,
                   method: str):
    """({time: state [1, n]} at the measurement times of one period, the state it ends in, whether that ends a
    simulation a next period continues), from its initial state y [1, n], under its parameter table."""
    times = [row.number("time") for _, row in rows]
    if start == -math.inf:  # pre-equilibration
        for (_, row), time in zip(rows, times):
            if math.isfinite(time):
                row.fail(f"time {row['time']} falls in the pre-equilibration period (from -inf), which has no "
                         f"finite times")
        y = _steady(model, y, 0.0, period)
        return {math.inf: y}, y, False
    grid = sorted({start, *filter(math.isfinite, times)} | ({end} if math.isfinite(end) else set()))
    ts = torch.tensor(grid, dtype=torch.float64)
    ys = model.simulate(ts, y, method=method, rtol=RTOL, atol=ATOL, after_events=continued) if len(grid) > 1 \
        else y[None]
    states = dict(zip(grid, ys))
    if math.inf in times:
        states[math.inf] = _steady(model, ys[-1], grid[-1], period)
    return states, ys[-1], True


def _steady(model, y: torch.Tensor, t: float, period: Row) -> torch.Tensor:
    """The steady state the dynamics reach from y [1, n] under the current table (gradients by the implicit
    function theorem)."""
    time = torch.tensor(t, dtype=torch.float64)
    jacobian = getattr(model, "jacobian", None)
    try:
        return steady_state(lambda x: model(time, x), y, None if jacobian is None else (lambda x: jacobian(time, x)),
                            state_names=model.state_names)
    except SteadyStateError as err:
        period.fail(f"no steady state found: {err.detail}")


def _observed(problem: Problem, hybrid: Hybrid, model, table, env: dict, conditions: list, rows: list,
              states: dict):
    """The log-likelihood of measurement rows and {measurement index: simulated value}, each row observed at the
    state of its time under the period's table with its placeholders set to its observableParameters and
    noiseParameters."""
    groups: dict = {}
    for k, row in rows:
        groups.setdefault(assigned(row, problem.observables[row["observableId"]]), []).append((k, row))
    columns = {name: k for k, (name, *_) in enumerate(model.parameters_table)}
    noise_rows = [name for name, _ in model.noise_table]
    llh, simulated = torch.zeros((), dtype=torch.float64), {}
    for placeholders, members in groups.items():
        own = table
        for name, text in placeholders:
            value = _evaluate(text, env, hybrid, conditions, members[0][1])
            if name in columns:  # (a declared placeholder the formula does not read is no model param)
                own = _set(own, columns[name], value)
        times = [row.number("time") for _, row in members]
        ys, ts = torch.stack([states[time] for time in times]), torch.tensor(times, dtype=torch.float64)
        with model.member_values(own):
            obs = model.observe(ys, ts)
            sigma = model.noise_scale(ts.reshape(-1, 1), ys, obs)
        at = range(len(members))
        mu = obs[at, 0, [model.observable_names.index(row["observableId"]) for _, row in members]]
        noise = [noise_rows.index(row["observableId"]) for _, row in members]
        y = torch.tensor([row.number("measurement") for _, row in members], dtype=torch.float64)
        distributions = [model.noise_table[k][1] for k in noise]
        llh = llh + log_densities(distributions, y[None], mu[None], sigma[at, 0, noise][None]).sum()
        simulated.update((k, float(v)) for (k, _), v in zip(members, mu.detach()))
    return llh, simulated


def _experiment_values(problem: Problem, hybrid: Hybrid, model, env: dict, conditions: list, period: Row,
                       first: bool):
    """The parameter table [1, P] of one period (the PEtab parameters and what its and the earlier periods'
    conditions set, in env, which it updates; the outputs of the networks run before simulation) and {state
    index: value} of the states its conditions (and, in the first period, those networks) set at its start."""
    overrides = {name: expr for name, expr in hybrid.presim.items() if first or name not in model.state_names}
    for condition in conditions:
        if condition not in problem.conditions and not any(condition in key.split(";") for arrays in
                                                           hybrid.arrays.values() for key in arrays):
            period.fail(f"conditionId '{condition}' is not in the conditions table")
        for row in problem.conditions.get(condition, []):
            env[row["targetId"]] = _evaluate(row["targetValue"], env, hybrid, conditions, row)
            name = hybrid.names.get(row["targetId"], row["targetId"])
            if name in model.param_names or name in model.state_names:
                overrides[name] = row["targetValue"]
            elif row["targetId"] not in problem.parameters and row["targetId"] not in problem.mapping:
                row.fail(f"targetId '{row['targetId']}' is no parameter or species of the model, parameter of the "
                         f"parameters table or network input")
    table = model.parameter_values().detach().clone().reshape(1, -1)
    columns = {name: k for k, (name, *_) in enumerate(model.parameters_table)}
    for name in model.param_names:
        if name in env and name not in overrides:
            table = _set(table, columns[name], env[name])
    initial = {}
    for name, expr in overrides.items():
        value = _evaluate(expr, env, hybrid, conditions, period)
        if name in columns:
            table = _set(table, columns[name], value)
        else:
            initial[model.state_names.index(name)] = value
    return table, initial


def _set(table: torch.Tensor, column: int, value) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=table.dtype).reshape(1, 1)
    return torch.cat([table[:, :column], value, table[:, column + 1:]], 1)


def _evaluate(expr: str, env: dict, hybrid: Hybrid, conditions: list, row: Row) -> torch.Tensor:
    """A PEtab expression of parameters, numbers and outputs of networks run before simulation, as a tensor."""
    words = sorted(set(NAME.findall(expr)) - set(TORCH_FUNCTIONS))
    arguments = []
    for word in words:
        if word in hybrid.outputs:
            arguments.append(_presim_output(word, env, hybrid, conditions, row))
        elif word in env:
            arguments.append(env[word])
        else:
            row.fail(f"'{word}' in {expr!r} is not a parameter, condition value or network output known before "
                     f"simulation")
    symbols = [sympy.Symbol(w) for w in words]
    try:
        parsed = sympy.sympify(expr, locals={w: s for w, s in zip(words, symbols)})
    except (sympy.SympifyError, SyntaxError, TypeError):
        row.fail(f"cannot read the formula {expr!r}")
    function = sympy.lambdify(symbols, parsed, modules=[TORCH_FUNCTIONS, "math"])
    return torch.as_tensor(function(*arguments), dtype=torch.float64)


def _presim_output(word: str, env: dict, hybrid: Hybrid, conditions: list, row: Row) -> torch.Tensor:
    port = hybrid.outputs[word]
    net = hybrid.nets[port.net]
    if net.in_model:
        row.fail(f"'{word}' is an output of network '{net.id}', which reads model states: it is known only "
                 f"during simulation")
    outputs = net.run(lambda _, expr: _evaluate(expr, env, hybrid, conditions, row).reshape(1),
                      lambda source: _array(hybrid, source.entity, conditions, row))
    out = outputs[port.index]
    return out.reshape(-1)[port.element or 0]


def _array(hybrid: Hybrid, entity: str, conditions: list, row: Row) -> torch.Tensor:
    """An input array of the array files: the one for the experiment's condition, else the one for all."""
    arrays = hybrid.arrays.get(entity)
    if arrays is None:
        row.fail(f"network input '{entity}' is 'array' but no array file holds inputs/{entity}")
    for key, array in arrays.items():
        if set(key.split(";")) & set(conditions) or key in ("0", "data"):
            return torch.as_tensor(array, dtype=torch.float64)
    row.fail(f"inputs/{entity} holds no array for condition(s) {', '.join(conditions) or '(none)'} "
             f"(keys: {', '.join(arrays)})")


def write_evaluation(evaluation: Evaluation, out: Path) -> None:
    """result.yaml, simulations.tsv, grad_mech.tsv and grad_NET.hdf5 per network in `out` (each atomically)."""
    if not out.is_dir():
        raise HodecError(f"output folder does not exist: {out}")
    posterior = "" if evaluation.log_posterior is None else f"log_posterior: {evaluation.log_posterior!r}\n"
    write_atomic(out / "result.yaml", f"llh: {evaluation.llh!r}\n{posterior}")
    lines = ["observableId\texperimentId\ttime\tsimulation"]
    lines += [f"{o}\t{e}\t{t!r}\t{s!r}" for o, e, t, s in evaluation.simulations]
    write_atomic(out / "simulations.tsv", "\n".join(lines) + "\n")
    lines = ["parameterId\tvalue"] + [f"{p}\t{v!r}" for p, v in evaluation.grad_mech]
    write_atomic(out / "grad_mech.tsv", "\n".join(lines) + "\n")
    for net_id, layers in evaluation.grad_nets.items():
        write_parameters(out / f"grad_{net_id}.hdf5", net_id, layers)
