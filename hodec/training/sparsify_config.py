"""SPARSIFY.yaml: how `hodec sparsify` trains. Every FIT.yaml key (method defaults to vanilla here) plus the keys
of SparsifyConfig, each defined once with its default and description (`config_help(SparsifyConfig)` lists them).

Both lambdas are relative to the training data's variance s (the mean over fitted columns): the objective is
MSE / s + lambda1 sum|w| + lambda2 (||Theta||^2 + ||phi - phi0||^2), so the same grid suits data in mmol/L or in
mg/dL. `refit_lr` defaults to lr / 10 because the refit starts near its optimum (from the L1 model), where Adam at
the full constant lr stalls at its own noise floor, which biases the cross-validation against the sparser models.
`warm_start` is glmnet's device, run from the dense end: lambda1 in increasing order, each fit starting from the
previous one's end (the final fit on all data runs the path up to the chosen lambda1). `cv_refit` is the relaxed
lasso: each fold's model is refit (pruned gates held at 0, no L1 term) before its validation MSE is taken, so L1
shrinkage does not bias the choice towards small lambda1. `selection: one_se` is Hastie, Tibshirani & Friedman's
rule, the standard error of the difference paired over validation trajectories.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Optional, Union

from .config import FitConfig, config_source
from .options import (as_number, check_keys, choice, flag, integer, nested, number, option, optional, raise_errors,
                      show, to_dict)


def _grid(value, key, fail) -> list:
    """The lambda1 path: a number or a non-empty list of numbers >= 0, sorted, duplicates dropped."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        fail(f"{key}: expected a non-empty list of numbers >= 0 such as [0, 1e-3, 1e-2], got {show(value)}")
        return []
    grid = []
    for item in value:
        x = as_number(item)
        if x is None or not math.isfinite(x) or x < 0:
            fail(f"{key}: every value must be a finite number >= 0, got {show(item)}")
        else:
            grid.append(x)
    return sorted(set(grid))


@dataclass
class SparsifyConfig:
    fit: FitConfig = nested(FitConfig, method="vanilla")
    lambda1: list = option([0.0, 1e-4, 1e-3, 1e-2, 1e-1], "the L1 weights on |gate| tried (the regularisation "
                                                          "path)", _grid)
    lambda2: float = option(1e-4, "weight of ||Theta||^2 + ||phi - phi0||^2 (slot weights; mechanistic params "
                                  "against the spec's values)", number(minimum=0.0))
    folds: int = option(3, "K of the K-fold cross-validation over trajectories that picks lambda1 (fewer "
                           "trajectories: leave-one-out)", integer(minimum=2))
    threshold: float = option(0.05, "an edge is pruned when |gate| < threshold after the L1 fit",
                              number(positive=True))
    refit_epochs: Optional[int] = option(None, "epochs of the refit of the pruned spec (no L1 term); null: epochs",
                                         optional(integer(minimum=1)))
    cv_refit: bool = option(True, "each fold's pruned model is refit before it is scored (relaxed lasso); false: "
                                  "the L1 model's own validation MSE", flag)
    refit_lr: Optional[float] = option(None, "lr of the refit (and of cv_refit's); null: lr / 10",
                                       optional(number(positive=True)))
    drop_states: bool = option(True, "false: keep every state after pruning (only the pruned edges are removed)",
                               flag)
    selection: str = option("one_se", "one_se: the largest lambda1 within one standard error of the best "
                                      "validation MSE; min: the lowest", choice(("one_se", "min")))
    warm_start: bool = option(True, "lambda1 in increasing order, each fit starting from the previous one's end; "
                                    "false: each from a fresh initialisation", flag)

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
        return to_dict(self)


def load_sparsify_config(source: Union[None, str, Path, Mapping, SparsifyConfig] = None,
                         **overrides) -> SparsifyConfig:
    """A SparsifyConfig from a SPARSIFY.yaml path, a mapping, or None (all defaults); keyword overrides win."""
    return validate(*config_source(source, overrides, "sparsify"))


def validate(raw: Mapping, filename: str = "<config>") -> SparsifyConfig:
    kwargs, errors = check_keys(SparsifyConfig, raw)
    raise_errors(errors, "sparsify", filename)
    return SparsifyConfig(**kwargs)
