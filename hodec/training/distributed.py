"""One population fit over several processes (`torchrun --nproc-per-node N -m hodec fit ...`): the data's
trajectories are sharded over the processes, each process simulates its shard, and the gradients are summed.

Sharding: contiguous blocks of trajectories in data order, balanced by their cells; each process keeps the rows of
its trajectories in the whole data's groups (grids, splines and inputs unchanged), so a trajectory is simulated on
the same time grid as in one process. The loss is the global mean, sum over processes of SSE / all cells; each
process backpropagates its part and the gradients are all-reduced (summed), so every process takes the same AdamW
step and the parameters stay identical (process 0's starting state is sent to all). The uncoupled MSE that picks
the best epoch is all-reduced too. A failure in one process's loss is shared with all at the end of that loss, so
every process ends with the same FitError (exit 1) instead of waiting for the others.

Exactness: with a fixed-grid solver (rk4, euler) the result equals the one-process fit up to the order of
floating-point sums. An adaptive solver (dopri5) picks one step size per solve from the worst member of the batch,
so a shard takes other steps than the whole batch: the losses differ at the solver's tolerance.

Only process 0 reads and writes the run folder; the others train without outputs (torchrun.py).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.distributed as dist

from ..errors import HodecError
from ..runtime.signals import Signal
from .groups import Group
from .methods import METHODS
from .result import FitError

STARTED = {"sent": False}  # whether process 0 has sent a starting state (Shard.start; torchrun.finish)


class Shard:
    """This process's part of a Problem and the collectives of one training epoch."""

    def __init__(self, problem):
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        data = problem.data
        owner = owners([int(np.isfinite(tr.y).sum()) for tr in data.trajectories], self.size, data.source)
        self.problem = copy.copy(problem)
        parts = [_rows(g, [b for b, i in enumerate(g.members) if owner[i] == self.rank], data.inputs)
                 for g in problem.groups]
        self.problem.groups = [part for part in parts if part is not None]
        self.cells = sum(int(g.mask.sum()) for g in self.problem.groups)
        self.share = self.cells / data.n_cells  # this process's fraction of the loss's cells
        self.started = False

    @classmethod
    def of(cls, problem):
        """The shard of this process when several train together, else None."""
        if not (dist.is_initialized() and dist.get_world_size() > 1):
            return None
        if not METHODS[problem.config.method].shardable:
            raise HodecError(f"method {problem.config.method} runs in one process only (not under torchrun); use "
                             f"{' or '.join(name for name, m in METHODS.items() if m.shardable)}", "hodec fit")
        return cls(problem)

    def start(self, trainer):
        """Once, before the first epoch: every process continues from process 0's state (new or resumed). The
        message carries the config too, for processes that receive it before they build their trainer
        (torchrun.follow: they are started already)."""
        if self.started:
            return
        message = [("train", trainer.config.to_dict(), trainer.state()) if self.rank == 0 else None]
        dist.broadcast_object_list(message, src=0)
        if self.rank:
            trainer.restore(message[0][2])
        self.started = STARTED["sent"] = True

    def loss(self, method, lam: float):
        """The global loss (its value; its gradient is this shard's part) and the global uncoupled MSE (None where
        the method leaves it to evaluate). A failure on any process raises the same FitError on all."""
        failure, mse = None, None
        try:
            local, mse = method.loss(lam)
            local = local * self.share
        except Exception as err:  # noqa: BLE001 - every process must hear of it, whatever it is
            failure, local = err, torch.zeros(())
        sums = self._sum([float(failure is not None), float(local.detach()), self.share * (mse or 0.0)])
        if sums[0]:
            self._raise_shared(failure)
        # the global value carried by the local graph: backward gives this shard's part of the gradient
        value = local + (sums[1] - local.detach())
        return value, (None if mse is None else sums[2])

    def evaluate(self, model) -> float:
        """The uncoupled MSE over every process's cells (inf where any process's simulation fails)."""
        return self._sum([self.share * self.problem.evaluate(model)])[0]

    def reduce_gradients(self, optimizer):
        """Sum the gradients over the processes (each holds its shard's part of the global loss's gradient)."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    def _sum(self, values: list) -> list:
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def _raise_shared(self, failure):
        messages = [None] * self.size
        text = None if failure is None else (failure.diagnostics[0].message if isinstance(failure, HodecError)
                                             else f"{type(failure).__name__}: {failure}")
        dist.all_gather_object(messages, text)
        if failure is not None and not isinstance(failure, HodecError):
            raise failure  # a bug: its own traceback on its own process
        rank, message = next((r, m) for r, m in enumerate(messages) if m is not None)
        raise FitError(f"{message} (process {rank} of {self.size})")


def owners(cells: list, size: int, source: str = "the data") -> list:
    """The process of each trajectory: contiguous blocks in data order, each with about 1/size of the cells and at
    least one trajectory."""
    if len(cells) < size:
        raise HodecError(f"{source} has {len(cells)} trajectories, too few for {size} processes (each process "
                         f"fits at least one)", "hodec fit")
    total, middles = sum(cells), np.cumsum(cells) - np.asarray(cells) / 2
    starts = [0]
    for r in range(1, size):  # first trajectory of process r: the first whose middle cell is past r/size of all
        at = int(np.searchsorted(middles, r * total / size))
        starts.append(min(max(at, starts[-1] + 1), len(cells) - (size - r)))
    return [int(np.searchsorted(starts, i, side="right")) - 1 for i in range(len(cells))]


def _rows(g: Group, rows: list, data_inputs) -> Group | None:
    """The group restricted to some of its trajectories (None if none), on the same grid."""
    if not rows:
        return None
    index = torch.tensor(rows)
    inputs = {name: Signal(s.times, s.values.index_select(1, index), s.method) if name in data_inputs else s
              for name, s in g.inputs.items()}
    return Group([g.members[b] for b in rows], [g.ids[b] for b in rows], g.t, g.y.index_select(1, index),
                 g.mask.index_select(1, index), g.first.index_select(0, index), g.first_mask.index_select(0, index),
                 inputs, **g.members_only(index))
