"""A PEtab-SciML network as a torch module: its layers built from the layer table, its `forward` graph
interpreted node by node, its parameters loaded from (and named as in) the suite's HDF5 layout.

Only the layers, functions and tensor methods in the tables below can be called: a network file never names an
arbitrary Python callable."""
from __future__ import annotations

import inspect
import operator
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import HodecError, did_you_mean
from ...training.options import first_line
from .spec import Layer, NetworkSpec, Node, strings_in

_CONV = ("Conv", "ConvTranspose", "AvgPool", "MaxPool", "LPPool", "AdaptiveMaxPool", "AdaptiveAvgPool", "BatchNorm",
         "InstanceNorm", "Dropout")
_ACTIVATION_MODULES = ("ReLU", "ReLU6", "Hardtanh", "Hardswish", "SELU", "SiLU", "LeakyReLU", "GELU", "LogSigmoid",
                       "Tanhshrink", "Softsign", "Softplus", "Tanh", "Sigmoid", "Hardsigmoid", "Mish", "ELU", "CELU",
                       "Softmax", "LogSoftmax", "Softmin", "Hardshrink", "Softshrink", "Identity")
LAYERS = {name: getattr(nn, name) for name in (
    *(f"{kind}{d}d" for kind in _CONV for d in (1, 2, 3)),
    "Linear", "Bilinear", "Flatten", "Unflatten", "LayerNorm", "Dropout", "AlphaDropout", *_ACTIVATION_MODULES)}
GELU_FORMS = ("none", "tanh")
_NORMS = tuple(f"{kind}{d}d" for kind in ("BatchNorm", "InstanceNorm") for d in (1, 2, 3))

# call_function targets, by the name torch.fx records (a function's __name__: F.logsigmoid is 'log_sigmoid')
FUNCTIONS = {
    **{name: getattr(F, name) for name in (
        "relu", "relu6", "hardtanh", "hardswish", "selu", "silu", "leaky_relu", "gelu", "logsigmoid", "tanhshrink",
        "softsign", "softplus", "hardsigmoid", "mish", "elu", "celu", "softmax", "log_softmax", "softmin",
        "hardshrink", "softshrink", "glu", "normalize")},
    "log_sigmoid": F.logsigmoid,
    **{name: getattr(torch, name) for name in (
        "tanh", "sigmoid", "exp", "log", "sqrt", "abs", "sin", "cos", "square", "cat", "concat", "stack", "flatten",
        "reshape", "squeeze", "unsqueeze", "transpose", "permute", "sum", "mean", "clamp", "maximum", "minimum")},
    **{name: getattr(operator, name) for name in ("add", "sub", "mul", "truediv", "neg", "pow", "getitem",
                                                  "matmul")},
}
# call_method targets: tensor methods without side effects
METHODS = frozenset((
    "tanh", "sigmoid", "relu", "exp", "log", "sqrt", "abs", "sin", "cos", "square", "neg", "pow", "add", "sub",
    "mul", "div", "matmul", "view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "sum",
    "mean", "softmax", "log_softmax", "clamp", "contiguous", "t", "size"))


class Network(nn.Module):
    """A PEtab-SciML network. forward(*inputs) takes one tensor per input (in the file's order) and returns a tuple
    of its outputs. Its parameters are those of `layers[layer_id]` (PyTorch's names: weight, bias, ...).

    Like any new torch module it starts in training mode, the mode the PEtab-SciML references were made in:
    BatchNorm normalises with the batch's own statistics and dropout is random (`.eval()` switches both).
    gelu: the GELU a file's `gelu` means where it does not say (`approximate`): "none", PyTorch's exact erf
    form, or "tanh", the approximation Julia's Lux and JAX use by default (and some references were made with)."""

    def __init__(self, spec: NetworkSpec, gelu: str = "none"):
        super().__init__()
        if gelu not in GELU_FORMS:
            raise HodecError(f"gelu must be one of {', '.join(GELU_FORMS)}, not {gelu!r}")
        self.spec = spec
        self.gelu = gelu
        self.layers = nn.ModuleDict({layer.id: _build_layer(layer, spec, gelu) for layer in spec.layers})
        for node in spec.forward:
            _check_target(node, spec)
        _check_inplace(spec)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        spec = self.spec
        if len(inputs) != len(spec.inputs):
            raise spec.fail(f"network '{spec.id}' takes {len(spec.inputs)} input(s), got {len(inputs)}")
        values = {}
        for node, value in zip(spec.forward, inputs):  # the placeholders come first
            values[node.name] = value
        for node in spec.forward[len(inputs):]:
            args = _resolve(node.args, values)
            if node.op == "output":
                result = args[0]
                return tuple(result) if isinstance(result, (list, tuple)) else (result,)
            values[node.name] = self._call(node, args, _resolve(node.kwargs, values))
        raise AssertionError("read_network guarantees a final output node")

    def _call(self, node: Node, args, kwargs):
        try:
            if node.op == "call_module":
                return self.layers[node.target](*args, **kwargs)
            if node.op == "call_function":
                if node.target == "gelu":
                    kwargs = {"approximate": self.gelu, **kwargs}
                return FUNCTIONS[node.target](*args, **_without_inplace(kwargs))
            subject, *rest = args
            return getattr(subject, node.target)(*rest, **kwargs)
        except (RuntimeError, TypeError, ValueError, IndexError) as err:  # shapes that do not fit, bad arguments
            raise self.spec.fail(f"node '{node.name}' ({node.op} {node.target}): {first_line(err)}") from None

    def load_parameters(self, arrays: Mapping[str, Mapping[str, np.ndarray]], source: str) -> None:
        """Set layer arrays from {layer id: {array id: array}} (read_parameters' shape). Every parameter of every
        layer the forward calls must be given, with its shape; running statistics (buffers) and the arrays of
        layers never called may be; nothing else."""
        named = self.petab_arrays(buffers=True)
        for layer_id, layer_arrays in arrays.items():
            for name, array in layer_arrays.items():
                where = f"parameters/{self.spec.id}/{layer_id}/{name}"
                target = named.get((layer_id, name))
                if target is None:
                    known = [f"{layer}/{array_id}" for layer, array_id in named]
                    hint = did_you_mean(f"{layer_id}/{name}", known)
                    raise HodecError(f"{where}: network '{self.spec.id}' has no such array"
                                     + (f" ({hint})" if hint else ""), source)
                if tuple(array.shape) != tuple(target.shape):
                    raise HodecError(f"{where} has shape {tuple(array.shape)}, layer '{layer_id}' needs "
                                     f"{tuple(target.shape)}", source)
                with torch.no_grad():
                    target.copy_(torch.as_tensor(array, dtype=target.dtype))
        for layer_id, name in self.needed_arrays():
            if name not in arrays.get(layer_id, {}):
                raise HodecError(f"parameters/{self.spec.id}/{layer_id}/{name} is missing", source)

    def needed_arrays(self) -> list[tuple[str, str]]:
        """(layer id, array id) of the parameters of the layers the forward calls."""
        called = {node.target for node in self.spec.forward if node.op == "call_module"}
        return [(layer_id, name) for layer_id, name in self.petab_arrays() if layer_id in called]

    def petab_arrays(self, buffers: bool = False) -> dict[tuple[str, str], torch.Tensor]:
        """{(layer id, array id): tensor} of the parameters (and, if asked, the buffers), PEtab's names."""
        named = {}
        for layer_id, layer in self.layers.items():
            tensors = dict(layer.named_parameters())
            if buffers:
                tensors.update((name, b) for name, b in layer.named_buffers() if b.is_floating_point())
            named.update(((layer_id, name), tensor) for name, tensor in tensors.items())
        return named


def _build_layer(layer: Layer, spec: NetworkSpec, gelu: str) -> nn.Module:
    kind = LAYERS.get(layer.type)
    if kind is None:
        hint = did_you_mean(layer.type, LAYERS)
        raise spec.fail(f"layer '{layer.id}': unknown layer type '{layer.type}'" + (f" ({hint})" if hint else ""))
    placement = sorted(set(layer.args) & {"device", "dtype"})
    if placement:
        raise spec.fail(f"layer '{layer.id}': '{placement[0]}' is not a layer argument here (hodec places and "
                        f"types the whole network)")
    args = {name: _tuples(value) for name, value in layer.args.items() if name != "inplace"}  # see _without_inplace
    if layer.type == "GELU":
        args = {"approximate": gelu, **args}
    if layer.type in _NORMS:
        args = _norm_args(layer, kind, args, spec)
    try:
        return kind(**args)
    except (TypeError, ValueError, RuntimeError) as err:
        raise spec.fail(f"layer '{layer.id}' ({layer.type}): {first_line(err)}") from None


def _norm_args(layer: Layer, kind, args: dict, spec: NetworkSpec) -> dict:
    """PEtab-SciML files give BatchNorm/InstanceNorm a `bias` flag, which torch's constructors take only since
    2.x (keyword-only); with an older torch it is dropped where it agrees with `affine` (their bias exists exactly
    when affine holds) and refused where it does not."""
    if "bias" not in args or "bias" in inspect.signature(kind).parameters:
        return args
    args = dict(args)
    bias = args.pop("bias")
    if bool(bias) != bool(args.get("affine", layer.type.startswith("BatchNorm"))):
        raise spec.fail(f"layer '{layer.id}' ({layer.type}): bias={bias} with affine={args.get('affine')} needs a "
                        f"newer torch (this one's norm layers have a bias exactly when affine)")
    return args


def _check_target(node: Node, spec: NetworkSpec) -> None:
    table = {"call_function": FUNCTIONS, "call_method": METHODS}.get(node.op)
    if table is not None and node.target not in table:
        hint = did_you_mean(node.target, table)
        raise spec.fail(f"node '{node.name}': unsupported {node.op} target '{node.target}'"
                        + (f" ({hint})" if hint else ""))


def _check_inplace(spec: NetworkSpec) -> None:
    """An in-place node (inplace=True) whose input a later node also reads would, in PyTorch, hand that node the
    overwritten value; hodec computes out of place, so such a graph is refused rather than evaluated differently."""
    inplace_layers = {layer.id for layer in spec.layers if layer.args.get("inplace")}
    for index, node in enumerate(spec.forward):
        inplace = node.kwargs.get("inplace") or (node.op == "call_module" and node.target in inplace_layers)
        if not inplace or not node.args or not isinstance(node.args[0], str):
            continue
        readers = [later.name for later in spec.forward[index + 1:]
                   if node.args[0] in strings_in(later.args, later.kwargs)]
        if readers:
            raise spec.fail(f"node '{node.name}' works in place on '{node.args[0]}', which node '{readers[0]}' "
                            f"reads afterwards: hodec evaluates out of place; export the model with inplace=False")


def _without_inplace(kwargs: dict) -> dict:
    """Functions and layers run out of place: the node's result is the same, and a value that later nodes read is
    never overwritten (in PyTorch an in-place activation would change what they read: see _check_inplace)."""
    return {name: value for name, value in kwargs.items() if name != "inplace"}


def _resolve(value, values: dict):
    """Node names inside (nested) args replaced by the nodes' values."""
    if isinstance(value, str):
        return values.get(value, value)
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(item, values) for item in value)
    if isinstance(value, dict):
        return {key: _resolve(item, values) for key, item in value.items()}
    return value


def _tuples(value):
    """YAML lists as tuples (torch's sizes and kernels are tuples)."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value
