"""PEtab-SciML array files (HDF5): network parameters, network inputs and outputs.

The layout, as the PEtab-SciML test suite writes it:

    metadata/pytorch_format   uint8: 1 = arrays in PyTorch's (row-major) dimension order, 0 = column-major
                              (the newer spec's metadata/perm: "row" or "column" says the same)
    parameters/NET/LAYER/ARRAY      a layer's array (weight, bias, ...), e.g. parameters/net0/layer1/weight
    inputs/INPUT/KEY                an input's array: KEY is "data" (one array), "0" (all conditions) or a
                                    condition list "c1;c2"
    outputs/outputK/data            the network's K-th output (0-based)

Column-major files (written from Julia or R) hold every array with its dimensions reversed; they are read back
into PyTorch's order here, so that nothing above this module sees the difference."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from ...errors import HodecError
from ...files import write_atomic

Arrays = dict[str, np.ndarray]


def read_parameters(path: str | Path, net_id: str) -> dict[str, Arrays]:
    """parameters/NET_ID of a file: {layer id: {array id: array}} (a file without parameters for it: {})."""
    with _open(path) as file:
        nets = _group(file, "parameters", path)
        if nets is None:
            return {}
        if net_id not in nets:
            raise HodecError(f"no parameters for network '{net_id}' (the file has: {_names(nets)})", str(path))
        layers = _group(nets, net_id, path)
        column_major = _column_major(file, path)
        return {layer: {name: _array(arrays, name, path, column_major) for name in arrays}
                for layer, arrays in _subgroups(layers, path)}


def read_input_arrays(path: str | Path) -> dict[str, Arrays]:
    """{input id: {key: array}} of a file's inputs group (key: "data", "0" for all conditions, or "c1;c2")."""
    with _open(path) as file:
        inputs = _group(file, "inputs", path)
        if inputs is None:
            raise HodecError("no 'inputs' group: an input file holds inputs/INPUT_ID/data", str(path))
        column_major = _column_major(file, path)
        return {input_id: {key: _array(arrays, key, path, column_major) for key in arrays}
                for input_id, arrays in _subgroups(inputs, path)}


def read_inputs(path: str | Path) -> dict[str, np.ndarray]:
    """{input id: array}: each input of the file must hold one array (`data`, or `0` for all conditions), as a
    network evaluated on its own has no condition to choose among several."""
    found = {}
    for input_id, arrays in read_input_arrays(path).items():
        if len(arrays) != 1:
            raise HodecError(f"/inputs/{input_id} holds {len(arrays)} arrays ({', '.join(map(repr, arrays))}): one "
                             f"input array is expected (condition-specific arrays belong to a PEtab problem)",
                             str(path))
        found[input_id] = next(iter(arrays.values()))
    return found


def write_outputs(path: str | Path, outputs) -> None:
    """outputs/outputK/data for each array of `outputs`, in PyTorch order, written atomically."""
    write_arrays(path, {f"outputs/output{k}/data": np.asarray(array) for k, array in enumerate(outputs)})


def write_parameters(path: str | Path, net_id: str, layers: Mapping[str, Arrays]) -> None:
    """parameters/NET_ID/LAYER/ARRAY for each array (the layout of network parameters and their gradients)."""
    write_arrays(path, {f"parameters/{net_id}/{layer}/{name}": np.asarray(array)
                        for layer, arrays in layers.items() for name, array in arrays.items()})


def write_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """An HDF5 file of the given datasets (path inside the file -> array) plus metadata/pytorch_format = 1, built
    in memory and then written atomically: a failure leaves no half-written file."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_dataset("metadata/pytorch_format", data=np.uint8(1))
        for name, array in arrays.items():
            file.create_dataset(name, data=array)
    write_atomic(path, buffer.getvalue())


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise HodecError(f"no such file: {path}" if not path.exists() else f"not a regular file: {path}", str(path))
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise HodecError(f"not a readable HDF5 file ({str(err).splitlines()[0][:200]})", str(path)) from None


def _column_major(file: h5py.File, path) -> bool:
    """Whether the file's arrays are column-major (metadata/pytorch_format = 0 or metadata/perm = "column");
    a file without that metadata is read in PyTorch's order."""
    if "metadata/pytorch_format" in file:
        flag = _scalar(file, "metadata/pytorch_format", path)
        if flag not in (0, 1):
            raise HodecError(f"metadata/pytorch_format is {flag!r}: expected 1 (PyTorch order) or 0 (column-major)",
                             str(path))
        return flag == 0
    if "metadata/perm" in file:
        perm = _scalar(file, "metadata/perm", path)
        perm = perm.decode() if isinstance(perm, bytes) else perm
        if perm not in ("row", "column"):
            raise HodecError(f"metadata/perm is {perm!r}: expected \"row\" or \"column\"", str(path))
        return perm == "column"
    return False


def _scalar(file: h5py.File, name: str, path):
    item = file[name]
    if not isinstance(item, h5py.Dataset) or item.shape != ():
        raise HodecError(f"{name} must be a scalar dataset", str(path))
    value = item[()]
    return value.item() if isinstance(value, np.generic) else value


def _group(parent: h5py.Group, name: str, path) -> h5py.Group | None:
    if name not in parent:
        return None
    item = parent[name]
    if not isinstance(item, h5py.Group):
        raise HodecError(f"{item.name} must be a group, not a dataset", str(path))
    return item


def _subgroups(group: h5py.Group, path):
    """(name, group) for each member of `group`, each of which must itself be a group."""
    for name in group:
        yield name, _group(group, name, path)


def _array(group: h5py.Group, name: str, path, column_major: bool) -> np.ndarray:
    item = group[name]
    if not isinstance(item, h5py.Dataset):
        raise HodecError(f"{item.name} must be a dataset (an array), not a group", str(path))
    if item.dtype.kind not in "fiub":
        raise HodecError(f"{item.name} holds {item.dtype} values: expected numbers", str(path))
    array = np.asarray(item[()], dtype=np.float64)
    return array.transpose() if column_major else array


def _names(group: h5py.Group) -> str:
    return ", ".join(repr(name) for name in group) or "nothing"
