"""SPARSIFY.yaml: how `hodec sparsify` trains. Every FIT.yaml key (hodec/training/config.py) plus:

    lambda1: [0, 1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1]   # the L1 weights on |gate| tried (the regularisation path)
    lambda2: 1.0e-4          # weight of ||Theta||^2 + ||phi - phi0||^2 (slot weights; mechanistic params in their
                             #   unconstrained coordinates against the spec's values)
    # Both lambdas are relative to the training data's variance s (the mean over fitted columns): the objective
    # is MSE / s + lambda1 sum|w| + lambda2 (...), so the same grid suits data in mmol/L or in mg/dL.
    folds: 3                 # K of the K-fold cross-validation over trajectories that picks lambda1 (fewer
                             #   trajectories than folds: leave-one-out; one trajectory: no cross-validation)
    threshold: 0.05          # an edge is pruned when |gate| < threshold after the L1 fit
    refit_epochs: null       # epochs of the refit of the pruned spec (no L1 term); null: the same as `epochs`
    refit_lr: null           # lr of that refit (and of cv_refit's); null: lr / 10. The refit starts near its
                             #   optimum (from the L1 model); Adam at the full constant lr stalls at its own noise
                             #   floor there, which biases the cross-validation against the sparser models
    warm_start: true         # a warm-started path (glmnet's device, run from the dense end): lambda1 in
                             #   increasing order, each fit starting from the previous one's end (the sparser
                             #   models continue the denser ones' training; the final fit on all data runs the
                             #   path up to the chosen lambda1); false: every lambda1 from a fresh initialisation
    drop_states: true        # false: keep every state after pruning (only the pruned edges are removed)
    cv_refit: true           # each fold's model is refit (pruned gates held at 0, no L1 term, refit_epochs) before
                             #   its validation MSE is taken (relaxed lasso: L1 shrinkage does not bias the choice
                             #   towards small lambda1); false: the L1 model's own validation MSE
    selection: one_se        # one_se: the largest lambda1 whose validation MSE exceeds the lowest by at most one
                             #   standard error of the difference, paired over validation trajectories (Hastie,
                             #   Tibshirani & Friedman's rule: the sparsest model the data cannot tell from the
                             #   best); min: the lowest validation MSE

Unlike `hodec fit`, `method` defaults to vanilla here (homotopy and multiple_shooting may be chosen).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..errors import HodecError, did_you_mean
from .config import DEFAULTS as FIT_DEFAULTS, FitConfig, _integer, _number, as_number, config_source
from .config import validate as validate_fit

SPARSIFY_DEFAULTS: dict = {
    "lambda1": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
    "lambda2": 1e-4,
    "folds": 3,
    "threshold": 0.05,
    "refit_epochs": None,
    "refit_lr": None,
    "drop_states": True,
    "cv_refit": True,
    "warm_start": True,
    "selection": "one_se",
}


@dataclass
class SparsifyConfig:
    fit: FitConfig = field(default_factory=lambda: FitConfig(method="vanilla"))
    lambda1: list = field(default_factory=lambda: list(SPARSIFY_DEFAULTS["lambda1"]))
    lambda2: float = 1e-4
    folds: int = 3
    threshold: float = 0.05
    refit_epochs: Optional[int] = None
    cv_refit: bool = True
    refit_lr: Optional[float] = None
    drop_states: bool = True
    selection: str = "one_se"
    warm_start: bool = True

    @property
    def refit(self) -> FitConfig:
        """The fit config of the refit: `refit_epochs` epochs (homotopy: spread over its steps), `refit_lr`."""
        fit = replace(self.fit, lr=self.fit.lr / 10 if self.refit_lr is None else self.refit_lr)
        if self.refit_epochs is None:
            return fit
        if fit.method == "homotopy":
            return replace(fit, epochs_per_step=max(1, self.refit_epochs // fit.steps))
        return replace(fit, epochs=self.refit_epochs)

    def to_dict(self) -> dict:
        out = self.fit.to_dict()
        out.update({key: copy.deepcopy(getattr(self, key)) for key in SPARSIFY_DEFAULTS})
        return out


def load_sparsify_config(source: Union[None, str, Path, Mapping, SparsifyConfig] = None,
                         **overrides) -> SparsifyConfig:
    """A SparsifyConfig from a SPARSIFY.yaml path, a mapping, or None (all defaults); keyword overrides win."""
    return validate(*config_source(source, overrides))


def validate(raw: Mapping[str, Any], filename: str = "<config>") -> SparsifyConfig:
    errors = []
    fail = errors.append
    known = list(FIT_DEFAULTS) + list(SPARSIFY_DEFAULTS)
    fit_raw = {}
    for key, value in raw.items():
        if key in SPARSIFY_DEFAULTS:
            continue
        if key in FIT_DEFAULTS:
            fit_raw[key] = value
        else:
            hint = did_you_mean(str(key), known)
            fail(f"unknown key '{key}'" + (f"; {hint}" if hint else f" (known: {', '.join(known)})"))
    fit_raw.setdefault("method", "vanilla")
    fit = None
    try:
        fit = validate_fit(fit_raw, filename)
    except HodecError as err:
        message = err.diagnostics[0].message
        errors.extend(message.split("\n  ")[1:] if message.startswith("invalid fit config:") else [message])
    values = {key: raw.get(key, copy.deepcopy(default)) for key, default in SPARSIFY_DEFAULTS.items()}

    lambda1 = values["lambda1"]
    if isinstance(lambda1, (str, int, float)) and not isinstance(lambda1, bool):
        lambda1 = [lambda1]
    grid = []
    if not isinstance(lambda1, (list, tuple)) or not lambda1:
        fail(f"lambda1: expected a non-empty list of numbers >= 0 such as [0, 1e-3, 1e-2], got {values['lambda1']!r}")
    else:
        for item in lambda1:
            x = as_number(item)
            if x is None or not math.isfinite(x) or x < 0:
                fail(f"lambda1: every value must be a finite number >= 0, got {item!r}")
            else:
                grid.append(x)
    grid = sorted(set(grid))
    lambda2 = _number(values["lambda2"], "lambda2", fail, minimum=0.0)
    threshold = _number(values["threshold"], "threshold", fail, positive=True)
    folds = _integer(values["folds"], "folds", fail, minimum=2)
    refit = values["refit_epochs"]
    refit_epochs = None if refit is None else _integer(refit, "refit_epochs", fail, minimum=1)
    refit_lr = None if values["refit_lr"] is None else _number(values["refit_lr"], "refit_lr", fail, positive=True)
    cv_refit, drop_states, warm_start = values["cv_refit"], values["drop_states"], values["warm_start"]
    for key, flag in (("cv_refit", cv_refit), ("drop_states", drop_states), ("warm_start", warm_start)):
        if not isinstance(flag, bool):
            fail(f"{key}: expected true or false, got {flag!r}")
    selection = values["selection"]
    if selection not in ("one_se", "min"):
        fail(f"selection: expected one_se or min, got {selection!r}")
    if errors:
        raise HodecError(errors[0] if len(errors) == 1 else "invalid sparsify config:\n  " + "\n  ".join(errors),
                         filename)
    return SparsifyConfig(fit, grid, lambda2, folds, threshold, refit_epochs, cv_refit, refit_lr, drop_states,
                          selection, warm_start)

