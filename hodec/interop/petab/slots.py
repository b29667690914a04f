"""PEtab-SciML networks that read model states, as neural slots hodec fit trains.

A network whose forward is exactly an MLP that a `.hode` declaration makes (Linear layers with biases, one
elementwise activation between each two, one input of the slot's arguments, one scalar output) is written as that
declaration (`neural NET_o0_0(x0, x1) hidden 5 5 activation tanh`); its arrays become the slot's starting weights
(`m.slot(name).state_dict()` names: the k-th Linear is `net.{2k}`) and its frozen arrays FIT.yaml's `frozen`.
Any other network is put into its slots as it is (`Model(slots=...)`), which only `hodec petab fit` can do."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ...runtime.neural import ACTIVATIONS
from .mapping import ArrayInput, Net, SlotNet

# the activation a forward node applies -> the `.hode` activation name (PyTorch's default constants only)
METHOD_ACTIVATIONS = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu"}
FUNCTION_ACTIVATIONS = {**{name: name for name in (
    "relu", "relu6", "hardtanh", "hardswish", "selu", "silu", "leaky_relu", "logsigmoid", "tanhshrink", "softsign",
    "softplus", "tanh", "sigmoid", "hardsigmoid", "mish", "elu", "celu", "hardshrink", "softshrink")},
    "log_sigmoid": "logsigmoid"}
MODULE_ACTIVATIONS = {"ReLU": "relu", "ReLU6": "relu6", "Hardtanh": "hardtanh", "Hardswish": "hardswish",
                      "SELU": "selu", "SiLU": "silu", "LeakyReLU": "leaky_relu", "LogSigmoid": "logsigmoid",
                      "Tanhshrink": "tanhshrink", "Softsign": "softsign", "Softplus": "softplus", "Tanh": "tanh",
                      "Sigmoid": "sigmoid", "Hardsigmoid": "hardsigmoid", "Mish": "mish", "ELU": "elu", "CELU": "celu",
                      "Hardshrink": "hardshrink", "Softshrink": "softshrink", "Identity": "identity"}
assert set(METHOD_ACTIVATIONS.values()) | set(FUNCTION_ACTIVATIONS.values()) | set(MODULE_ACTIVATIONS.values()) \
    <= set(ACTIVATIONS)
MAX_WIDTH = 65536  # the language's largest hidden width


@dataclass
class SlotMLP:
    """A network as a `.hode` slot's MLP: its Linear layers' ids in order, hidden widths and activation."""
    linears: list
    hidden: tuple
    activation: str

    def declaration(self, slot: str, n_args: int) -> str:
        formal = ", ".join(f"x{k}" for k in range(n_args))
        widths = " ".join(str(w) for w in self.hidden)
        return f"neural {slot}({formal}) hidden {widths} activation {self.activation}"

    def weights(self, net: Net) -> dict:
        """The network's arrays under the slot's names (net.{2k}.weight / .bias), float64 copies."""
        arrays = net.network.petab_arrays()
        return {f"net.{2 * k}.{name}": arrays[(layer, name)].detach().clone().to(torch.float64)
                for k, layer in enumerate(self.linears) for name in ("weight", "bias")}

    def frozen(self, slot: str, net: Net) -> list:
        return [f"{slot}.net.{2 * k}.{name}" for k, layer in enumerate(self.linears) for name in ("weight", "bias")
                if (layer, name) in net.frozen]


def as_slot_mlp(net: Net, slots: int) -> tuple[Optional[SlotMLP], str]:
    """The network as a slot MLP, or None and why it is not one. `slots`: how many slots read the network (each
    of its output elements the model reads is one; a declaration is one scalar function)."""
    spec = net.network.spec
    if slots != 1:
        return None, f"the model reads {slots} of its outputs (a .hode slot declaration is one scalar function)"
    if any(isinstance(source, ArrayInput) for source in net.inputs.values()):
        return None, "an input is given in an array file"
    n_args = len(net.expressions())
    if len(spec.inputs) != 1 or sorted(net.inputs) != [(0, k) for k in range(n_args)]:
        return None, "its inputs are not one vector of the slot's arguments"
    layers = {layer.id: layer for layer in spec.layers}
    chain, why = _chain(spec)
    if chain is None:
        return None, why
    kinds = [_kind(node, layers, net.network.gelu) for node in chain]
    if any(kind is None for kind in kinds):
        bad = chain[kinds.index(None)]
        return None, f"node '{bad.name}' ({bad.op} {bad.target}) is no Linear layer with a bias nor an activation " \
                     f"a slot has"
    linear = kinds[0::2]
    activations = set(kinds[1::2])
    if len(kinds) < 3 or len(kinds) % 2 == 0 or any(k != "Linear" for k in linear) or len(activations) != 1 \
            or "Linear" in activations:
        return None, "its forward is not Linear, activation, Linear, ... Linear with one activation"
    widths = [layers[node.target].args.get("out_features") for node in chain[0::2]]
    if widths[-1] != 1 or layers[chain[0].target].args.get("in_features") != n_args:
        return None, f"it maps {layers[chain[0].target].args.get('in_features')} inputs to {widths[-1]} outputs, " \
                     f"not the slot's {n_args} arguments to one value"
    if not all(isinstance(w, int) and 1 <= w <= MAX_WIDTH for w in widths):
        return None, "a hidden width is beyond the language's"
    return SlotMLP([node.target for node in chain[0::2]], tuple(widths[:-1]), activations.pop()), ""


def _chain(spec) -> tuple[Optional[list], str]:
    """The forward's nodes between its placeholder and its output if each reads just the one before it."""
    chain, previous = [], spec.forward[0].name
    for node in spec.forward[1:]:
        args = node.args[0] if node.op == "output" and len(node.args) == 1 and isinstance(node.args[0], list) \
            else node.args
        if list(args) != [previous]:
            return None, f"node '{node.name}' does not read just the node before it"
        if node.op == "output":
            return chain, ""
        chain.append(node)
        previous = node.name
    return None, "its forward has no output"


def _kind(node, layers: dict, gelu: str) -> Optional[str]:
    """'Linear' for a Linear layer with a bias, the .hode activation name of an activation with PyTorch's default
    constants, else None."""
    options = {k: v for k, v in node.kwargs.items() if k != "inplace"}
    if node.op == "call_module":
        layer = layers[node.target]
        args = {k: v for k, v in layer.args.items() if k not in ("inplace", "in_features", "out_features")}
        if layer.type == "Linear":
            return "Linear" if args.get("bias", True) is True and set(args) <= {"bias"} and not options else None
        if layer.type == "GELU":
            approximate = args.pop("approximate", gelu)
            return _gelu(approximate) if not args and not options else None
        return MODULE_ACTIVATIONS.get(layer.type) if not args and not options else None
    if node.op == "call_function" and node.target == "gelu":
        approximate = options.pop("approximate", gelu)
        return _gelu(approximate) if not options else None
    table = {"call_function": FUNCTION_ACTIVATIONS, "call_method": METHOD_ACTIVATIONS}.get(node.op, {})
    return table.get(node.target) if not options else None


def _gelu(approximate) -> Optional[str]:
    return {"none": "gelu", "tanh": "gelu_tanh"}.get(approximate)


class TrainableSlotNet(SlotNet):
    """A network put into a slot as it is, its arrays registered as the slot's parameters (so that hodec fit's
    optimiser trains them; mapping's SlotNet leaves them to evaluate's autograd)."""

    def __init__(self, net: Net, index: int, element: Optional[int]):
        super().__init__(net, index, element)
        self.network = net.network

    @staticmethod
    def frozen(slot: str, net: Net) -> list:
        """FIT.yaml's `frozen` names of the network's frozen arrays in this slot."""
        return [f"{slot}.net.network.layers.{layer}.{name}" for layer, name in sorted(net.frozen)]
