"""Estimation scales (FIT.yaml `scales`): the coordinate the optimiser trains a param in.

A param's kind sets its default coordinate: free → lin (the value), positive → log (ln p), bounded → the logit of
its place between its bounds. `scales: {k: log10}` trains θ = log10 k instead (lin: θ = k; log: θ = ln k). Where
the asked scale is the kind's own (log on a positive param, lin on a free one) nothing changes. Otherwise the fit
trains θ itself, a tensor beside the model's in the optimiser's mechanistic group: every solve of the fit reads
k = 10^θ (through the conditions' parameter table); after each step θ is projected back into the param's domain
(a bounded param's bounds, a positive param's k > 0 on the lin scale) and the model's own k set to its value, so
checkpoints, the best epoch's model and fitted.hode hold it. Adam's steps are steps in θ: on log10 they are ln 10
times longer in ln k than on log; on lin they are steps in k itself.
"""
from __future__ import annotations

import math

import torch

from ..errors import HodecError, did_you_mean

INVERSE = {"lin": lambda theta: theta, "log": torch.exp, "log10": lambda theta: torch.pow(10.0, theta)}
FORWARD = {"lin": lambda value: value, "log": math.log, "log10": math.log10}
NATIVE = {"free": "lin", "positive": "log"}  # the kinds whose trained coordinate is a scale of its own


class Scales:
    def __init__(self, model, config, dtype):
        self.model = model
        rows = {row[0]: (i, row) for i, row in enumerate(model.parameters_table)}
        self.names, self.scales, columns, lower, upper = [], [], [], [], []
        for name, scale in config.scales.items():
            if name not in rows:
                hint = did_you_mean(name, rows)
                raise HodecError(f"scales: '{name}' is not a param of {type(model).__name__}" +
                                 (f"; {hint}" if hint else ""), "fit config")
            column, (_, _, kind, low, high) = rows[name]
            if kind == "fixed":
                raise HodecError(f"scales.{name}: param '{name}' is fixed: it is not estimated", "fit config")
            if NATIVE.get(kind) == scale:
                continue
            if scale != "lin" and not (kind == "positive" or (kind == "bounded" and low >= 0)):
                raise HodecError(f"scales.{name}: {scale} needs {name} > 0, but param '{name}' can be <= 0 (declare "
                                 f"it positive, or in (a, b) with a >= 0)", "fit config")
            self.names.append(name)
            self.scales.append(scale)
            columns.append(column)
            bounds = _domain(kind, low, high, scale)
            lower.append(bounds[0])
            upper.append(bounds[1])
        self.active = bool(self.names)
        self.columns = torch.tensor(columns, dtype=torch.long)
        self.lower, self.upper = (torch.tensor(v, dtype=dtype) for v in (lower, upper))
        self.theta = torch.nn.Parameter(torch.zeros(len(self.names), dtype=dtype)) if self.active else None
        self.load()

    def parameters(self) -> list:
        """What the optimiser trains besides the model's tensors."""
        return [self.theta] if self.active else []

    def apply(self, model, p: torch.Tensor) -> torch.Tensor:
        """The parameter vector p [P] with the scaled params' values from θ (for the trained model; any other,
        such as the best epoch's copy, holds its own values)."""
        if not self.active or model is not self.model:
            return p
        values = torch.stack([INVERSE[scale](self.theta[i]) for i, scale in enumerate(self.scales)])
        return p.index_copy(-1, self.columns.to(p.device), values.to(p.dtype))

    @torch.no_grad()
    def after_step(self):
        """θ projected into the params' domains, and the model's own params set to its values."""
        if not self.active:
            return
        self.theta.copy_(torch.maximum(torch.minimum(self.theta, self.upper), self.lower))
        for i, (name, scale) in enumerate(zip(self.names, self.scales)):
            self.model.set_trained(name, float(INVERSE[scale](self.theta[i])))

    @torch.no_grad()
    def load(self):
        """θ from the model's own params (at the start, and after a resume loads the model)."""
        if self.active:
            values = self.model.params()
            self.theta.copy_(torch.tensor([FORWARD[s](values[n]) for n, s in zip(self.names, self.scales)],
                                          dtype=self.theta.dtype))


def _domain(kind: str, low, high, scale: str) -> tuple:
    """The interval θ is projected into: a bounded param strictly inside its bounds (a relative 1e-9 from them,
    where its logit coordinate stays finite), a positive one on the lin scale above 0."""
    if kind == "bounded":
        a = FORWARD[scale](low) if low > 0 or scale == "lin" else -math.inf
        b = FORWARD[scale](high)
        margin = 1e-9 * (b - a) if math.isfinite(a) else 1e-9 * max(abs(b), 1.0)
        return a + margin if math.isfinite(a) else a, b - margin
    if kind == "positive" and scale == "lin":
        return torch.finfo(torch.float32).tiny, math.inf  # > 0 in either dtype
    return -math.inf, math.inf
