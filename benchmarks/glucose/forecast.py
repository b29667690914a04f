"""Forecast training of the glucose benchmark's ODE rows (issue 18): `method: forecast` of hodec fit / hodec
sparsify on the training patients' windows, the state at each window's origin from a learned encoder (gru) over
the window's history, trained end to end with the model; early stopping on the validation patients' windows.

The windows are the benchmark's own (compare.py): history [t0, t0 + 210 min) (42 CGM samples), the origin its last
sample, the horizon the 12 samples after it (t0 + 210 ... t0 + 265 min), stride 30 min, in the model's time unit.
Training (`train`): hodec's Trainer runs one full-batch epoch at a time (every training window, one AdamW step);
every `check_every` epochs the model and its encoder forecast the validation patients' windows, and the pair with
the lowest validation RMSE is kept; training stops after `patience` checks without a better one, at `max_epochs`,
or after `max_seconds`. The pair that was best when the training wall time passed the LSTM's (`budget_seconds`,
measured in the same run) is scored too. hgs (`train_sparsified`): `hodec sparsify` with the same fit keys (its
own protocol: fixed epochs, the best training epoch of the refit; no early stopping on validation data).

Effective parameters: the model's (compare.py's count) plus the encoder's weights (all of them: the encoder is part
of the forecaster), reported apart as well.
"""
from __future__ import annotations

import copy
import io
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from hodec.compiler import load_text, symbolic
from hodec.files import write_atomic
from hodec.training.config import FitConfig, load_config
from hodec.training.data import Dataset
from hodec.training.forecast import make_estimator, make_windows
from hodec.training.forecast.heldout import predictions
from hodec.training.loop import Trainer
from hodec.training.problem import Problem
from hodec.training.sparsify import effective_params, sparsify

HISTORY_MIN, HORIZON_MIN, STRIDE_MIN, SAMPLE_MIN = 210.0, 60.0, 30.0, 5.0
ESTIMATOR = {"estimator": "gru", "hidden": 32, "observed": False}  # 32: half the CPU of 64 per epoch


def fit_config(minutes_per_unit: float, seed: int, lr: float, epochs: int, estimator: dict = ESTIMATOR) -> dict:
    """FIT.yaml keys of a forecast-trained row in the model's time unit (rk4 at the 5-min sample step)."""
    unit = minutes_per_unit
    return {"method": "forecast", "epochs": epochs, "lr": lr, "weight_decay": 1e-4, "seed": seed,
            "dtype": "float32", "solver": {"method": "rk4", "step_size": SAMPLE_MIN / unit},
            "forecast": {"history": HISTORY_MIN / unit, "horizon": HORIZON_MIN / unit, "stride": STRIDE_MIN / unit,
                         **estimator}}


@dataclass
class Trained:
    """A model with its trained estimator and the record of its training."""
    source: str  # the spec the model compiles from
    model: torch.nn.Module
    estimator: torch.nn.Module
    config: FitConfig
    params_model: int
    record: dict = field(default_factory=dict)

    @property
    def params_encoder(self) -> int:
        return sum(p.numel() for p in self.estimator.parameters())


def windows_of(problem: Problem, config: FitConfig):
    o = config.forecast_options
    return make_windows(problem, history=o.history, horizon=o.horizon, stride=o.stride, pool=o.pool)


def rmse(pred: np.ndarray, windows) -> float:
    """RMSE over the horizon cells with data; inf if a window's forecast is not finite."""
    mask = windows.horizon_mask.numpy()
    err = (pred - windows.horizon_y.numpy())[mask]
    return float(np.sqrt(np.mean(err ** 2))) if np.isfinite(err).all() else math.inf


class Validation:
    """The validation patients' windows and the best (model, estimator) state seen on them."""

    def __init__(self, model, data: Dataset, config: FitConfig):
        self.problem = Problem(model, data, config)
        self.windows = windows_of(self.problem, config)
        self.best, self.best_state, self.best_epoch = math.inf, None, 0

    def check(self, trainer: Trainer) -> bool:
        """Scores the trainer's current pair; True (and kept) when it is the best yet."""
        estimator = trainer.method.estimator
        score = rmse(predictions(trainer.model, estimator, self.windows, self.problem), self.windows)
        estimator.train()
        if score >= self.best:
            return False
        self.best, self.best_epoch = score, trainer.epoch
        self.best_state = (copy.deepcopy(trainer.model.state_dict()), copy.deepcopy(estimator.state_dict()))
        return True


def zero_output_slots(model):
    """Every neural slot's last layer at zero (the model starts with zero slot outputs: an MNODE's states then stay
    at their initial values)."""
    with torch.no_grad():
        for slot in model.slot_modules:
            last = [m for m in slot.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()
    return model


def train(source: str, name: str, train_data: Dataset, val_data: Dataset, cfg: dict, scale: dict,
          budget_seconds: float = None, zero_slots: bool = False, start: Trained = None) -> Trained:
    """Forecast training with early stopping on the validation windows (see the module docstring); zero_slots:
    the slots start at zero output (zero_output_slots) instead of their seeded initialisation; start: from that
    trained pair's weights (its source is the model's)."""
    config = load_config(cfg)
    torch.manual_seed(config.seed)
    model = load_text(source, f"{name}.hode")()
    if start is not None:
        model.load_state_dict(start.model.state_dict())
    trainer = Trainer(zero_output_slots(model) if zero_slots else model, train_data, config)
    if start is not None:
        trainer.method.estimator.load_state_dict(start.estimator.state_dict())
    val = Validation(trainer.model, val_data, config)
    at_budget, stale, began = None, 0, time.perf_counter()
    while trainer.epoch < scale["max_epochs"]:
        trainer.step()
        if trainer.epoch % scale["check_every"]:
            continue
        stale = 0 if val.check(trainer) else stale + 1
        seconds = time.perf_counter() - began
        if at_budget is None and budget_seconds is not None and seconds >= budget_seconds:
            at_budget = {"seconds": round(seconds, 1), "epoch": val.best_epoch, "state": val.best_state}
        if stale >= scale["patience"] or seconds >= scale["max_seconds"]:
            break
    seconds = time.perf_counter() - began
    if val.best_state is None:
        raise RuntimeError(f"{name}: no finite validation forecast in {trainer.epoch} epochs")
    record = {"epochs": trainer.epoch, "best_epoch": val.best_epoch, "val_rmse": val.best,
              "train_seconds": round(seconds, 1), "seconds_per_epoch": round(trainer.elapsed / trainer.epoch, 4),
              "stopped": "patience" if stale >= scale["patience"] else
              ("max_seconds" if seconds >= scale["max_seconds"] else "max_epochs")}
    trained = restore(source, name, train_data, config, val.best_state)
    if at_budget is not None:
        record["budget"] = {k: v for k, v in at_budget.items() if k != "state"}
        record["budget"]["trained"] = restore(source, name, train_data, config, at_budget["state"])
    trained.record = record
    return trained


def restore(source: str, name: str, train_data: Dataset, config: FitConfig, state: tuple) -> Trained:
    """The model and estimator of a saved (model state, estimator state) pair; the estimator is rebuilt on the
    training data's problem (its normalisation buffers are then overwritten by the saved ones)."""
    model = load_text(source, f"{name}.hode")()
    model.load_state_dict(state[0])
    problem = Problem(model, train_data, config)
    estimator = make_estimator(problem, config.forecast_options)
    estimator.load_state_dict(state[1])
    return Trained(source, model, estimator, config, effective_params(symbolic(source, f"{name}.hode"), model))


def train_sparsified(source: str, train_data: Dataset, cfg: dict) -> Trained:
    """`hodec sparsify` with method forecast; the refit's best model and its estimator."""
    start = time.perf_counter()
    r = sparsify(source, train_data, cfg, filename="hgs.hode")
    method = r.refit_trainer.method
    estimator = method.estimator
    if method.best is not None:
        estimator.load_state_dict(method.best)
    config = r.refit_trainer.config
    return Trained(r.pruned_source, r.model, estimator, config, r.params_after, {
        "lambda1": r.lambda1, "pruned": r.pruned_names, "states_kept": list(r.states_kept),
        "train_mse": r.refit.best_mse, "path": r.path, "timings": r.timings,
        "train_seconds": round(time.perf_counter() - start, 1), "source": r.fitted_source})


def forecast(trained: Trained, data: Dataset, starts: list) -> np.ndarray:
    """[12, W] CGM forecasts of the windows of data (checked against starts: (trajectory index, t0 in the model's
    time unit) of the benchmark's windows, in order)."""
    problem = Problem(trained.model, data, trained.config)
    windows = windows_of(problem, trained.config)
    got = list(zip(windows.trajectory.tolist(), windows.t0.tolist()))
    if len(got) != len(starts) or any(a != b or abs(t - s) > 1e-6 for (a, t), (b, s) in zip(got, starts)):
        raise RuntimeError(f"the forecast windows ({len(got)}) are not the benchmark's ({len(starts)})")
    return predictions(trained.model, trained.estimator, windows, problem)[..., 0]


def save(path, trained: Trained) -> None:
    """The trained pair (and the one at the LSTM's wall time, if any) as a torch file."""
    def blob(t: Trained) -> dict:
        return {"source": t.source, "model": t.model.state_dict(), "estimator": t.estimator.state_dict(),
                "config": t.config.to_dict(), "params_model": t.params_model}
    record = {k: v for k, v in trained.record.items() if k != "budget"}
    budget = trained.record.get("budget")
    extra = None if budget is None else ({k: v for k, v in budget.items() if k != "trained"}, blob(budget["trained"]))
    buffer = io.BytesIO()
    torch.save({**blob(trained), "record": record, "budget": extra}, buffer)
    write_atomic(path, buffer.getvalue())


def load(path, name: str, train_data: Dataset) -> Trained:
    blob = torch.load(path, weights_only=False)

    def rebuild(b: dict) -> Trained:
        config = load_config(b["config"])
        t = restore(b["source"], name, train_data, config, (b["model"], b["estimator"]))
        t.params_model = b["params_model"]
        return t
    trained = rebuild(blob)
    trained.record = dict(blob["record"])
    if blob["budget"] is not None:
        trained.record["budget"] = {**blob["budget"][0], "trained": rebuild(blob["budget"][1])}
    return trained
