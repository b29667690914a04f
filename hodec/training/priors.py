"""Param priors (FIT.yaml `priors`): -log prior, the term MAP estimation adds to the objective.

Each prior is a density of the param's own (constrained, linear-scale) value, as PEtab's objectivePriorType:
normal(mean, sd), laplace(location, scale), lognormal(mu, sigma) and loglaplace(mu, scale) of log p (densities of p:
the -log p Jacobian term included; hodec.runtime.likelihood's formulas), uniform(lower, upper): 1 / (upper - lower)
on a param the spec keeps inside [lower, upper] (`in (a, b)` within them).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import HodecError, did_you_mean
from ..runtime.likelihood import LOG_DENSITIES, LOG_SCALE


class Priors:
    def __init__(self, model, config):
        rows = {row[0]: (i, row) for i, row in enumerate(model.parameters_table)}
        self.terms = []  # (param column, distribution, a, b)
        for name, (kind, a, b) in config.priors.items():
            if name not in rows:
                hint = did_you_mean(name, rows)
                raise HodecError(f"priors: '{name}' is not a param of {type(model).__name__}" +
                                 (f"; {hint}" if hint else ""), "fit config")
            column, (_, _, param_kind, lower, upper) = rows[name]
            _check_domain(name, param_kind, lower, upper, kind, a, b)
            self.terms.append((column, kind, a, b))
        self.active = bool(self.terms)

    def negative_log(self, p: torch.Tensor) -> Optional[torch.Tensor]:
        """-log prior at the params p [P] (a scalar with gradients), None without priors."""
        if not self.active:
            return None
        total = 0.0
        for column, kind, a, b in self.terms:
            if kind == "uniform":
                total = total + math.log(b - a)
                continue
            x = p[..., column]
            location = torch.full_like(x, math.exp(a) if kind in LOG_SCALE else a)
            total = total - LOG_DENSITIES[kind](x, location, torch.full_like(x, b)).sum()
        return torch.as_tensor(total, dtype=p.dtype, device=p.device)


def _check_domain(name: str, param_kind: str, lower, upper, kind: str, a: float, b: float):
    """A prior's support must hold every value the param can take: log-scale priors need p > 0 (positive, or
    bounded at or above 0); uniform needs the param's bounds inside its own; a fixed param is not estimated."""
    where = f"priors.{name}"
    if param_kind == "fixed":
        raise HodecError(f"{where}: param '{name}' is fixed: a prior is for an estimated param (remove 'fixed' in "
                         f"the spec, or the prior)", "fit config")
    if kind in LOG_SCALE and not (param_kind == "positive" or (param_kind == "bounded" and lower >= 0)):
        raise HodecError(f"{where}: {kind} is a density of p > 0, but param '{name}' can be <= 0 (declare it "
                         f"positive, or in (a, b) with a >= 0)", "fit config")
    if kind == "uniform" and not (param_kind == "bounded" and a <= lower and upper <= b):
        bounds = f"in ({lower:g}, {upper:g})" if param_kind == "bounded" else param_kind
        raise HodecError(f"{where}: uniform({a:g}, {b:g}) is 0 outside [{a:g}, {b:g}], but param '{name}' is "
                         f"{bounds}: declare it 'in ({a:g}, {b:g})' (or bounds within them) in the spec",
                         "fit config")
