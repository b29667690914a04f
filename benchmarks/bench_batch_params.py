"""Cost of per-sample parameters: forward(t, y) with every batch member reading its own params against the same
forward with shared params (issue 15, item 1; goal: at most 1.2x at batch 64 and 1024).

Cases: specs/sir.hode (a neural slot; positive, bounded and fixed params; beta, gamma and N per-sample) and the
random mass-action network N=100/R=300 of benchmarks/networks.py (all 300 rate constants per-sample, set as one
[B, P] table with set_params_table). float32, torch.set_num_threads(1), under torch.no_grad() (as inside a
solve). Shared and per-sample run interleaved (alternating which goes first); a repetition's sample is the mean of
enough calls to last about 2 ms; the table gives median µs per call and the ratio per-sample / shared.
Results: benchmarks/results/bench_batch_params.json and .md.

    python -m benchmarks.bench_batch_params            # about a minute
"""
from __future__ import annotations

import sys

from benchmarks.bench_forward import reexec_with_malloc_env

if __name__ == "__main__":
    reexec_with_malloc_env(__spec__, sys.argv[0])

import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import hodec  # noqa: E402
from benchmarks.networks import random_network  # noqa: E402
from hodec.compiler import load_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPECS = Path(__file__).resolve().parent.parent / "specs"
BATCHES = (64, 1024)
REPETITIONS = 31


def sir_pair(batch: int):
    cls = hodec.load(SPECS / "sir.hode")
    torch.manual_seed(0)
    shared = cls()
    per_sample = cls(beta=torch.linspace(0.2, 0.5, batch), gamma=torch.linspace(0.05, 0.4, batch),
                     N=torch.linspace(500.0, 4000.0, batch))
    per_sample.load_state_dict(shared.state_dict(), strict=False)  # the same neural slot
    return shared, per_sample


def network_pair(batch: int):
    net = random_network(100, 300, seed=0)
    cls = load_text(net.hode, "network.hode")
    shared = cls()
    per_sample = cls()
    rates = torch.tensor(net.rates)
    per_sample.set_params_table(rates * torch.linspace(0.5, 1.5, batch)[:, None], [f"k{i}" for i in range(300)])
    return shared, per_sample


def sample(model, t, y) -> float:
    model(t, y)  # untimed: warm the caches
    calls, start = 0, time.perf_counter()
    while True:
        model(t, y)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed > 2e-3:
            return elapsed / calls * 1e6


def cell(make, batch: int) -> dict:
    shared, per_sample = make(batch)
    y = shared.initial_state(batch=(batch,)).detach().clone()
    t = torch.tensor(0.0)
    times = {"shared": [], "per_sample": []}
    with torch.no_grad():
        for rep in range(REPETITIONS):
            order = ("shared", "per_sample") if rep % 2 == 0 else ("per_sample", "shared")
            for name in order:
                times[name].append(sample(shared if name == "shared" else per_sample, t, y))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {**{f"{k}_us": round(v, 2) for k, v in medians.items()},
            "ratio": round(medians["per_sample"] / medians["shared"], 3)}


def main():
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    results = []
    for case, make in (("sir", sir_pair), ("network N=100/R=300", network_pair)):
        for batch in BATCHES:
            row = {"case": case, "batch": batch, **cell(make, batch)}
            print(row, flush=True)
            results.append(row)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "load": os.getloadavg(), "threads": 1, "repetitions": REPETITIONS}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_batch_params.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    lines = [f"# Per-sample vs shared params, forward (µs per call, median; {meta['date']}, load "
             f"{', '.join(f'{x:.2f}' for x in meta['load'])}, torch {meta['torch']}, 1 thread)", "",
             "| case | batch | shared | per-sample | ratio |", "|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['batch']} | {r['shared_us']} | {r['per_sample_us']} | {r['ratio']} |"
              for r in results]
    (RESULTS / "bench_batch_params.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
