"""A PEtab-SciML problem as a hodec model: the SBML model imported (`hodec import`), each network placed where
the hybridization table puts it, and the observables with their noise models added as `.hode` text.

A network whose inputs read model states becomes neural slots of the model (one per output element it feeds,
`neural NET_oK_J(...)`, each running the whole network through `Model(slots=...)`), called where its outputs are
read: a let replacing the parameter it sets, or an observable formula. A network whose inputs are parameters,
numbers and arrays runs once per experiment before simulation; its outputs become parameter values (or initial
values) of that experiment."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import h5py
import torch
from torch import nn

from ...compiler import compile_text
from ...errors import HodecError
from ..petab_sciml.arrays import read_input_arrays, read_parameters
from ..petab_sciml.network import Network
from ..petab_sciml.spec import read_network
from ..sbml import import_sbml
from .placeholders import declared as placeholders
from .problem import Problem
from .tables import Row

NAME = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*")  # an identifier (not the exponent of 1.25E-07)
NOISE = {("normal", "lin"): "normal", ("laplace", "lin"): "laplace", ("normal", "log"): "lognormal",
         ("laplace", "log"): "loglaplace", ("log-normal", "lin"): "lognormal",
         ("log-laplace", "lin"): "loglaplace", ("normal", "log10"): "lognormal", ("laplace", "log10"): "loglaplace",
         ("log10-normal", "lin"): "lognormal", ("log10-laplace", "lin"): "loglaplace"}
# A log10-scale noise model is the natural-log one with its scale times ln 10: the density of y with log10 y ~
# N(log10 mu, s), N(log10 y; log10 mu, s) / (y ln 10), equals N(ln y; ln mu, s ln 10) / y (so for laplace).
LOG10 = math.log(10.0)
ENTITY = re.compile(r"^(\w+)\.(inputs|outputs)\[(\d+)\](?:\[(\d+)\])?$")
ARRAYS = re.compile(r"^(\w+)\.parameters(?:\[(\w+)\](?:\.(\w+))?)?$")


@dataclass
class Port:
    """One network input or output element: argument/output `index`, element `element` (None: the whole)."""
    net: str
    index: int
    element: Optional[int]


@dataclass
class Net:
    id: str
    network: Network
    inputs: dict = field(default_factory=dict)  # (index, element) -> PEtab expression, or an ArrayInput
    in_model: bool = False
    rows: dict = field(default_factory=dict)  # (layer, array) -> the parameters-table row governing it
    frozen: set = field(default_factory=set)  # (layer, array) not estimated

    def ordered(self) -> list:
        """((index, element), source) of the inputs in argument order, elements in order within one."""
        return sorted(self.inputs.items(), key=lambda item: (item[0][0], -1 if item[0][1] is None else item[0][1]))

    def expressions(self) -> list:
        """The inputs given by expressions, in argument order: the arguments of this network's slots."""
        return [source for _, source in self.ordered() if not isinstance(source, ArrayInput)]

    def run(self, expression_values, array_value) -> list:
        """The network's outputs, its inputs assembled per argument (elements concatenated): the k-th expression
        input from expression_values(k, expression) (each [1]), array inputs from array_value(ArrayInput)."""
        by_index: dict = {}
        k = 0
        for (index, _), source in self.ordered():
            if isinstance(source, ArrayInput):
                by_index.setdefault(index, []).append(array_value(source))
            else:
                by_index.setdefault(index, []).append(expression_values(k, source))
                k += 1
        return self.network(*[torch.cat(by_index[i], -1) for i in sorted(by_index)])


@dataclass(frozen=True)
class ArrayInput:
    """A network input given in the array files (inputs/ENTITY/KEY), not by an expression."""
    entity: str


@dataclass
class Hybrid:
    """The problem as a compiled hodec model plus what runs around it."""
    model_class: type
    text: str
    nets: dict  # id -> Net
    slots: dict  # slot name -> (net id, output index, element)
    outputs: dict  # PEtab output id -> Port
    presim: dict  # model param/state name -> PEtab expression evaluated before simulation
    arrays: dict  # input id -> {key: array} of the array files
    names: dict  # PEtab/SBML id -> .hode name


def build(problem: Problem, gelu: str = "none") -> Hybrid:
    imported = import_sbml(problem.model, _table_values(problem))
    names = dict(imported.names)
    base = compile_text(imported.text, str(problem.model)).model_class()
    states = set(base.state_names) | {sbml_id for sbml_id, name in names.items() if name in base.state_names}
    nets = {net_id: Net(net_id, _load_network(problem, net_id, path, gelu))
            for net_id, path in problem.networks.items()}
    outputs = _ports(problem, nets)
    for port_id, port in list(outputs.items()):
        if port_id in problem.mapping and ENTITY.match(problem.mapping[port_id]["modelEntityId"]).group(2) == "inputs":
            del outputs[port_id]
            nets[port.net].inputs[(port.index, port.element)] = _input_source(problem, port_id)
    for net in nets.values():
        net.in_model = any(not isinstance(expr, ArrayInput) and set(NAME.findall(expr)) & (states | {"t", "time"})
                           for expr in net.inputs.values())
        net.rows = array_rows(problem, net)
        net.frozen = {key for key, row in net.rows.items() if not estimated(row)}
        _nominal_arrays(problem, net)
    slots: dict = {}
    lines = imported.text.rstrip("\n").split("\n")
    presim: dict = {}
    declared = set(base.param_names) | set(base.state_names)
    for target, row in problem.hybridization.items():
        if target in problem.mapping:
            continue  # a network input: read by its network
        name = names.get(target, target)
        value = row["targetValue"]
        uses = [outputs[n] for n in NAME.findall(value) if n in outputs]
        if any(nets[p.net].in_model for p in uses):
            if name not in base.param_names:
                row.fail(f"target '{target}' is set by a network that reads model states: only a parameter can be")
            lines = _replace_param(lines, name, f"let {name} = {_hode(value, names, outputs, nets, slots)}", row)
        elif name in declared:
            presim[name] = value
        else:
            row.fail(f"target '{target}' is neither a network input nor a parameter or species of the model")
    extra = _observables(problem, names, outputs, nets, slots, declared)
    for slot, (net_id, index, element) in slots.items():
        formal = ", ".join(f"x{k}" for k in range(len(nets[net_id].expressions())))
        lines.append(f"neural {slot}({formal}) hidden 1")
    params = _extra_params(problem, names, extra, declared)
    text = "\n".join(lines + params + extra) + "\n"
    model_class = compile_text(text, str(problem.path)).model_class()
    arrays = {key: value for path in problem.array_files if _holds(path, "inputs")
              for key, value in read_input_arrays(path).items()}
    return Hybrid(model_class, text, nets, slots, outputs, presim, arrays, names)


def _nominal_arrays(problem: Problem, net: Net) -> None:
    """Arrays governed by a row for their layer or for themselves with a numeric nominalValue start at that value,
    whatever the array files hold (PEtab-SciML's initialization cases: one layer, or its weights, set to 0). A row
    for the whole network keeps the files' arrays: Dandekar_Patterns2020 gives its network row nominalValue 0.0,
    and its reference llh is that of the file's arrays."""
    tensors = net.network.petab_arrays()
    with torch.no_grad():
        for key, row in net.rows.items():
            entity = ARRAYS.match(problem.mapping[row["parameterId"]]["modelEntityId"])
            if row["nominalValue"] != "array" and entity.group(2) is not None:
                tensors[key].fill_(row.number("nominalValue"))


def _table_values(problem: Problem) -> dict:
    """The values the PEtab tables give SBML parameters that the model may leave without one: the parameters
    table's numeric nominal values, and a placeholder 0 for a hybridization target (a network's output replaces
    it: by a let, or per experiment before simulation)."""
    values = {target: 0.0 for target in problem.hybridization if target not in problem.mapping}
    values.update({pid: row.number("nominalValue") for pid, row in problem.parameters.items()
                   if row["nominalValue"] != "array" and not is_array_parameter(problem, pid)})
    return values


def is_array_parameter(problem: Problem, pid: str) -> bool:
    """Whether a parameters-table row stands for network arrays (the mapping table maps it to NET.parameters...),
    whatever its nominalValue says."""
    return pid in problem.mapping and ARRAYS.match(problem.mapping[pid]["modelEntityId"]) is not None


def _load_network(problem: Problem, net_id: str, path: Path, gelu: str) -> Network:
    network = Network(read_network(path), gelu=gelu).double()
    files = [f for f in problem.array_files if _holds(f, f"parameters/{net_id}")]
    if not files:
        raise HodecError(f"network '{net_id}': none of the array files holds parameters/{net_id}", str(problem.path))
    network.load_parameters(read_parameters(files[0], net_id), str(files[0]))
    return network


def _holds(path: Path, group: str) -> bool:
    try:
        with h5py.File(path, "r") as file:
            return group in file
    except OSError as err:
        raise HodecError(f"not a readable HDF5 file ({str(err).splitlines()[0][:200]})", str(path)) from None


def _ports(problem: Problem, nets: dict) -> dict:
    """{PEtab id: Port} of every network input and output element the mapping table names."""
    ports = {}
    for entity, row in problem.mapping.items():
        model_entity = row["modelEntityId"]
        match = ENTITY.match(model_entity)
        if match is None:
            if not ARRAYS.match(model_entity):
                row.fail(f"modelEntityId '{model_entity}': expected NET.inputs[i][j], NET.outputs[i][j] or "
                         f"NET.parameters[LAYER].ARRAY")
            continue
        net, _, index, element = match.groups()
        if net not in nets:
            row.fail(f"network '{net}' is not among the problem's networks ({', '.join(nets) or 'none'})")
        ports[entity] = Port(net, int(index), None if element is None else int(element))
    return ports


def _input_source(problem: Problem, entity: str):
    """The PEtab expression an input reads: its hybridization value, else the input itself (a parameter, or set
    by each experiment's conditions); an ArrayInput for one given in the array files."""
    if entity in problem.hybridization:
        value = problem.hybridization[entity]["targetValue"]
        return ArrayInput(entity) if value == "array" else value
    return entity


def array_rows(problem: Problem, net: Net) -> dict:
    """{(layer, array): the parameters-table row that governs it (estimate, prior)}: the row for the whole
    network, overridden by a row for its layer, overridden by a row for the array itself."""
    arrays = set(net.network.petab_arrays())
    governing: dict = {}
    rows = [(problem.mapping[p], problem.parameters[p]) for p in problem.parameters if p in problem.mapping]
    for depth in (0, 1, 2):
        for mapping, row in rows:
            match = ARRAYS.match(mapping["modelEntityId"])
            if not match or match.group(1) != net.id or sum(g is not None for g in match.groups()[1:]) != depth:
                continue
            governing.update({(layer, name): row for layer, name in arrays
                              if match.group(2) in (None, layer) and match.group(3) in (None, name)})
    return governing


def estimated(row: Row) -> bool:
    value = row["estimate"].lower()
    if value not in ("true", "false", "1", "0", ""):
        row.fail(f"estimate must be true or false, not {row['estimate']!r}")
    return value in ("true", "1")


def _hode(expr: str, names: dict, outputs: dict, nets: dict, slots: dict, every: bool = False) -> str:
    """A PEtab formula as .hode text: SBML ids as their .hode names, a network output as its slot's call (or, for
    a network run before simulation, as the parameter holding it; every: as its slot's call too, petab write's)."""
    def name(match):
        word = match.group(0)
        if word not in outputs or not (every or nets[outputs[word].net].in_model):
            return names.get(word, "t" if word == "time" else word)  # PEtab's time is .hode's t
        port = outputs[word]
        net = nets[port.net]
        slot = f"{port.net}_o{port.index}_{port.element or 0}"
        slots[slot] = (port.net, port.index, port.element)
        args = [_hode(e, names, outputs, nets, slots, every) for e in net.expressions()]
        return f"{slot}({', '.join(args)})"
    return NAME.sub(lambda m: name(m) if not _is_call(m) else m.group(0), expr)


def _is_call(match) -> bool:
    rest = match.string[match.end():].lstrip()
    return rest.startswith("(")


def _replace_param(lines: list, name: str, new: str, row: Row) -> list:
    pattern = re.compile(rf"^param {re.escape(name)} = ")
    found = [k for k, line in enumerate(lines) if pattern.match(line)]
    if len(found) != 1:
        row.fail(f"'{name}' is not a constant parameter of the model, which a network could replace")
    return lines[:found[0]] + [new] + lines[found[0] + 1:]


def _observables(problem: Problem, names, outputs, nets, slots, declared) -> list:
    lines = []
    for obs_id, row in problem.observables.items():
        if obs_id in declared:
            row.fail(f"observable '{obs_id}' has the name of a model entity")
        key = (row["noiseDistribution"] or "normal", row["observableTransformation"] or "lin")
        if key not in NOISE:
            row.fail(f"noise model {key[0]} with transformation {key[1]} is not supported (normal, laplace, "
                     f"log-normal, log-laplace, log10-normal, log10-laplace; lin, log or log10)")
        if not row["noiseFormula"]:
            row.fail("empty noiseFormula")
        for name in placeholders(row):
            if name in declared or name in problem.parameters:
                row.fail(f"placeholder '{name}' has the name of a model entity or of a parameter of the table")
        formula = _hode(row["observableFormula"], names, outputs, nets, slots)
        noise = _hode(row["noiseFormula"], names, outputs, nets, slots)
        if "log10" in key[0] + key[1]:
            noise = f"({noise}) * {LOG10!r}"
        lines.append(f"observe {obs_id} = {formula} ~ {NOISE[key]}({noise})")
    return lines


def _extra_params(problem: Problem, names: dict, text: list, declared: set) -> list:
    """`param` lines for the PEtab parameters (and pre-simulation network outputs) the added text reads that the
    SBML model does not define, and for the observables' placeholders; their values come from the experiment's
    table (a placeholder's from each measurement row)."""
    read = {w for line in text for w in NAME.findall(line.split("=", 1)[1])}
    local = {name for row in problem.observables.values() for name in placeholders(row)}
    lines = []
    for word in sorted(read - declared):
        if word in problem.parameters or word in local:
            lines.append(f"param {word} = 1 fixed")
    return lines


class SlotNet(nn.Module):
    """A network as a neural slot: [..., n_args] -> [..., 1], the slot's arguments filling the inputs the
    hybridization gives as expressions, `constants` (per experiment: input entity -> tensor) the array inputs;
    the output (index, element) of the network."""

    def __init__(self, net: Net, index: int, element: Optional[int]):
        super().__init__()
        self.net, self.index, self.element = net, index, element
        self.constants: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each batch member on its own (vmap): a network's forward may concatenate its inputs along dim 0,
        written for one sample."""
        flat = x.reshape(-1, x.shape[-1])
        return torch.func.vmap(self._one)(flat).reshape(*x.shape[:-1], 1)

    def _one(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net.run(lambda k, _: x[k:k + 1], lambda source: self.constants[source.entity])[self.index]
        return out[..., (self.element or 0):(self.element or 0) + 1]
