"""What a state estimator is to forecast training: a torch module that gives the model's state at each window's
origin from the window's history. Learned encoders (encoders.py) train with the model; filters (filters.py) run
the model itself over the history. `setup` runs once before training, on the training windows (normalisation,
priors); its results are buffers, so a run's checkpoint (Method.state()["estimator"]) restores them."""
from __future__ import annotations

import torch

from .windows import Windows


class Estimator(torch.nn.Module):
    name = ""

    def __init__(self, problem, options):
        """problem: the training Problem (its model, columns, inputs, dtype); options: the ForecastConfig."""
        super().__init__()
        self.options = options

    def setup(self, problem, windows: Windows) -> None:
        """Once before training, on the training windows (normalisation, priors)."""

    def forward(self, model, windows: Windows) -> torch.Tensor:
        """[W, n_states]: the model's state at windows.origin."""
        raise NotImplementedError
