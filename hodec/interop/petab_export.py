"""A compiled .hode model as a PEtab v2 problem folder, with the PEtab-SciML extension for its neural slots: what
`hodec petab evaluate` reads back into a model with the same vector field.

Files: `model.xml` (the SBML of hodec.interop.sbml_export, each slot output a parameter added to its state's rate
and each observable's formula the rule of a parameter `observable_<name>`), `observables.tsv` (observableId = the
observable's name, its formula that parameter, the noise model as PEtab v2 names it: normal, laplace, log-normal,
log-laplace; an observable without one is normal with noiseFormula 1), `parameters.tsv` (every param: a free one
estimated within the bounds of its kind, (-inf, inf), [0, inf) for `positive` or its `in (lo, hi)`; a fixed one
not estimated), `measurements.tsv` (the header only, or a DATA.csv's observable values, `experiments.tsv` one
experiment per data id from its first time) and `problem.yaml`. Per
residual slot NET: `NET_network.yaml` (the network in PEtab-SciML's YAML: its Linear layers and activation modules
in order, softplus last if `positive`; one input, the slot's arguments concatenated), `NET_parameters.hdf5` (the
weights, PyTorch layout), and rows of `hybridization.tsv` (each input element a state or time, each output's
parameter set to an output element) and `mapping.tsv` (the PEtab ids of the inputs, outputs and arrays).

Refused, with a HodecError located at the statement: names PEtab's math reads as its own (time, true, false, inf,
nan), inputs (PEtab has no exogenous signal), neural slots without outputs (a learned function called in
expressions: PEtab-SciML has no network called inside model formulas), and noise scales using other than
+ - * / ^ and exp log log10 sqrt abs, the trigonometric and hyperbolic functions (PEtab math and .hode mean these
alike; a let of params holds anything else)."""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import libsbml
import torch
import yaml
from torch import nn

from ..compiler import Compilation
from ..errors import Diagnostic, HodecError
from ..files import write_atomic
from ..model.model import TIME, Model
from ..syntax import ast
from ..syntax.unparse import unparse_expr
from ..training.data import Dataset, read_data
from .petab_sciml.arrays import write_parameters
from .petab_sciml.network import LAYERS
from .sbml_export import Exporter, input_refusals

FORMAT_VERSION = "2.0.0"
SCIML_VERSION = "0.1.0"  # the PEtab-SciML test suite's
SEED = 0  # the weights of a spec's slots when no model is given: its initialisation under this seed
NOISE = {"normal": "normal", "laplace": "laplace", "lognormal": "log-normal", "loglaplace": "log-laplace"}
# functions that PEtab v2's math and .hode define alike (PEtab's log of one argument is natural, as .hode's)
SHARED_FUNCTIONS = frozenset(("exp", "log", "log10", "sqrt", "abs", "sin", "cos", "tan", "sinh", "cosh", "tanh"))
SBML_FILE, PROBLEM_FILE = "model.xml", "problem.yaml"
PETAB_TIME = "time"  # .hode's t in PEtab's math
PETAB_RESERVED = frozenset((PETAB_TIME, "true", "false", "inf", "nan"))  # names PEtab v2's math gives a meaning


def write_petab(compilation: Compilation, out: str | Path, model: Optional[nn.Module] = None,
                data: Optional[str | Path] = None) -> list[Path]:
    """Write the problem folder `out` (which must not exist, or be empty): built in a temporary folder beside it,
    then renamed, so that a failure leaves nothing. `model`: an instance of the compiled class whose slot weights
    are written (default: a new one initialised under SEED). `data`: a DATA.csv (hodec fit's) whose observable
    columns become the measurements. Returns the files written."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HodecError(f"--petab {out} exists and is not an empty folder: name a new one")
    _check(compilation)
    dataset = _dataset(compilation, data) if data is not None else None
    model = model if model is not None else _initialised(compilation)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise HodecError(f"output folder does not exist: {parent}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:60]}.", suffix=".tmp", dir=parent))
    try:
        _write_files(compilation.model, model, tmp, dataset)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise HodecError(f"cannot write {out}: {err.strerror or err}") from None
        raise
    return sorted(out.iterdir())


def _check(compilation: Compilation):
    """Everything PEtab cannot hold, each located at its statement, before anything is written."""
    model = compilation.model
    refused = input_refusals(model, "PEtab")
    refused += [Diagnostic(f"cannot export '{item.name}' to PEtab: PEtab's math reads the name as its own "
                           f"constant (rename it)", item.span)
                for group in (model.params, model.states, model.lets, model.observables, model.slots)
                for item in group if item.name in PETAB_RESERVED]
    refused += [Diagnostic(f"cannot export neural slot '{slot.name}' to PEtab-SciML: a slot without outputs is a "
                           f"function called inside model formulas, which PEtab-SciML networks are not (give it "
                           f"outputs: `-> state`)", slot.span) for slot in model.slots if slot.outputs is None]
    for o in model.observables:
        if o.noise is not None:
            refused += [Diagnostic(f"the noise scale of '{o.name}' uses {what}, which PEtab's math does not write as "
                                   f".hode does: compute it in a let of params and use the let", o.noise.sigma.span)
                        for what in _unshared(o.noise.sigma)[:1]]
    if refused:
        raise HodecError(refused, model.filename, compilation.source)


def _unshared(expr) -> list[str]:
    """What an expression uses beyond the arithmetic and functions that PEtab v2's math and .hode share."""
    found = [f"'{node.func}'" for node in ast.calls_in(expr) if node.func not in SHARED_FUNCTIONS]
    found += ["a condition" for node in ast.walk(expr) if isinstance(node, (ast.If, ast.Compare, ast.Logic))]
    return found


def _dataset(compilation: Compilation, path) -> Dataset:
    """hodec fit's reading of DATA.csv, limited to what a PEtab measurement table says the same way: values of
    observables, each trajectory simulated from the spec's initial values at its first time."""
    dataset = read_data(path, compilation.model_class())
    observables = {o.name for o in compilation.model.observables}
    states = [name for name in dataset.columns if name not in observables]
    if states:
        raise HodecError(f"column '{states[0]}' is a state: PEtab measures observables (declare `observe "
                         f"{states[0]}_obs = {states[0]}` and name the column after it)", str(path))
    for what, refused in (("doses", [tr.id for tr in dataset.trajectories if len(tr.doses)]),
                          ("per-trajectory param values", [tr.id for tr in dataset.trajectories if tr.params])):
        if refused:
            raise HodecError(f"trajectory {refused[0]} has {what}: PEtab's measurement table has no form for them "
                             f"here (export without --data)", str(path))
    return dataset


def _measurements(dataset: Optional[Dataset], exporter: Exporter) -> tuple[list, list]:
    """The measurement rows (observableId, experimentId, time, measurement) and experiment rows (experimentId,
    time, conditionId): one experiment per data id (its replicates' values measurements of it too), starting at
    its first time."""
    experiments: dict = {}
    rows = []
    for tr in dataset.trajectories if dataset is not None else ():
        if tr.subject not in experiments:
            experiments[tr.subject] = [exporter.unique("experiment_" + re.sub(r"\W", "_", tr.subject)),
                                       _number(tr.t[0]), ""]
        ident = experiments[tr.subject][0]
        rows += [[name, ident, _number(t), _number(value)] for k, t in enumerate(tr.t)
                 for name, value in zip(dataset.columns, tr.y[k]) if math.isfinite(value)]
    return rows, list(experiments.values())


def _initialised(compilation: Compilation) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return compilation.model_class()()


def _write_files(model: Model, instance: nn.Module, folder: Path, dataset: Optional[Dataset]):
    exporter = Exporter(model, petab=True)
    write_atomic(folder / SBML_FILE, libsbml.writeSBMLToString(exporter.document()))
    write_atomic(folder / "observables.tsv", _table(
        ["observableId", "observableFormula", "noiseFormula", "noiseDistribution"],
        [_observable(o, exporter.observable_ids[o.name]) for o in model.observables]))
    measurements, experiments = _measurements(dataset, exporter)
    write_atomic(folder / "measurements.tsv", _table(["observableId", "experimentId", "time", "measurement"],
                                                     measurements))
    nets = [_Net(slot, exporter) for slot in model.slots]
    for net in nets:
        net.write(folder, instance.slot(net.slot.name))
    write_atomic(folder / "parameters.tsv", _table(
        ["parameterId", "lowerBound", "upperBound", "nominalValue", "estimate"],
        [_parameter(p) for p in model.params] + [[net.arrays_id, "-inf", "inf", "array", "true"] for net in nets]))
    problem = {"format_version": FORMAT_VERSION, "model_files": {model.name: {"location": SBML_FILE,
                                                                              "language": "sbml"}},
               "parameter_files": ["parameters.tsv"], "observable_files": ["observables.tsv"],
               "measurement_files": ["measurements.tsv"]}
    if experiments:
        write_atomic(folder / "experiments.tsv", _table(["experimentId", "time", "conditionId"], experiments))
        problem["experiment_files"] = ["experiments.tsv"]
    if nets:
        write_atomic(folder / "hybridization.tsv", _table(["targetId", "targetValue"],
                                                          [row for net in nets for row in net.hybridization()]))
        write_atomic(folder / "mapping.tsv", _table(["petabEntityId", "modelEntityId"],
                                                    [row for net in nets for row in net.mapping()]))
        problem["mapping_files"] = ["mapping.tsv"]
        problem["extensions"] = {"sciml": {
            "version": SCIML_VERSION, "required": True, "array_files": [net.arrays_file for net in nets],
            "neural_networks": {net.slot.name: {"location": net.network_file, "format": "YAML",
                                                "pre_initialization": False} for net in nets},
            "hybridization_files": ["hybridization.tsv"]}}
    write_atomic(folder / PROBLEM_FILE, yaml.safe_dump(problem, sort_keys=False))


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "".join("\t".join(row) + "\n" for row in [header, *rows])


def _number(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _parameter(p) -> list[str]:
    """parameterId, lowerBound, upperBound, nominalValue, estimate: the bounds of the param's kind (what hodec fit
    trains it within; `hodec petab write` reads the kind back from them)."""
    bounds = {"free": (-math.inf, math.inf), "positive": (0.0, math.inf), "bounded": (p.lower, p.upper)}
    if p.kind == "fixed":
        return [p.name, "", "", _number(p.value), "false"]
    lower, upper = bounds[p.kind]
    return [p.name, _number(lower), _number(upper), _number(p.value), "true"]


def _observable(o, formula_id: str) -> list[str]:
    if o.noise is None:  # PEtab asks for a noise model: normal of scale 1, whose -llh is half the squared error
        return [o.name, formula_id, "1", "normal"]
    return [o.name, formula_id, unparse_expr(o.noise.sigma), NOISE[o.noise.distribution]]


class _Net:
    """One residual slot as a PEtab-SciML network: its PEtab ids, files and table rows."""

    def __init__(self, slot, exporter: Exporter):
        self.slot = slot
        self.inputs = [exporter.unique(f"{slot.name}_input{k}") for k in range(len(slot.args))]
        self.outputs = [exporter.unique(f"{slot.name}_output{j}") for j in range(len(slot.outputs))]
        self.arrays_id = exporter.unique(f"{slot.name}_parameters")
        # suffixed: no slot name makes the name of another file (a slot `problem`: problem.yaml)
        self.network_file, self.arrays_file = f"{slot.name}_network.yaml", f"{slot.name}_parameters.hdf5"
        self.targets = [exporter.slot_params[(slot.name, state)] for state in slot.outputs]

    def write(self, folder: Path, module):
        """The network YAML and the weights of the slot's module (a NeuralSlot)."""
        write_atomic(folder / self.network_file, yaml.safe_dump(self.network(module), sort_keys=False))
        write_parameters(folder / self.arrays_file, self.slot.name, self.arrays(module))

    def network(self, module) -> dict:
        """The network YAML: layer k of the slot's MLP is `layerk`, each called in turn on the one input."""
        if not module.is_factory_mlp:
            raise HodecError(f"neural slot '{self.slot.name}' holds a network other than its declared MLP: only "
                             f"the declared Linear layers and activation are written")
        layers, forward, previous = [], [_node("input0", "placeholder", "input0", [])], "input0"
        for k, layer in enumerate(module.net, 1):
            layers.append({"layer_id": f"layer{k}", **_layer(layer)})
            forward.append(_node(f"layer{k}", "call_module", f"layer{k}", [previous]))
            previous = f"layer{k}"
        if module.positive:
            forward.append(_node("softplus", "call_function", "softplus", [previous]))
            previous = "softplus"
        forward.append(_node("output", "output", "output", [previous]))
        return {"nn_model_id": self.slot.name, "inputs": [{"input_id": "input0"}], "layers": layers,
                "forward": forward}

    def arrays(self, module) -> dict:
        return {f"layer{k}": {name: t.detach().to(torch.float64).cpu().numpy()
                              for name, t in layer.named_parameters()}
                for k, layer in enumerate(module.net, 1) if isinstance(layer, nn.Linear)}

    def hybridization(self) -> list[list[str]]:
        """Each input element reads its argument (a state, or time), each output parameter its output element."""
        values = [PETAB_TIME if arg.name == TIME else arg.name for arg in self.slot.args]
        return ([[ident, value] for ident, value in zip(self.inputs, values)]
                + [[target, output] for target, output in zip(self.targets, self.outputs)])

    def mapping(self) -> list[list[str]]:
        net = self.slot.name
        return ([[ident, f"{net}.inputs[0][{k}]"] for k, ident in enumerate(self.inputs)]
                + [[ident, f"{net}.outputs[0][{j}]"] for j, ident in enumerate(self.outputs)]
                + [[self.arrays_id, f"{net}.parameters"]])


def _node(name: str, op: str, target: str, args: list) -> dict:
    return {"name": name, "op": op, "target": target, "args": args, "kwargs": {}}


def _layer(layer: nn.Module) -> dict:
    """A layer of a slot's MLP as PEtab-SciML's layer_type and args (torch's class name and constructor
    arguments; the activations keep torch's defaults, GELU says which form it is)."""
    if isinstance(layer, nn.Linear):
        return {"layer_type": "Linear", "args": {"in_features": layer.in_features,
                                                 "out_features": layer.out_features, "bias": layer.bias is not None}}
    kind = type(layer).__name__
    assert kind in LAYERS, kind  # hodec.runtime.neural's activations are all PEtab-SciML layers
    return {"layer_type": kind, "args": {"approximate": layer.approximate} if isinstance(layer, nn.GELU) else {}}
