"""One PEtab-SciML network evaluated on array files: what `hodec petab net` does and what the test suite's
network-import cases check (net.yaml + parameters + inputs -> outputs)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ...errors import HodecError
from .arrays import read_inputs, read_parameters
from .network import Network
from .spec import NetworkSpec, read_network


def load_network(path: str | Path, params: Optional[str | Path] = None, gelu: str = "none") -> Network:
    """The network of a YAML file in float64, its arrays set from a parameter file (parameters/NET_ID/...); a
    network whose forward calls a layer with parameters needs that file."""
    network = Network(read_network(path), gelu=gelu).double()
    if params is not None:
        network.load_parameters(read_parameters(params, network.spec.id), str(params))
    elif network.needed_arrays():
        layer_id, name = network.needed_arrays()[0]
        raise HodecError(f"network '{network.spec.id}' has parameters (e.g. {layer_id}/{name}): give their "
                         f"file (--params)", str(path))
    return network


def read_network_inputs(spec: NetworkSpec, paths: Sequence[str | Path]) -> list[torch.Tensor]:
    """One float64 tensor per network input, in forward order. An input is found by its id (inputs/INPUT_ID in
    any of the files); failing that, when there is one file per input each holding one array, the k-th file is
    the k-th input (the test suite's layout for networks of several inputs)."""
    found = [read_inputs(path) for path in paths]
    positional = len(found) == len(spec.inputs) and all(len(arrays) == 1 for arrays in found)
    tensors = []
    for k, input_id in enumerate(spec.inputs):
        holders = [i for i, arrays in enumerate(found) if input_id in arrays]
        if len(holders) > 1:
            raise HodecError(f"input '{input_id}' is in both {paths[holders[0]]} and {paths[holders[1]]}")
        if holders:
            array = found[holders[0]][input_id]
        elif positional:
            array = next(iter(found[k].values()))
        else:
            held = sorted({name for arrays in found for name in arrays})
            raise HodecError(f"network '{spec.id}' input '{input_id}' (argument {k}) is in none of the input files "
                             f"(they hold: {', '.join(held) or 'nothing'})", spec.path)
        tensors.append(torch.as_tensor(array, dtype=torch.float64))
    return tensors


def evaluate(network: Network, inputs: Sequence[torch.Tensor], passes: int = 1,
             seed: Optional[int] = None) -> list[np.ndarray]:
    """The network's outputs (the mean of `passes` forward passes: dropout makes each pass random), as arrays."""
    if passes < 1:
        raise HodecError(f"the number of passes must be at least 1, not {passes}")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        total = _arrays(network(*inputs))
        for _ in range(passes - 1):
            total = [sum_ + output for sum_, output in zip(total, _arrays(network(*inputs)))]
    return [(sum_ / passes).numpy() for sum_ in total]


def _arrays(outputs) -> list[torch.Tensor]:
    return [torch.as_tensor(output, dtype=torch.float64) for output in outputs]
