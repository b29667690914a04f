"""Which params carry the oracle's forecast (issue 18): the generator's model (specs/uva_padova.hode) with each test
patient's TRUE values of a subset of its params and the rest at the population value (the geometric mean over the
18 training patients), forecasting the 720 test windows as the oracle row does (compare.forecast_oracle: the MAP
state estimate from the window's history, its prior the model's own states on the training patients' days, each
training patient's model with its own values of the subset; rk4 at 1 min). No training, deterministic.

    python -m benchmarks.glucose.oracle_params [--subsets none six estimable ...]

Writes benchmarks/results/glucose_oracle_params.json and .md. Subsets (SUBSETS): none; six (the six params the
forecast rows first inferred per window); six+basal (and the basal state params); six+gi (and the gastric ones);
glucose (six + the other glucose-kinetics params); all-but-six; estimable (every positive param of the spec, the
ones forecast.estimate may infer, and BW; b, d, f and the basal state at the population value); all (the oracle).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

from benchmarks.glucose import compare as C
from benchmarks.glucose.patients import SPEC_PARAMS, load_patients

TAG = "glucose_oracle_params"
SIX = {"kabs", "kp2", "Vmx", "kp3", "Vm0", "BW"}
BASAL = {"Gpb", "Gtb", "Ipb", "Ilb", "isc1ss", "isc2ss", "Ib"}
GASTRIC = {"kmax", "kmin", "b", "d", "f"}
GLUCOSE = {"Vg", "kp1", "Fsnc", "k1", "k2", "Km0", "ksc"}
POSITIVE = {"Vg", "Vi", "kmax", "kmin", "kabs", "kp1", "kp2", "kp3", "Fsnc", "k1", "k2", "Vm0", "Vmx", "Km0", "ksc",
            "m1", "m2", "m4", "m30", "ka1", "ka2", "kd", "ki", "p2u", "Ib", "BW"}
SUBSETS = {"none": set(), "six": SIX, "six+basal": SIX | BASAL, "six+gi": SIX | GASTRIC, "glucose": SIX | GLUCOSE,
           "all-but-six": set(SPEC_PARAMS) - SIX, "estimable": POSITIVE, "all": set(SPEC_PARAMS)}


class Patients:
    """The benchmark's patients' true params and the population (training patients' geometric mean) values."""

    def __init__(self, days):
        self.names = json.loads((C.DATA / "meta.json").read_text())["patients"]
        named = load_patients(None, set(self.names.values()))
        self.true = {int(pid): named[name]["params"] for pid, name in self.names.items()}
        train = sorted({d.id // 1000 for d in days if d.split == 0})
        self.population = {n: float(np.exp(np.mean([np.log(self.true[p][n]) for p in train]))) for n in SPEC_PARAMS}

    def params(self, pid: int, subset: set) -> dict:
        return {n: self.true[pid][n] if n in subset else self.population[n] for n in SPEC_PARAMS}


def forecast(days, test: list, patients: Patients, subset: set) -> np.ndarray:
    """[12, W] forecasts of the test windows, each patient's model with its true values of `subset`."""
    cls = C.load_text(C.SPEC.read_text(), C.SPEC.name)
    model = lambda pid: cls(**patients.params(pid, subset))  # noqa: E731
    fc = C.Forecaster(C.MINUTES, {"method": "rk4", "step_size": 1.0},
                      torch.tensor(C.state_scales(cls().double()), dtype=torch.float64))
    train = [d for d in days if d.split == 0]
    fc.prior = C.gaussian(torch.cat([C.prior_samples(model(pid), fc, [d for d in train if d.id // 1000 == pid])
                                     for pid in sorted({d.id // 1000 for d in train})]))
    pred = np.zeros((C.HORIZON, len(test)))
    for pid in sorted({d.id // 1000 for d, _ in test}):
        mine = [k for k, (d, _) in enumerate(test) if d.id // 1000 == pid]
        pred[:, mine] = C.forecast_ode(model(pid), fc, [test[k] for k in mine])
    return pred


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subsets", nargs="+", choices=list(SUBSETS), default=list(SUBSETS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    days, began = C.load_days(), C.utc_now()
    patients, test, rows = Patients(days), C.windows(days, 2), []
    for name in args.subsets:
        start, load = time.perf_counter(), C.loadavg()
        m = C.metrics(forecast(days, test, patients, SUBSETS[name]), test)
        rows.append({"subset": name, "true": sorted(SUBSETS[name]), **m,
                     "seconds": round(time.perf_counter() - start, 1), "load": [load, C.loadavg()]})
        print(json.dumps(rows[-1]), flush=True)
    result = {"rows": rows, "population": patients.population, "machine": platform.node(), "cpus": os.cpu_count(),
              "when": C.utc_span(began)}
    C.write_results(result, TAG, markdown)
    return 0


def markdown(result: dict) -> str:
    lines = ["# Glucose: which params carry the oracle's forecast", "",
             "The generator's model with each test patient's TRUE values of a subset of its params, the rest at the "
             "training patients' geometric mean, forecasting the 720 test windows from the MAP state estimate (as the "
             "oracle row: benchmarks/glucose/oracle_params.py). One deterministic run per subset, one thread, "
             f"{result['when']} on {result['machine']} ({result['cpus']} cores, shared with other jobs).", "",
             "| true params | RMSE mg/dL | peak RMSE | accuracy | s | load (1, 5, 15 min) at start / end |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['subset']} ({len(r['true'])}) | {r['rmse']:.1f} | {r['peak_rmse']:.1f} | "
                     f"{r['accuracy']:.3f} | {r['seconds']} | {' / '.join(r['load'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
