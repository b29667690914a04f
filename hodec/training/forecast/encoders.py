"""Learned state estimators: an encoder over a window's history (gru, lstm, mlp) that gives the model's state at
the origin, trained end to end with the model (the forecast Method trains its parameters).

Each history sample is one feature vector: the fitted columns normalised ((y - mean) / sd, 0 where missing), their
masks, the model's inputs normalised, and the time relative to the origin / the history's length. gru and lstm
read the samples in time order and take their output at the last real sample (padding comes after it, so it is never
read); mlp maps each sample through an MLP and averages over the real samples (its time feature says where each
sat), so it takes histories of any length. A linear head gives the state as centre + scale x head(h), centre and
scale the mean and spread of the model's own states at the training windows' origins (simulated from the
trajectories' initial states; states that are data columns: the column's mean and sd), the head starting at zero:
the untrained encoder starts every window at the model's mean state. With `observed: true` the states that are data
columns (or equal an observable that is one) start at their last value in the history instead (the encoder's where
the history has none). The normalisation is set in setup() from the training windows and stored as buffers. With
`estimate: [p, ...]` a second linear head on the same summary gives each window's factor of every listed param
(params.py), also starting at zero: the untrained encoder gives every window the population values; with
`pool_adjust` it gives a second factor per param, the window's own adjustment of the pooled value (pool.py).
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import HodecError, did_you_mean
from .base import Estimator, simulated_states
from .params import estimated_columns, factors
from .windows import Windows

MIN_SCALE = 1e-6  # the smallest spread a feature is divided by (constant columns)
FALLBACK_SCALE = 0.01  # a state's scale where its samples do not vary and are 0 (a tenth of its size otherwise)


class Encoder(Estimator):
    state_rows = ("head.weight", "head.bias", "center", "scale", "log")

    def __init__(self, problem, options):
        super().__init__(problem, options)
        model = problem.model
        m, q, n, width = len(problem.columns), len(model.input_names), len(model.state_names), options.hidden
        features = 2 * m + q + 1
        self.net = self.network(features, width)
        self.head = zero_linear(width, n)
        self.columns = estimated_columns(problem, options)
        if self.columns:  # forecast.estimate: z per param, the factor exp(ln f tanh z) of its population value
            adjusted = options.pool_adjust is not None  # and z per param for its own adjustment (pool_adjust)
            self.param_head = zero_linear(width, len(self.columns) * (2 if adjusted else 1))
        for name, size in (("y_mean", m), ("y_scale", m), ("u_mean", q), ("u_scale", q), ("center", n),
                           ("scale", n)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name or name == "center" else torch.ones(size))
        self.register_buffer("t_scale", torch.ones(()))
        self.register_buffer("log", torch.zeros(n, dtype=torch.bool))  # states estimated on a log scale
        pairs = [(c, j) for c, j in enumerate(problem.state_like) if j is not None]
        self.observed = pairs if options.observed else []  # (column, state) pairs taken from the data
        self.anchors = anchor_pairs(problem, options.anchor)  # (column, its observable, state): forecast.anchor

    def network(self, features: int, width: int) -> nn.Module:
        raise NotImplementedError

    @torch.no_grad()
    def setup(self, problem, windows: Windows) -> None:
        y_mean, y_scale = masked_moments(windows.hist_y, windows.hist_mask)
        valid = (torch.arange(windows.hist_t.shape[0]).unsqueeze(1) < windows.hist_len).unsqueeze(-1)
        u_mean, u_scale = masked_moments(windows.hist_u, valid.expand_as(windows.hist_u))
        self.y_mean.copy_(y_mean), self.y_scale.copy_(y_scale)
        self.u_mean.copy_(u_mean), self.u_scale.copy_(u_scale)
        self.t_scale.copy_(torch.clamp((windows.origin - windows.hist_t[0]).max(), min=MIN_SCALE))
        center, scale, log = state_moments(problem, windows)
        self.center.copy_(center), self.scale.copy_(scale), self.log.copy_(log)

    def features(self, windows: Windows) -> torch.Tensor:
        """[Th, W, 2m + q + 1] per history sample."""
        mask = windows.hist_mask.to(windows.hist_y.dtype)
        y = (windows.hist_y - self.y_mean) / self.y_scale * mask
        u = (windows.hist_u - self.u_mean) / self.u_scale
        t = ((windows.hist_t - windows.origin) / self.t_scale).unsqueeze(-1)
        return torch.cat([y, mask, u, t], -1)

    def summary(self, x: torch.Tensor, windows: Windows) -> torch.Tensor:
        """[W, hidden] from the features [Th, W, F]."""
        raise NotImplementedError

    def forward(self, model, windows: Windows) -> torch.Tensor:
        return self.infer(model, windows)[0]

    def infer(self, model, windows: Windows) -> tuple:
        h = self.summary(self.features(windows), windows)
        y0 = anchored(model, self.anchors, self.origin_state(h, windows), windows)
        return y0, self.param_factors(h) if self.columns else None

    def param_factors(self, h: torch.Tensor) -> torch.Tensor:
        """[W, K] factors of the population values within estimate_factor; with forecast.pool_adjust [W, 2K]: then
        also each window's own adjustment within pool_adjust (pool.pooled_infer applies it)."""
        z = self.param_head(h)
        k = len(self.columns)
        scale = factors(z[:, :k], self.options.estimate_factor)
        adjust = self.options.pool_adjust
        return scale if adjust is None else torch.cat([scale, factors(z[:, k:], adjust)], 1)

    def origin_state(self, h: torch.Tensor, windows: Windows) -> torch.Tensor:
        """[W, n]: the state at the origin from the summary h [W, hidden]."""
        z = self.center + self.scale * self.head(h)
        # exp only where the state is on the log scale: exp of another state's z (e.g. 4000 mg) is inf, and
        # torch.where's gradient through the unselected inf branch is NaN
        y0 = torch.where(self.log, torch.where(self.log, z, torch.zeros_like(z)).exp(), z)
        if not self.observed:
            return y0
        last, has = last_values(windows)
        columns, states = zip(*self.observed)
        taken = torch.where(has[:, list(columns)], last[:, list(columns)], y0[:, list(states)])
        return y0.index_copy(1, torch.tensor(states, device=y0.device), taken)


class Recurrent(Encoder):
    """gru / lstm: the output at each window's last real history sample."""
    cell = nn.GRU

    def network(self, features: int, width: int) -> nn.Module:
        return self.cell(features, width)

    def summary(self, x, windows):
        out, _ = self.net(x)
        return out[windows.hist_len - 1, torch.arange(x.shape[1], device=x.device)]


class GRU(Recurrent):
    name = "gru"


class LSTM(Recurrent):
    name = "lstm"
    cell = nn.LSTM


class MLP(Encoder):
    """mlp: each sample through an MLP, averaged over the real samples."""
    name = "mlp"

    def network(self, features: int, width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(features, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh())

    def summary(self, x, windows):
        real = (torch.arange(x.shape[0], device=x.device).unsqueeze(1) < windows.hist_len).to(x.dtype)
        return (self.net(x) * real.unsqueeze(-1)).sum(0) / windows.hist_len.to(x.dtype).unsqueeze(-1)


def zero_linear(width: int, out: int) -> nn.Linear:
    """A linear head that starts at zero output (the untrained encoder's guess is the centre)."""
    head = nn.Linear(width, out)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def state_moments(problem, windows: Windows) -> tuple:
    """Per state: the centre and scale the head's output is read in, and whether on a log scale (every sample
    positive). The samples: the model's own states at the windows' origins (its spec initial state where that
    simulation fails), a state that is a data column its history data."""
    states = simulated_states(problem, problem.model, windows.trajectory, windows.origin)
    if states is None:  # the untrained model diverges on its own
        states = problem.model.initial_state((1,)).detach()
    samples = list(states.T)
    for c, j in enumerate(problem.state_like):
        if j is not None:
            samples[j] = windows.hist_y[..., c][windows.hist_mask[..., c]]
    n = len(samples)
    dtype = windows.hist_y.dtype
    center, scale, log = torch.zeros(n, dtype=dtype), torch.ones(n, dtype=dtype), torch.zeros(n, dtype=torch.bool)
    for j, x in enumerate(samples):
        log[j] = len(x) > 0 and bool((x > 0).all())
        x = x.log() if log[j] else x
        spread = float(x.std(unbiased=False)) if len(x) > 1 else 0.0
        center[j] = float(x.mean()) if len(x) else 0.0
        varies = spread > MIN_SCALE * (1 + abs(center[j]))  # else: a guess, a tenth of its size
        scale[j] = spread if varies else max(0.1 * abs(float(center[j])), FALLBACK_SCALE)
    return center, scale, log


def masked_moments(values: torch.Tensor, mask: torch.Tensor) -> tuple:
    """Per last-axis column: the mean and standard deviation over the cells of mask (0 and 1 without any; the sd at
    least MIN_SCALE)."""
    weight = mask.to(values.dtype)
    count = weight.flatten(0, -2).sum(0)
    mean = (values * weight).flatten(0, -2).sum(0) / count.clamp(min=1)
    var = (((values - mean) * weight) ** 2).flatten(0, -2).sum(0) / count.clamp(min=1)
    sd = torch.where(count > 1, var.sqrt(), torch.ones_like(var))
    return mean, sd.clamp(min=MIN_SCALE)


def anchor_pairs(problem, anchor: dict) -> list:
    """forecast.anchor's (column index, observable index, state index) triples; a HodecError naming the key for a
    name that is not a fitted column or a state, or an observable that does not depend on its state (at the spec's
    initial state)."""
    model, out = problem.model, []
    for column, state in anchor.items():
        where = f"forecast.anchor.{column}"
        if column not in problem.columns:
            raise HodecError(f"{where}: not a fitted column (fitted: {', '.join(problem.columns)})", "fit config")
        if column not in model.observable_names:
            raise HodecError(f"{where}: the column is a state itself: use forecast.observed", "fit config")
        if state not in model.state_names:
            raise HodecError(f"{where}: '{state}' is not a state of {type(model).__name__}"
                             f"{did_you_mean(state, model.state_names)}", "fit config")
        if model.observables_use_time:
            raise HodecError(f"{where}: the observables depend on t or inputs; anchoring evaluates them at the "
                             "origin without them", "fit config")
        observable, j = model.observable_names.index(column), model.state_names.index(state)
        with torch.no_grad():
            if float(observed_slope(model, model.initial_state().detach(), observable, j)[1]) == 0:
                raise HodecError(f"{where}: the observable {column} does not depend on {state}", "fit config")
        out.append((problem.columns.index(column), observable, j))
    return out


def anchored(model, anchors: list, y0: torch.Tensor, windows: Windows) -> torch.Tensor:
    """y0 [W, n] with each anchored state set so that its column's observable equals the column's last history
    value (windows without one keep the encoder's estimate): one exact step for an observable linear in the state,
    its slope from a unit change of the state. The observable reads the model's own param values (not forecast.
    estimate's per-window ones, which apply to the solves only)."""
    if not anchors:
        return y0
    last, has = last_values(windows)
    for column, observable, state in anchors:
        base, slope = observed_slope(model, y0, observable, state)
        step = torch.where(has[:, column], (last[:, column] - base) / slope, torch.zeros_like(base))
        y0 = y0.index_add(-1, torch.tensor([state], device=y0.device), step.unsqueeze(-1))
    return y0


def observed_slope(model, y: torch.Tensor, observable: int, state: int) -> tuple:
    """The observable at states y [..., n] and its change for a unit change of the state (its slope where it is
    linear in the state)."""
    unit = torch.zeros(y.shape[-1], dtype=y.dtype, device=y.device)
    unit[state] = 1.0
    base = model.observe(y)[..., observable]
    return base, model.observe(y + unit)[..., observable] - base


def last_values(windows: Windows) -> tuple:
    """Each column's last value in each window's history [W, m] and whether it has one [W, m]."""
    rows = torch.arange(windows.hist_t.shape[0], device=windows.hist_t.device).reshape(-1, 1, 1)
    last = torch.where(windows.hist_mask, rows, -1).max(0).values  # [W, m]
    value = windows.hist_y.gather(0, last.clamp(min=0).unsqueeze(0)).squeeze(0)
    return value, last >= 0


ENCODERS = {cls.name: cls for cls in (GRU, LSTM, MLP)}
