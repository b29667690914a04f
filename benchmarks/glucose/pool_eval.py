"""Pooled per-window params at test time only (issue 18): the kept forecast-trained rows with forecast.estimate
(mechanistic, residual; trained WITHOUT forecast.pool, benchmarks/results/glucose_models) forecast the test windows
with their params pooled over the same day's earlier histories (forecast.pool, causal), for a few spans; and two
non-causal diagnostics of what the params carry: each test patient's TRUE values of the estimated params (as a factor
of the trained population value, clipped to its bounds), and the geometric mean of the inferred factors over ALL of
the patient's test windows (every day, later windows included). No training: the models must be in MODELS_DIR.

    python -m benchmarks.glucose.pool_eval [--seeds 0 1 2] [--spans 60 240 1440]

Writes benchmarks/results/glucose_forecast_pool_testonly.json and .md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch

from benchmarks.glucose import compare as C
from benchmarks.glucose.forecast import windows_of
from benchmarks.glucose.patients import load_patients
from hodec.files import write_atomic
from hodec.training.forecast.heldout import predictions
from hodec.training.forecast.pool import pooled_infer
from hodec.training.problem import Problem

TAG = "glucose_forecast_pool_testonly"


def with_pool(trained, pool_units):
    """The trained pair forecasting with forecast.pool = pool_units (None: off)."""
    config = dataclasses.replace(trained.config, forecast={**trained.config.forecast, "pool": pool_units})
    return dataclasses.replace(trained, config=config)


def given_factors(trained, problem, windows, factors, test) -> dict:
    """The metrics of the test windows forecast with the encoder's states and the given factors [W, K]."""
    estimator = trained.estimator
    y0, _ = estimator.infer(trained.model, windows)
    estimator.infer = lambda model, w: (y0, factors)
    try:
        pred = predictions(trained.model, estimator, windows, problem)[..., 0]
    finally:
        del estimator.infer  # back to the class's method
    return C.metrics(pred, test)


def diagnostics(trained, view, inputs, days, test) -> dict:
    """The non-causal rows: true params, the patient's mean inferred factor over all its windows."""
    tested = [d for d in days if d.split == 2]
    problem = Problem(trained.model, view.dataset(tested, inputs), trained.config)
    windows = windows_of(problem, trained.config)
    names = json.loads((C.DATA / "meta.json").read_text())["patients"]
    patients = load_patients(None, set(names.values()))
    model, estimator = trained.model, trained.estimator
    params = [model.parameters_table[c][0] for c in estimator.columns]
    population = model.params()
    pid = np.array([int(tested[int(i)].id) // 1000 for i in windows.trajectory])
    with torch.no_grad():
        _, inferred = pooled_infer(estimator, model, windows)
        own = {p: patients[names[str(p)]]["params"] for p in np.unique(pid)}
        true = torch.tensor([[own[p][n] / float(population[n]) for n in params] for p in pid], dtype=inferred.dtype)
        bound = trained.config.forecast_options.estimate_factor
        logs = inferred.log()
        mean = torch.zeros_like(logs)
        for p in np.unique(pid):
            mean[torch.from_numpy(pid == p)] = logs[torch.from_numpy(pid == p)].mean(0)
    return {"true params (non-causal)": given_factors(trained, problem, windows, true.clamp(1 / bound, bound), test),
            "patient mean of all windows (non-causal)": given_factors(trained, problem, windows, mean.exp(), test)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--spans", nargs="+", type=float, default=[60.0, 240.0, 1440.0], help="pool spans, minutes")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    days, scale, start, load = C.load_days(), dict(C.FORECAST_FULL), time.perf_counter(), C.loadavg()
    test = C.windows(days, 2)
    rows = []
    for name in C.ESTIMATE_ROWS:
        for seed in args.seeds:
            if not C.model_path(name, seed, scale, days).is_file():
                raise SystemExit(f"{name} seed {seed}: no kept model (run benchmarks.glucose.compare first)")
            trained, view, inputs = C.train_forecast(name, days, seed, scale)
            for span in [None] + args.spans:
                pool = None if span is None else span / view.minutes_per_unit
                pred = C.forecast_trained(with_pool(trained, pool), view, inputs, days, test)
                rows.append({"model": name, "seed": seed, "pool": span, **C.metrics(pred, test)})
            for label, m in diagnostics(trained, view, inputs, days, test).items():
                rows.append({"model": name, "seed": seed, "pool": label, **m})
            print(json.dumps(rows[-1]), flush=True)
    result = {"rows": rows, "seeds": args.seeds, "seconds": round(time.perf_counter() - start, 1),
              "load": [load, C.loadavg()]}
    write_atomic(C.RESULTS / f"{TAG}.json", json.dumps(result, indent=1) + "\n")
    write_atomic(C.RESULTS / f"{TAG}.md", markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = ["# Glucose: pooled per-window params at test time only (no retraining)", "",
             "The kept mechanistic and residual models with forecast.estimate (glucose_forecast.md, trained without "
             "pooling) forecast the 720 test windows with each window's six params pooled over the same day's "
             "earlier histories (forecast.pool, causal), and two non-causal diagnostics. Mean (min-max) over seeds "
             f"{result['seeds']}; {result['seconds']} s, load {' / '.join(result['load'])}.", "",
             "| model | params at test time | RMSE mg/dL | peak RMSE |", "|---|---|---|---|"]
    keys = list(dict.fromkeys((r["model"], r["pool"]) for r in result["rows"]))
    for name, pool in keys:
        mine = [r for r in result["rows"] if r["model"] == name and r["pool"] == pool]
        label = "own window (as trained)" if pool is None else (
            f"pooled over the last {pool:g} min" if isinstance(pool, float) else pool)
        cell = lambda k: f"{np.mean([r[k] for r in mine]):.1f} ({min(r[k] for r in mine):.1f}-" \
                         f"{max(r[k] for r in mine):.1f})"  # noqa: E731
        lines.append(f"| {name} | {label} | {cell('rmse')} | {cell('peak_rmse')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
