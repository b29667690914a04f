"""A PEtab problem as the files `hodec fit` reads: the `.hode` spec (the import's, the table's parameters at their
nominal values, the estimated ones trainable within their bounds), the measurements in hodec's long format (id =
experiment, t, dv, dvid = observable, and a row without a value at each experiment's start, where its simulation
starts) and the FIT.yaml of the conditions per experiment, the priors, the estimation scales and `initial: spec`.
PEtab-SciML networks become neural slots (slots.py; those set before simulation called in lets, presim.py), their
arrays the slots' starting weights (slot_weights.pt) and their frozen arrays FIT.yaml's `frozen`. Only what
`hodec fit` means the same way is written: noise and observable placeholders are fixed params that FIT.yaml's
conditions set per experiment (refused where one experiment's rows give one placeholder different values); a
pre-equilibration period (at -inf) is FIT.yaml's preequilibrate; more periods, steady-state measurements,
conditions that are expressions, network inputs from array files, network-set initial values and priors on network
arrays are refused, naming them."""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ...errors import HodecError
from ...files import write_atomic
from ...training.config import DEFAULTS
from .mapping import NAME, ArrayInput, Hybrid, build, estimated, is_array_parameter
from .placeholders import assigned
from .presim import presim_lets
from .problem import Problem
from .slots import TrainableSlotNet, as_slot_mlp
from .tables import Row

NO_EXPERIMENT = "default"  # the data id of measurements without an experimentId (one experiment from t = 0)
PRIORS = ("normal", "laplace", "uniform")  # PEtab's priors that mean the same in FIT.yaml's priors
SOLVER = {"rtol": 1e-8, "atol": 1e-10}  # tighter than fit's default: a PEtab llh is compared to few digits
WEIGHTS = "slot_weights.pt"  # the networks' arrays as the slots' starting weights (FIT.yaml's slot_weights)


@dataclass
class FitFiles:
    spec: str  # model.hode
    data: str  # data.csv
    config: dict  # FIT.yaml
    weights: dict = field(default_factory=dict)  # slot -> {array: tensor}, written to WEIGHTS
    modules: dict = field(default_factory=dict)  # slot -> the network put into it as it is (hodec petab fit only)


def fit_files(problem: Problem, gelu: str = "none", modules: bool = False) -> FitFiles:
    """The files of hodec fit. A network that no slot declaration makes is refused, naming it, unless `modules`:
    then FitFiles.modules holds it for `Model(slots=...)` (what `hodec petab fit` does)."""
    hybrid = build(problem, gelu)
    _check_networks(problem, hybrid)
    text, presim = presim_lets(problem, hybrid, hybrid.text)
    slots = {**hybrid.slots, **presim}
    text, weights, frozen, put = _slots(problem, hybrid, text, slots, modules)
    config = {**_config(problem, hybrid), **_network_keys(problem, text, slots, weights, frozen)}
    return FitFiles(_spec(problem, hybrid, text), _data(problem), config, weights, put)


def write_fit_files(files: FitFiles, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "model.hode", files.spec)
    write_atomic(out / "data.csv", files.data)
    if files.weights:
        buffer = io.BytesIO()
        torch.save(files.weights, buffer)
        write_atomic(out / WEIGHTS, buffer.getvalue())
    write_atomic(out / "FIT.yaml", yaml.safe_dump(files.config, sort_keys=False))


def _check_networks(problem: Problem, hybrid: Hybrid) -> None:
    """Refuse, located, what hodec fit cannot train yet: network inputs from array files that differ by
    condition, outputs of networks run before simulation read by observables, priors on network arrays."""
    for target, row in problem.hybridization.items():
        keys = set(hybrid.arrays.get(target, {}))
        if target in problem.mapping and row["targetValue"] == "array" and not (keys and keys <= {"0", "data"}):
            row.fail(f"network input '{target}' is given in an array file per condition (inputs/{target}: "
                     f"{', '.join(hybrid.arrays.get(target, {})) or 'none'}): hodec fit has no per-experiment "
                     f"network inputs yet")
    presim_outputs = {port_id for port_id, port in hybrid.outputs.items() if not hybrid.nets[port.net].in_model}
    for obs_id, row in problem.observables.items():
        read = set(NAME.findall(row["observableFormula"] + " " + row["noiseFormula"])) & presim_outputs
        if read:
            row.fail(f"observable '{obs_id}' reads {sorted(read)[0]}, an output of network "
                     f"'{hybrid.outputs[sorted(read)[0]].net}' run before simulation: hodec fit cannot train it yet")
    for net in hybrid.nets.values():
        for key, row in net.rows.items():
            if key not in net.frozen and row["priorDistribution"]:
                row.fail(f"a prior on the arrays of network '{net.id}': FIT.yaml's priors are on parameters only")


def _slots(problem: Problem, hybrid: Hybrid, text: str, slots: dict, modules: bool) -> tuple:
    """The spec's text with each network's slot declarations; the slots' starting weights, FIT.yaml's frozen
    arrays, and the networks put into slots as they are."""
    lines = text.rstrip("\n").split("\n")
    by_net: dict = {}
    for slot, (net_id, _, _) in slots.items():
        by_net.setdefault(net_id, []).append(slot)
    weights, frozen, put = {}, [], {}
    for net_id, names in by_net.items():
        net = hybrid.nets[net_id]
        mlp, why = as_slot_mlp(net, len(names))
        if mlp is not None:
            lines = _declare(lines, names[0], mlp.declaration(names[0], len(net.expressions())))
            weights[names[0]] = mlp.weights(net)
            frozen += mlp.frozen(names[0], net)
            continue
        if not modules:
            raise HodecError(f"network '{net_id}' is no .hode neural slot: {why}; `hodec petab fit` trains it as it "
                             f"is (it puts the network into the model's slots)", str(problem.networks[net_id]))
        for slot in names:
            put[slot] = TrainableSlotNet(net, *slots[slot][1:])
            put[slot].constants = {source.entity: torch.as_tensor(_one_array(hybrid, source.entity))
                                   for source in net.inputs.values() if isinstance(source, ArrayInput)}
            lines = _declare(lines, slot, f"# {slot}: network '{net_id}' ({problem.networks[net_id].name}) as it "
                                          f"is, put in by hodec petab fit\n" + _declaration(lines, slot))
        frozen += TrainableSlotNet.frozen(names[0], net)
    return "\n".join(lines) + "\n", weights, frozen, put


def _one_array(hybrid: Hybrid, entity: str):
    """The array of an input the same for every condition (_check_networks refused the others)."""
    return next(iter(hybrid.arrays[entity].values()))


def _network_keys(problem: Problem, text: str, slots: dict, weights: dict, frozen: list) -> dict:
    """FIT.yaml's keys for the networks: no weight decay (PEtab's objective has none), the starting weights, the
    frozen arrays; homotopy gain 0 for observables calling slots (their Jacobian is a network's, which cannot be
    coupled), the others the default, or method vanilla when all do."""
    if not slots:
        return {}
    keys: dict = {"weight_decay": 0.0}
    if weights:
        keys["slot_weights"] = WEIGHTS
    if frozen:
        keys["frozen"] = frozen
    uncoupled = _observables_calling_slots(text, slots)
    if uncoupled:
        coupled = [obs for obs in dict.fromkeys(row["observableId"] for row in problem.measurements)
                   if obs not in uncoupled]
        keys.update({"k": dict.fromkeys(coupled, DEFAULTS["k"])} if coupled else {"method": "vanilla"})
    return keys


def _observables_calling_slots(text: str, slots: dict) -> set:
    calls = re.compile(rf"\b({'|'.join(map(re.escape, slots))})\s*\(")
    return {line.split()[1] for line in text.split("\n")
            if line.startswith("observe ") and calls.search(line.split("=", 1)[1])}


def _declaration(lines: list, slot: str) -> str:
    return next(line for line in lines if line.startswith(f"neural {slot}("))


def _declare(lines: list, slot: str, new: str) -> list:
    """The slot's placeholder declaration (mapping's) replaced by `new`."""
    old = _declaration(lines, slot)
    return [new if line == old else line for line in lines]


def _spec(problem: Problem, hybrid: Hybrid, text: str) -> str:
    """The import's text with each table parameter at its nominalValue (PEtab's value over the model's) and each
    estimated one's `fixed` replaced by its bounds (the import declares every parameter fixed)."""
    placeholder_parameters = _placeholder_parameters(problem)
    for pid, row in problem.parameters.items():
        if is_array_parameter(problem, pid) or row["nominalValue"] == "array":
            continue
        name = hybrid.names.get(pid, pid)
        line = re.compile(rf"^param {re.escape(name)} = \S+ fixed( \".*\")?$", re.M)  # an SBML name as its doc
        if not line.search(text) and pid in placeholder_parameters:
            text = text.rstrip("\n") + f"\nparam {name} = 1 fixed\n"  # read only as a placeholder's value
        if not line.search(text):
            if estimated(row):
                row.fail(f"estimated parameter '{pid}' is no parameter of the model hodec fit could train")
            continue  # a fixed one the added text declares (a noise or observable parameter) or a let replaces
        domain = _domain(row) if estimated(row) else " fixed"
        text = line.sub(lambda m: f"param {name} = {row.number('nominalValue')!r}{domain}{m.group(1) or ''}", text,
                        count=1)
    return text


def _mechanistic(problem: Problem) -> list:
    """(parameterId, row) of the estimated parameters that are no network arrays."""
    return [(pid, row) for pid, row in problem.parameters.items()
            if estimated(row) and not is_array_parameter(problem, pid) and row["nominalValue"] != "array"]


def _domain(row: Row) -> str:
    lower, upper = row.number("lowerBound") if row["lowerBound"] else -math.inf, \
        row.number("upperBound") if row["upperBound"] else math.inf
    if math.isfinite(lower) and math.isfinite(upper):
        return f" in ({lower!r}, {upper!r})"
    if lower >= 0:
        return " positive"
    if math.isfinite(upper):
        row.fail("an upper bound without a lower one: hodec params are free, positive or bounded on both sides")
    return ""


def _data(problem: Problem) -> str:
    if NO_EXPERIMENT in problem.experiments and any(not row["experimentId"] for row in problem.measurements):
        problem.measurements[0].fail(f"measurements without an experimentId and an experiment '{NO_EXPERIMENT}': "
                                     f"both would be data id '{NO_EXPERIMENT}'")
    by_id: dict = {}  # data id -> [(time, dv, dvid)], the start's row without a value first
    for row in problem.measurements:
        time = row.number("time")
        if not math.isfinite(time):
            row.fail("a measurement at time inf (steady state) is not written for hodec fit")
        experiment = row["experimentId"] or NO_EXPERIMENT
        if experiment not in by_id:
            by_id[experiment] = [(_start(problem, row), "", "")]
        by_id[experiment].append((time, repr(row.number("measurement")), row["observableId"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "t", "dv", "dvid", "evid"])
    for experiment, rows in by_id.items():  # a trajectory's rows in time order (sorted is stable: start first)
        writer.writerows([experiment, repr(time), dv, dvid, 0 if dvid else 2] for time, dv, dvid in sorted(
            rows, key=lambda r: r[0]))
    return buffer.getvalue()


def _start(problem: Problem, row: Row) -> float:
    """The time an experiment's simulation starts (its period's time; 0 without one)."""
    _, periods = _periods(problem, row["experimentId"])
    return periods[0].number("time") if periods and periods[0]["time"] else 0.0


def _periods(problem: Problem, experiment: str) -> tuple:
    """(the pre-equilibration period or None, [the simulated period]) of an experiment: a first period at -inf is
    FIT.yaml's preequilibrate; one more period is refused."""
    if not experiment:
        return None, []
    periods = list(problem.experiments[experiment])  # an experiment of the table (read_problem checks)
    pre = periods.pop(0) if len(periods) > 1 and periods[0].number("time") == -math.inf else None
    if len(periods) != 1:
        periods[1].fail(f"experiment '{experiment}' has {len(periods)} periods after its pre-equilibration: only "
                        f"one is written for hodec fit")
    return pre, periods


def _condition_values(problem: Problem, hybrid: Hybrid, period: Row) -> dict:
    """Model name -> number or parameter name of the conditions a period applies."""
    values = {}
    for condition in filter(None, period["conditionId"].split(";")):
        if condition not in problem.conditions:
            period.fail(f"conditionId '{condition}' is not in the conditions table")
        values.update(_condition(row, hybrid, problem.parameters) for row in problem.conditions[condition])
    return values


def _preequilibration(problem: Problem, hybrid: Hybrid, pre: Row, simulated: dict, spec: str) -> dict:
    """FIT.yaml's preequilibrate entry of a pre-equilibration period: its conditions' values, and every param the
    simulated period sets that it does not at the param's own value (hodec's pre-equilibration overlays the
    trajectory's conditions; PEtab's applies the pre-equilibration condition alone)."""
    values = _condition_values(problem, hybrid, pre)
    params = {m.group(1) for m in re.finditer(r"^param (\w+) = ", spec, re.M)}
    return {**{name: name for name in simulated if name in params and name not in values}, **values}


def _config(problem: Problem, hybrid: Hybrid) -> dict:
    config = {"initial": "spec", "solver": dict(SOLVER)}
    conditions, preequilibrate = {}, {}
    placeholders = _placeholder_values(problem, hybrid)
    for experiment in placeholders:  # each experiment with measurements, in their order
        values = {}
        pre, periods = _periods(problem, experiment)
        for period in periods:
            values.update(_condition_values(problem, hybrid, period))
        if pre is not None:
            preequilibrate[experiment] = _preequilibration(problem, hybrid, pre, values, hybrid.text)
        values.update(placeholders[experiment])
        if values:
            conditions[experiment or NO_EXPERIMENT] = values
    priors = {hybrid.names.get(pid, pid): _prior(row) for pid, row in _mechanistic(problem)
              if row["priorDistribution"]}
    scales = {hybrid.names.get(pid, pid): row["parameterScale"] for pid, row in _mechanistic(problem)
              if row["parameterScale"]}
    for key, value in (("conditions", conditions), ("preequilibrate", preequilibrate), ("priors", priors),
                       ("scales", scales)):
        if value:
            config[key] = value
    return config


def _placeholder_values(problem: Problem, hybrid: Hybrid) -> dict:
    """Experiment -> {placeholder: number or parameter name} of the measurement rows: a placeholder is one fixed
    param of the spec, which a trajectory's conditions give one value (rows of one experiment that differ are
    refused, naming the second)."""
    by_experiment: dict = {}
    for row in problem.measurements:
        experiment = row["experimentId"]
        values = by_experiment.setdefault(experiment, {})
        for name, text in assigned(row, problem.observables[row["observableId"]]):
            value = _number_or_name(text, hybrid, problem.parameters)
            if value is None:
                row.fail(f"{name} = {text!r}: hodec fit's conditions take a number or a parameter's name")
            if values.setdefault(name, value) != value:
                row.fail(f"placeholder '{name}' is {text} here and {values[name]} in an earlier row of experiment "
                         f"'{experiment or NO_EXPERIMENT}': hodec fit gives a param one value per trajectory")
    return by_experiment


def _placeholder_parameters(problem: Problem) -> set:
    """The table's parameters that measurement rows give placeholders as values (the spec may not read them
    otherwise)."""
    return {text for row in problem.measurements for _, text in assigned(row, problem.observables[row["observableId"]])
            if text in problem.parameters}


def _number_or_name(text: str, hybrid: Hybrid, problem_parameters: dict):
    try:
        return float(text)
    except ValueError:
        if text in hybrid.names or text in problem_parameters:
            return hybrid.names.get(text, text)
    return None


def _condition(row: Row, hybrid: Hybrid, problem_parameters: dict) -> tuple:
    """(model name, number or parameter name) of one conditions-table row."""
    target, text = hybrid.names.get(row["targetId"], row["targetId"]), row["targetValue"].strip()
    value = _number_or_name(text, hybrid, problem_parameters)
    if value is not None:
        return target, value
    row.fail(f"targetValue {text!r}: hodec fit's conditions take a number or a parameter's name, not an "
             f"expression")


def _prior(row: Row) -> list:
    kind = row["priorDistribution"]
    if kind not in PRIORS:
        row.fail(f"priorDistribution {kind!r}: only {', '.join(PRIORS)} are written for hodec fit")
    try:
        a, b = (float(v) for v in row["priorParameters"].split(";"))
    except ValueError:
        row.fail(f"priorParameters {row['priorParameters']!r}: two numbers 'a;b' are expected")
    return [kind, a, b]
