"""Exogenous input signals, interpolated inside the vector field."""
from __future__ import annotations

import torch

from ..errors import HodecError


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
            return _take(values, torch.where(t >= _take(times, right), right, left))
        t_left = _take(times, left)
        weight = ((t - t_left) / (_take(times, right) - t_left)).clamp(0.0, 1.0)
        weight = weight.reshape(weight.shape + (1,) * (values.dim() - 1))
        v_left = _take(values, left)
        return v_left + weight * (_take(values, right) - v_left)


    def each(self, t: torch.Tensor) -> torch.Tensor:
        """One time per member: t [*batch] with the values' trailing shape [*shape] the batch's last axes; member m
        reads its own column at its own time t[m] → [*batch] (hodec's solvers step each member on its own)."""
        times = self.times.to(device=t.device, dtype=t.dtype)
        values = self.values.to(device=t.device, dtype=t.dtype)
        values = lined_up(values, tuple(t.shape))
        if times.numel() == 1:
            return values[0]
        right = torch.searchsorted(times, t.detach().reshape(-1), right=True).clamp(1, times.numel() - 1)
        right = right.reshape(t.shape)
        left = right - 1

        def at(index):
            return values.gather(0, index.unsqueeze(0)).squeeze(0)

        if self.method == "previous":
            return at(torch.where(t >= _take(times, right), right, left))
        t_left = _take(times, left)
        weight = ((t - t_left) / (_take(times, right) - t_left)).clamp(0.0, 1.0)
        v_left = at(left)
        return v_left + weight * (at(right) - v_left)


def lined_up(values: torch.Tensor, batch: tuple) -> torch.Tensor:
    """Samples values [K, *shape] as [K, *batch]: the trailing shape (a column per member) lined up with the batch's
    last axes, broadcast over its leading ones (a view)."""
    lead = len(batch) - (values.dim() - 1)
    return values.reshape(values.shape[0], *(1,) * lead, *values.shape[1:]).expand(values.shape[0], *batch)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] along the first dimension, for an index tensor of any shape. Written with index_select because
    torch.compile reads a 0-d index tensor in values[index] as a Python int (a data-dependent value it cannot
    trace with fullgraph=True, and a graph break otherwise)."""
    return values.index_select(0, index.reshape(-1)).reshape(index.shape + values.shape[1:])


class UnboundInputError(HodecError):
    """The model read inputs that have no signal bound. `names` lists them all, so that each interface (the Python
    API here, the CLI's --input NAME=... elsewhere) can say how to bind them in its own terms."""

    def __init__(self, names):
        self.names = tuple(names)
        listed = ", ".join(f"'{name}'" for name in self.names)
        first = self.names[0]
        several = len(self.names) > 1
        super().__init__(f"input{'s' if several else ''} {listed} {'are' if several else 'is'} not bound: call "
                         f"set_inputs({{'{first}': (times, values){', ...' if several else ''}}}) or pass inputs= "
                         f"to simulate()")


def as_signal(spec) -> Signal:
    if isinstance(spec, Signal) or callable(spec):
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
        return Signal(*spec)
    raise TypeError("an input is bound to a Signal, a callable t -> value, or a tuple (times, values[, method])")
