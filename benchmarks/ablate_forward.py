"""Before/after of the performance changes in hodec, measured the way bench_forward.py measures (interleaved, 1
thread, float32, medians of steady-state per-call means), with each change switched off by monkeypatching:

  g0  all three off: parameter_values() through its general loop, one group per rate-law shape (k*A and k*A*B
      evaluated and concatenated separately), accumulation by dense matmul / index_add at every batch size;
  g1  + parameter_values() returns raw_free directly when every param is free;
  g2  + groups of nested products merged into one (codegen/vectorize.py _merge_products);
  g3  + CSR accumulation for many-row batches (runtime/model.py accumulate) = hodec as it is;
  a   the hand-written vectorised reference of bench_forward.py.

    python -m benchmarks.ablate_forward [--quick] [--sizes 100/300] [--batches 1,1024]

Writes benchmarks/results/ablation.json and ablation.md.
"""
from __future__ import annotations

import sys

from benchmarks.bench_forward import reexec_with_malloc_env

if __name__ == "__main__":
    reexec_with_malloc_env(__spec__, sys.argv[0])

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

import hodec  # noqa: E402
from benchmarks.bench_forward import (BATCHES, MODES, RESULTS, Handwritten, fmt, machine,  # noqa: E402
                                      time_cell)
from benchmarks.networks import SIZES, random_network  # noqa: E402
from hodec.codegen import vectorize  # noqa: E402
from hodec.compiler import load_source  # noqa: E402

VARIANTS = ("g0", "g1", "g2", "g3")


def variant(net, name: str):
    merge = vectorize._merge_products
    if name in ("g0", "g1"):
        vectorize._merge_products = lambda scope, groups: list(groups)
    try:
        model = load_source(hodec.compile_source(net.hode), f"ablate_{net.name}_{name}")()
    finally:
        vectorize._merge_products = merge
    if name == "g0":
        model._free_only = False
    if name in ("g0", "g1", "g2"):
        model._sparse_min_rows = None
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes")
    ap.add_argument("--batches")
    ap.add_argument("--budget", type=float)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [tuple(int(v) for v in s.split("/")) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else list(BATCHES)
    budget = args.budget if args.budget is not None else (1.0 if args.quick else 6.0)
    min_reps, max_reps = (3, 100) if args.quick else (7, 1000)
    head = "| N / R | batch | mode | " + " | ".join(f"{v} (µs)" for v in VARIANTS) + " | a (µs) | a/g0 | a/g3 |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    print(head, flush=True)
    rows = []
    for n_states, n_reactions in sizes:
        net = random_network(n_states, n_reactions, seed=0)
        mods = {v: variant(net, v) for v in VARIANTS}
        mods["a"] = Handwritten(net)
        with torch.no_grad():
            y = torch.rand(3, n_states) + 0.1
            ref = mods["g0"](torch.tensor(0.0), y)
            for v in VARIANTS[1:]:
                assert torch.allclose(mods[v](torch.tensor(0.0), y), ref, rtol=1e-5, atol=1e-6), v
        for batch in batches:
            for mode in MODES:
                med, reps = time_cell(mods, net, batch, mode, budget, min_reps, max_reps)
                rows.append(dict(n_states=n_states, n_reactions=n_reactions, batch=batch, mode=mode, median_us=med,
                                 reps=reps))
                line = (f"| {n_states} / {n_reactions} | {batch} | {mode} | "
                        + " | ".join(fmt(med[v]) for v in VARIANTS)
                        + f" | {fmt(med['a'])} | {med['a'] / med['g0']:.2f} | {med['a'] / med['g3']:.2f} |")
                lines.append(line)
                print(line, flush=True)
    if not args.no_write:
        info = machine()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ablation.json").write_text(json.dumps(dict(machine=info, budget_s=budget, rows=rows), indent=2)
                                               + "\n")
        doc = __doc__.split("\n\n    python")[0]
        (RESULTS / "ablation.md").write_text("\n".join([
            "# Ablation: the generated module before/after each performance change", "", "```", doc, "```", "",
            f"- machine: `{info['processor']}` ({info['cpu_model']}), {info['cores']} cores; torch {info['torch']}; "
            f"1 thread, float32; {info['date']}; {budget:g} s per cell", "", *lines, ""]))
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"{time.perf_counter() - t0:.0f} s")
    sys.exit(code)
