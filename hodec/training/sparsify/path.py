"""The regularisation path of `hodec sparsify`: L1 fits along the lambda1 grid (warm-started), K-fold
cross-validation over trajectories, and the choice of lambda1 (min or one standard error)."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from ...compiler import compile_text
from ...errors import HodecError
from ..data import Dataset
from ..executor import Executor, Failed
from ..loop import Trainer
from ..methods import METHODS
from ..result import FitError
from ..sparsify_config import SparsifyConfig
from .penalty import PenalisedTrainer

WHO = "hodec sparsify"


def subset(data: Dataset, indices) -> Dataset:
    return Dataset(data.columns, data.inputs, [data.trajectories[i] for i in indices], data.source)


def fold_indices(n: int, folds: int, seed: int) -> list:
    """Validation index sets: each trajectory in exactly one (leave-one-out when n < folds)."""
    k = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in order[j::k]) for j in range(k)]


def _probe(model, data: Dataset, config, inputs=None, carried=None) -> Trainer:
    """A Trainer over a copy of the model, only to evaluate it on data: vanilla's (the uncoupled objective), or
    for a method that scores otherwise its own, with what the fit carried (forecast: its estimator)."""
    probe = Trainer(copy.deepcopy(model), data, replace(config, method=METHODS[config.method].evaluated_by), inputs)
    probe.method.take(carried)
    return probe


def data_mse(model, data: Dataset, config, inputs=None, carried=None) -> float:
    """Uncoupled MSE of a model over a dataset's cells (method forecast: over its windows' horizons, the estimator
    `carried` by the fit, Method.carry); inf if the simulation fails."""
    return _probe(model, data, config, inputs, carried).evaluate()


def trajectory_errors(model, data: Dataset, config, inputs=None, carried=None):
    """Uncoupled squared errors summed per trajectory and cells per trajectory (method forecast: its windows'
    horizons'); None if the simulation fails."""
    return _probe(model, data, config, inputs, carried).trajectory_errors()


def fresh(model_class, seed: int):
    torch.manual_seed(seed)
    return model_class()


def spec_prior(model_class, fit_config):
    """phi0: the spec's param values in unconstrained coordinates (taken in float64, then the fit's dtype)."""
    return fresh(model_class, fit_config.seed).double().raw_parameters().detach().to(getattr(torch, fit_config.dtype))


def standard_error(sse, cells) -> Optional[float]:
    """Standard error of the pooled MSE sum(sse) / sum(cells) over validation trajectories (the ratio estimator's
    linearisation; with equal cells, sd(per-trajectory MSE) / sqrt(n)); None when it cannot be estimated. Over
    trajectories rather than folds: with 2 or 3 folds the spread of the fold means says little."""
    sse, cells = np.asarray(sse, dtype=float), np.asarray(cells, dtype=float)
    n, total = len(sse), cells.sum()
    if n < 2 or not np.isfinite(sse).all() or total <= 0:
        return None
    residual = sse - sse.sum() / total * cells
    return float(math.sqrt(n / (n - 1) * (residual ** 2).sum()) / total)


def paired_standard_errors(path: list, errors: dict) -> None:
    """Set each finite entry's val_se: the standard error of its validation MSE minus the best entry's, over
    validation trajectories, paired (every trajectory is scored under every lambda1, so the spread between easy
    and hard trajectories cancels). errors: lambda1 -> (squared errors per trajectory, cells per trajectory)."""
    finite = [e for e in path if e["val_mse"] is not None]
    if not finite:
        return
    best = min(finite, key=lambda e: (e["val_mse"], -e["lambda1"]))
    for e in finite:
        e["val_se"] = standard_error(errors[e["lambda1"]][0] - errors[best["lambda1"]][0], errors[e["lambda1"]][1])


def choose_lambda1(path: list, selection: str) -> float:
    """The lowest validation MSE ('min', ties to the larger lambda1), or the largest lambda1 whose validation MSE
    exceeds the lowest by at most its own val_se ('one_se'; see paired_standard_errors)."""
    best = min(path, key=lambda e: (e["val_mse"], -e["lambda1"]))

    def margin(e):
        tiny = best["val_mse"] * 1e-9
        return max(tiny, e.get("val_se") or 0.0) if selection == "one_se" else tiny

    return max(e["lambda1"] for e in path if e["val_mse"] <= best["val_mse"] + margin(e))


def continuing(fit_config):
    """The fit config of a model that goes on from trained weights (a warm-started path point, a refit): FIT.yaml's
    slot_weights are a fresh model's starting weights, and loading them again would undo the training carried
    over."""
    return replace(fit_config, slot_weights=None)


def l1_path(model_class, data, config: SparsifyConfig, lambdas, phi0, inputs=None, on_failure=None):
    """The L1 models of `lambdas` (increasing), one (lambda1, trainer or None) at a time. With warm_start each fit
    starts from a copy of the previous good fit's final model, else each from a fresh initialisation; a failed
    fit (FitError) gives None after on_failure(lambda1, error)."""
    start, carried = None, None
    for lam in lambdas:
        model = fresh(model_class, config.fit.seed) if start is None else copy.deepcopy(start)
        try:
            fit_config = config.fit if start is None else continuing(config.fit)
            trainer = PenalisedTrainer(model, data, fit_config, lam, config.lambda2, phi0, inputs)
            trainer.method.take(carried)
            trainer.train()
        except FitError as err:
            if on_failure is not None:
                on_failure(lam, err)
            yield lam, None
            continue
        if trainer.status == "interrupted":
            raise KeyboardInterrupt
        if config.warm_start:
            start, carried = trainer.model, trainer.method.carry()
        yield lam, trainer


def refit_gated(model, data, config: SparsifyConfig, phi0, inputs=None, carried=None) -> tuple:
    """The gated model refit as its pruned spec would be: gates below the threshold held at 0, no L1 term,
    `refit_epochs` epochs, starting from what the L1 fit carried (Method.carry); returns the best epoch's model
    (the pruned spec's vector field, see the tests) and what it carries."""
    model = copy.deepcopy(model)
    keep = (model.gate_weights.detach().abs() >= config.threshold).to(model.gate_weights.dtype)
    with torch.no_grad():
        model.gate_weights.mul_(keep)
    model.gate_weights.register_hook(lambda grad: grad * keep)  # Adam leaves a parameter with zero grads alone
    trainer = PenalisedTrainer(model, data, continuing(config.refit), 0.0, config.lambda2, phi0, inputs)
    trainer.method.take(carried)
    trainer.train()
    if trainer.status == "interrupted":
        raise KeyboardInterrupt
    return trainer.best_model(), trainer.method.carry(best=True)


@dataclass(frozen=True)
class FoldTrial:
    """One trial of the cross-validation, in plain data (a Ray worker compiles the spec's text itself): the path
    `lambdas` fitted on every fold but `fold` and scored on that fold's trajectories `val`. With warm_start a
    trial is a fold's whole path (each fit starts from the previous one's end), else one (fold, lambda1) pair."""
    source: str
    filename: str
    path: str
    data: Dataset
    config: SparsifyConfig
    inputs: Optional[dict]
    fold: int
    val: tuple
    lambdas: tuple


def fold_trials(spec, data: Dataset, config: SparsifyConfig, inputs) -> list:
    """The trials of K-fold cross-validation over trajectories, fold by fold, each fold's lambda1 in order."""
    folds = fold_indices(len(data.trajectories), config.folds, config.fit.seed)
    paths = [tuple(config.lambda1)] if config.warm_start else [(lam,) for lam in config.lambda1]
    return [FoldTrial(spec.source, spec.filename, spec.path, data, config, inputs, k, tuple(val), lambdas)
            for k, val in enumerate(folds) for lambdas in paths]


def run_fold_trial(trial: FoldTrial) -> list:
    """Fit the trial's path on the other folds and score each lambda1's model on the validation trajectories:
    per lambda1 (lambda1, squared errors per trajectory, cells per trajectory, gates kept or None, failure message
    or None). A pure function of the trial: the same numbers in this process and in a worker."""
    gated_class = compile_text(trial.source, trial.filename, trial.path).model_class(gates=True)
    config, data, val = trial.config, trial.data, list(trial.val)
    phi0 = spec_prior(gated_class, config.fit)
    train = subset(data, [i for i in range(len(data.trajectories)) if i not in set(val)])
    failures, out = {}, []
    for lam, trainer in l1_path(gated_class, train, config, trial.lambdas, phi0, trial.inputs,
                                failures.__setitem__):
        errors, kept = None, None
        if trainer is not None:
            model, carried = trainer.model, trainer.method.carry()
            kept = int((model.gate_weights.detach().abs() >= config.threshold).sum())
            try:
                if config.cv_refit:
                    model, carried = refit_gated(model, train, config, phi0, trial.inputs, carried)
                errors = trajectory_errors(model, subset(data, val), config.fit, trial.inputs, carried)
            except FitError as err:
                failures[lam] = err
        message = failures[lam].diagnostics[0].message if lam in failures else None
        out.append((lam, np.full(len(val), np.inf) if errors is None else errors[0],
                    np.ones(len(val)) if errors is None else errors[1], kept, message))
    return out


def cross_validate(spec, data: Dataset, config: SparsifyConfig, inputs, say) -> tuple:
    """The path's entries (lambda1, val_mse, val_se, edges_kept, edges_kept_folds) from K-fold cross-validation
    over trajectories (the trials run by the config's executor), and the chosen lambda1."""
    n = len(data.trajectories)
    if n < 2:
        raise HodecError(f"cross-validation over trajectories needs at least 2 trajectories in the data and "
                         f"{data.source} has {n}; give a single lambda1 (e.g. 'lambda1: [0.01]') or more "
                         f"trajectories (an id column)", WHO)
    trials = fold_trials(spec, data, config, inputs)
    results = Executor.of(config.fit).map(run_fold_trial, trials, say)
    per_fold = {lam: ([], [], []) for lam in config.lambda1}  # squared errors, cells, gates kept
    for trial, result in zip(trials, results):
        if isinstance(result, Failed):
            raise HodecError(f"fold {trial.fold + 1}: {result.message}", WHO)
        for lam, sse, cells, kept, message in result:
            if message is not None:
                say(f"lambda1 = {lam:g}, fold {trial.fold + 1}: training failed ({message})")
            per_fold[lam][0].append(sse)
            per_fold[lam][1].append(cells)
            per_fold[lam][2].extend([] if kept is None else [kept])
    return score_path(per_fold, config, trials[-1].fold + 1, len(spec.model_class(gates=True).gates_table), say)


def score_path(per_fold: dict, config: SparsifyConfig, folds: int, gates: int, say) -> tuple:
    """The path's entries from each lambda1's validation errors over the folds, and the chosen lambda1."""
    path, scored = [], {}  # scored: lambda1 -> (squared errors, cells) per validation trajectory
    for lam in config.lambda1:
        sse, cells, kept = per_fold[lam]
        sse, cells = np.concatenate(sse), np.concatenate(cells)
        scored[lam] = (sse, cells)
        val_mse = float(sse.sum() / cells.sum()) if cells.sum() else math.inf
        entry = {"lambda1": lam, "val_mse": val_mse if math.isfinite(val_mse) else None, "val_se": None,
                 "edges_kept": int(round(float(np.median(kept)))) if kept else None, "edges_kept_folds": kept}
        path.append(entry)
        say(f"lambda1 = {lam:g}: validation MSE {val_mse:.6g}, edges kept {entry['edges_kept']} "
            f"of {gates} ({folds} folds)")
    paired_standard_errors(path, scored)
    finite = [e for e in path if e["val_mse"] is not None]
    if not finite:
        raise HodecError("training failed for every lambda1 of the path (try a smaller lr or lambda1)", WHO)
    return path, choose_lambda1(finite, config.selection)
