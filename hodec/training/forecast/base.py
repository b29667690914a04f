"""What a state estimator is to forecast training: a torch module that gives the model's state at each window's
origin from the window's history. Learned encoders (encoders.py) train with the model; filters (filters.py) run
the model itself over the history. `setup` runs once before training, on the training windows (normalisation,
priors); its results are buffers, so a run's checkpoint (Method.state()["estimator"]) restores them."""
from __future__ import annotations

import torch

from ..groups import union_grid
from ..result import FitError
from .windows import Windows


class Estimator(torch.nn.Module):
    name = ""
    state_rows: tuple = ()  # state_dict entries whose first axis runs over the model's states
    columns: tuple = ()  # the parameters_table columns it infers per window (forecast.estimate; params.py)

    def __init__(self, problem, options):
        """problem: the training Problem (its model, columns, inputs, dtype); options: the ForecastConfig."""
        super().__init__()
        self.options = options

    def setup(self, problem, windows: Windows) -> None:
        """Once before training, on the training windows (normalisation, priors)."""

    def forward(self, model, windows: Windows) -> torch.Tensor:
        """[W, n_states]: the model's state at windows.origin."""
        raise NotImplementedError

    def infer(self, model, windows: Windows) -> tuple:
        """(the state at windows.origin [W, n_states], each window's factors of the params `columns` [W, K], None
        when it infers none; with forecast.pool_adjust [W, 2K]: then each window's own adjustments follow, which
        pool.pooled_infer applies)."""
        return self(model, windows), None

    @torch.no_grad()
    def transfer(self, state: dict, names: tuple, own_names: tuple):
        """Take another estimator's state_dict, made for a model with states `names` (a sparsify refit's pruned
        model keeps some of them): the state_rows entries row by state name (states it lacks keep this one's
        set-up values), the others whole where their shapes agree."""
        rows = [(names.index(s), j) for j, s in enumerate(own_names) if s in names]
        for key, mine in self.state_dict().items():
            if key not in state:
                continue
            if key in self.state_rows:
                source, target = zip(*rows) if rows else ((), ())
                mine[list(target)] = state[key][list(source)].to(mine.dtype)
            elif state[key].shape == mine.shape:
                mine.copy_(state[key])


@torch.no_grad()
def simulated_states(problem, model, trajectory: torch.Tensor, times: torch.Tensor):
    """[W, n]: the model's own states at times [W] (at or after their trajectory's start), each simulated from its
    trajectory's initial state (Problem.initial: the data-pinned or spec values, conditions applied) without
    gradients; None where a simulation fails or is not finite (an untrained model may diverge on its own)."""
    out = torch.zeros(len(times), len(model.state_names), dtype=problem.dtype)
    for g in problem.groups:
        position = {i: b for b, i in enumerate(g.members)}
        rows = [w for w, i in enumerate(trajectory.tolist()) if i in position]
        if not rows:
            continue
        grid, (_, picks) = union_grid([g.t, times[rows]])  # (the times need not be in order)
        try:
            ys = problem.solve(model, g, problem.initial(model, g), grid, "estimator set-up")
        except FitError:
            return None
        members = torch.tensor([position[i] for i in trajectory[rows].tolist()])
        out[rows] = ys[picks, members]
    return out if torch.isfinite(out).all() else None
