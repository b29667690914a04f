"""The state estimate of the kept forecast-trained rows (issue 18): the mechanistic and residual models trained with
their six params pooled over the day (compare.py --pool 1440: results/glucose_forecast_pool.md) forecast the 720
test windows from their GRU encoder's state at the origin (as trained), and from the MAP filter's
(forecast.estimator map: the MAP estimate of the state at the window's start from its history through the trained
model itself, run to the origin; CGM noise sigma compare.NOISE_MG_DL; prior: the trained model's own states at the
training windows' starts), both under each window's pooled params as the encoder infers them. No training: the
models must be in MODELS_DIR.

    python -m benchmarks.glucose.state_eval [--seeds 0 1 2]

Writes benchmarks/results/glucose_forecast_state_eval.json and .md.
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
from hodec.training.forecast import make_estimator
from hodec.training.forecast.params import applied
from hodec.training.forecast.predict import horizon_states, inferred, window_groups
from hodec.training.problem import Problem

TAG = "glucose_forecast_state_eval"
POOL_MIN = 1440.0


def map_filter(trained, train: Problem, test: Problem):
    """The map estimator for the test problem, its prior set up on the training windows."""
    options = dataclasses.replace(trained.config.forecast_options, estimator="map", estimate=[], pool=None,
                                  pool_adjust=None, pool_states=[], measurement_noise={"CGM": C.NOISE_MG_DL})
    trained_prior = make_estimator(train, options)
    trained_prior.setup(train, dataclasses.replace(windows_of(train, trained.config), pool=None))
    estimator = make_estimator(test, options)
    estimator.load_state_dict(trained_prior.state_dict())
    return estimator


def forecasts(model, problem: Problem, y0: torch.Tensor, groups: list, tables: list) -> np.ndarray:
    """[12, W] CGM forecasts from the states y0 [W, n] at the origins, each group under its parameter table."""
    out = None
    with torch.no_grad():
        states = horizon_states(problem, model, y0, groups, tables, "forecast", check=False)
    for (index, g), table, ys in zip(groups, tables, states):
        with applied(model, table), torch.no_grad():
            pred = problem.predict(model, g, ys, g.t)[1:, :, 0]
        out = pred.new_zeros(pred.shape[0], len(y0)) if out is None else out
        out[:, index] = pred
    return out.numpy()


def compare_states(name: str, seed: int, days, test_windows: list) -> list:
    """The rows (encoder state, MAP state) of one kept model."""
    trained, view, inputs = C.train_forecast(name, days, seed, dict(C.FORECAST_FULL, pool=POOL_MIN))
    model, config = trained.model, trained.config
    train, test = (Problem(model, view.dataset([d for d in days if d.split == s], inputs), config) for s in (0, 2))
    windows = windows_of(test, config)
    groups = window_groups(test, windows)
    with torch.no_grad():
        y_encoder, tables = inferred(test, model, trained.estimator, windows, groups)
    estimator, unpooled = map_filter(trained, train, test), dataclasses.replace(windows, pool=None)
    y_map = y_encoder.clone()
    start = time.perf_counter()
    for (index, g), table in zip(estimator.groups(unpooled), tables):  # the same groups: window_groups of the same
        with applied(model, table):
            y_map[index] = estimator.estimate(model, g, unpooled.select(index)).detach()  # (it keeps gradients)
    seconds = round(time.perf_counter() - start, 1)
    return [{"model": name, "seed": seed, "state": state, "seconds": seconds if state == "map" else None,
             **C.metrics(forecasts(model, test, y0, groups, tables), test_windows)}
            for state, y0 in (("encoder", y_encoder), ("map", y_map))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    days, load, began = C.load_days(), C.loadavg(), C.utc_now()
    test, rows = C.windows(days, 2), []
    for name in C.ESTIMATE_ROWS:
        for seed in args.seeds:
            rows += compare_states(name, seed, days, test)
            print(json.dumps(rows[-2:]), flush=True)
    result = {"rows": rows, "seeds": args.seeds, "load": [load, C.loadavg()],
              "when": C.utc_span(began)}
    C.write_results(result, TAG, markdown)
    return 0


def markdown(result: dict) -> str:
    lines = ["# Glucose: the encoder's state against the MAP filter's", "",
             "The kept mechanistic and residual models trained with six params per window pooled over the day "
             "(glucose_forecast_pool.md) forecast the 720 test windows from their GRU encoder's state, and from the "
             "MAP estimate of the state through the trained model (forecast.estimator map, CGM sigma "
             f"{C.NOISE_MG_DL} mg/dL, prior: the model's own states at the training windows' starts), both under the "
             "encoder's pooled params (benchmarks/glucose/state_eval.py). Mean (min-max) over seeds "
             f"{result['seeds']}; {result['when']}, load {' / '.join(result['load'])}.", "",
             "| model | state at the origin | RMSE mg/dL | peak RMSE |", "|---|---|---|---|"]
    for name, state in dict.fromkeys((r["model"], r["state"]) for r in result["rows"]):
        mine = [r for r in result["rows"] if r["model"] == name and r["state"] == state]
        cell = lambda k: f"{np.mean([r[k] for r in mine]):.1f} ({min(r[k] for r in mine):.1f}-" \
                         f"{max(r[k] for r in mine):.1f})"  # noqa: E731
        lines.append(f"| {name} | {state} | {cell('rmse')} | {cell('peak_rmse')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
