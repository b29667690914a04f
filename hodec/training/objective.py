"""What `hodec fit` minimises, per data cell: the squared error, or with noise models the negative log density.

Without noise models the objective is the mean squared error over all data cells. With any noise model declared
(`observe x = e ~ normal(sigma)`) every fitted column must be an observable with one, and the objective is
-llh / n: the negative log-likelihood summed over the data cells, divided by their number n (the same scale for
any data size, so lr means the same as for the MSE). The best epoch is the one with the lowest uncoupled
objective either way.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import HodecError
from ..runtime.likelihood import LOG_SCALE, log_densities
from .data import Dataset
from .groups import time_at
from .result import FitError


class NoiseModels:
    """The noise model of each fitted column (none when the spec declares none: the objective is then the MSE)."""

    def __init__(self, model, data: Dataset):
        table = tuple(getattr(model, "noise_table", ()))
        self.active = bool(table)
        if not self.active:
            return
        rows = {name: k for k, (name, _) in enumerate(table)}
        for name in data.columns:
            if name not in rows:
                raise HodecError(f"column '{name}' has no noise model: with noise models declared, every fitted "
                                 f"column must be an observable with one ('observe {name}_obs = ... ~ normal(...)'; "
                                 f"those with one: {', '.join(rows)})", data.source)
        self.columns = data.columns
        self.rows = torch.tensor([rows[name] for name in data.columns])
        self.distributions = tuple(table[rows[name]][1] for name in data.columns)
        self.log_scale = torch.tensor([d in LOG_SCALE for d in self.distributions])
        _check_log_data(data, self.distributions)

    def negative_log_densities(self, model, g, ys, ts, obs, pred, where: str) -> torch.Tensor:
        """-log density of each data cell [T, B, m] under its column's noise model (0 at missing cells), from the
        states ys, all observables obs and the fitted columns pred. A noise scale that is not > 0, or a model
        value not > 0 under a log-scale model, at a data cell is a FitError naming the cell."""
        sigma = model.noise_scale(ts, ys, obs).index_select(-1, self.rows.to(ys.device))
        mask = g.mask
        self._check(g, ts, mask & ~(sigma > 0), sigma, where, "the noise scale of")
        self._check(g, ts, mask & self.log_scale.to(ys.device) & ~(pred > 0), pred, where,
                    "the model value (under a log-scale noise model) of")
        one = torch.ones_like(pred)  # at missing cells: finite placeholders, so no NaN reaches the gradients
        terms = log_densities(self.distributions, torch.where(mask, g.y, one),
                              torch.where(mask, pred, one), torch.where(mask, sigma, one))
        return torch.where(mask, -terms, torch.zeros_like(terms))

    def _check(self, g, ts, bad: torch.Tensor, values: torch.Tensor, where: str, what: str):
        if bad.any():
            k, b, c = (int(v) for v in torch.nonzero(bad)[0])
            raise FitError(f"{where}: {what} column '{self.columns[c]}' of trajectory "
                           f"{g.ids[b]} is {float(values[k, b, c]):g} at t = {time_at(ts, k, b):g}; it must be > 0")


def _check_log_data(data: Dataset, distributions: tuple):
    """Data under a log-scale noise model must be > 0 (its log is what the model describes)."""
    for j, distribution in enumerate(distributions):
        if distribution not in LOG_SCALE:
            continue
        for tr in data.trajectories:
            bad = np.argwhere(np.isfinite(tr.y[:, j]) & ~(tr.y[:, j] > 0))
            if len(bad):
                row = int(bad[0, 0])
                raise HodecError(f"trajectory {tr.id}, t = {tr.t[row]:g}, column '{data.columns[j]}': "
                                 f"{tr.y[row, j]:g} is not > 0, but the column's noise model is {distribution} "
                                 f"(of log y)", data.source)
