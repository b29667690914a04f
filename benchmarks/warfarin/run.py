"""Warfarin benchmark (issue 16): real population PK data with dose records, fitted by `hodec fit`.

Data: nlmixr2data's warfarin.csv (O'Reilly & Aggeler's 32 patients, one oral dose each, NONMEM-style evid/amt
rows, long format dv/dvid with the PK endpoint cp (mg/L) and the PD endpoint pca), read as it is: FIT.yaml says
only dose_state: depot (the file has no cmt column), dvid: {pca: null} (the PD rows are not fitted) and
ignore_columns: [wt, age, sex].

Model (warfarin_pk.hode): one compartment, first-order absorption, cp = central / v with nlmixr2's default
combined error ("combined2", sigma = sqrt(add^2 + (prop cp)^2): the variances add, as NONMEM's
Y = F (1 + EPS(1)) + EPS(2) implies).

Two ways of handling the patients, as hodec has no random effects yet:
  pooled      every patient shares ka, cl, v (naive pooling): one hodec fit.
  two-stage   each patient its own ka, cl, v (FIT.yaml conditions map patient i's ka, cl, v to params ka_i,
              cl_i, v_i of a generated spec; add and prop shared), one batched hodec fit from the pooled
              estimates; then the population's typical values as geometric means of the individual estimates and
              its between-subject variability as their SD on the log scale (the omega of a log-normal random
              effect; the standard two-stage method, which inflates omega by each estimate's own error).

Independent checks (numpy/scipy, not hodec): the report's llh against the closed-form one-compartment solution
with the csv module's reading of the file, the pooled estimates against scipy's maximum-likelihood estimate of the
same closed form (how far from converged the fit is), and the standard errors against a finite-difference
Hessian of the closed-form -llh.

    python -m benchmarks.warfarin.run            # the results in benchmarks/results/warfarin.md
    python -m benchmarks.warfarin.run --quick    # few epochs: a smoke test, writes warfarin_quick.md
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import minimize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE.parent / "results"
DATA = ROOT.parent / "shared" / "data" / "nlmixr2data" / "warfarin.csv"
SPEC = HERE / "warfarin_pk.hode"
CONFIG = HERE / "FIT.yaml"
PK = ("ka", "cl", "v")
ERROR = ("add", "prop")
POPULATION = ("ka", "cl", "v")  # the params the two-stage fit estimates per patient

# Published population fits of these data (typical values; IIV as the SD of the log-normal random effect, omega).
# Every number is quoted from the named file; None where the source gives none.
PUBLISHED = (
    {"name": "Monolix 2023R1, SAEM", "model": "1 cpt, first-order absorption + lag time (Tlag 0.764 h), "
     "combined1 error a + b f, log-normal IIV on Tlag, ka, V, Cl; PK only, on the Monolix demo's copy of these data "
     "(247 cp rows: patient 9's four replicate samples left out, the 0.5 h zeros written 0.01-0.02)",
     "source": "nlmixr2/monolix2rx, inst/cov/w1/summary.txt (project inst/cov/warfarin_covariate1_project.mlxtran)",
     "ka": (1.46, 0.571), "cl": (0.132, 0.00686), "v": (7.96, 0.33), "add": (0.247, 0.0397),
     "prop": (0.0503, 0.00776), "omega": {"ka": 1.08, "cl": 0.286, "v": 0.223},
     "m2llh": 657.36, "aic": 677.36, "bic": 692.02, "error": "combined1"},
    {"name": "nlmixr FOCEi, pk.turnover.emax3", "model": "joint PK/PD: depot -> gut (ktr 1.11/h) -> central, "
     "turnover Emax PD for pca; combined2 error on cp; log-normal IIV", "source": "levenc/posologyr, "
     "tests/testthat/test_multi_outputs.R ('estimates from nlmixr': tka -0.087, tcl -2.03, tv 2.07, eta variances "
     "ka 0.906, cl 0.281, v 0.229, prop.err 0.15, pkadd.err 0.144)",
     "ka": (math.exp(-0.087), None), "cl": (math.exp(-2.03), None), "v": (math.exp(2.07), None),
     "add": (0.144, None), "prop": (0.15, None),
     "omega": {"ka": math.sqrt(0.906), "cl": math.sqrt(0.281), "v": math.sqrt(0.229)},
     "m2llh": None, "aic": None, "bic": None, "error": "combined2"},
)


# ---------------------------------------------------------------- the data and the closed form, without hodec
def read_reference(path: Path) -> dict:
    """The cp observations (patient, dose, time, value), read with the csv module."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    dose = {r["id"]: float(r["amt"]) for r in rows if r["evid"] == "1"}
    cp = [r for r in rows if r["evid"] == "0" and r["dvid"] == "cp"]
    return {"ids": list(dict.fromkeys(r["id"] for r in rows)), "patient": np.array([r["id"] for r in cp]),
            "dose": np.array([dose[r["id"]] for r in cp]), "t": np.array([float(r["time"]) for r in cp]),
            "cp": np.array([float(r["dv"]) for r in cp])}


def concentration(ka, cl, v, dose, t):
    """One compartment, first-order absorption, a bolus into depot at t = 0: the closed-form cp(t)."""
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def normal_llh(y, mu, sigma) -> float:
    return float(np.sum(-0.5 * math.log(2 * math.pi) - np.log(sigma) - (y - mu) ** 2 / (2 * sigma ** 2)))


def llh_cp(ref: dict, ka, cl, v, add, prop) -> float:
    """The log-likelihood of the cp values; ka, cl, v scalars or per-row arrays."""
    f = concentration(ka, cl, v, ref["dose"], ref["t"])
    return normal_llh(ref["cp"], f, np.sqrt(add ** 2 + (prop * f) ** 2))


def per_row(ref: dict, values: dict) -> np.ndarray:
    """Per-patient values {id: x} as one value per cp row."""
    return np.array([values[p] for p in ref["patient"]])


def scipy_mle(ref: dict, start: dict) -> dict:
    """The pooled maximum-likelihood estimate of the closed form (Nelder-Mead on the log params)."""
    names = PK + ERROR
    res = minimize(lambda q: -llh_cp(ref, *np.exp(q)), np.log([start[n] for n in names]), method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 40000, "maxfev": 40000})
    return {**dict(zip(names, np.exp(res.x))), "llh": -res.fun}


def fd_standard_errors(ref: dict, params: dict) -> dict:
    """Standard errors from the inverse of a central finite-difference Hessian of -llh_cp in the log params,
    carried to the natural scale (theta se(log theta)), at the given params."""
    names = PK + ERROR
    x0 = np.log([params[n] for n in names])
    h = 1e-4
    f = lambda x: -llh_cp(ref, *np.exp(x))  # noqa: E731
    n = len(x0)
    hess = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            e_i, e_j = np.eye(n)[i] * h, np.eye(n)[j] * h
            hess[i, j] = (f(x0 + e_i + e_j) - f(x0 + e_i - e_j) - f(x0 - e_i + e_j) + f(x0 - e_i - e_j)) / (4 * h * h)
    se_log = np.sqrt(np.diag(np.linalg.inv(hess)))
    return {n: float(np.exp(x) * s) for n, x, s in zip(names, x0, se_log)}


# ---------------------------------------------------------------- hodec fits
def hodec_fit(spec: Path, config: Path, data: Path, out: Path) -> tuple[dict, float]:
    """`hodec fit` in this process (one torch thread); its report and the wall time of the whole command."""
    import torch

    from hodec.cli import main

    torch.set_num_threads(1)
    start = time.perf_counter()
    code = main(["fit", str(spec), "--data", str(data), "--config", str(config), "--out", str(out), "--force",
                 "--quiet"])
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"hodec fit {spec.name} failed with exit code {code}")
    return json.loads((out / "report.json").read_text()), wall


def write_config(path: Path, epochs: int, extra: dict = None) -> Path:
    config = yaml.safe_load(CONFIG.read_text())
    config.update(epochs=epochs, **(extra or {}))
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def two_stage_spec(ids: list, start: dict) -> tuple[str, dict]:
    """The pooled spec with ka, cl, v per patient (the first patient reads ka, cl, v themselves; patient i the
    params ka_i, cl_i, v_i), every param started at its value in `start` (the pooled fit's), and the FIT.yaml
    conditions that bind them to the data's ids."""
    text = SPEC.read_text().rstrip()
    for name, value in start.items():
        text = re.sub(rf"(?m)^(param {name}\s*=\s*)\S+", lambda m: f"{m.group(1)}{value!r}", text)
    lines, conditions = [text, "", "# two-stage: each patient's own ka, cl, v"], {}
    for ident in ids[1:]:
        conditions[ident] = {}
        for name in POPULATION:
            lines.append(f"param {name}_{ident} = {start[name]!r} positive \"patient {ident}'s {name}\"")
            conditions[ident][name] = f"{name}_{ident}"
    return "\n".join(lines) + "\n", conditions


def individual_estimates(report: dict, ids: list) -> dict:
    """name -> {patient id: estimate} from a two-stage report."""
    params = report["params"]
    return {name: {ident: params[name if k == 0 else f"{name}_{ident}"] for k, ident in enumerate(ids)}
            for name in POPULATION}


def summary(values: dict) -> dict:
    """Geometric mean, SD of the logs (omega), median, min and max of per-patient estimates."""
    x = np.array(list(values.values()))
    logs = np.log(x)
    return {"gmean": float(np.exp(logs.mean())), "omega": float(logs.std(ddof=1)), "median": float(np.median(x)),
            "min": float(x.min()), "max": float(x.max())}


# ---------------------------------------------------------------- the benchmark
def convergence(report: dict) -> float:
    """The objective's change over the last tenth of the epochs, relative to its value (-llh/n)."""
    losses = [e["loss"] for e in report["history"]]
    tail = losses[-max(2, len(losses) // 10):]
    return abs(tail[-1] - tail[0]) / abs(tail[-1])


def likelihood_part(report: dict, by_hand: float) -> dict:
    """The report's llh, -2llh, AIC, BIC, k and n (data cells), and its llh against the hand-written one."""
    llh = report["llh"]
    return {"llh": llh, "llh_by_hand": by_hand, "llh_rel_diff": abs(by_hand - llh) / abs(llh), "m2llh": -2 * llh,
            "aic": report["aic"], "bic": report["bic"], "k": report["n_params"], "n": report["n_cells"]}


def run_pooled(ref: dict, data: Path, work: Path, epochs: int) -> dict:
    report, wall = hodec_fit(SPEC, write_config(work / "pooled.yaml", epochs), data, work / "pooled")
    p = report["params"]
    return {"params": p, "se": report["standard_errors"], "se_fd": fd_standard_errors(ref, p),
            "mle": scipy_mle(ref, p), "wall": wall, "seconds": report["metrics"]["seconds"],
            "epochs": len(report["history"]), "best_epoch": report["best_epoch"], "tail_change": convergence(report),
            "warning": report.get("warning", ""), **likelihood_part(report, llh_cp(ref, **p))}


def run_two_stage(ref: dict, data: Path, work: Path, epochs: int, start: dict) -> dict:
    text, conditions = two_stage_spec(ref["ids"], start)
    spec = work / "warfarin_two_stage.hode"
    spec.write_text(text)
    config = write_config(work / "two_stage.yaml", epochs, {"conditions": conditions})
    report, wall = hodec_fit(spec, config, data, work / "two_stage")
    individual = individual_estimates(report, ref["ids"])
    p = report["params"]
    by_hand = llh_cp(ref, *(per_row(ref, individual[n]) for n in PK), p["add"], p["prop"])
    flip_flop = [i for i in ref["ids"] if individual["ka"][i] < individual["cl"][i] / individual["v"][i]]
    return {"individual": individual, "population": {n: summary(individual[n]) for n in POPULATION},
            "flip_flop": flip_flop,
            "error": {n: p[n] for n in ERROR}, "se_error": {n: report["standard_errors"].get(n) for n in ERROR},
            "wall": wall, "seconds": report["metrics"]["seconds"], "epochs": len(report["history"]),
            "tail_change": convergence(report), "warning": report.get("warning", ""),
            **likelihood_part(report, by_hand)}


# ---------------------------------------------------------------- the table
def fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def with_se(value, se) -> str:
    return fmt(value) if se is None else f"{fmt(value)} ± {fmt(se, 2)}"


def render(result: dict) -> str:
    pooled, two = result["pooled"], result["two_stage"]
    rows = ["| fit | ka (1/h) | cl (L/h) | v (L) | add (mg/L) | prop | −2llh (cp) | AIC | BIC | wall s (training) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    rows.append("| hodec, pooled (all patients share ka, cl, v) | "
                + " | ".join(with_se(pooled["params"][n], pooled["se"][n]) for n in PK + ERROR)
                + f" | {pooled['m2llh']:.2f} | {pooled['aic']:.2f} | {pooled['bic']:.2f} | {pooled['wall']:.0f} "
                f"({pooled['seconds']:.0f}) |")
    pop = two["population"]
    rows.append("| hodec, two-stage (geometric mean of 32 patients' fits; error shared) | "
                + " | ".join(fmt(pop[n]["gmean"]) for n in POPULATION) + " | "
                + " | ".join(with_se(two["error"][n], two["se_error"][n]) for n in ERROR)
                + f" | {two['m2llh']:.2f} | {two['aic']:.2f} | {two['bic']:.2f} | {two['wall']:.0f} "
                f"({two['seconds']:.0f}) |")
    for pub in PUBLISHED:
        rows.append(f"| {pub['name']} ({pub['error']}) | " + " | ".join(with_se(*pub[n]) for n in PK + ERROR)
                    + f" | {fmt(pub['m2llh'], 5)} | {fmt(pub['aic'], 5)} | {fmt(pub['bic'], 5)} | – |")
    iiv = ["| between-subject variability (omega, SD of log) | ka | cl | v |", "|---|---|---|---|",
           "| hodec two-stage: SD of the log individual estimates | "
           + " | ".join(fmt(pop[n]["omega"]) for n in POPULATION) + " |"]
    iiv += [f"| {pub['name']} | " + " | ".join(fmt(pub["omega"][n]) for n in POPULATION) + " |" for pub in PUBLISHED]
    spread = ["| two-stage individual estimates | median | min | max |", "|---|---|---|---|"]
    spread += [f"| {n} | {fmt(pop[n]['median'])} | {fmt(pop[n]['min'])} | {fmt(pop[n]['max'])} |" for n in POPULATION]
    spread += ["", "Patients whose estimate has ka < cl / v (the flip-flop solution, which one patient's data without "
               f"absorption-phase samples hardly tell from ka > cl / v): {', '.join(two['flip_flop']) or 'none'}."]
    checks = [f"- pooled: report llh {pooled['llh']:.6f}, by hand (closed form, csv module) "
              f"{pooled['llh_by_hand']:.6f}, relative difference {pooled['llh_rel_diff']:.1e}; two-stage: "
              f"{two['llh_rel_diff']:.1e}.",
              "- pooled against scipy's MLE of the same closed form: "
              + ", ".join(f"{n} {pooled['mle'][n]:.4g}" for n in PK + ERROR)
              + f"; llh {pooled['mle']['llh']:.4f} vs hodec's {pooled['llh']:.4f}.",
              "- pooled standard errors by a finite-difference Hessian of the closed form at hodec's estimates: "
              + ", ".join(f"{n} {pooled['se_fd'][n]:.3g}" for n in PK + ERROR) + ".",
              f"- convergence: the objective changed by {pooled['tail_change']:.1e} (pooled, {pooled['epochs']} "
              f"epochs, best {pooled['best_epoch']}) and {two['tail_change']:.1e} (two-stage, {two['epochs']} "
              "epochs) over the last tenth of the epochs, relative."]
    if two["warning"]:
        checks.append(f"- two-stage report's warning: {two['warning']}")
    sources = [f"- {pub['name']}: {pub['model']}. Source: {pub['source']}." for pub in PUBLISHED]
    return "\n".join([
        f"# Warfarin PK benchmark ({result['date']})", "",
        f"`python -m benchmarks.warfarin.run{' --quick' if result['quick'] else ''}`; data "
        f"`{result['data']}` read as-is; torch {result['torch']}, 1 thread; load average before/after "
        f"{result['load_before']} / {result['load_after']} (2 cores shared with other jobs).", "",
        "Estimates ± standard errors (hodec: the report's, inverse Hessian of −llh; published: as given). −2llh, "
        f"AIC and BIC from hodec's report, of the cp values (the pca rows are not fitted; k = {pooled['k']} pooled, "
        f"{two['k']} two-stage; n = {pooled['n']} cp values). The published −2llh are marginal likelihoods of "
        "mixed-effects models, not comparable with a fixed-effects fit's.", "",
        *rows, "", *iiv, "", *spread, "", "Checks:", *checks, "", "Published fits:", *sources, ""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--quick", action="store_true", help="few epochs (a smoke test)")
    parser.add_argument("--epochs", type=int, help="pooled epochs (default: FIT.yaml's; quick 40)")
    parser.add_argument("--two-stage-epochs", type=int, help="two-stage epochs (default: FIT.yaml's; quick 20)")
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    args = parser.parse_args(argv)
    import torch

    ref = read_reference(args.data)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
              "data": os.path.relpath(args.data, ROOT), "torch": torch.__version__,
              "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="warfarin-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        epochs = yaml.safe_load(CONFIG.read_text())["epochs"]
        result["pooled"] = run_pooled(ref, args.data, work, args.epochs or (40 if args.quick else epochs))
        result["two_stage"] = run_two_stage(ref, args.data, work,
                                            args.two_stage_epochs or (20 if args.quick else epochs),
                                            result["pooled"]["params"])
    result["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    text = render(result)
    print(text)
    from hodec.files import write_atomic

    stem = RESULTS / ("warfarin_quick" if args.quick else "warfarin")
    write_atomic(stem.with_suffix(".md"), text)
    write_atomic(stem.with_suffix(".json"), json.dumps(result, indent=1, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
