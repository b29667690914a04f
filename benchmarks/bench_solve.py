"""Solve speed of hodec against its peers at equal accuracy (issue 15, "Benchmarks").

    python -m benchmarks.bench_solve             # the full run (tens of minutes on the shared 2 cores)
    python -m benchmarks.bench_solve --quick     # seconds to a minute: LV at B = 1 and PK at B = 64, short timings
    python -m benchmarks.bench_solve --cases lv pk --batches 1 64 --candidates hodec diffrax --no-training
    python -m benchmarks.bench_solve --join a.json b.json --out benchmarks/results/solve   # separate invocations

Cases (benchmarks/cases.py): Lotka-Volterra, the random mass-action networks N=100/R=300 and N=1000/R=3000,
two-compartment PK with a 1 h infusion, UVA/Padova with a meal and a bolus, Robertson to t = 1e5 and a stiff
enzyme cascade; one trajectory each, and batches of 1024 and 4096 members (own initial states, or own params
for PK) of N=100 and PK, and of 64, 1024 and 4096 of the cascade. In a batch cell each candidate's ladder starts
at its pick of the case's previous batch size (per-member step control: a member's accuracy is its own solve's).

Candidates (benchmarks/peers.py): hodec's module integrated by torchdiffeq (dopri5, the path before hodec had its
own solvers), by hodec's own torch solvers (model.simulate(native=False) with tsit5, dopri5, rodas5p, auto;
compile=True variants) and natively ("hodec native ...": simulate(native=True), the model and the solver loops
compiled to C; the first solve's library build, or its read from the cache, is reported as its compile time);
diffrax (Tsit5, Kvaerno5; jax.jit, vmap over members), libRoadRunner (CVODE Adams / BDF, one trajectory), scipy
solve_ivp (DOP853, Radau, BDF; one trajectory) on hand-written right-hand sides, and torchode (Tsit5) on hodec's
module. A candidate that cannot run here (not installed, method not in hodec.solvers) is reported as n/a.

Protocol. float64, one process, one thread for torch, XLA and BLAS (set before the imports); gradients off.
Equal accuracy: the reference is scipy Radau (stiff cases) or DOP853 at rtol 1e-12, integrated piece by piece
between input jumps; the error of a solve is max over components of max_t |y - y_ref| / max_t |y_ref|
(componentwise, relative to each component's peak), over up to 4 members of a batch. Each candidate gets the
loosest rtol of a ladder (1e-3, 1e-4, ..., 1e-11, and in the full run 3x the first of them that meets the target
when the one before missed; atol = rtol x the case's atol_ratio) whose error is at most 1e-5 (non-stiff cases)
or 1e-6 (stiff), and is timed there. Timing: candidates interleaved, each repetition one
turn each in rotating order; a turn is enough calls to last ~20 ms, its mean the repetition's sample; medians
over repetitions. Jit compilation (diffrax, hodec compile=True) is the first call minus a second one and is
reported apart, never in the medians. hodec rows also give f-evaluations, steps and the bare right-hand side's
cost at that batch, so that the per-step overhead of the solver shows (native rows: steps and f-evaluations
summed over the members, no separate right-hand-side time).

Training: one LV black-box epoch (61 points, rtol 1e-7, float32) of hodec.training's vanilla and homotopy methods
(eager, and with tsit5 compile=True) against a hand-written torchdiffeq loop (the same MLP and initial weights,
AdamW); warm-up epochs first, untimed; an epoch in which torch.compile compiles is reported apart. Memory: peak resident memory
of a B = 4096 backprop solve (N=100 network, float32), in a fresh subprocess per candidate:
resource.getrusage maxrss after the solve and backward minus before it.

Results: benchmarks/results/solve.json and solve.md (machine, date, load before/after, versions, every cell, the
goals of the issue with the ratio by which each is met or missed). --quick writes solve_quick.*.
"""
from __future__ import annotations

import os
import sys

# one thread everywhere, set before numpy / torch / jax are imported
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_forward import reexec_with_malloc_env  # noqa: E402

if __name__ == "__main__":
    reexec_with_malloc_env(__spec__, sys.argv[0])

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.cases import CASES, Case  # noqa: E402
from benchmarks.peers import CANDIDATES, Candidate, reference  # noqa: E402

torch.set_num_threads(1)

RESULTS = Path(__file__).resolve().parent / "results"
RUNGS = tuple(10.0 ** -e for e in range(3, 12))  # 1e-3 ... 1e-11; the full run also tries 3x the first that meets
TARGET = {False: 1e-5, True: 1e-6}
CHECK_MEMBERS = 4
SINGLE = ("lv", "net100", "pk", "robertson", "cascade")  # the goals' one-trajectory cells, run first
LAST = ("uva", "net1000")  # one trajectory, no goal: after the batch cells
BATCHES = {"net100": (1024, 4096), "pk": (1024, 4096), "cascade": (64, 1024, 4096)}  # besides B = 1


class Mode:
    def __init__(self, quick: bool):
        self.quick = quick
        self.refine = not quick  # between the last decade that misses and the first that meets, try 3x the latter
        self.sample_s = 0.005 if quick else 0.02  # one timing sample lasts about this long
        self.budget_s = 0.5 if quick else 5.0  # per cell, once min_reps repetitions are done
        self.cap_s = 10.0 if quick else 60.0  # per cell, after one repetition (minutes-long solves)
        self.min_reps, self.max_reps = (3, 5) if quick else (3, 11)
        self.slow_s = 20.0 if quick else 120.0  # a single solve slower than this ends the ladder
        self.epochs = 6 if quick else 24  # training epochs per candidate (homotopy: 4 per lambda step)
        self.warmup_epochs = 1 if quick else 2  # run first by every training candidate, not timed
        self.memory_batch = 256 if quick else 4096


# ---------------------------------------------------------------- accuracy
def error(ys: np.ndarray, ref: np.ndarray) -> float:
    """max over members and components of max_t |y - ref| / max_t |ref| (each component against its peak)."""
    scale = np.abs(ref).max(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    value = float((np.abs(ys - ref).max(axis=0) / scale).max())
    return value if np.isfinite(value) else float("inf")


def check_members(batch: int) -> list:
    return sorted({int(i) for i in np.linspace(0, batch - 1, min(CHECK_MEMBERS, batch))})


def pick_tolerance(runner, case: Case, ref: np.ndarray, members: list, rungs: tuple, mode: Mode) -> dict:
    """The loosest rung whose error meets the case's target (with mode.refine, 3x that rung is tried too when the
    rung before it missed); every rung tried is recorded. A jit-compiled runner's first solve is repeated:
    compile_s = first - second, and the second is the one that counts as the solve's time."""
    target = TARGET[case.stiff]
    tried = []
    for i, rtol in enumerate(rungs):
        outcome = try_rung(runner, case, ref, members, rtol)
        tried.append(outcome)
        if outcome.get("error", np.inf) <= target:
            if mode.refine and i > 0 and "error" in tried[-2]:
                looser = try_rung(runner, case, ref, members, 3 * rtol)
                tried.append(looser)
                if looser.get("error", np.inf) <= target:
                    outcome = looser
            return {"rtol": outcome["rtol"], "atol": outcome["rtol"] * case.atol_ratio, "error": outcome["error"],
                    "ladder": tried}
        if outcome.get("seconds", 0.0) > mode.slow_s:
            break
    return {"ladder": tried}


def try_rung(runner, case: Case, ref: np.ndarray, members: list, rtol: float) -> dict:
    atol = rtol * case.atol_ratio
    start = time.perf_counter()
    try:
        ys = runner.states(runner.run(rtol, atol))[:, members]
        seconds = time.perf_counter() - start
        if runner.jit and runner.compile_s is None:  # the first call compiled: time a second one
            start = time.perf_counter()
            runner.run(rtol, atol)
            runner.compile_s, seconds = max(0.0, seconds - (time.perf_counter() - start)), \
                time.perf_counter() - start
    except Exception as err:  # a failed solve (too many steps, stiffness, ...) only rules out this rung
        return {"rtol": rtol, "failed": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"}
    return {"rtol": rtol, "error": error(ys, ref), "seconds": round(seconds, 4)}


def ladder_status(picked: dict, target: float) -> str:
    if "rtol" in picked:
        return "ok"
    failures = [r["failed"] for r in picked["ladder"] if "failed" in r]
    if len(failures) == len(picked["ladder"]) and failures:
        return f"failed ({failures[-1]})"
    best = min((r["error"] for r in picked["ladder"] if "error" in r), default=float("nan"))
    return f"no rung reached {target:g} (best {best:.1e})" + (f"; {failures[-1]}" if failures else "")


# ---------------------------------------------------------------- timing
def interleave(calls: dict, first_s: dict, mode: Mode) -> dict:
    """Median seconds per call of each no-argument function, measured in rotating round-robin turns; first_s:
    each one's time of one call as measured before (sets how many calls make a sample)."""
    inner = {name: max(1, int(mode.sample_s / max(first_s[name], 1e-7))) for name in calls}
    samples: dict = {name: [] for name in calls}
    names = list(calls)
    start = time.perf_counter()
    for rep in range(mode.max_reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                calls[name]()
            samples[name].append((time.perf_counter() - t0) / inner[name])
        elapsed = time.perf_counter() - start
        if rep + 1 >= mode.min_reps and elapsed > mode.budget_s or elapsed > mode.cap_s:
            break
    return {name: {"median_s": statistics.median(s), "samples": len(s), "calls_per_sample": inner[name],
                   "spread": round((max(s) - min(s)) / statistics.median(s), 3)} for name, s in samples.items()}


# ---------------------------------------------------------------- one cell
def run_cell(case: Case, batch: int, candidates: list, mode: Mode, start: Optional[dict] = None) -> dict:
    """start: candidate -> the rtol its ladder starts at (its pick at the case's previous batch size: per-member
    step control makes each member's accuracy that of its solve alone), else the ladder's first rung."""
    members = check_members(batch)
    ref = np.stack([reference(case, m, batch) for m in members], 1)
    rows, runners = {}, {}
    for cand in candidates:
        if not cand.applies(case, batch):
            continue
        reason = cand.missing()
        if reason:
            rows[cand.name] = {"status": f"n/a ({reason})"}
            continue
        first = (start or {}).get(cand.name)
        if cand.ladder_from and rows.get(cand.ladder_from, {}).get("rtol"):  # same numerics: start where it ended
            first = rows[cand.ladder_from]["rtol"]
        rungs = RUNGS if first is None else (first, *(r for r in RUNGS if r < first * (1 - 1e-9)))
        try:
            runner = cand.prepare(case, batch)
            picked = pick_tolerance(runner, case, ref, members, rungs, mode)
        except Exception as err:
            rows[cand.name] = {"status": f"failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})"}
            continue
        row = {"status": ladder_status(picked, TARGET[case.stiff]), **picked, "group": cand.group,
               "compile_s": runner.compile_s}
        rows[cand.name] = row
        if "rtol" in picked:
            runners[cand.name] = (runner, picked["rtol"], picked["atol"])
        print(f"  {cand.name:32s} {describe(row)}", flush=True)
    if runners:
        calls = {name: (lambda r=r, a=a, b=b: r.run(a, b)) for name, (r, a, b) in runners.items()}
        picked_s = {name: next(x["seconds"] for x in rows[name]["ladder"] if x["rtol"] == rows[name]["rtol"])
                    for name in runners}
        timed = interleave(calls, picked_s, mode)
        for name, (runner, rtol, atol) in runners.items():
            rows[name].update(timed[name])
            rows[name].update(runner.counts(rtol, atol))
            rhs = runner.rhs_us()
            if rhs is not None:
                rows[name]["rhs_us"] = rhs
    return {"case": case.name, "title": case.title, "batch": batch, "stiff": case.stiff, "target": TARGET[case.stiff],
            "n": case.n, "points": len(case.ts), "t_end": float(case.ts[-1]), "candidates": rows}


def describe(row: dict) -> str:
    if "rtol" not in row:
        return row["status"]
    return f"rtol {row['rtol']:.0e}  error {row['error']:.1e}" + (
        f"  compile {row['compile_s']:.2f} s" if row.get("compile_s") else "")


# ---------------------------------------------------------------- training
def lv_data(points: int = 61):
    """LV (specs/lotka_volterra.hode) at t = 0, 0.1, ..., 6 with 5 % noise, as benchmarks/homotopy uses."""
    from scipy.integrate import solve_ivp

    case = CASES["lv"]()
    t = np.round(np.arange(points) * 0.1, 10)
    sol = solve_ivp(lambda s, y: case.rhs(s, y, {}, np), (0, t[-1]), case.y0, t_eval=t, rtol=1e-10, atol=1e-12)
    y = sol.y.T
    return t, y + np.random.default_rng(0).normal(size=y.shape) * 0.05 * y.mean(0)


TRAIN_SOLVER = {"rtol": 1e-7, "atol": 1e-9}
TRAIN_CONFIG = {"lr": 0.05, "seed": 10, "dtype": "float32", "initial": "data", "weight_decay": 0.01}
HOMOTOPY = {"k": 6.0, "steps": 6, "smoothing": 1e-3}


def hodec_trainer(t, y, method: str, solver: str, epochs: int, compile: bool = False):
    import hodec
    from hodec.training.loop import Trainer
    from hodec.training.config import load_config
    from hodec.training.data import make_dataset

    cls = hodec.compile("specs/lotka_volterra_blackbox.hode").model_class()
    config = {**TRAIN_CONFIG, "method": method, "solver": {"method": solver, **TRAIN_SOLVER, "compile": compile}}
    if method == "homotopy":
        config.update(HOMOTOPY, epochs_per_step=max(1, epochs // HOMOTOPY["steps"]))
    else:
        config["epochs"] = epochs
    torch.manual_seed(TRAIN_CONFIG["seed"])
    model = cls()
    data = make_dataset(model, t, {"prey": y[:, 0], "predators": y[:, 1]})
    return Trainer(model, data, load_config(config))


class TorchdiffeqLoop:
    """The hand-written baseline: an MLP [2, 32, 2] GELU as the whole vector field, torchdiffeq dopri5, MSE,
    AdamW; float32; initial weights copied from hodec's slot so both start from the same field."""

    def __init__(self, t, y, weights_from=None):
        from torch import nn

        self.net = nn.Sequential(nn.Linear(2, 32), nn.GELU(), nn.Linear(32, 2))
        if weights_from is not None:
            linear = [m for m in weights_from.modules() if isinstance(m, nn.Linear)]
            with torch.no_grad():
                for mine, theirs in zip([self.net[0], self.net[2]], linear):
                    mine.weight.copy_(theirs.weight)
                    mine.bias.copy_(theirs.bias)
        self.t = torch.as_tensor(t, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.float32)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=TRAIN_CONFIG["lr"],
                                           weight_decay=TRAIN_CONFIG["weight_decay"])

    def step(self):
        from torchdiffeq import odeint

        self.optimizer.zero_grad(set_to_none=True)
        pred = odeint(lambda t, y: self.net(y), self.y[0], self.t, method="dopri5", **TRAIN_SOLVER)
        loss = ((pred - self.y) ** 2).mean()
        loss.backward()
        self.optimizer.step()
        return loss.item()


# (method, solver, compile): compile=True hands the solver's step and dense output to torch.compile
TRAIN_HODEC = [*((method, solver, False) for solver in ("dopri5", "tsit5", "auto")
                 for method in ("vanilla", "homotopy")), ("vanilla", "tsit5", True), ("homotopy", "tsit5", True)]
LOOP = "torchdiffeq loop (hand-written)"


def training_section(mode: Mode) -> dict:
    """Seconds per epoch, the epochs of all candidates interleaved (one turn each per epoch, in rotating order).
    Every candidate first runs mode.warmup_epochs untimed epochs; hodec's trainers then restart their schedule at
    epoch 1 (homotopy: lambda from 1 again), so the timed epochs are one whole run of the method. An epoch in which
    torch.compile compiled (the compile candidates' first, or a recompile) is left out of mean and median; its time
    over the median is summed into compile_s."""
    t, y = lv_data()
    from hodec import solvers

    trainers, failed = {}, {}
    for method, solver, compiled in TRAIN_HODEC:
        name = f"hodec {method} ({solver}{', compile' if compiled else ''})"
        if solver != "auto" and solver not in solvers.METHODS or compiled and mode.quick:  # (compiling: minutes)
            continue
        try:
            trainers[name] = hodec_trainer(t, y, method, solver, mode.epochs, compiled)
        except Exception as err:
            failed[name] = {"status": f"failed ({type(err).__name__}: {err})"}
    weights = hodec_trainer(t, y, "vanilla", "dopri5", mode.epochs).model.slot_modules
    runners = {name: trainer.step for name, trainer in trainers.items()}
    runners[LOOP] = TorchdiffeqLoop(t, y, weights).step
    warmup = epochs_interleaved(runners, mode.warmup_epochs, failed, "warm-up")
    for trainer in trainers.values():
        trainer.epoch = 0
    steps = HOMOTOPY["steps"]
    total = mode.epochs if not any("homotopy" in n for n in runners) else steps * max(1, mode.epochs // steps)
    timed = epochs_interleaved(runners, total, failed, "timed")
    out = {name: failed.get(name) or epoch_stats(warmup[name], timed[name]) for name in [*trainers, *failed, LOOP]}
    return {"epochs": total, "warmup_epochs": mode.warmup_epochs, "solver": TRAIN_SOLVER, "config": TRAIN_CONFIG,
            "homotopy": HOMOTOPY, "candidates": out}


def epochs_interleaved(runners: dict, count: int, failed: dict, phase: str) -> dict:
    """name -> [(seconds, whether torch.compile compiled a graph in it)] of `count` epochs each, interleaved in
    rotating order; a candidate that raises is entered in `failed` with the error and the seconds of its epochs
    of this phase before, and runs no more epochs."""
    from torch._dynamo.utils import counters

    epochs: dict = {name: [] for name in runners}
    names = list(runners)
    for epoch in range(count):
        for name in names[epoch % len(names):] + names[:epoch % len(names)]:
            if name in failed:
                continue
            graphs = counters["stats"]["unique_graphs"]
            start = time.perf_counter()
            try:
                runners[name]()
            except Exception as err:
                failed[name] = {"status": f"failed in {phase} epoch {epoch + 1} ({type(err).__name__}: {err})",
                                "epoch_s": [s for s, _ in epochs[name]]}
                continue
            epochs[name].append((time.perf_counter() - start, counters["stats"]["unique_graphs"] > graphs))
    return epochs


def epoch_stats(warmup: list, timed: list) -> dict:
    """Mean and median of the timed epochs that did not compile; compile_s: the compiling epochs' (warm-up ones
    included) time over that median."""
    plain = [s for s, compiled in timed if not compiled] or [s for s, _ in timed]  # (compiled in every epoch)
    median = statistics.median(plain)
    compiling = [s for s, compiled in warmup + timed if compiled]
    return {"status": "ok", "epochs": len(plain), "mean_s": statistics.fmean(plain), "median_s": median,
            "first_epoch_s": warmup[0][0] if warmup else None,
            "compile_s": sum(s - median for s in compiling) if compiling else None,
            "compiling_epochs": len(compiling), "compiling_timed_epochs": len(timed) - len(plain)}


# ---------------------------------------------------------------- memory (one subprocess per candidate)
# name -> the largest batch it runs at (simulate(adjoint=True) with shared params costs ~B vector-Jacobian
# products per evaluation: 17.6 s and 514 MiB at B = 256, over 5 minutes at B = 1024, measured)
MEMORY_CANDIDATES = {"torchdiffeq dopri5": None, "torchdiffeq dopri5 adjoint": None, "hodec tsit5": None,
                     "hodec dopri5": None, "hodec tsit5 adjoint": 256}


def memory_child(name: str, batch: int) -> dict:
    """In a fresh process: peak resident memory growth over one backprop solve (N=100 network, float32, t in
    [0, 1]): the kernel's high-water mark is reset (/proc/self/clear_refs) before the solve, and VmHWM after the
    solve and backward less VmRSS before it is the growth."""
    from benchmarks.peers import hodec_model

    case = CASES["net100"]()
    model, y0 = hodec_model(case, batch)
    model = model.float()
    y0 = y0.float().reshape(batch, case.n)
    ts = torch.linspace(0.0, 1.0, 11)
    model(ts[0], y0).sum().backward()  # allocator and autograd warmed
    model.zero_grad(set_to_none=True)
    Path("/proc/self/clear_refs").write_text("5")
    before = proc_status_kib("VmRSS")
    start = time.perf_counter()
    if name.startswith("torchdiffeq"):
        import torchdiffeq

        odeint = torchdiffeq.odeint_adjoint if name.endswith("adjoint") else torchdiffeq.odeint
        ys = odeint(model, y0, ts, method="dopri5", rtol=1e-5, atol=1e-8)
    else:
        adjoint = {"adjoint": True} if name.endswith("adjoint") else {}
        ys = model.simulate(ts, y0=y0, method=name.split()[1], rtol=1e-5, atol=1e-8, **adjoint)
    ys.square().mean().backward()
    seconds = time.perf_counter() - start
    return {"peak_growth_mib": (proc_status_kib("VmHWM") - before) / 1024, "rss_before_mib": before / 1024,
            "seconds": seconds}


def proc_status_kib(key: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
    return int(line.split()[1])


def memory_section(mode: Mode) -> dict:
    out = {}
    for name, cap in MEMORY_CANDIDATES.items():
        batch = min(mode.memory_batch, cap or mode.memory_batch)
        cmd = [sys.executable, "-m", "benchmarks.bench_solve", "--memory-child", name, "--memory-batch", str(batch)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=Path(__file__).parent.parent)
        if proc.returncode != 0:
            out[name] = {"status": "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
        else:
            out[name] = {"status": "ok", "batch": batch, **json.loads(proc.stdout.strip().splitlines()[-1])}
        print(f"  memory {name:28s} {out[name]}", flush=True)
    return {"case": "net100", "batch": mode.memory_batch, "dtype": "float32", "t": [0.0, 1.0], "points": 11,
            "rtol": 1e-5, "atol": 1e-8, "how": "peak RSS growth over the solve and backward: VmHWM after (peak "
            "reset by /proc/self/clear_refs) - VmRSS before, one fresh subprocess per candidate", "candidates": out}


# ---------------------------------------------------------------- goals
def fastest(cell: dict, names=None, group="hodec", exclude=("torchdiffeq",)) -> tuple:
    rows = [(n, r) for n, r in cell["candidates"].items() if "median_s" in r and r.get("group") == group
            and (names is None or n in names) and not any(e in n for e in exclude)]
    return min(rows, key=lambda nr: nr[1]["median_s"]) if rows else (None, None)


def goal(cells: list, case: str, batches, peers, limit: float, label: str) -> list:
    out = []
    for cell in cells:
        if cell["case"] != case or cell["batch"] not in batches:
            continue
        h_name, h = fastest(cell)
        p_name, p = fastest(cell, names=peers, group="peer", exclude=())
        row = {"goal": label, "case": case, "batch": cell["batch"], "limit": limit, "hodec": h_name,
               "peer": p_name or " / ".join(peers)}
        if h is None or p is None:
            row["status"] = "not measured (" + ("no hodec solver ran" if h is None else "peer not run") + ")"
        else:
            ratio = h["median_s"] / p["median_s"]
            twin = cell["candidates"].get(h_name.removesuffix(" compile"), {})
            if h_name.endswith(" compile") and twin.get("steps") == h.get("steps"):
                # f evaluations inside a compiled step are not counted: the eager twin's, same steps
                h = {**h, "nfev": twin.get("nfev")}
            row.update(ratio=ratio, status="met" if ratio <= limit else f"missed by {ratio / limit:.2f}x",
                       bound=bound(h, p, summed=h_name.startswith("hodec native") and cell["batch"] > 1))
        out.append(row)
    return out


def bound(h: dict, p: dict, summed: bool = False) -> str:
    """What the hodec solve spends its time on: per-step cost against the bare right-hand side's. summed: the
    steps are summed over the batch's members (native solves step each member on its own)."""
    steps, nfev, rhs = h.get("steps"), h.get("nfev"), h.get("rhs_us")
    parts = []
    if steps:
        per_step = h["median_s"] / steps * 1e6
        parts.append(f"{steps} {'member-steps' if summed else 'steps'}, {fmt(per_step)} µs/step")
        if nfev and rhs:
            rhs_share = nfev * rhs * 1e-6 / h["median_s"]
            if rhs_share < 1:
                parts.append(f"{nfev} f-evals x {rhs:.0f} µs (eager forward) = {100 * rhs_share:.0f} % of the "
                             f"solve; the rest ({(1 - rhs_share) * per_step:.0f} µs/step) is solver overhead")
            else:  # a compiled step evaluates f faster than the eager forward
                parts.append(f"{nfev} f-evals; the compiled solve takes {100 / rhs_share:.0f} % of their eager "
                             f"forward time ({rhs:.0f} µs each)")
    if p.get("steps"):
        parts.append(f"peer {p['steps']} steps, {p['median_s'] / p['steps'] * 1e6:.1f} µs/step")
    elif p.get("nfev"):
        parts.append(f"peer {p['nfev']} f-evals")
    return "; ".join(parts)


def goals(cells: list, training: dict) -> list:
    rows = []
    for case in ("lv", "net100", "pk"):
        rows += goal(cells, case, (1,), ("diffrax Tsit5",), 2.0, "one trajectory <= 2x diffrax Tsit5")
        rows += goal(cells, case, (1,), ("CVODE Adams", "CVODE BDF"), 1.0, "one trajectory <= 1x CVODE")
    for case in ("net100", "pk", "cascade"):
        rows += goal(cells, case, (1024, 4096), ("diffrax Tsit5", "diffrax Kvaerno5"), 1.0,
                     "batch: >= diffrax vmap throughput")
        if case != "cascade":
            rows += goal(cells, case, (1024, 4096), ("torchode Tsit5 (hodec module)",), 0.5, "batch: >= 2x torchode")
    for case in ("robertson", "cascade"):
        rows += goal(cells, case, (1,), ("CVODE BDF",), 2.0, "stiff <= 2x CVODE BDF")
        rows += goal(cells, case, (1, 64, 1024, 4096), ("diffrax Kvaerno5",), 1.0, "stiff <= 1x diffrax Kvaerno5")
    rows += training_goals(training)
    return rows


def training_goals(training: dict) -> list:
    if not training:
        return []
    c = {n: r for n, r in training["candidates"].items() if r.get("status") == "ok"}
    vanilla = {n: r for n, r in c.items() if n.startswith("hodec vanilla")}
    rows = []
    loop = c.get(LOOP)
    if vanilla and loop:
        name = min(vanilla, key=lambda n: vanilla[n]["mean_s"])
        ratio = vanilla[name]["mean_s"] / loop["mean_s"]
        rows.append({"goal": "training: vanilla epoch <= 0.5x hand-written torchdiffeq", "case": "lv_blackbox",
                     "hodec": name, "peer": LOOP, "limit": 0.5, "ratio": ratio,
                     "status": "met" if ratio <= 0.5 else f"missed by {ratio / 0.5:.2f}x"})
    for name, row in training["candidates"].items():
        twin = name.replace("homotopy", "vanilla")
        if name.startswith("hodec homotopy") and twin in c:
            base = {"goal": "training: homotopy epoch <= 1.5x vanilla", "case": "lv_blackbox", "hodec": name,
                    "peer": twin, "limit": 1.5}
            if name not in c:
                rows.append({**base, "status": "not measured (the homotopy candidate failed)"})
                continue
            ratio = row["mean_s"] / c[twin]["mean_s"]
            rows.append({**base, "ratio": ratio, "status": "met" if ratio <= 1.5 else f"missed by {ratio / 1.5:.2f}x"})
    return rows


# ---------------------------------------------------------------- output
def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for module in ("scipy", "jax", "jaxlib", "diffrax", "torchode", "torchdiffeq", "roadrunner", "antimony"):
        if importlib.util.find_spec(module) is not None:
            try:
                out[module] = getattr(__import__(module), "__version__", "?")
            except Exception:  # an installed but broken peer: its rows say so
                out[module] = "import failed"
    return out


def source_state() -> str:
    """The commit measured, and whether hodec/ had uncommitted changes (a shared working tree)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hodec"], capture_output=True, text=True,
                               cwd=root)
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes in hodec/" if dirty.stdout.strip() else "")


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "threads": 1}


def fmt(x, digits=3) -> str:
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


SUMMARY_PEERS = (("diffrax", ("diffrax Tsit5", "diffrax Kvaerno5")), ("CVODE", ("CVODE Adams", "CVODE BDF")),
                 ("torchode", ("torchode Tsit5 (hodec module)",)),
                 ("scipy", ("scipy DOP853", "scipy Radau", "scipy BDF")))


def table(title: str, header: list, rows: list) -> list:
    """Markdown lines of a titled table (a title of '' gives none)."""
    return ([title, ""] if title else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                                             *("| " + " | ".join(str(v) for v in row) + " |" for row in rows), ""]


def summary(cells: list) -> list:
    """One row per cell: hodec's fastest native and torch own-solver rows, torchdiffeq, and each peer family's
    fastest, as ms (hodec's fastest own-solver row ÷ peer)."""
    rows = []
    for cell in cells:
        h_name, h = fastest(cell)
        own = [fastest(cell, names=[n for n in cell["candidates"] if n.startswith("hodec native")]),
               fastest(cell, exclude=("torchdiffeq", "native"))]
        td = cell["candidates"].get("hodec+torchdiffeq dopri5", {}).get("median_s")
        row = [cell["case"], cell["batch"],
               *(f"{fmt(r['median_s'] * 1e3)} ({n.removeprefix('hodec ').removeprefix('native ')})" if r else "–"
                 for n, r in own), fmt(td * 1e3) if td else "–"]
        for _, names in SUMMARY_PEERS:
            p_name, p = fastest(cell, names=names, group="peer", exclude=())
            row.append("–" if p is None else f"{fmt(p['median_s'] * 1e3)} ({fmt(h['median_s'] / p['median_s'])})"
                       if h else fmt(p["median_s"] * 1e3))
        rows.append(row)
    header = ["case", "B", "hodec native ms", "hodec torch solvers ms", "hodec+torchdiffeq ms",
              *(f"{label} ms (hodec ÷)" for label, _ in SUMMARY_PEERS)]
    return table("", header, rows)


def cell_rows(cell: dict) -> list:
    _, best = fastest(cell)
    rows = []
    for name, r in cell["candidates"].items():
        ms = r.get("median_s")
        if not ms:
            rows.append([name, *["–"] * 9, r["status"]])
            continue
        per_step = ms / r["steps"] * 1e6 if r.get("steps") else None
        rows.append([name, f"{r['rtol']:.0e}", f"{r['error']:.1e}", fmt(ms * 1e3),
                     fmt(ms / best["median_s"]) if best else "–", fmt(r.get("compile_s")), r.get("nfev") or "–",
                     r.get("steps") or "–", fmt(per_step), fmt(r.get("rhs_us")), r["status"]])
    return rows


def markdown(result: dict) -> str:
    lines = [f"# bench_solve{' (quick)' if result['quick'] else ''}", "",
             f"{result['date']} · {result['machine']['cpu']} ({result['machine']['cores']} cores, 1 thread used) · "
             f"load (1/5/15 min) before {result['load_before']}, after {result['load_after']} · "
             f"hodec {result.get('source', '?')} · "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()), "",
             "Times: median ms per solve (float64, no gradients) at the loosest rtol of the ladder meeting the error "
             "target (componentwise, relative to each component's peak; 1e-5 non-stiff, 1e-6 stiff) against scipy "
             "at rtol 1e-12; atol = rtol x a per-case ratio. Input jumps (PK, UVA/Padova) are stepped over by "
             "every candidate (no jump_ts, events or restarts).", "",
             *([result["note"], ""] if result.get("note") else []), *summary(result["cells"]),
             "Per cell: ÷ hodec = this candidate's time / the fastest hodec own-solver row's (> 1: hodec faster).", ""]
    for cell in result["cells"]:
        lines += table(f"## {cell['title']}, B = {cell['batch']} (n = {cell['n']}, {cell['points']} output times "
                       f"to t = {cell['t_end']:g}, target {cell['target']:g})",
                       ["candidate", "rtol", "error", "ms", "÷ hodec", "compile s", "f-evals", "steps", "µs/step",
                        "RHS µs", "status"], cell_rows(cell))
    if result.get("training"):
        tr = result["training"]
        lines += table(f"## Training: LV black-box epoch (61 points, rtol 1e-7, float32), {tr['epochs']} timed epochs "
                       f"after {tr.get('warmup_epochs', 0)} warm-up epochs; epochs in which torch.compile compiled are "
                       f"left out of mean and median, their time over the median is compile s",
                       ["candidate", "s / epoch (mean)", "median", "first epoch s", "compile s", "epochs compiling "
                        "(timed)", "status"],
                       [[n, fmt(r.get("mean_s")), fmt(r.get("median_s")), fmt(r.get("first_epoch_s")),
                         fmt(r.get("compile_s")), f"{r['compiling_epochs']} ({r['compiling_timed_epochs']})"
                         if "compiling_epochs" in r else "–", r["status"]] for n, r in tr["candidates"].items()])
    if result.get("memory"):
        mem = result["memory"]
        lines += table(f"## Memory: backprop solve, {mem['case']}, {mem['dtype']} ({mem['how']})",
                       ["candidate", "B", "peak growth MiB", "s", "status"],
                       [[n, r.get("batch", "–"), fmt(r.get("peak_growth_mib")), fmt(r.get("seconds")), r["status"]]
                        for n, r in mem["candidates"].items()])
    lines += table("## Goals (hodec ÷ peer time; hodec = its fastest own-solver row)",
                   ["goal", "case", "B", "hodec", "peer", "ratio", "limit", "status", "what bounds it"],
                   [[g["goal"], g["case"], g.get("batch", "–"), g["hodec"], g["peer"], fmt(g.get("ratio")),
                     g["limit"], g["status"], g.get("bound", "")] for g in result["goals"]])
    return "\n".join(lines) + "\n"


def write(result: dict, stem: Path):
    from hodec.files import write_atomic

    stem.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stem.with_suffix(".json"), json.dumps(result, indent=1, default=float) + "\n")
    write_atomic(stem.with_suffix(".md"), markdown(result))


# ---------------------------------------------------------------- joining separate invocations
def join(paths: list, out: Path, note: str = "") -> str:
    """One results file from several invocations (e.g. rows run apart on a loaded machine): each cell from the last
    file that has it, training and memory likewise; the invocations they come from (date, commit, load) listed
    in "runs" and in the note. A file that is itself a join contributes its own runs."""
    runs, cells, sections, result = [], {}, {}, {}
    for path in paths:
        result = json.loads(Path(path).read_text())
        own = result.get("runs") or [{key: result[key] for key in ("date", "source", "load_before", "load_after")}]
        first = len(runs)
        runs += [{key: run[key] for key in ("date", "source", "load_before", "load_after")} for run in own]
        for cell in result["cells"]:
            where = [i for i, run in enumerate(own) if [cell["case"], cell["batch"]] in run.get("cells", [])]
            cells[cell["case"], cell["batch"]] = (cell, first + (where[-1] if where else 0))
        for key in ("training", "memory"):
            if result.get(key):  # an invocation runs them first: a joined file's first run has them
                where = [i for i, run in enumerate(own) if key in run.get("sections", [])]
                sections[key] = (result[key], first + (where[0] if where else 0))
    order = sorted(cells, key=lambda c: (c[0] in LAST, c[1], (SINGLE + LAST).index(c[0])))
    for i, run in enumerate(runs):
        run["cells"] = [list(c) for c in order if cells[c][1] == i]
        run["sections"] = [key for key, (_, j) in sections.items() if j == i]
    runs = sorted((run for run in runs if run["cells"] or run["sections"]), key=lambda run: run["date"])
    note = ("Joined from {} invocations on the same machine; each cell comes from one invocation, its candidates "
            "interleaved there. ".format(len(runs)) +
            "; ".join(f"run {i + 1}: {run['date']} ({run['source']}), load before {run['load_before']}, after "
                      f"{run['load_after']}: " + ", ".join([f"{c} B={b}" for c, b in run["cells"]] + run["sections"])
                      for i, run in enumerate(runs)) + (f". {note}" if note else ""))
    joined = {**result, "date": f"{runs[0]['date']} – {runs[-1]['date']}", "source": runs[-1]["source"],
              "load_before": runs[0]["load_before"], "load_after": runs[-1]["load_after"], "runs": runs,
              "note": note, "cells": [cells[c][0] for c in order],
              **{key: sections.get(key, ({}, None))[0] for key in ("training", "memory")}}
    joined["goals"] = goals(joined["cells"], joined["training"])
    write(joined, out)
    return markdown(joined)


# ---------------------------------------------------------------- main
def cells_for(args) -> list:
    if args.quick and not args.cases:
        return [("lv", 1), ("pk", 64)]
    names = args.cases or SINGLE + LAST
    cells = [(name, b) for name in names for b in args.batches or (1, *BATCHES.get(name, ()))
             if b <= CASES[name]().max_batch]
    order = [n for n in SINGLE + LAST if n in names]  # B = 1 of the goal cases, batches by size, then the rest
    return sorted(cells, key=lambda c: (c[0] in LAST, c[1], order.index(c[0])))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two cells, short timings, decades only")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES))
    ap.add_argument("--batches", nargs="+", type=int)
    ap.add_argument("--candidates", nargs="+", help="substrings: run only candidates whose name has one")
    ap.add_argument("--skip", nargs="+", default=[], help="substrings: leave out candidates whose name has one")
    ap.add_argument("--join", nargs="+", type=Path, metavar="JSON",
                    help="write one results file (--out) from these results of separate invocations; runs nothing")
    ap.add_argument("--note", default="", help="with --join: a sentence added to the results' note")
    ap.add_argument("--no-training", action="store_true")
    ap.add_argument("--no-cells", action="store_true", help="run no solve cells (training and memory only)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", type=Path, help="results path without suffix (default benchmarks/results/solve, or "
                                             "solve_quick with --quick); .json and .md are written")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--memory-batch", type=int, default=4096, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_batch)))
        return 0
    if args.join:
        print(join(args.join, args.out or RESULTS / "solve", args.note))
        return 0
    mode = Mode(args.quick)
    if importlib.util.find_spec("jax") is not None:  # here, not at import: the memory child runs without jax
        import jax

        jax.config.update("jax_enable_x64", True)
    candidates = [c for c in CANDIDATES.values()
                  if (not args.candidates or any(s.lower() in c.name.lower() for s in args.candidates))
                  and not any(s.lower() in c.name.lower() for s in args.skip)]
    if args.quick and not args.candidates:  # compile variants take a minute each to compile
        candidates = [c for c in candidates if c.cells is None]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "quick": args.quick, "machine": machine(), "versions": versions(), "source": source_state(),
              "load_before": [round(x, 2) for x in os.getloadavg()], "cells": []}
    out = args.out or RESULTS / ("solve_quick" if args.quick else "solve")
    picks: dict = {}  # case -> candidate -> rtol picked at the previous batch size
    result.update(training={}, memory={})
    if not args.no_training:  # training and memory first: the longest cells come last
        result["training"] = training_section(mode)
    if not args.no_memory:
        result["memory"] = memory_section(mode)
    for name, batch in [] if args.no_cells else cells_for(args):
        finish(result, out)  # written after every section: a run cut short keeps what it measured
        print(f"{name} B={batch}", flush=True)
        cell = run_cell(CASES[name](), batch, candidates, mode, picks.get(name) if batch > 1 else None)
        result["cells"].append(cell)
        picks[name] = {c: r["rtol"] for c, r in cell["candidates"].items() if "rtol" in r}
    print(finish(result, out))
    return 0


def finish(result: dict, out: Path) -> str:
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["goals"] = goals(result["cells"], result["training"])
    write(result, out)
    return markdown(result)


if __name__ == "__main__":
    sys.exit(main())
