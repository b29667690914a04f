"""The sparsify objective: the Trainer with an L1 term on the gates and a ridge prior on the weights."""
from __future__ import annotations

import torch

from ..loop import Trainer


class PenalisedTrainer(Trainer):
    """The Trainer with the sparsify penalty s * (lambda1 sum|w| + lambda2 (||Theta||^2 + ||phi - phi0||^2)), s
    the variance of the data it trains on (Dataset.variance): the lambdas weigh against the MSE / s, a unit-free
    data term, so one lambda grid suits data in any units."""

    def __init__(self, model, data, config, lambda1: float = 0.0, lambda2: float = 0.0, phi0=None, inputs=None):
        super().__init__(model, data, config, inputs)
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.scale = self.data.variance
        ref = self.model.raw_parameters().detach()
        self.phi0 = ref.clone() if phi0 is None else torch.as_tensor(phi0, dtype=ref.dtype).clone()
        # a reaction's or term's gate scales it between 0 (pruned) and its fitted size and never reverses it (a
        # negative gate would also not fold into a positive rate constant for the refit); an argument's sign is
        # the network's business
        rows = getattr(self.model, "gates_table", ())
        gates = getattr(self.model, "gate_weights", None)
        self.signed = torch.tensor([kind != "neural_input" for _, kind in rows], dtype=torch.bool,
                                   device=None if gates is None else gates.device)

    def step(self) -> dict:
        entry = super().step()
        if self.signed.any():  # projected gradient step onto w >= 0 for the signed gates
            with torch.no_grad():
                w = self.model.gate_weights
                w.copy_(torch.where(self.signed, w.clamp(min=0.0), w))
        return entry

    def penalty(self):
        m = self.model
        total = None
        gates = getattr(m, "gate_weights", None)
        if self.lambda1 and gates is not None and gates.numel():
            total = self.lambda1 * gates.abs().sum()
        if self.lambda2:
            prior = ((m.raw_parameters() - self.phi0) ** 2).sum()
            for p in m.slot_modules.parameters():
                prior = prior + (p * p).sum()
            total = self.lambda2 * prior if total is None else total + self.lambda2 * prior
        return None if total is None else self.scale * total
