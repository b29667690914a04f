"""What a training method is to the loop (loop.py): its set-up, the loss of an epoch, its own trainable tensors
and its share of the resume state. The loop owns everything else (epochs, best state, checkpoints, resume)."""
from __future__ import annotations

from typing import Optional

import torch

from ..config import FitConfig
from ..problem import Problem


class Method:
    name = ""
    scheduled = False  # whether lambda varies over the epochs (then messages and the progress bar name it)
    shardable = True  # whether the loss is a sum over trajectories, which torchrun shares out (distributed.py)
    evaluated_by = "vanilla"  # the method whose Trainer scores this method's models on other data (sparsify)

    def __init__(self, problem: Problem, config: FitConfig):
        self.problem, self.config = problem, config
        problem.show_lambda = self.scheduled

    def lam_at(self, epoch: int) -> float:
        """The coupling strength of epoch 1, 2, ..."""
        return 0.0

    def parameters(self) -> list:
        """Tensors the method trains besides the model's (weight decay 0)."""
        return []

    def steps(self, epoch: int):
        """Iterates once per optimiser step of an epoch, the loss of each step (loss) then being that step's share
        of the data (forecast.batch: a minibatch of windows); one step by default."""
        yield

    def loss(self, lam: float) -> tuple[torch.Tensor, Optional[float]]:
        """The training loss of one step at strength lam, and the uncoupled objective (Problem.loss: the MSE, or
        -llh per cell with noise models) where the loss already is it (None: the loop evaluates it)."""
        raise NotImplementedError

    def evaluate(self, model) -> float:
        """The objective that picks the best epoch, of a model (inf if its simulation fails): the uncoupled
        Problem.evaluate, unless the method scores otherwise (forecast: its horizons)."""
        return self.problem.evaluate(model)

    def trajectory_errors(self, model):
        """Squared errors summed per trajectory and cells per trajectory of the method's evaluation (None if it
        fails): what sparsify's cross-validation scores."""
        return self.problem.trajectory_errors(model)

    def snapshot(self):
        """A copy of the method's own trained tensors that must follow the best epoch (None: none)."""
        return None

    def keep_best(self, snapshot):
        """Called with the best epoch's snapshot when the loop keeps a new best state."""

    def carry(self, best: bool = False):
        """What a fit that starts from this one's model (its last epoch's, or with best its best epoch's) takes
        over besides the model (take): sparsify's warm starts, refits and validation scores. None: nothing."""
        return None

    def take(self, carried):
        """Start from what another fit's carry() gave."""

    def state(self) -> dict:
        """What --resume needs of the method, beyond the model and the optimizer."""
        return {}

    def restore(self, state: dict):
        pass


def uncoupled_loss(problem: Problem) -> tuple[torch.Tensor, float]:
    """The objective of the uncoupled model, which is also the epoch's evaluation (not computed twice)."""
    loss = problem.loss(problem.model, "uncoupled")
    return loss, float(loss.detach())
