"""What a homotopy epoch costs against a vanilla one (issue 15, item 3: goal <= 1.5x), per solver route.

    python benchmarks/bench_homotopy_cost.py [--repeats 5] [--models lv_blackbox dandekar] [--tag homotopy_cost]

An epoch here is what Trainer.step does minus the AdamW update (so every candidate sees the same parameters):
the method's loss at lambda, the uncoupled no-grad MSE where the loss is not already it (homotopy at lambda > 0),
and the backward pass. Candidates: vanilla (lambda = 0) and homotopy at the plateaus lambda = 1, 0.306, 0.056 of
the default schedule, each with the solver routes auto, tsit5, rodas5p (hodec's solvers) and torchdiffeq's
dopri5 (today's formulation before hodec had its own solvers). Per candidate: seconds (median over repeats, all
candidates interleaved in one process, one thread), RHS evaluations (forward calls of the model), solver steps,
rejected steps and Jacobian evaluations (hodec's solvers' counters; for torchdiffeq the step count is (nfe - 2) / 6
with rejections unknown), summed over the epoch's solves, and the coupled solve alone.

Models: LV black-box (benchmarks/homotopy/run.py's data and protocol: float32, rtol 1e-7, atol 1e-9, k = 6,
smoothing 1e-3, initial: data, weights seeded by 10) and Dandekar (benchmarks/specs/dandekar.hode with the
PEtab-SciML benchmark's training data, nominal parameters and network weights; float64, same tolerances, k = 6,
smoothing 1e-3). Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from hodec.compiler import load  # noqa: E402
from hodec.training.config import load_config  # noqa: E402
from hodec.training.data import read_data  # noqa: E402
from hodec.training.loop import Trainer  # noqa: E402

import petab_to_csv  # noqa: E402
from homotopy import run as homotopy_run  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ROUTES = ("auto", "tsit5", "rodas5p", "torchdiffeq_dopri5")
LAMBDAS = (0.0, 1.0, 0.306, 0.056)  # 0: vanilla; the others: plateaus 1, 3 and 5 of the default schedule
SOLVER = {"rtol": 1e-7, "atol": 1e-9}


class Tally(dict):
    """A stats dict for hodec's solvers that sums over the solves it is passed to (integrate() calls update)."""

    def update(self, steps, accepted, n_jac, method, **_):
        self["steps"] = self.get("steps", 0) + steps
        self["rejected"] = self.get("rejected", 0) + steps - accepted
        self["n_jac"] = self.get("n_jac", 0) + n_jac
        self.setdefault("methods", set()).add(method)

    def __setitem__(self, key, value):
        if key == "switched_at":
            self["switches"] = self.get("switches", 0) + 1
        super().__setitem__(key, value)


# ---------------------------------------------------------------- the two problems
def lv_blackbox(tmp: Path):
    t, y, n = homotopy_run.lotka_volterra_data()
    path = tmp / "lv.csv"
    homotopy_run.write_csv(path, t[:n], y[:n], ("prey", "predators"))
    torch.manual_seed(10)
    model = load(ROOT / "specs" / "lotka_volterra_blackbox.hode")()
    return model, path, dict(dtype="float32", initial="data")


def dandekar(tmp: Path):
    path = petab_to_csv.write_csv(tmp / "dandekar.csv")
    return petab_to_csv.model(), path, dict(dtype="float64", initial="spec")


MODELS = {"lv_blackbox": lv_blackbox, "dandekar": dandekar}


def trainer(model, path: Path, options: dict, route: str, parallel: bool = False) -> Trainer:
    method = "dopri5" if route == "torchdiffeq_dopri5" else route
    config = dict(method="homotopy", k=6.0, smoothing=1e-3, lr=0.01, seed=10, solver={"method": method, **SOLVER},
                  **options)
    tr = Trainer(model, read_data(path, model), load_config(config))
    if not parallel:  # the sequential coupled solve (parallel in time: bench_homotopy_parallel.py)
        tr.method.in_time = [None] * len(tr.method.in_time)
    if route == "torchdiffeq_dopri5":  # the generated module as a torchdiffeq func, as before hodec's solvers
        p = tr.problem
        p.solver = p.coupled_solver = {"method": "dopri5", **SOLVER}
        p.model.simulate = lambda ts, y0, method, rtol, atol: p.model._torchdiffeq(ts, y0, method, rtol, atol, {})
    return tr


# ---------------------------------------------------------------- one epoch, measured
class Counter:
    def __init__(self, model):
        self.calls = 0
        model.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


def epoch(tr: Trainer, lam: float, counter: Counter, route: str) -> dict:
    """One epoch without the optimizer step; its seconds and solver counters (total and of the coupled solve)."""
    p = tr.problem
    hodec_solver = route != "torchdiffeq_dopri5"
    coupled, total = Tally(), Tally()
    if hodec_solver:
        p.solver, p.coupled_solver = {**p.solver, "stats": total}, {**p.coupled_solver, "stats": coupled}
    counter.calls = 0
    start = time.perf_counter()
    tr.model.zero_grad(set_to_none=True)
    loss, mse = tr.method.loss(lam)
    f_loss = counter.calls
    if mse is None:
        mse = tr.evaluate(tr.model)
    loss.backward()
    seconds = time.perf_counter() - start
    if hodec_solver:
        p.solver, p.coupled_solver = ({k: v for k, v in d.items() if k != "stats"}
                                      for d in (p.solver, p.coupled_solver))
    row = {"seconds": seconds, "n_f": counter.calls, "loss": float(loss.detach()), "mse": float(mse)}
    if hodec_solver:
        both = {k: coupled.get(k, 0) + total.get(k, 0) for k in ("steps", "rejected", "n_jac")}
        row.update(both, methods=sorted(coupled.get("methods", set()) | total.get("methods", set())),
                   switches=coupled.get("switches", 0) + total.get("switches", 0))
        if lam > 0:
            row["coupled"] = {"n_f": f_loss, **{k: coupled.get(k, 0) for k in ("steps", "rejected", "n_jac")},
                              "methods": sorted(coupled.get("methods", set()))}
    else:
        row["steps_estimate"] = round((counter.calls - 2 * (1 + (lam > 0))) / 6)
        if lam > 0:
            row["coupled"] = {"n_f": f_loss}
    return row


def measure(name: str, repeats: int, routes, lambdas) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model, path, options = MODELS[name](Path(tmp))
        state = {k: v.clone() for k, v in model.state_dict().items()}
        trainers = {}
        for route in routes:  # each route its own copy of the same model
            m = type(model)()
            m.load_state_dict(state)
            tr = trainer(m, path, options, route)
            trainers[route] = (tr, Counter(tr.model))
        rows: dict = {}
        for r in range(repeats + 1):  # the first round warms up and is dropped
            for route in routes:
                tr, counter = trainers[route]
                for lam in lambdas:
                    try:
                        row = epoch(tr, lam, counter, route)
                    except Exception as err:  # a route that fails is reported as such
                        row = {"error": f"{type(err).__name__}: {err}"[:300]}
                    if r:
                        rows.setdefault(f"{route}|{lam}", []).append(row)
    return {key: summarise(runs) for key, runs in rows.items()}


def summarise(runs: list) -> dict:
    if "error" in runs[0]:
        return {"error": runs[0]["error"]}
    out = {k: v for k, v in runs[0].items() if k != "seconds"}  # counters are deterministic
    out["seconds_median"] = statistics.median(r["seconds"] for r in runs)
    out["seconds_all"] = [round(r["seconds"], 5) for r in runs]
    return out


# ---------------------------------------------------------------- report
def markdown(results: dict, meta: dict) -> str:
    lines = [f"# Homotopy epoch cost (issue 15 item 3)\n",
             f"{meta['date']}, {meta['machine']}, torch {meta['torch']}, {meta['threads']} thread, load average "
             f"{meta['load_before']} before / {meta['load_after']} after, {meta['repeats']} interleaved repeats "
             f"(medians). Epoch = loss at lambda + uncoupled no-grad MSE (homotopy, lambda > 0) + backward; no "
             f"optimizer step. Ratio = epoch seconds / the same route's vanilla epoch. RHS = forward calls of the "
             f"model (stages, Jacobian calls excluded); steps/rejected/Jacobians: hodec's solver counters over all "
             f"solves of the epoch; coupled: the loss's coupled solve alone.\n"]
    for name, res in results.items():
        lines += [f"\n## {name}\n", "| route | lambda | s/epoch | ratio | RHS | steps | rejected | Jacobians | "
                  "methods | coupled solve: RHS / steps / rejected / Jacobians | loss |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for key, row in res.items():
            route, lam = key.split("|")
            if "error" in row:
                lines.append(f"| {route} | {lam} | failed: {row['error'][:120]} |||||||||")
                continue
            base = res.get(f"{route}|0.0", {})
            ratio = row["seconds_median"] / base["seconds_median"] if "seconds_median" in base else float("nan")
            c = row.get("coupled", {})
            coupled = " / ".join(str(c.get(k, "–")) for k in ("n_f", "steps", "rejected", "n_jac")) if c else "–"
            steps = row.get("steps", f"~{row.get('steps_estimate', '–')}")
            lines.append(f"| {route} | {lam} | {row['seconds_median']:.4f} | {ratio:.2f} | {row['n_f']} | {steps} | "
                         f"{row.get('rejected', '–')} | {row.get('n_jac', '–')} | {','.join(row.get('methods', []))}"
                         f"{' (switched)' if row.get('switches') else ''} | {coupled} | {row['loss']:.6g} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    ap.add_argument("--lambdas", nargs="+", type=float, default=list(LAMBDAS))
    ap.add_argument("--tag", default="homotopy_cost")
    args = ap.parse_args()
    torch.set_num_threads(1)
    meta = run_meta(args.repeats)
    save(args.tag, {name: measure(name, args.repeats, args.routes, args.lambdas) for name in args.models}, meta,
         markdown)


def run_meta(repeats: int) -> dict:
    """What a run's report states: date, machine, torch, threads, repeats and the load average before it."""
    return dict(date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine=f"{platform.node()} "
                f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
                torch=torch.__version__, threads=1, repeats=repeats,
                load_before=" ".join(f"{x:.1f}" for x in os.getloadavg()))


def save(tag: str, results: dict, meta: dict, markdown):
    """benchmarks/results/<tag>.json and .md (the load average after the run added to meta); the table printed."""
    meta["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=list))
    text = markdown(results, meta)
    (RESULTS / f"{tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
