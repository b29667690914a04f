"""Horizon metrics of forecasts against data, per fitted column (columns have their own units, so nothing is
pooled across them), as the glucose benchmark (benchmarks/glucose/compare.py) scores its forecasters:

    rmse        over every horizon cell with data
    steps       the error curve: the RMSE at each horizon step (the k-th sample after the window's origin), with the
                step's lead time (mean over windows of time - origin: the same for every window on a regular grid)
    peak_rmse   the RMSE of the predicted against the actual maximum of the horizon, over the windows whose actual
                maximum exceeds peak_threshold (both maxima over the window's cells with data in the column);
                default threshold: PEAK_QUANTILE of the column's horizon data (the benchmark's: 180 mg/dL)
    classes     with thresholds t1 < ... < tn (glucose: 70, 180): the classes v < t1, t1 <= v < t2, ...,
                t(n-1) <= v <= tn, v > tn (the last closed range as the clinical 70-180 target), and the accuracy
                of the predicted class over all cells and per actual class (the fraction of its cells predicted in it)

A window whose forecast is not finite in a cell with data (a diverged simulation) is left out of every metric and
counted in `diverged`, as the benchmark does.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

PEAK_QUANTILE = 0.75  # the default peak threshold: this quantile of the column's horizon data


def horizon_metrics(pred, truth, mask, lead, columns, peak: Optional[dict] = None,
                    classes: Optional[dict] = None) -> dict:
    """Metrics of forecasts pred [Tf, W, m] against truth [Tf, W, m] on the cells where mask [Tf, W, m] is true;
    lead [Tf, W]: each horizon sample's time after its window's origin. peak: column -> threshold (others: the
    default); classes: column -> increasing thresholds (columns without: no class accuracy)."""
    pred, truth, mask, lead = (np.asarray(_numpy(x)) for x in (pred, truth, mask, lead))
    mask = mask.astype(bool)
    finite = np.where(mask, np.isfinite(pred), True).all(axis=(0, 2))  # [W]
    keep = mask & finite[None, :, None]
    out = {"windows": int(finite.sum()), "diverged": int((~finite).sum()), "columns": {}}
    for c, name in enumerate(columns):
        p, y, ok = pred[:, :, c], truth[:, :, c], keep[:, :, c]
        column = {"cells": int(ok.sum()), "rmse": _rmse(p[ok] - y[ok]), "steps": _steps(p, y, ok, lead)}
        column.update(_peak(p, y, ok, (peak or {}).get(name)))
        if (classes or {}).get(name):
            column["classes"] = class_accuracy(p[ok], y[ok], classes[name])
        out["columns"][name] = column
    return out


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def _rmse(errors: np.ndarray) -> Optional[float]:
    return float(np.sqrt(np.mean(errors.astype(np.float64) ** 2))) if errors.size else None


def _steps(p, y, ok, lead) -> list:
    """The RMSE at each horizon step that has data."""
    return [{"step": k + 1, "lead": float(np.mean(lead[k][ok[k]])), "cells": int(ok[k].sum()),
             "rmse": _rmse(p[k][ok[k]] - y[k][ok[k]])} for k in range(len(p)) if ok[k].any()]


def _peak(p, y, ok, threshold: Optional[float]) -> dict:
    if threshold is None:
        threshold = float(np.quantile(y[ok], PEAK_QUANTILE)) if ok.any() else None
    has = ok.any(0)
    actual = np.where(ok, y, -np.inf).max(0)
    predicted = np.where(ok, p, -np.inf).max(0)
    peaks = has & (actual > threshold) if threshold is not None else np.zeros_like(has)
    return {"peak_threshold": threshold, "peak_windows": int(peaks.sum()),
            "peak_rmse": _rmse(predicted[peaks] - actual[peaks])}


def classify(values: np.ndarray, thresholds) -> np.ndarray:
    """Class index of each value: 0 below thresholds[0], ..., len(thresholds) above thresholds[-1]; the range just
    below the last threshold includes it."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    return np.digitize(values, thresholds[:-1]) + (values > thresholds[-1])


def class_labels(thresholds) -> list:
    """'< t1', 't1-t2', ..., '> tn'."""
    text = [f"{float(t):g}" for t in thresholds]
    return [f"< {text[0]}"] + [f"{a}-{b}" for a, b in zip(text, text[1:])] + [f"> {text[-1]}"]


def class_accuracy(pred: np.ndarray, truth: np.ndarray, thresholds) -> dict:
    """The accuracy of the predicted class over all cells, and per actual class (None where it has no cell)."""
    predicted, actual = classify(pred, thresholds), classify(truth, thresholds)
    per = {}
    for k, label in enumerate(class_labels(thresholds)):
        here = actual == k
        per[label] = {"cells": int(here.sum()),
                      "accuracy": float(np.mean(predicted[here] == k)) if here.any() else None}
    return {"thresholds": [float(t) for t in thresholds],
            "accuracy": float(np.mean(predicted == actual)) if actual.size else None, "per_class": per}

