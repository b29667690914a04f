"""report.json of a `hodec sparsify` run."""
from __future__ import annotations

from typing import Optional

from .pipeline import SparsifyResult


def report_dict(result: SparsifyResult, meta: Optional[dict] = None) -> dict:
    out = {
        "lambda1": result.lambda1,
        "edges": result.edges,
        "states_kept": list(result.states_kept),
        "states_dropped": list(result.states_dropped),
        "pruned": list(result.pruned_names),
        "params_before": result.params_before,
        "params_after": result.params_after,
        "path": result.path,
        "data_variance": result.data_variance,
        "l1_epochs": result.l1_epochs,
        "train_mse_sparse": result.train_mse_sparse,
        "refit": {"best_epoch": result.refit.best_epoch, "best_mse": result.refit.best_mse,
                  "params": result.refit.params, "metrics": result.refit.metrics},
        "seconds": round(result.seconds, 3),
        "timings": result.timings,
        "config": result.config.to_dict(),
    }
    if result.test_mse is not None or result.test_mse_sparse is not None:
        out["test_mse"] = result.test_mse
        out["test_mse_sparse"] = result.test_mse_sparse
    out.update(meta or {})
    return out
