"""Where a forecast-trained row loses to the LSTM (issue 18): RMSE and peak RMSE per test patient, and RMSE per
lead (5 ... 60 min), of kept forecast-trained models (compare.train_forecast with the given settings: the models
that compare.py trained and kept, trained here if missing) against the LSTM retrained with the same seeds
(compare.train_lstm: not kept by compare.py, about 4 minutes a seed on one core). The forecasts are those of
compare.py's rows, so the all-patient scores equal its results.

    python -m benchmarks.glucose.per_patient --models residual --pool 1440 --batch 128 --seeds 0 1 2
    python -m benchmarks.glucose.per_patient --models residual hgs --pool 1440 --batch 128 --sensor \
        --tag glucose_per_patient_sensor

Writes benchmarks/results/<tag>.json and .md (tag: glucose_per_patient).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch

from benchmarks.glucose import compare as C

TAG = "glucose_per_patient"


def scores(pred: np.ndarray, wins: list) -> dict:
    """compare.metrics of [12, W] forecasts of the windows wins (peak RMSE nan without a peak), and RMSE per lead."""
    true = C.cut(wins, "CGM", C.HISTORY)
    m = C.metrics(pred, wins)
    return {**m, "peak_rmse": math.nan if m["peak_rmse"] is None else m["peak_rmse"],
            "lead_rmse": np.sqrt(np.mean((pred - true) ** 2, axis=1)).tolist()}


def forecasts(name: str, days, seed: int, scale: dict, test: list) -> np.ndarray:
    if name == "lstm":
        net, stats, _ = C.train_lstm(days, seed, scale)
        return C.forecast_lstm(net, stats, test)
    trained, view, inputs = C.train_forecast(name, days, seed, scale)
    return C.forecast_trained(trained, view, inputs, days, test)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["residual"], choices=C.ODE_ROWS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--pool", type=float)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--sensor", action="store_true")
    ap.add_argument("--anchor", action="store_true")
    ap.add_argument("--tag", default=TAG)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    days, began, start, load = C.load_days(), C.utc_now(), time.perf_counter(), C.loadavg()
    scale = {"lstm_epochs": 60, **C.forecast_scale(args, C.FORECAST_FULL)}
    test = C.windows(days, 2)
    names = json.loads((C.DATA / "meta.json").read_text())["patients"]
    owner = np.array([d.id // 1000 for d, _ in test])
    rows = []
    for name in ["lstm"] + list(args.models):
        for seed in args.seeds:
            pred = forecasts(name, days, seed, scale, test)
            row = {"model": name, "seed": seed, "all": scores(pred, test), "patients": {
                names[str(pid)]: scores(pred[:, owner == pid], [w for w, o in zip(test, owner) if o == pid])
                for pid in sorted(set(owner))}}
            rows.append(row)
            print(json.dumps({"model": name, "seed": seed, "rmse": row["all"]["rmse"]}), flush=True)
    result = {"rows": rows, "settings": {"pool": args.pool, "batch": args.batch, "sensor": args.sensor,
                                         "anchor": args.anchor, "seeds": args.seeds},
              "when": C.utc_span(began), "load": [load, C.loadavg()], "seconds": round(time.perf_counter() - start)}
    C.write_results(result, args.tag, markdown)
    return 0


def mean_over_seeds(rows: list, name: str, pick) -> np.ndarray:
    return np.mean([pick(r) for r in rows if r["model"] == name], axis=0)


def markdown(result: dict) -> str:
    rows, s = result["rows"], result["settings"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    patients = list(rows[0]["patients"])
    lines = ["# Glucose: per test patient and per lead", "",
             f"Mean over seeds {s['seeds']} of each row's scores (ODE rows: pool {s['pool']}, batch {s['batch']}, "
             f"sensor state {s.get('sensor', False)}, anchored {s.get('anchor', False)}; the "
             f"LSTM retrained with the same seeds). {result['when']}, load {' / '.join(result['load'])}, "
             f"{result['seconds']} s.", "",
             "| patient | windows | " + " | ".join(f"{m} RMSE / peak" for m in models) + " |",
             "|---|---|" + "---|" * len(models)]
    for p in patients + ["all"]:
        pick = (lambda key: lambda r: r["patients"][p][key]) if p != "all" else (lambda key: lambda r: r["all"][key])
        cells = [f"{mean_over_seeds(rows, m, pick('rmse')):.1f} / {mean_over_seeds(rows, m, pick('peak_rmse')):.1f}"
                 for m in models]
        count = rows[0]["patients"][p]["windows"] if p != "all" else rows[0]["all"]["windows"]
        lines.append(f"| {p} | {count} | " + " | ".join(cells) + " |")
    lines += ["", "| lead min | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    leads = {m: mean_over_seeds(rows, m, lambda r: r["all"]["lead_rmse"]) for m in models}
    for k in range(C.HORIZON):
        lines.append(f"| {(k + 1) * C.SAMPLE} | " + " | ".join(f"{leads[m][k]:.1f}" for m in models) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
