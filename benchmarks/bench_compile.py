"""Wall time of `hodec compile` as a whole process, for random mass-action networks of three sizes.

Each size runs `python -m hodec.cli compile net.hode -o net.py` in a fresh subprocess (interpreter start-up,
imports, parse, checks, SymPy lowering, vectorisation, Jinja2 rendering and the write included), --runs times
(default 5) after one untimed warm-up (file-system caches), and reports the median wall time, and the median
CPU time (user + system) of the process, which other load on the machine inflates much less. Goals (from the issue):
<= 1 s at N=100/R=300 and <= 5 s at N=1000/R=3000. Results: benchmarks/results/compile.json and compile.md.

    python -m benchmarks.bench_compile            # 5 runs per size
    python -m benchmarks.bench_compile --runs 3
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.networks import SIZES, random_network  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {(100, 300): 1.0, (1000, 3000): 5.0}


def time_compile(spec: Path, out: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall times, and CPU times (user + system of the child), of `runs` compiles after one warm-up."""
    cmd = [sys.executable, "-m", "hodec.cli", "compile", str(spec), "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    walls, cpus = [], []
    for i in range(runs + 1):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"hodec compile failed ({done.returncode}):\n{done.stderr}")
        if i:  # the first run only warms caches
            walls.append(elapsed)
            cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return walls, cpus


def baseline(runs: int) -> float:
    """Median start-up of a bare `python -c pass`, to read the numbers against."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_states, n_reactions in SIZES:
            net = random_network(n_states, n_reactions, seed=0)
            spec = Path(tmp) / f"{net.name}.hode"
            spec.write_text(net.hode)
            out = Path(tmp) / f"{net.name}.py"
            load = os.getloadavg()[0]
            times, cpus = time_compile(spec, out, args.runs)
            goal = GOALS.get((n_states, n_reactions))
            med, cpu = statistics.median(times), statistics.median(cpus)
            rows.append(dict(n_states=n_states, n_reactions=n_reactions, median_s=med, min_s=min(times),
                             max_s=max(times), runs=times, cpu_median_s=cpu, cpu_runs=cpus, load_average=load,
                             goal_s=goal, met=None if goal is None else med <= goal,
                             output_kb=out.stat().st_size / 1024))
            print(f"N={n_states:5d} R={n_reactions:5d}: median {med:.3f} s (min {min(times):.3f}, "
                  f"max {max(times):.3f}), CPU {cpu:.3f} s, load {load:.1f}"
                  + ("" if goal is None else f"  goal <= {goal:g} s: {'met' if med <= goal else 'MISSED'}"),
                  flush=True)
    python_start = baseline(args.runs)
    info = {
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    lines = ["| N / R | wall median (s) | min (s) | max (s) | CPU median (s) | load avg | goal (wall) | met | "
             "output (KiB) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        goal = "" if r["goal_s"] is None else f"<= {r['goal_s']:g} s"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['n_states']} / {r['n_reactions']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{r['max_s']:.3f} | {r['cpu_median_s']:.3f} | {r['load_average']:.1f} | {goal} | {met} | "
                     f"{r['output_kb']:.0f} |")
    print("\n" + "\n".join(lines) + f"\n\n(bare `python -c pass`: {python_start:.3f} s)")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "compile.json").write_text(json.dumps(
            dict(machine=info, runs_per_size=args.runs, python_startup_s=python_start, rows=rows), indent=2) + "\n")
        md = [
            "# Compile benchmark: `python -m hodec.cli compile X.hode -o X.py`, whole process",
            "",
            f"- machine: `{info['processor']}`, {info['cores']} cores; Python {info['python']}, "
            f"torch {info['torch']}; date {info['date']}",
            f"- median of {args.runs} runs after one warm-up; bare interpreter start-up "
            f"(`python -c pass`): {python_start:.3f} s",
            "- CPU = user + system time of the compile process; wall exceeds it when other processes compete for "
            f"the {info['cores']} cores (load avg = 1-minute load average when the size started)",
            "",
            *lines,
            "",
        ]
        (RESULTS / "compile.md").write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
