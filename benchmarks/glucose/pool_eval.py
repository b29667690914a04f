"""Pooled per-window params at test time only (issue 18): the kept forecast-trained rows with forecast.estimate
(mechanistic, residual; trained WITHOUT forecast.pool, benchmarks/results/glucose_models) forecast the test windows
with their params pooled over the same day's earlier histories (forecast.pool, causal), for a few spans; and two
non-causal diagnostics of what the params carry: each test patient's TRUE values of the estimated params (as a factor
of the trained population value, clipped to its bounds), and the geometric mean of the inferred factors over ALL of
the patient's test windows (every day, later windows included). No training: the models must be in MODELS_DIR.

    python -m benchmarks.glucose.pool_eval [--seeds 0 1 2] [--spans 60 240 1440]
    python -m benchmarks.glucose.pool_eval --trained-pool 1440 --spans   # the rows trained with --pool 1440
    python -m benchmarks.glucose.pool_eval --trained-pool 1440 --spans --wide   # those with compare.ESTIMATE_WIDE

Writes benchmarks/results/glucose_forecast_pool_testonly.json and .md (with --trained-pool:
glucose_forecast_pool_diagnostics; with --wide, _wide appended). Both also give, per estimated param, how well the
test windows' inferred values identify the patients: the correlation over the 6 test patients of the log of a
patient's mean inferred value with the log of its true value, and the log standard deviation of the inferred values
within a patient (averaged over patients) against that of the patients' means (and of their true values).
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
from hodec.training.forecast.heldout import predictions
from hodec.training.forecast.pool import pooled_infer
from hodec.training.problem import Problem

TAGS = {False: "glucose_forecast_pool_testonly", True: "glucose_forecast_pool_diagnostics"}


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


def diagnostics(trained, view, inputs, days, test) -> tuple:
    """The non-causal rows (true params, the patient's mean inferred factor over all its windows) and, per param,
    the identification statistics (see the module doc)."""
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
    firsts = [int(np.flatnonzero(pid == p)[0]) for p in np.unique(pid)]
    stats = {name: {"corr": float(np.corrcoef(mean[firsts, j], true[firsts, j].log())[0, 1]),
                    "within_sd": float(np.mean([logs[torch.from_numpy(pid == p), j].std() for p in np.unique(pid)])),
                    "between_sd": float(mean[firsts, j].std()), "true_sd": float(true[firsts, j].log().std())}
             for j, name in enumerate(params)}
    return {"true params (non-causal)": given_factors(trained, problem, windows, true.clamp(1 / bound, bound), test),
            "patient mean of all windows (non-causal)": given_factors(trained, problem, windows, mean.exp(),
                                                                      test)}, stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--spans", nargs="*", type=float, default=[60.0, 240.0, 1440.0], help="pool spans, minutes")
    ap.add_argument("--trained-pool", type=float, metavar="MIN", help="the rows trained with --pool MIN instead")
    ap.add_argument("--wide", action="store_true", help="the rows trained with --estimate of compare.ESTIMATE_WIDE")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    days, scale, start, load = C.load_days(), dict(C.FORECAST_FULL), time.perf_counter(), C.loadavg()
    began = C.utc_now()
    if args.trained_pool:
        scale["pool"] = args.trained_pool
    if args.wide:
        scale["estimate"] = C.ESTIMATE_WIDE
    test = C.windows(days, 2)
    rows, stats = [], []
    for name in C.ESTIMATE_ROWS:
        for seed in args.seeds:
            if not C.model_path(name, seed, scale, days).is_file():
                raise SystemExit(f"{name} seed {seed}: no kept model (run benchmarks.glucose.compare first)")
            trained, view, inputs = C.train_forecast(name, days, seed, scale)
            pred = C.forecast_trained(trained, view, inputs, days, test)
            rows.append({"model": name, "seed": seed, "pool": None, **C.metrics(pred, test)})
            for span in args.spans:
                pred = C.forecast_trained(with_pool(trained, span / view.minutes_per_unit), view, inputs, days, test)
                rows.append({"model": name, "seed": seed, "pool": span, **C.metrics(pred, test)})
            scores, identified = diagnostics(trained, view, inputs, days, test)
            rows += [{"model": name, "seed": seed, "pool": label, **m} for label, m in scores.items()]
            stats.append({"model": name, "seed": seed, "params": identified})
            print(json.dumps(rows[-1]), flush=True)
    result = {"rows": rows, "identification": stats, "seeds": args.seeds, "trained_pool": args.trained_pool,
              "wide": args.wide, "when": C.utc_span(began),
              "seconds": round(time.perf_counter() - start, 1), "load": [load, C.loadavg()]}
    tag = TAGS[bool(args.trained_pool)] + ("_wide" if args.wide else "")
    C.write_results(result, tag, markdown)
    return 0


def markdown(result: dict) -> str:
    trained = result.get("trained_pool")
    source = "glucose_forecast_est21.md" if result.get("wide") else "glucose_forecast_pool.md"
    how = f"trained WITH pooling (--pool {trained:g}: {source})" if trained else \
        "trained without pooling (glucose_forecast.md)"
    count = len(result["identification"][0]["params"])
    lines = [f"# Glucose: per-window params of the rows {how}", "",
             f"The kept mechanistic and residual models with forecast.estimate, {how}, forecast the 720 test windows "
             f"as trained, with each window's {count} params pooled over the same day's earlier histories at test "
             "time (forecast.pool, causal; spans below, if any), and with two non-causal diagnostics. Mean (min-max) "
             f"over seeds {result['seeds']}; {result['seconds']} s"
             + (f" ({result['when']})" if result.get("when") else "") + f", load {' / '.join(result['load'])}.", "",
             "| model | params at test time | RMSE mg/dL | peak RMSE |", "|---|---|---|---|"]
    keys = list(dict.fromkeys((r["model"], r["pool"]) for r in result["rows"]))
    for name, pool in keys:
        mine = [r for r in result["rows"] if r["model"] == name and r["pool"] == pool]
        label = "as trained" + (f" (pooled over the last {trained:g} min)" if trained else " (own window)") \
            if pool is None else (f"pooled over the last {pool:g} min" if isinstance(pool, float) else pool)
        cell = lambda k: f"{np.mean([r[k] for r in mine]):.1f} ({min(r[k] for r in mine):.1f}-" \
                         f"{max(r[k] for r in mine):.1f})"  # noqa: E731
        lines.append(f"| {name} | {label} | {cell('rmse')} | {cell('peak_rmse')} |")
    lines += ["", "Identification, per seed: the correlation over the 6 test patients of log(patient's mean inferred "
              "value) with log(true value); log sd of the inferred values within a patient (mean over patients) / of "
              "the patients' means / of the patients' true values.", "",
              "| model | seed | " + " | ".join(result["identification"][0]["params"]) + " |",
              "|---|---|" + "---|" * len(result["identification"][0]["params"])]
    for r in result["identification"]:
        lines.append(f"| {r['model']} | {r['seed']} | " + " | ".join(
            f"{v['corr']:+.2f}; {v['within_sd']:.2f} / {v['between_sd']:.2f} / {v['true_sd']:.2f}"
            for v in r["params"].values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
