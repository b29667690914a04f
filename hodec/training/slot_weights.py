"""FIT.yaml's `slot_weights` and `frozen`: neural slots that start from given weights instead of the seeded
initialisation, and slot arrays that are not trained (a model imported with a pretrained, partly frozen network:
`hodec petab write` writes both).

`slot_weights` names a torch file (torch.save of {slot name: {array name: tensor}}, the array names those of
`m.slot(name).state_dict()`: `net.0.weight`, `net.0.bias`, ... for the MLP a declaration makes), read with
weights_only=True (loading it runs no code); every array of a slot it names must be given, in its shape. A relative
path is relative to the FIT.yaml that gives it. `frozen` lists SLOT.ARRAY names (or a whole SLOT): they keep their
values, taking no gradient step and no weight decay."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..errors import HodecError, did_you_mean

def prepare_slots(model, path: Optional[str], frozen: list) -> None:
    """Load the slot weights file into the model's slots (in place) and stop the frozen arrays' gradients."""
    if path is not None:
        _load(model, Path(path))
    arrays = _arrays(model)
    for name in frozen:
        chosen = [tensor for key, tensor in arrays.items() if key == name or key.startswith(f"{name}.")]
        if not chosen:
            hint = did_you_mean(name, list(arrays))
            raise HodecError(f"frozen: '{name}' is no neural slot or slot array of the model"
                             + (f" ({hint})" if hint else ""), "FIT.yaml")
        for tensor in chosen:
            tensor.requires_grad_(False)


def _arrays(model) -> dict:
    return {f"{row[0]}.{key}": tensor for row, slot in zip(model.slots_table, model.slot_modules)
            for key, tensor in slot.named_parameters()}


def _load(model, path: Path) -> None:
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HodecError(f"slot_weights: no such file: {path}", "FIT.yaml") from None
    except Exception as err:  # torch's unpickler raises many kinds; all mean "not a weights file"
        raise HodecError(f"not a torch file of slot weights ({str(err).splitlines()[0][:200]})", str(path)) from None
    if not isinstance(weights, dict):
        raise HodecError("expected {slot name: {array name: tensor}}", str(path))
    names = [row[0] for row in model.slots_table]
    for slot_name, arrays in weights.items():
        if slot_name not in names:
            hint = did_you_mean(str(slot_name), names)
            raise HodecError(f"'{slot_name}' is no neural slot of the model" + (f" ({hint})" if hint else ""),
                             str(path))
        _load_slot(model.slot(slot_name), slot_name, arrays, path)


def _load_slot(slot, slot_name: str, arrays, path: Path) -> None:
    own = dict(slot.named_parameters())
    if not isinstance(arrays, dict) or set(arrays) != set(own):
        given = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise HodecError(f"slot '{slot_name}': expected the arrays {', '.join(sorted(own))}, got {given}", str(path))
    for key, tensor in own.items():
        value = arrays[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(tensor.shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise HodecError(f"slot '{slot_name}' array '{key}' is {shape}, the slot needs {tuple(tensor.shape)}",
                             str(path))
        with torch.no_grad():
            tensor.copy_(value)
