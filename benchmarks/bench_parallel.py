"""Fits beyond one process: each section is a function returning table rows; results in
benchmarks/results/bench_parallel.json and bench_parallel.md.

torchrun (issue goal: 2 CPU processes fit a 64-subject population with parameters equal to the one-process fit
within 1e-6 relative, each epoch >= 1.6x faster): a Lotka-Volterra population, 64 subjects with their own initial
states (taken from the data) on one time grid, trained rates a and d and a neural interaction U(x, y), fitted by
hodec.fit (the trainer behind `hodec fit`, without its checkpoint per epoch) in one process and, under
`torchrun --nproc-per-node 2`, in a process group (so sharded as `torchrun -m hodec fit` is), one thread per
process. Per epoch, the median over the epochs after the first: wall seconds (process 0's, which include waiting
for the other process) and CPU seconds (the busier process's): on a machine shared with other work the wall
speedup suffers first, the CPU speedup is what two free cores would give less the communication. Agreement: the
largest relative difference of the params and of every nonzero entry of the best state (neural weights included)
between the one-process fit and each process's. The load average before each row is recorded.

ray (issue goal: sparsify's cross-validation, 3 folds x 5 lambda1, on 2 Ray workers >= 1.7x faster than serial,
with the same choices and test MSE): see ray_row.

    python -m benchmarks.bench_parallel                 # every section
    python -m benchmarks.bench_parallel --only ray --warm-start false
    python -m benchmarks.bench_parallel --only torchrun --epochs 8
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hodec.compiler import load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SUBJECTS = 64
POPULATION = """model PopulationLV "Lotka-Volterra population: known linear terms, trained rates, a learned interaction"
param a = 1.0 positive "prey birth rate"
param d = 1.5 positive "predator death rate"
state x = 0.44 "prey (each subject's from its data)"
state y = 4.6 "predators (each subject's from its data)"
der x = a * x
der y = -d * y
neural U(x, y) -> x, y hidden {hidden} {hidden} activation tanh
observe prey = x
observe predators = y
"""
SOLVERS = {"rk4": "{method: rk4, step_size: 0.05}", "dopri5": "{method: dopri5, rtol: 1e-7, atol: 1e-9}"}


# ---------------------------------------------------------------- torchrun: one population fit over 2 processes
def population_csv(path: Path, staggered: bool = False, subjects: int = SUBJECTS, points: int = 21, seed: int = 0):
    """Mechanistic Lotka-Volterra (specs/lotka_volterra.hode) from random initial states, 2 % noise; staggered:
    subject s starts at t = s / 100 (each subject its own solve) instead of all at 0 (one batched solve)."""
    model = load(ROOT / "specs" / "lotka_volterra.hode")().double()
    rng = np.random.default_rng(seed)
    ts = torch.arange(points, dtype=torch.float64) * 0.25
    rows = ["t,id,prey,predators"]
    for s in range(subjects):
        y0 = torch.tensor([rng.uniform(0.3, 1.5), rng.uniform(1.0, 4.0)], dtype=torch.float64)
        with torch.no_grad():
            ys = model.simulate(ts, y0=y0, rtol=1e-9, atol=1e-11).numpy()
        ys = ys * (1 + 0.02 * rng.normal(size=ys.shape))
        start = s / 100 if staggered else 0.0
        rows += [f"{start + t!r},{s},{x!r},{y!r}" for t, (x, y) in zip(ts.tolist(), ys.tolist())]
    path.write_text("\n".join(rows) + "\n")


DRIVER = """
import json, os, time
import torch
import torch.distributed as dist
import hodec

torch.set_num_threads(1)
several = int(os.environ.get("WORLD_SIZE", "1")) > 1
if several:
    dist.init_process_group("gloo")  # hodec.fit then trains this process's shard (as `torchrun -m hodec fit`)
rank = dist.get_rank() if several else 0
marks = [(time.perf_counter(), time.process_time())]
result = hodec.fit("pop.hode", "pop.csv", "fit.yaml",
                   on_epoch=lambda trainer, best: marks.append((time.perf_counter(), time.process_time())))
torch.save({"marks": marks, "params": result.params, "state": result.model.state_dict()}, f"out{rank}.pt")
"""


def fit(folder: Path, processes: int) -> list:
    """Per process: (wall, CPU) seconds at the start and after each epoch, the params and the best state."""
    (folder / "driver.py").write_text(DRIVER)
    args = ["driver.py"]
    if processes > 1:
        args = ["-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--standalone"] + args
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the fit in {processes} process(es) failed:\n{done.stderr[-3000:]}")
    return [torch.load(folder / f"out{rank}.pt") for rank in range(processes)]


def per_epoch(marks: list, which: int) -> float:
    """The median over the epochs after the first of wall (which=0) or CPU (1) seconds."""
    return statistics.median(b[which] - a[which] for a, b in zip(marks[1:], marks[2:]))


def relative_difference(a: dict, b: dict) -> float:
    return max((float(((b[k] - v).abs() / v.abs()).max()) for k, v in a.items() if v.numel() and (v != 0).all()),
               default=0.0)


def torchrun_row(hidden: int, solver: str, epochs: int, staggered: bool = False, processes: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pop.hode").write_text(POPULATION.format(hidden=hidden))
        population_csv(folder / "pop.csv", staggered)
        (folder / "fit.yaml").write_text(f"method: vanilla\nepochs: {epochs}\nsolver: {SOLVERS[solver]}\n")
        load_before = os.getloadavg()[0]
        one, several = fit(folder, 1)[0], fit(folder, processes)
    wall = {1: per_epoch(one["marks"], 0), processes: per_epoch(several[0]["marks"], 0)}
    cpu = {1: per_epoch(one["marks"], 1), processes: max(per_epoch(r["marks"], 1) for r in several)}
    starts = "own start times" if staggered else "one start time"
    return {"section": "torchrun", "case": f"{SUBJECTS} LV subjects, {starts}, neural 2x{hidden}, {solver}",
            "epochs": epochs, "processes": processes, "load_before": round(load_before, 2),
            "epoch_s_1": round(wall[1], 4), f"epoch_s_{processes}": round(wall[processes], 4),
            "speedup": round(wall[1] / wall[processes], 2),
            "cpu_s_1": round(cpu[1], 4), f"cpu_s_{processes}": round(cpu[processes], 4),
            "cpu_speedup": round(cpu[1] / cpu[processes], 2),
            "params_rel_diff": max(abs(r["params"][k] / v - 1) for r in several for k, v in one["params"].items()),
            "state_rel_diff": max(relative_difference(one["state"], r["state"]) for r in several),
            "goal": "params within 1e-6 relative, epoch >= 1.6x faster"}


def torchrun_rows(args) -> list:
    rows = [torchrun_row(hidden, solver, args.epochs) for hidden, solver in ((16, "rk4"), (256, "rk4"),
                                                                            (512, "rk4"), (256, "dopri5"))]
    return rows + [torchrun_row(16, "rk4", max(2, args.epochs // 2), staggered=True)]  # 64 solves an epoch


# ---------------------------------------------------------------- ray: sparsify's cross-validation as trials
def ray_row(warm_start: bool, workers: int = 2) -> dict:
    """The synthetic sparsify benchmark's quick case (refined spec, true sparsity, 12 training trajectories, 150
    epochs, rk4 step 0.4), with 3 folds x 5 lambda1: sparsify() serial (one torch thread) and with `workers` Ray
    workers (one thread each). Seconds of the cross-validation (timings) and of the whole call; Ray's start-up (a
    local Ray of `workers` CPUs) timed on its own. warm_start: one trial per fold (3 trials, so at most 1.5x on 2
    workers); false: one per (fold, lambda1) pair (15 trials)."""
    from benchmarks.sparsify import synthetic
    from hodec.training.executor import Executor, shutdown, start_ray
    from hodec.training.sparsify import sparsify
    from hodec.training.sparsify_config import load_sparsify_config

    s = synthetic.settings(True, None, "mechanistic")
    ts = torch.tensor(s["times"], dtype=torch.float64)
    extra, latent = synthetic.SPECS["refined"]
    spec = synthetic.spec_text("Refined", extra, latent=latent)
    train = synthetic.generate(extra, 0.0, s["n_train"], 1, ts, s["noise"], latent)
    test = synthetic.generate(extra, 0.0, s["n_test"], 2, ts, 0.0, latent)
    base = {"method": "vanilla", "epochs": s["epochs"], "lr": s["lr"], "lambda1": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
            "folds": 3, "lambda2": 1e-4, "threshold": 0.05, "refit_epochs": s["refit_epochs"],
            "solver": {"method": "rk4", "step_size": s["step"]}, "warm_start": warm_start}
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    serial = sparsify(spec, train, load_sparsify_config(base), filename=synthetic.SPEC, test=test)
    load_between = os.getloadavg()[0]
    print(f"ray section: serial sparsify {serial.seconds:.1f} s (warm_start {warm_start})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    start_ray(Executor("ray", workers))
    startup = time.perf_counter() - start
    try:
        parallel = sparsify(spec, train, load_sparsify_config({**base, "executor": "ray", "workers": workers}),
                            filename=synthetic.SPEC, test=test)
    finally:
        shutdown()
    load_after = os.getloadavg()[0]
    cv = {n: r.timings["cross_validation"] for n, r in (("serial", serial), ("ray", parallel))}
    kept = [sorted(e["name"] for e in r.edges if e["kept"]) for r in (serial, parallel)]
    return {"section": "ray", "case": f"sparsify CV, synthetic quick (refined, true), 3 folds x 5 lambda1, "
                                      f"warm_start {str(warm_start).lower()}",
            "trials": 3 if warm_start else 15, "workers": workers, "load_before": round(load_before, 2),
            "load_between": round(load_between, 2), "load_after": round(load_after, 2),
            "cv_s_serial": round(cv["serial"], 2), "cv_s_ray": round(cv["ray"], 2), "ray_startup_s": round(startup, 2),
            "speedup": round(cv["serial"] / cv["ray"], 2),
            "speedup_with_startup": round(cv["serial"] / (cv["ray"] + startup), 2),
            "total_s_serial": round(serial.seconds, 2), "total_s_ray": round(parallel.seconds, 2),
            "same_lambda1": serial.lambda1 == parallel.lambda1, "same_kept": kept[0] == kept[1],
            "test_mse_diff": abs(serial.test_mse - parallel.test_mse),
            "goal": "CV >= 1.7x faster, same lambda1 and kept edges, test MSE within 1e-10"}


def ray_rows(args) -> list:
    return [ray_row(warm_start == "true") for warm_start in args.warm_start or ("false", "true")]


SECTIONS = {"torchrun": torchrun_rows, "ray": ray_rows}  # name -> function(args) -> rows


# ---------------------------------------------------------------- the table
def markdown(rows: list) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in ("section", "goal")))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [row.get(k, "") for k in keys]
        lines.append("| " + " | ".join(f"{c:.2g}" if isinstance(c, float) and c and abs(c) < 1e-3 else str(c)
                                       for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--warm-start", choices=("false", "true"), action="append", help="ray: only these cases")
    args = parser.parse_args(argv)
    rows = [row for name in (args.only or SECTIONS) for row in SECTIONS[name](args)]
    machine = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
               "processor": platform.processor() or platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    if args.only and (RESULTS / "bench_parallel.json").exists():  # keep the rows of the sections not run
        previous = json.loads((RESULTS / "bench_parallel.json").read_text())["rows"]
        rows = [row for row in previous if row["section"] not in args.only] + rows
    (RESULTS / "bench_parallel.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    table = markdown(rows)
    (RESULTS / "bench_parallel.md").write_text(
        f"# bench_parallel ({machine['date']}, {machine['cpus']} CPUs, torch {machine['torch']})\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
