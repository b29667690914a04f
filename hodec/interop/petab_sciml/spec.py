"""A PEtab-SciML network YAML file read and checked: its id, inputs, layers and the `forward` graph (torch.fx's
nodes: placeholder, call_module, call_function, call_method, output). Only the file's structure is checked here
(keys, types, unique ids, each node reading earlier nodes); what the layer types and functions are is torch's
business (network.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import HodecError
from ...training.options import read_yaml_mapping

OPS = ("placeholder", "call_module", "call_function", "call_method", "output")
_KEYS = {"nn_model_id", "inputs", "layers", "forward"}


@dataclass(frozen=True)
class Layer:
    id: str
    type: str
    args: dict


@dataclass(frozen=True)
class Node:
    """One step of `forward`. In args and kwargs a string naming an earlier node stands for that node's value."""
    name: str
    op: str
    target: str
    args: tuple
    kwargs: dict


@dataclass(frozen=True)
class NetworkSpec:
    id: str
    inputs: tuple[str, ...]  # the input ids, in the order of the forward's placeholders
    layers: tuple[Layer, ...]
    forward: tuple[Node, ...]
    path: str

    def fail(self, message: str) -> HodecError:
        return HodecError(message, self.path)


def read_network(path: str | Path) -> NetworkSpec:
    """The network of a PEtab-SciML network YAML file; a HodecError naming the file and element if malformed."""
    data = read_yaml_mapping(Path(path), "PEtab-SciML network")
    where = str(path)
    unknown = sorted(map(str, set(data) - _KEYS))
    if unknown:
        raise HodecError(f"unknown key {unknown[0]!r} (a network file has {', '.join(sorted(_KEYS))})", where)
    net_id = _text(data.get("nn_model_id"), "nn_model_id", where)
    inputs = tuple(_text(_entry(item, f"inputs[{i}]", where).get("input_id"), f"inputs[{i}].input_id", where)
                   for i, item in enumerate(_list(data.get("inputs"), "inputs", where)))
    layers = tuple(_layer(item, i, where)
                   for i, item in enumerate(_list(data.get("layers", []), "layers", where, may_be_empty=True)))
    forward = tuple(_node(item, i, where) for i, item in enumerate(_list(data.get("forward"), "forward", where)))
    _unique([layer.id for layer in layers], "layer id", where)
    _check_graph(forward, {layer.id for layer in layers}, len(inputs), where)
    return NetworkSpec(net_id, inputs, layers, forward, where)


def _layer(item, index: int, where: str) -> Layer:
    entry = _entry(item, f"layers[{index}]", where)
    layer_id = _text(entry.get("layer_id"), f"layers[{index}].layer_id", where)
    layer_type = _text(entry.get("layer_type"), f"layer '{layer_id}': layer_type", where)
    args = entry.get("args") or {}
    if not isinstance(args, dict):
        raise HodecError(f"layer '{layer_id}': args must be a mapping of argument names to values", where)
    return Layer(layer_id, layer_type, {str(k): v for k, v in args.items()})


def _node(item, index: int, where: str) -> Node:
    entry = _entry(item, f"forward[{index}]", where)
    name = _text(entry.get("name"), f"forward[{index}].name", where)
    op = _text(entry.get("op"), f"node '{name}': op", where)
    if op not in OPS:
        raise HodecError(f"node '{name}': unknown op {op!r} (expected one of {', '.join(OPS)})", where)
    target = _text(entry.get("target"), f"node '{name}': target", where)
    args = entry.get("args") or []
    kwargs = entry.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise HodecError(f"node '{name}': args must be a list and kwargs a mapping", where)
    return Node(name, op, target, tuple(args), {str(k): v for k, v in kwargs.items()})


def _check_graph(forward: tuple[Node, ...], layer_ids: set[str], n_inputs: int, where: str) -> None:
    """Placeholders first, one per input; every module call names a layer; a node reads only nodes before it;
    the single output node comes last; names are unique."""
    _unique([node.name for node in forward], "node name", where)
    ops = [node.op for node in forward]
    placeholders = ops.count("placeholder")
    if ops[:placeholders] != ["placeholder"] * placeholders:
        raise HodecError("forward: the placeholder nodes (the inputs) must come first", where)
    if placeholders != n_inputs:
        raise HodecError(f"forward has {placeholders} placeholder node(s) but 'inputs' lists {n_inputs} input(s)",
                         where)
    if ops.count("output") != 1 or ops[-1] != "output":
        raise HodecError("forward must end with exactly one node of op 'output'", where)
    names = {node.name for node in forward}
    computed = set()
    for node in forward:
        later = [name for name in strings_in(node.args, node.kwargs) if name in names and name not in computed]
        if later:
            raise HodecError(f"node '{node.name}' reads node '{later[0]}', which is not computed before it", where)
        computed.add(node.name)
        if node.op == "call_module" and node.target not in layer_ids:
            raise HodecError(f"node '{node.name}': call_module target '{node.target}' is not a layer id", where)
        if node.op == "output" and len(node.args) != 1:
            raise HodecError(f"node '{node.name}': an output node has one argument (a node, or a list of nodes)",
                             where)


def strings_in(*values) -> list[str]:
    """Every string inside the values, nested lists, tuples and mappings (their values) included: in a node's args
    and kwargs, the names of the nodes it may read."""
    found = []
    for value in values:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(strings_in(*value))
        elif isinstance(value, dict):
            found.extend(strings_in(*value.values()))
    return found


def _entry(item, what: str, where: str) -> dict:
    if not isinstance(item, dict):
        raise HodecError(f"{what} must be a mapping", where)
    return item


def _list(value, what: str, where: str, may_be_empty: bool = False) -> list:
    if not isinstance(value, list) or not (value or may_be_empty):
        raise HodecError(f"'{what}' must be a {'' if may_be_empty else 'non-empty '}list", where)
    return value


def _text(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise HodecError(f"{what} must be a non-empty string", where)
    return value


def _unique(names: list[str], what: str, where: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise HodecError(f"duplicate {what} '{name}'", where)
        seen.add(name)
