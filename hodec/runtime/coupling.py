"""Synchronisation coupling: the term a generated forward adds while a Coupling is attached (set_coupling).

    du/dt = f(u) - lam * J+ K (h(u) - yhat(t))

h are the coupled targets (observables or states that have data), yhat(t) their reference (a smoothing spline
of the data), K = diag(k) the gains (1/time), J = dh/du from the generated observation_jacobian (params
detached) and J+ its pseudo-inverse: each target relaxes toward its data at rate lam*k whatever its scale, and a
target that is a state gets exactly -lam*k*(u - yhat). Three evaluation paths, chosen once:
  direct    every target is a state (or an observable identical to one), distinct: no Jacobian at all;
  diagonal  the targets depend on disjoint sets of states: J J^T is diagonal, J+ has columns J_i^T / |J_i|^2
            (a row with |J_i|^2 at or below sqrt(float tiny) contributes nothing: the pseudo-inverse of 0);
  general   torch.linalg.pinv of J per batch element.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import HodecError, did_you_mean


class Coupling:
    """Not an nn.Module on purpose: attaching it to a model leaves the model's state_dict unchanged.

    targets: names of states or observables; reference: t -> [*batch, len(targets)]; gain: k, a scalar or a
    tensor broadcastable to [*batch, len(targets)] (zero where a target is not to be coupled).
    """

    def __init__(self, model, targets: Sequence[str], reference: Callable, gain=1.0, lam: float = 1.0):
        self.targets = tuple(targets)
        self.reference = reference
        self.gain = torch.as_tensor(gain)
        self.lam = strength(lam)
        states = {name: i for i, name in enumerate(model.state_names)}
        observables = {row[0]: (i, row) for i, row in enumerate(model.observation_table)}
        state_idx, obs_idx, supports = [], [], []
        for name in self.targets:
            if name in observables:
                i, (_, support, equal_state, slots) = observables[name]
                if slots:
                    raise HodecError(f"observable '{name}' calls the neural slot(s) {', '.join(slots)}: it cannot be "
                                     f"coupled (its Jacobian is not symbolic); drop its column, give it k = 0, or "
                                     f"use method: vanilla or multiple_shooting")
                if equal_state is not None:
                    state_idx.append(equal_state), obs_idx.append(-1), supports.append({equal_state})
                else:
                    state_idx.append(-1), obs_idx.append(i), supports.append(set(support))
            elif name in states:
                state_idx.append(states[name]), obs_idx.append(-1), supports.append({states[name]})
            else:
                hint = did_you_mean(name, [*states, *observables])
                raise HodecError(f"cannot couple '{name}': not a state or observable of {type(model).__name__}"
                                 + (f"; {hint}" if hint else ""))
        self._state_idx, self._obs_idx = state_idx, obs_idx
        direct = all(i < 0 for i in obs_idx) and len(set(state_idx)) == len(state_idx)
        disjoint = all(not (a & b) for k, a in enumerate(supports) for b in supports[k + 1:])
        self.mode = "direct" if direct else "diagonal" if disjoint else "general"
        self._n_states = len(model.state_names)
        self._cache: dict = {}

    def _tensors(self, like: torch.Tensor) -> dict:
        key = (like.dtype, like.device)
        if key not in self._cache:
            long = dict(dtype=torch.long, device=like.device)
            is_obs = torch.tensor([i >= 0 for i in self._obs_idx], dtype=torch.bool, device=like.device)
            unit = torch.zeros(len(self.targets), self._n_states, dtype=like.dtype, device=like.device)
            for row, j in enumerate(self._state_idx):
                if j >= 0:
                    unit[row, j] = 1
            self._cache[key] = dict(
                state=torch.tensor([max(j, 0) for j in self._state_idx], **long),
                diagonal=torch.tensor([max(j, 0) * (self._n_states + 1) for j in self._state_idx], **long),
                obs=torch.tensor([max(i, 0) for i in self._obs_idx], **long),
                is_obs=is_obs, unit=unit, gain=self.gain.to(dtype=like.dtype, device=like.device))
        return self._cache[key]

    def target_values(self, model, t, y: torch.Tensor) -> torch.Tensor:
        """h(y): the targets' values, [*batch, m]."""
        c = self._tensors(y)
        from_states = y.index_select(-1, c["state"])
        if self.mode == "direct":
            return from_states
        h = model.observables(t, y).index_select(-1, c["obs"])
        return torch.where(c["is_obs"], h, from_states)

    def jacobian(self, model, t, y: torch.Tensor) -> torch.Tensor:
        """J = dh/dy of the targets, [*batch, m, n], params detached."""
        c = self._tensors(y)
        J = model.observation_jacobian(t, y).index_select(-2, c["obs"])
        return torch.where(c["is_obs"][:, None], J, c["unit"])

    def reference_at(self, t, batch) -> torch.Tensor:
        """yhat(t), [*batch, m], at a scalar t or at one time per batch member (t [*batch], as the stiff solvers
        pass it). The reference maps times [K] to [K, *batch, m]; each member then takes its own row."""
        if not torch.is_tensor(t) or t.dim() == 0:
            return self.reference(t)
        times = t.expand(batch).reshape(-1)
        values = self.reference(times)  # every member's reference at every member's time
        k, m = times.numel(), values.shape[-1]
        if values.dim() == 2:  # a reference without a batch of its own
            return values.reshape(*batch, m)
        own = torch.arange(k, device=values.device)
        return values.expand(k, *batch, m).reshape(k, k, m)[own, own].reshape(*batch, m)

    def __call__(self, model, t, y: torch.Tensor) -> torch.Tensor:
        c = self._tensors(y)
        residual = c["gain"] * (self.target_values(model, t, y) - self.reference_at(t, y.shape[:-1]))  # K (h - yhat)
        if self.mode == "direct":
            term = (-self.lam) * residual
            return term.new_zeros(*term.shape[:-1], self._n_states).index_copy(-1, c["state"], term)
        return (-self.lam) * self._pinv_times(self.jacobian(model, t, y), residual)

    def _pinv_times(self, J: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """J+ v, [*batch, n], in diagonal or general mode."""
        if self.mode == "diagonal":
            return ((v * _inverse_norms(J)).unsqueeze(-1) * J).sum(-2)
        return (torch.linalg.pinv(J) @ v.unsqueeze(-1)).squeeze(-1)

    def jacobian_term(self, model, t, y: torch.Tensor) -> torch.Tensor:
        """d/dy of the coupling term, [*batch, n, n], for the stiff solvers (model.jacobian adds it).

        direct: -lam k_i on the diagonal entry of each coupled state, exactly. diagonal and general, exactly too:
        -lam (J+ K J + d(J+)/dy K r), r = h - yhat, the second part by reverse-mode autodiff of y -> J+(y) K r (r held).
        Without it (J+ held constant) rodas5p lost its order: 4954 steps on the coupled Dandekar model at lambda = 1,
        rtol 1e-7, against 524 with the exact Jacobian (measured); it is zero where the targets are linear in y."""
        c = self._tensors(y)
        gain = c["gain"]
        batch = torch.broadcast_shapes(y.shape[:-1], gain.shape[:-1])
        if self.mode == "direct":
            diagonal = ((-self.lam) * gain).expand(*batch, len(self.targets))
            term = diagonal.new_zeros(*batch, self._n_states ** 2).index_copy(-1, c["diagonal"], diagonal)
            return term.reshape(*batch, self._n_states, self._n_states)
        J = self.jacobian(model, t, y)
        if self.mode == "diagonal":
            pinv = (J * _inverse_norms(J).unsqueeze(-1)).transpose(-1, -2)
        else:
            pinv = torch.linalg.pinv(J)
        residual = gain * (self.target_values(model, t, y) - self.reference_at(t, y.shape[:-1]))
        # members are independent: the Jacobian of the sum over the batch holds each member's rows, [n, *batch, n]
        rows = torch.func.jacrev(lambda x: self._pinv_times(self.jacobian(model, t, x), residual).sum(
            tuple(range(y.dim() - 1))))(y.expand(*batch, y.shape[-1]))
        return (-self.lam) * (pinv @ (gain.unsqueeze(-1) * J) + rows.movedim(0, -2))


def _inverse_norms(J: torch.Tensor) -> torch.Tensor:
    """1/|J_i|^2 per row of J [*batch, m, n] (0 for a row at or below sqrt(float tiny): the pseudo-inverse of 0):
    with disjoint supports, J+ has the columns J_i^T / |J_i|^2."""
    n2 = (J * J).sum(-1)
    ok = n2 > torch.finfo(n2.dtype).tiny ** 0.5
    return torch.where(ok, 1 / torch.where(ok, n2, torch.ones_like(n2)), torch.zeros_like(n2))


def strength(lam) -> torch.Tensor:
    """lam as a 0-dim float64 tensor: torch.compile then reads it as an input of the compiled step instead of
    specialising on the number (a Python float made every homotopy step λ a new graph: a recompile per step, and
    torch's limit of 8 graphs reached at the third λ); a 0-dim tensor keeps the field's dtype."""
    return torch.tensor(float(lam), dtype=torch.float64)
