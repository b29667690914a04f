"""Sparsity gates of a model compiled with gates: one trainable weight per prunable edge, starting at 1."""
from __future__ import annotations

from typing import Mapping

import torch

from ..errors import HodecError, did_you_mean
from .trainable import register_trainable


class Gated:
    """Mixed into CompiledModel: `gates_table` rows are (name, kind); `edges_table` rows (source, target, kind,
    name). The generated forward reads gate_values(): the gates followed by a constant 1 for ungated edges."""

    gates_table: tuple = ()
    edges_table: tuple = ()

    def _init_gates(self):
        register_trainable(self, "gate_weights", torch.ones(len(self.gates_table)))
        self._gate_index = {row[0]: i for i, row in enumerate(self.gates_table)}

    def gate_values(self) -> torch.Tensor:
        return torch.cat([self.gate_weights, self.gate_weights.new_ones(1)])

    @property
    def gates(self) -> dict:
        return {name: float(w) for (name, _), w in zip(self.gates_table, self.gate_weights.detach())}

    @property
    def edges(self) -> list:
        return [tuple(row) for row in self.edges_table]

    @torch.no_grad()
    def set_gates(self, values: Mapping[str, float]):
        for name, value in values.items():
            if name not in self._gate_index:
                hint = did_you_mean(name, self._gate_index)
                raise HodecError(f"{type(self).__name__} has no gate '{name}'" + (f"; {hint}" if hint else "")
                                 + ("" if self.gates_table else " (compile with gates to get them)"))
            self.gate_weights[self._gate_index[name]] = float(value)
