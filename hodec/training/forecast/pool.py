"""Pooled per-window params (FIT.yaml forecast.pool, with forecast.estimate): a window's inferred params are the
geometric mean of those the encoder infers from the histories of its trajectory's windows whose origin lies in
[origin - pool, origin]: its own history and the earlier ones, never a later one (causal). One history holds too
little to tell a trajectory's params apart (a patient's insulin sensitivity from 210 minutes of CGM); the same
trajectory's earlier histories add evidence about the same values.

The histories pooled over are the context windows: every window start of the stride grid (t0 = first time +
k stride) with a data cell in its history, whether or not the window is scored (a window whose horizon holds no
data is still evidence, and which windows are scored depends on data after the origin, which a causal estimate must
not). The mean is in log-parameter space: each context window's factor f_c of the population value p, and the
window's value p · exp(mean_c ln f_c), so it stays within the estimate_factor bounds. forecast.pool_states names
states constant in time (der 0: a latent per-trajectory constant, as a slot argument must be a state, not a param)
whose estimate at the origin is pooled too, as the plain mean. With forecast.pool_adjust a, the encoder gives each
history a second factor per param within [1 / a, a], and a window's value is the pooled value times the second
factor of its own history: a patient constant with a per-window adjustment. Gradients reach every pooled history,
so training may pool as well."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import HodecError, did_you_mean


@dataclass
class Pool:
    """Which context windows each of W windows pools over."""
    context: object  # Windows [C]: the histories pooled over (their horizons empty)
    own: torch.Tensor  # [W] long: each window's own history among the context windows
    member: torch.Tensor  # [P] long: pairs (member[i], source[i]): window member[i] pools context window source[i]
    source: torch.Tensor  # [P] long

    def mean(self, factors: torch.Tensor) -> torch.Tensor:
        """[W, K]: per window, the geometric mean of the context windows' factors [C, K] it pools over."""
        return self.average(factors.log()).exp()

    def average(self, values: torch.Tensor) -> torch.Tensor:
        """[W, K]: per window, the mean of the context windows' values [C, K] it pools over."""
        picked = values.index_select(0, self.source)
        total = picked.new_zeros(len(self.own), values.shape[1]).index_add(0, self.member, picked)
        count = torch.bincount(self.member, minlength=len(self.own)).to(values.dtype)
        return total / count.unsqueeze(1)

    def select(self, index: torch.Tensor) -> "Pool":
        """The pool of the windows `index` [W'] (long, each window once), in its order, over only the context
        windows they read (so a minibatch's encoder pass covers its own days, not every one)."""
        position = torch.full((len(self.own),), -1, dtype=torch.long)
        position[index] = torch.arange(len(index))
        keep = position[self.member] >= 0
        own, source = self.own.index_select(0, index), self.source[keep]
        used = torch.cat([own, source]).unique()  # sorted: the context keeps its order
        renumber = torch.full((len(self.context.trajectory),), -1, dtype=torch.long)
        renumber[used] = torch.arange(len(used))
        return Pool(self.context.select(used), renumber[own], position[self.member[keep]], renumber[source])


def pairs(trajectory: torch.Tensor, origin: torch.Tensor, context_trajectory: torch.Tensor,
          context_origin: torch.Tensor, span: float) -> tuple:
    """(member, source) [P]: window w pools context window c when they are of one trajectory and c's origin lies
    in [origin_w - span, origin_w] (times within 1e-9 of the time's size of an edge count as on it)."""
    member, source = [], []
    for i in trajectory.unique().tolist():
        mine, theirs = (trajectory == i).nonzero().squeeze(1), (context_trajectory == i).nonzero().squeeze(1)
        o, c = origin[mine].unsqueeze(1), context_origin[theirs].unsqueeze(0)
        tol = 1e-9 * torch.clamp(o.abs(), min=1.0)
        w, k = ((c <= o + tol) & (c >= o - span - tol)).nonzero(as_tuple=True)
        member.append(mine[w])
        source.append(theirs[k])
    return torch.cat(member), torch.cat(source)


def pooled_states(model, options) -> list:
    """The state indices of forecast.pool_states; a HodecError naming the key for a name that is not a state."""
    names = getattr(options, "pool_states", None) or ()
    for k, name in enumerate(names):
        if name not in model.state_names:
            hint = did_you_mean(name, model.state_names)
            raise HodecError(f"forecast.pool_states[{k}]: '{name}' is not a state of {type(model).__name__}"
                             + (f"; {hint}" if hint else ""), "fit config")
    return [model.state_names.index(name) for name in names]


def pooled_infer(estimator, model, windows) -> tuple:
    """estimator.infer on the windows, with their param factors (and the states of forecast.pool_states) pooled
    when the windows carry a Pool: the estimator runs once over the context windows, each window's other states at
    its origin from its own history."""
    pool = windows.pool
    if pool is None:
        y0, factors = estimator.infer(model, windows)  # each window pools over its own history only
        k = len(estimator.columns)
        return y0, None if factors is None else adjusted(factors[:, :k], factors, k)
    y0, factors = estimator.infer(model, pool.context)
    own = y0.index_select(0, pool.own)
    states = pooled_states(model, estimator.options)
    if states:
        index = torch.tensor(states, dtype=torch.long, device=y0.device)
        own = own.index_copy(1, index, pool.average(y0.index_select(1, index)))
    if factors is None:
        return own, None
    k = len(estimator.columns)
    return own, adjusted(pool.mean(factors[:, :k]), factors.index_select(0, pool.own), k)


def adjusted(pooled: torch.Tensor, own: torch.Tensor, k: int) -> torch.Tensor:
    """[W, k]: the pooled factors [W, k] times, with forecast.pool_adjust (the estimator's factors then have 2k
    columns), each window's own adjustment, the last k columns of its own history's factors own [W, 2k]."""
    return pooled if own.shape[1] == k else pooled * own[:, k:]
