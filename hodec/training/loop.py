"""The training loop behind `hodec fit`, the same for every method (methods/): epochs, best-state tracking, the
per-epoch hook (checkpoints) and resume.

Each epoch is one full-batch AdamW step (lr constant, or cosine-annealed to lr * lr_end; weight decay on neural
weights only). Before the step the uncoupled model (lambda = 0) is evaluated without gradients; its MSE (with
noise models: its -llh per data cell, objective.py; the `mse` of history and `best_mse` then hold that) picks the
best epoch and checkpoint, so the best parameters are those the epoch's loss was computed with. Where the training
loss already is the uncoupled objective (vanilla, the lambda = 0 plateau) it is not computed twice. NaN/inf in the
loss or its gradients ends the run with a FitError naming the epoch.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Optional

import torch

from ..errors import HodecError
from .config import FitConfig
from .data import Dataset
from .distributed import Shard
from .information import likelihood_report
from .initial import KINDS
from .methods import METHODS
from .problem import Problem, finite
from .progress import postfix, progress_bar
from .result import FitError, FitResult
from .slot_weights import prepare_slots


class Trainer:
    def __init__(self, model, data: Dataset, config: Optional[FitConfig] = None, inputs: Optional[dict] = None):
        self.config = config = config or FitConfig()
        self.problem = Problem(model, data, config, inputs)
        prepare_slots(self.model, config.slot_weights, config.frozen)  # before the shards and the method read it
        self.shard = Shard.of(self.problem)  # under torchrun: this process's trajectories (distributed.py)
        self.method = METHODS[config.method](self.shard.problem if self.shard else self.problem, config)
        self.optimizer = self._make_optimizer()
        unread = self.problem.conditions.unread()  # mapped away in every trajectory: not estimated
        self.trainable = [row[0] for row in self.model.parameters_table if row[2] != "fixed" and row[0] not in unread]
        self.epoch = 0
        self.history: list = []
        self.best_mse = math.inf
        self.best_epoch = 0
        self.best_state: Optional[dict] = None
        self.elapsed = 0.0
        self.status = "new"

    # the problem's parts that callers (report, sparsify, tests) read through the trainer
    model = property(lambda self: self.problem.model)
    data = property(lambda self: self.problem.data)
    columns = property(lambda self: self.problem.columns)
    groups = property(lambda self: self.problem.groups)

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int):
        self._epoch = value
        self.problem.epoch = self.method.problem.epoch = value + 1  # what messages call the epoch in progress

    def _make_optimizer(self) -> torch.optim.Optimizer:
        m = self.model
        mechanistic = [p for p in m.mechanistic_parameters() if p.numel()]
        neural = [p for p in m.slot_modules.parameters() if p.numel() and p.requires_grad]  # frozen ones stay
        extra = self.method.parameters() + self.problem.scales.parameters()
        groups = []
        if mechanistic or extra:
            groups.append({"params": mechanistic + extra, "weight_decay": 0.0})
        if neural:
            groups.append({"params": neural, "weight_decay": self.config.weight_decay})
        gates = getattr(m, "gate_weights", None)
        if gates is not None and gates.numel():  # a model compiled with gates: they train too, undecayed
            groups.append({"params": [gates], "weight_decay": 0.0})
        if not groups:
            raise HodecError(f"{type(m).__name__} has nothing to train: every param is fixed and there is no "
                             f"neural slot", "hodec fit")
        return torch.optim.AdamW(groups, lr=self.config.lr)

    def penalty(self):
        """A term added to the loss that is backpropagated (e.g. the sparsity penalty of `hodec sparsify`), or
        None. It never enters the reported or best-epoch-selecting MSE."""
        return None

    # ---------------------------------------------------------------- one epoch
    def step(self) -> dict:
        """One epoch: its optimiser steps (one; a minibatch of the data each with forecast.batch: Method.steps),
        the uncoupled MSE of the params it began with, the best checkpoint."""
        epoch = self.epoch + 1
        lam = self.method.lam_at(epoch)
        start = time.perf_counter()
        self.model.train()
        losses, first = [], None
        for _ in self.method.steps(epoch):
            loss, found = self._update(epoch, lam, first is None)
            losses.append(loss)
            first = first or found
        mse, best = first
        seconds = time.perf_counter() - start
        self.elapsed += seconds
        self.epoch = epoch
        if best is not None:
            self.best_mse, self.best_epoch, self.best_state, snapshot = best
            self.method.keep_best(snapshot)
        entry = {"epoch": epoch, "lam": lam, "loss": sum(losses) / len(losses), "mse": finite(mse),
                 "seconds": round(seconds, 6), "elapsed": round(self.elapsed, 6)}
        self.history.append(entry)
        return entry

    def _update(self, epoch: int, lam: float, first: bool) -> tuple:
        """One optimiser step: loss (+ penalty), backward, AdamW step. Returns its loss and, for the epoch's first
        step, (the uncoupled MSE of the params before the update, those params if they are the best yet: kept only
        once the epoch completes, so an interrupted epoch is never the "best epoch")."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, mse = self.shard.loss(self.method, lam) if self.shard else self.method.loss(lam)
        if not torch.isfinite(loss):
            raise FitError(f"{self.problem.where('training', lam)}: the loss is {float(loss.detach())}")
        found = None
        if first:
            if mse is None:
                mse = self.shard.evaluate(self.model) if self.shard else self.evaluate(self.model)
            best = None if not mse < self.best_mse else (
                mse, epoch, {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                self.method.snapshot())
            found = (mse, best)
        penalty = self.penalty()
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
        if self.shard:
            self.shard.reduce_gradients(self.optimizer)
        self._check_gradients()
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr_at(epoch)
        self.optimizer.step()
        self.problem.scales.after_step()
        return float(loss.detach()), found

    def _check_gradients(self):
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    raise FitError(f"epoch {self.epoch + 1}: the gradient of {self._label(p)} is not finite (the "
                                   f"loss was finite); try a smaller lr or tighter solver tolerances")

    def _label(self, tensor) -> str:
        """What a trained tensor is, for messages: a param (its first non-finite entry's), a slot, the gates."""
        m = self.model
        for kind, raw in zip(KINDS, m.mechanistic_parameters()):
            if raw is tensor:
                rows = [row[0] for row in m.parameters_table if row[2] == kind]
                return f"param '{rows[int(torch.nonzero(~torch.isfinite(tensor.grad))[0, 0])]}'"
        for slot, module in zip(m.slots_table, m.slot_modules):
            if any(p is tensor for p in module.parameters()):
                return f"neural slot '{slot[0]}'"
        if tensor is getattr(m, "gate_weights", None):
            return "the sparsity gates"
        if tensor is self.problem.scales.theta:
            return f"the params trained on scales ({', '.join(self.problem.scales.names)})"
        return "multiple-shooting initial-state corrections"

    def evaluate(self, model=None) -> float:
        """The method's objective of a model (uncoupled MSE over all data cells; forecast: over its horizons); inf
        if its simulation fails or is not finite."""
        return self.method.evaluate(model or self.model)

    def trajectory_errors(self, model=None):
        """Squared errors and cells per trajectory of the method's evaluation (Problem.trajectory_errors; forecast:
        its horizons); None if it fails."""
        return self.method.trajectory_errors(model or self.model)

    def predictions(self, model, ts_per_group: Optional[list] = None) -> list:
        return self.problem.predictions(model, ts_per_group)

    # ---------------------------------------------------------------- the run
    def train(self, progress: bool = False, on_epoch: Optional[Callable] = None) -> str:
        """Run the remaining epochs. Returns the status: complete, or interrupted (Ctrl-C: best kept)."""
        with torch.enable_grad():  # a fit called inside a caller's `torch.no_grad()` block still trains
            return self._train(progress, on_epoch)

    def _train(self, progress: bool, on_epoch: Optional[Callable]) -> str:
        total = self.config.total_epochs
        if self.shard:
            self.shard.start(self)
        bar = progress_bar(total, self.epoch, self.config.method, progress)
        self.status = "running"
        try:
            while self.epoch < total:
                entry = self.step()
                bar.update(1)
                bar.set_postfix(postfix(entry, self.best_mse, self.method.scheduled), refresh=False)
                if on_epoch is not None:
                    on_epoch(self, self.best_epoch == entry["epoch"])
            self.status = "complete"
        except KeyboardInterrupt:
            self.status = "interrupted"
        except BaseException:
            self.status = "failed"
            raise
        finally:
            bar.close()
        if self.best_state is None and self.status == "complete":
            raise FitError("no epoch produced a finite uncoupled MSE: the uncoupled model diverged throughout "
                           "(try more epochs, a smaller lr, or method vanilla)")
        return self.status

    # ---------------------------------------------------------------- results and resuming
    def best_model(self):
        model = copy.deepcopy(self.model)
        model.set_coupling(None)
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model

    def result(self, evaluate: bool = True) -> FitResult:
        """The best model and the run's record; evaluate=False skips the per-column MSE (one more simulation)."""
        model = self.best_model()
        metrics = {"best_mse": finite(self.best_mse), "best_epoch": self.best_epoch, "epochs_run": self.epoch,
                   "seconds": round(self.elapsed, 3), "n_cells": self.data.n_cells,
                   "n_trajectories": len(self.data.trajectories), "initial": self.problem.initial_report(),
                   "objective": "-llh per data cell" if self.problem.noise.active else "mse"}
        if self.history:
            metrics["final_loss"] = self.history[-1]["loss"]
            metrics["final_mse"] = self.history[-1]["mse"]
        metrics["column_mse"] = self.problem.column_mse(model) if evaluate else None
        params = {name: value for name, value in model.params().items() if name in self.trainable}
        likelihood = likelihood_report(self.problem, model) if evaluate and self.problem.noise.active else None
        return FitResult(model, self.config.method, self.best_epoch, finite(self.best_mse), params,
                         list(self.history), metrics, self.status, self.config, likelihood)

    def state(self) -> dict:
        """Everything --resume needs."""
        return {"epoch": self.epoch, "history": self.history, "best_mse": self.best_mse,
                "best_epoch": self.best_epoch, "best_state": self.best_state, "elapsed": self.elapsed,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": torch.get_rng_state(), **self.method.state()}

    def restore(self, state: dict):
        self.model.load_state_dict(state["model"])
        self.problem.scales.load()
        self.method.restore(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.best_mse, self.best_epoch = float(state["best_mse"]), int(state["best_epoch"])
        self.best_state, self.elapsed = state["best_state"], float(state.get("elapsed", 0.0))
        if state.get("rng") is not None:
            torch.set_rng_state(state["rng"])
