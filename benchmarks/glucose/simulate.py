"""Glucose benchmark data (issue 4, benchmark 2): simglucose's 30 virtual patients on specs/uva_padova.hode.

Needs the patient CSV of the `simglucose` package (MIT), not stored here: `pip install simglucose --no-deps`, or
`--params DIR` with an unzipped wheel (see patients.py).

    python -m benchmarks.glucose.simulate [--params /tmp/sg] [--days 3] [--seed 0] [--out benchmarks/results/glucose_data]

Per patient and day (a trajectory, starting at 00:00 from the patient's basal equilibrium, the CSV's x0_):
  * meals: breakfast 07:00, lunch 12:30, dinner 19:00 (each +- N(0, 45 min)), a snack at 15:30 or 22:00 with
    probability 0.5; sizes N(50, 15), N(70, 20), N(80, 20), N(20, 8) g, clipped to [5, 150] g, x 0.7 for children.
    As simglucose does, an announced meal is eaten at 5 g/min (EAT_RATE) in 1-min steps.
  * insulin: the basal rate u2ss BW / 6000 U/min (simglucose's) all day; at each meal a bolus of carbs / CR
    (Quest.csv) x LogNormal(0, 0.2) (carb counting error), delivered in 1 min, missed with probability 0.1, given
    up to +- 15 min off the meal start; no correction boluses. This gives hypo-, normo- and hyperglycaemia.
  * Dbar (the spec's third input) follows simglucose: at the minute a meal starts, the stomach content
    qsto1 + qsto2; + 1000 x grams eaten each minute of the meal.
  * integration: inputs constant over each minute (simglucose's 1-min sample time), RK4 with 4 substeps of 15 s
    on the compiled spec in float64, all of a patient's days in one batch.
  * CGM: Gs / Vg every 5 min + sensor noise: an AR(1) Gaussian sequence at 15 min (lag-1 correlation 0.7,
    simglucose's sensor_params PACF), mapped by the Johnson SU transform xi + lambda sinh((e - gamma) / delta)
    with simglucose's sensor_params.csv values (GuardianRT, the 5-min sensor), interpolated to 5 min, clipped
    to [39, 600] mg/dL (Breton & Kovatchev, J. Diabetes Sci. Technol. 2 (2008) 853-862).

Outputs (numeric CSVs, `hodec fit` style; the folder is ignored by git):
  glucose_data/data.csv     t (min from the day's start), id, CGM (noisy, mg/dL), BG (noise-free plasma, mg/dL),
                            meal (mean g/min over [t, t+5)), insulin (mean U/min over [t, t+5)), Dbar (mg at t)
  glucose_data/patients.csv id, patient (index 1..30 in the CSV), day, split (0 train, 1 validation, 2 test)
  glucose_data/windows.csv  id, t0, split: each window is 210 min of history [t0, t0+210) (42 samples) and the
                            next 60 min [t0+210, t0+270) (12 samples at 5-min steps); stride 30 min
  glucose_data/meta.json    the settings, patient names and the split
The split is BY PATIENT: per group (adolescent, adult, child) 6 train, 2 validation, 2 test patients, drawn with
the seed; every day of a patient is in the same split.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

import hodec

from .patients import load_patients

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "uva_padova.hode"
OUT = ROOT / "benchmarks" / "results" / "glucose_data"
EAT_RATE = 5.0  # g/min, simglucose's T1DPatient.EAT_RATE
SAMPLE = 5  # min between CGM samples
HISTORY, HORIZON, STRIDE = 210, 60, 30  # min
# simglucose/params/sensor_params.csv, row GuardianRT (5-min sensor)
SENSOR = dict(PACF=0.7, gamma=-0.5444, lam=15.9574, delta=1.6898, xi=-5.47, lo=39.0, hi=600.0)
MEALS = (  # (name, mean start min, size mean g, size sd g, probability)
    ("breakfast", 7 * 60, 50.0, 15.0, 1.0),
    ("lunch", 12 * 60 + 30, 70.0, 20.0, 1.0),
    ("snack", 15 * 60 + 30, 20.0, 8.0, 0.5),
    ("dinner", 19 * 60, 80.0, 20.0, 1.0),
    ("late_snack", 22 * 60, 20.0, 8.0, 0.25),
)


def scenario(rng, patient, minutes):
    """Per-minute announced carbs (g, at the meal's first minute) and insulin (U/min) for one day."""
    carbs = np.zeros(minutes)
    insulin = np.full(minutes, patient["basal"])
    scale = 0.7 if patient["group"] == "child" else 1.0
    for _, start, mean, sd, prob in MEALS:
        if rng.random() > prob:
            continue
        t = int(np.clip(round(start + rng.normal(0, 45)), 0, minutes - 30))
        g = float(np.clip(rng.normal(mean, sd), 5, 150)) * scale
        carbs[t] += g
        if rng.random() < 0.1 or not patient["CR"]:
            continue  # missed bolus
        tb = int(np.clip(t + rng.integers(-15, 16), 0, minutes - 1))
        insulin[tb] += g / patient["CR"] * math.exp(rng.normal(0, 0.2))
    return carbs, insulin


def simulate_patient(Model, patient, carbs, insulin, substeps=4):
    """Integrate a batch of days [B, minutes] of one patient; returns per-minute states [minutes+1, B, 13], the
    eaten carbs per minute [B, minutes] (g/min) and Dbar per minute [B, minutes] (mg), as simglucose computes."""
    m = Model(**patient["params"]).double()
    B, minutes = carbs.shape
    y = torch.tensor(patient["x0"], dtype=torch.float64).expand(B, 13).clone()
    u = {"meal": torch.zeros(B, dtype=torch.float64), "insulin": torch.zeros(B, dtype=torch.float64),
         "Dbar": torch.zeros(B, dtype=torch.float64)}
    m.set_inputs({k: (lambda t, k=k: u[k]) for k in u})
    planned = np.zeros(B)
    last_cho = np.zeros(B)
    last_q = y[:, 0].numpy() + y[:, 1].numpy()  # simglucose: Qsto of the initial state, food taken 0
    food = np.zeros(B)
    eaten = np.zeros((B, minutes))
    dbar = np.zeros((B, minutes))
    out = [y]
    h = 1.0 / substeps
    with torch.no_grad():
        for k in range(minutes):
            planned += carbs[:, k]
            cho = np.minimum(EAT_RATE, planned)
            planned -= cho
            start = (cho > 0) & (last_cho <= 0)
            qsto = (y[:, 0] + y[:, 1]).numpy()
            last_q = np.where(start, qsto, last_q)
            food = np.where(start, 0.0, food) + cho
            last_cho = cho
            eaten[:, k] = cho
            dbar[:, k] = last_q + 1000.0 * food
            u["meal"] = torch.tensor(cho)
            u["insulin"] = torch.tensor(insulin[:, k])
            u["Dbar"] = torch.tensor(dbar[:, k])
            for j in range(substeps):
                t = torch.tensor(k + j * h, dtype=torch.float64)
                k1 = m(t, y)
                k2 = m(t + h / 2, y + h / 2 * k1)
                k3 = m(t + h / 2, y + h / 2 * k2)
                k4 = m(t + h, y + h * k3)
                y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            out.append(y)
    return torch.stack(out).numpy(), eaten, dbar, m


def cgm_noise(rng, n5, sample=SAMPLE):
    """Sensor noise at 5-min samples: AR(1) at 15 min, Johnson SU transform, linear interpolation."""
    n15 = n5 * sample // 15 + 2
    e = np.empty(n15)
    e[0] = rng.normal()
    for i in range(1, n15):
        e[i] = SENSOR["PACF"] * e[i - 1] + math.sqrt(1 - SENSOR["PACF"] ** 2) * rng.normal()
    noise15 = SENSOR["xi"] + SENSOR["lam"] * np.sinh((e - SENSOR["gamma"]) / SENSOR["delta"])
    return np.interp(np.arange(n5) * sample, np.arange(n15) * 15.0, noise15)


def split_patients(names, rng):
    split = {}
    for group in ("adolescent", "adult", "child"):
        members = sorted(n for n in names if n.startswith(group))
        order = rng.permutation(len(members))
        for rank, i in enumerate(order):
            split[members[i]] = 0 if rank < len(members) - 4 else (1 if rank < len(members) - 2 else 2)
    return split


def write_csv(path: Path, header, rows):
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="simulate the glucose benchmark data set")
    ap.add_argument("--params", help="unzipped simglucose wheel folder (default: the installed package)")
    ap.add_argument("--days", type=int, default=3, help="days (trajectories) per patient")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patients", nargs="*", help="names, e.g. adult#001 (default: all 30)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    torch.set_num_threads(1)  # thousands of tiny ops per minute: threads only contend
    rng = np.random.default_rng(args.seed)
    patients = load_patients(args.params, args.patients)
    names = list(patients)
    split = split_patients(names, np.random.default_rng(args.seed + 1))
    Model = hodec.load(SPEC)
    minutes = 24 * 60
    t5 = np.arange(0, minutes, SAMPLE)
    data, ids, windows = [], [], []
    stats = {"below70": 0, "above180": 0, "n": 0}
    for pi, name in enumerate(names, start=1):
        patient = patients[name]
        days = [scenario(rng, patient, minutes) for _ in range(args.days)]
        carbs = np.stack([d[0] for d in days])
        insulin = np.stack([d[1] for d in days])
        ys, eaten, dbar, m = simulate_patient(Model, patient, carbs, insulin)
        if not np.all(np.isfinite(ys)) or ys[:, :, 3].min() <= 0:
            raise RuntimeError(f"{name}: the simulation left the physiological domain")
        vg = patient["params"]["Vg"]
        for day in range(args.days):
            tid = pi * 1000 + day
            bg = ys[t5, day, 3] / vg
            cgm = np.clip(ys[t5, day, 12] / vg + cgm_noise(rng, len(t5)), SENSOR["lo"], SENSOR["hi"])
            meal5 = eaten[day].reshape(-1, SAMPLE).mean(1)
            ins5 = insulin[day].reshape(-1, SAMPLE).mean(1)
            for i, t in enumerate(t5):
                data.append([int(t), tid, f"{cgm[i]:.4f}", f"{bg[i]:.4f}", f"{meal5[i]:.6g}", f"{ins5[i]:.6g}",
                             f"{dbar[day, t]:.6g}"])
            ids.append([tid, pi, day, split[name]])
            for t0 in range(0, minutes - HISTORY - HORIZON + 1, STRIDE):
                windows.append([tid, t0, split[name]])
            stats["below70"] += int((bg < 70).sum())
            stats["above180"] += int((bg > 180).sum())
            stats["n"] += len(bg)
        print(f"{name:16s} split={split[name]} BG min/mean/max over {args.days} d: "
              f"{ys[:, :, 3].min() / vg:6.1f} {ys[:, :, 3].mean() / vg:6.1f} {ys[:, :, 3].max() / vg:6.1f} mg/dL")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "data.csv", ["t", "id", "CGM", "BG", "meal", "insulin", "Dbar"], data)
    write_csv(out / "patients.csv", ["id", "patient", "day", "split"], ids)
    write_csv(out / "windows.csv", ["id", "t0", "split"], windows)
    meta = {"spec": "specs/uva_padova.hode", "seed": args.seed, "days": args.days, "sample_min": SAMPLE,
            "history_min": HISTORY, "horizon_min": HORIZON, "stride_min": STRIDE, "sensor": SENSOR,
            "patients": {i: n for i, n in enumerate(names, start=1)},
            "split": {n: ["train", "validation", "test"][s] for n, s in split.items()},
            "fraction_below_70": stats["below70"] / stats["n"], "fraction_above_180": stats["above180"] / stats["n"]}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {out}: {len(ids)} trajectories, {len(windows)} windows; BG < 70: "
          f"{meta['fraction_below_70']:.1%}, > 180: {meta['fraction_above_180']:.1%}")


if __name__ == "__main__":
    main()
