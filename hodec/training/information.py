"""The likelihood part of a fit's report (with noise models declared): llh, AIC, BIC, the number of estimated
parameters, and standard errors of the trained mechanistic params.

    llh      the log-likelihood of the best model over every data cell (uncoupled simulation)
    n_params k = trained mechanistic params (not fixed ones) + neural weights
    aic      2 k - 2 llh
    bic      k ln(n) - 2 llh, n = the number of data cells

Standard errors: from the inverse Hessian of -llh with respect to the trained coordinates (free: the value, positive:
its log, bounded: its logit), by autograd through the solver (second derivatives of the discretised solution),
carried to the natural scale by the delta method: se(theta) = |d theta / d raw| se(raw), i.e. |theta| se(log theta)
for a positive param and (theta - lower)(upper - theta)/(upper - lower) se(logit) for a bounded one. Neural weights
are held at their values (the errors are conditional on them). A Hessian that is not finite or not positive
definite (a param the data do not determine, or a fit that is not at a minimum) gives NaN (null in report.json)
for every param, with a warning saying why.
"""
from __future__ import annotations

import math

import torch

from ..errors import HodecError
from .problem import Problem

_CONDITION_LIMIT = 1e14  # largest / smallest Hessian eigenvalue beyond which it is treated as singular


def n_params(model) -> int:
    """Trained mechanistic params plus neural weights (k of AIC and BIC)."""
    mechanistic = sum(row[2] != "fixed" for row in model.parameters_table)
    return mechanistic + sum(p.numel() for p in model.slot_modules.parameters() if p.requires_grad)


def likelihood_report(problem: Problem, model) -> dict:
    """llh, aic, bic, n_params and standard_errors (name -> se or None) of a model fitted with noise models, and
    a warning where the standard errors could not be computed."""
    n = problem.data.n_cells
    unread = problem.conditions.unread()  # replaced by every trajectory's conditions: not estimated
    k = n_params(model) - len(unread)
    names = [row[0] for row in model.parameters_table if row[2] != "fixed" and row[0] not in unread]
    try:  # the data's cells only: no prior term
        nll = sum(cells.sum() for _, cells in problem.group_errors(model, "likelihood evaluation", check=False))
    except HodecError as err:
        return {"llh": None, "aic": None, "bic": None, "n_params": k, "n_cells": n,
                "standard_errors": dict.fromkeys(names),
                "warning": f"the best model's simulation failed: {err.diagnostics[0].message}"}
    llh = -float(nll.detach())
    errors, warning = standard_errors(model, nll, names)
    report = {"llh": llh, "aic": 2 * k - 2 * llh, "bic": k * math.log(n) - 2 * llh, "n_params": k, "n_cells": n,
              "standard_errors": errors}
    if warning:
        report["warning"] = warning
    return report


def standard_errors(model, nll: torch.Tensor, names: list) -> tuple[dict, str]:
    """Per param of `names` (trained ones; the Hessian's rows of any other are left out), its standard error on
    the natural scale from the Hessian of nll (a scalar with its autograd graph) in the trained coordinates; NaN for
    all, and a warning, where the Hessian cannot be inverted."""
    raws = [p for p in model.mechanistic_parameters() if p.numel()]
    if not names:
        return {}, ""
    grads = torch.autograd.grad(nll, raws, create_graph=True)
    gradient = torch.cat([g.reshape(-1) for g in grads])
    rows = []
    for i in range(len(gradient)):
        second = torch.autograd.grad(gradient[i], raws, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([torch.zeros_like(r).reshape(-1) if s is None else s.reshape(-1)
                               for r, s in zip(raws, second)]))
    hessian = torch.stack(rows).detach().double()
    keep = torch.tensor([row[0] in names for row in model.parameters_table if row[2] != "fixed"])
    hessian = 0.5 * (hessian + hessian.T)[keep][:, keep]
    warning = _singular(hessian, names)
    if warning:
        return dict.fromkeys(names, math.nan), warning
    raw_se = torch.linalg.inv(hessian).diagonal().sqrt()
    return {name: float(se) for name, se in zip(names, raw_se * _natural_slope(model)[keep])}, ""


def _singular(hessian: torch.Tensor, names: list) -> str:
    """Why the Hessian cannot give standard errors, or ''."""
    if not torch.isfinite(hessian).all():
        return "standard errors: the Hessian of -llh is not finite"
    values, vectors = torch.linalg.eigh(hessian)
    if values[-1] <= 0 or values[0] <= values[-1] / _CONDITION_LIMIT:
        weakest = names[int(vectors[:, 0].abs().argmax())]
        return (f"standard errors: the Hessian of -llh is singular or not positive definite (eigenvalues "
                f"{float(values[0]):.3g} to {float(values[-1]):.3g}; the data hardly determine '{weakest}', or the "
                f"fit is not at a minimum)")
    return ""


def _natural_slope(model) -> torch.Tensor:
    """d theta / d raw of each trained param, in parameters_table order (free, positive, bounded)."""
    slopes, values = [], model.params()
    for name, _, kind, lower, upper in model.parameters_table:
        theta = values[name]
        if kind == "positive":
            slopes.append(abs(theta))
        elif kind == "bounded":
            slopes.append((theta - lower) * (upper - theta) / (upper - lower))
        elif kind == "free":
            slopes.append(1.0)
    return torch.tensor(slopes, dtype=torch.float64)
