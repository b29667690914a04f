"""Exogenous input signals, interpolated inside the vector field."""
from __future__ import annotations

import torch


class Signal:
    """Samples (times [T], values [T, *shape]) read at any time by linear interpolation ('linear') or by holding
    the last sample ('previous', for piecewise-constant inputs such as infusion rates). Before the first and
    after the last sample the end values are held."""

    def __init__(self, times, values, method: str = "linear"):
        # Python numbers are kept in float64 (torch.as_tensor would round them to the default float32 before the
        # model reads them in its own dtype); tensors keep their dtype.
        times = times if isinstance(times, torch.Tensor) else torch.as_tensor(times, dtype=torch.float64)
        values = values if isinstance(values, torch.Tensor) else torch.as_tensor(values, dtype=torch.float64)
        if method not in ("linear", "previous"):
            raise ValueError(f"interpolation method must be 'linear' or 'previous', not {method!r}")
        if times.dim() != 1 or times.numel() < 1 or values.shape[:1] != times.shape:
            raise ValueError(f"a signal needs times [T] and values [T, ...]; got {tuple(times.shape)} and "
                             f"{tuple(values.shape)}")
        if times.numel() > 1 and not bool((times[1:] > times[:-1]).all()):
            raise ValueError("signal times must be strictly increasing")
        self.times, self.values, self.method = times, values, method

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """t: [] or [K] → [*shape] or [K, *shape], in t's dtype and device."""
        times = self.times.to(device=t.device, dtype=t.dtype)
        values = self.values.to(device=t.device, dtype=t.dtype)
        if times.numel() == 1:
            return values[0].expand(t.shape + values.shape[1:])
        right = torch.searchsorted(times, t.detach(), right=True).clamp(1, times.numel() - 1)
        left = right - 1
        if self.method == "previous":
            return values[torch.where(t >= times[right], right, left)]
        weight = ((t - times[left]) / (times[right] - times[left])).clamp(0.0, 1.0)
        weight = weight.reshape(weight.shape + (1,) * (values.dim() - 1))
        return values[left] + weight * (values[right] - values[left])


def as_signal(spec) -> Signal:
    if isinstance(spec, Signal) or callable(spec):
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
        return Signal(*spec)
    raise TypeError("an input is bound to a Signal, a callable t -> value, or a tuple (times, values[, method])")
