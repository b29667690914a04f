"""Forward / forward+backward speed of a hodec-generated module against two hand-written references.

Candidates, all evaluating dy/dt of the same random mass-action network (benchmarks/networks.py):

  g  the module hodec generates from the network's .hode spec;
  a  a hand-written vectorised module, as a competent engineer would write it: the rate constants as one
     nn.Parameter vector (reactions sorted unimolecular-first so each group's constants are a contiguous slice),
     reactant columns gathered with index_select, multiplied, and accumulated with a dense stoichiometry matmul
     (R*N <= 40,000) or an index_add scatter (larger networks);
  b  a naive module: a Python loop over reactions, each rate added to each affected state's derivative with
     per-state tensor ops, then torch.stack.

Cells: N=10/R=20, N=100/R=300, N=1000/R=3000 x batch 1, 64, 1024; modes:
  fwd      forward(t, y) under torch.no_grad() (what an ODE solver does at inference);
  fwd+bwd  forward(t, y) then dydt.sum().backward(), gradients w.r.t. the parameters and y.
float32, torch.set_num_threads(1). The candidates run interleaved in one process: each repetition gives g, a and
b one turn each (rotating which goes first); a turn is one untimed call (the naive loop flushes the caches, and
whoever runs right after it would otherwise pay for that) and then enough timed calls to last about 2 ms, whose
mean is the repetition's sample. A cell repeats until its time budget or repetition cap is spent; the table
reports the median sample per candidate (µs per call, steady state, as inside an ODE solve).
Results: benchmarks/results/forward.json and forward.md.

    python -m benchmarks.bench_forward            # full run, under 10 minutes
    python -m benchmarks.bench_forward --quick    # under a minute, for a smoke check

Run with MALLOC_MMAP_THRESHOLD_=4294967296 in the environment: otherwise glibc serves every large tensor with a
fresh mmap and unmaps it on free, so each call page-faults its buffers in again, which adds noise and cost
unrelated to the code under test. Setting the threshold also freezes glibc's trim threshold at 128 KiB, so
freed memory at the top of the heap would still go back to the OS after every call; the script therefore also
sets MALLOC_TRIM_THRESHOLD_=68719476736 (at batch 1024, N=1000 this alone is a 2-10x difference for every
candidate). It re-executes itself with both set if either is missing:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 python -m benchmarks.bench_forward
"""
from __future__ import annotations

import os
import sys

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def reexec_with_malloc_env(spec, script: str):
    """Re-execute this process with MALLOC_ENV set (glibc reads it only at start-up); no-op once set."""
    if all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    os.environ.update(MALLOC_ENV)
    if spec is not None:
        argv = [sys.executable, "-m", spec.name, *sys.argv[1:]]
    else:
        argv = [sys.executable, os.path.abspath(script), *sys.argv[1:]]
    sys.stdout.flush()
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    reexec_with_malloc_env(__spec__, sys.argv[0])

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.networks import SIZES, Network, random_network  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 64, 1024)
MODES = ("fwd", "fwd+bwd")
NAMES = ("g", "a", "b")
DENSE_LIMIT_HANDWRITTEN = 40_000


# ---------------------------------------------------------------- candidates
def generated(net: Network) -> nn.Module:
    import hodec
    from hodec.compiler import load_source

    cls = load_source(hodec.compile_source(net.hode, f"{net.name}.hode"), f"bench_{net.name}")
    return cls()


class Handwritten(nn.Module):
    """Vectorised mass action: k sorted by molecularity (contiguous slices), gathered columns, matmul/scatter."""

    def __init__(self, net: Network):
        super().__init__()
        order = sorted(range(net.n_reactions), key=lambda r: len(net.reactants[r]))  # stable: uni, then bi
        position = {r: i for i, r in enumerate(order)}
        uni = [r for r in order if len(net.reactants[r]) == 1]
        bi = [r for r in order if len(net.reactants[r]) == 2]
        self.n_uni = len(uni)
        self.n_states = net.n_states
        self.k = nn.Parameter(torch.tensor([net.rates[r] for r in order]))
        long = dict(dtype=torch.long)
        self.register_buffer("uni_a", torch.tensor([net.reactants[r][0] for r in uni], **long))
        self.register_buffer("bi_a", torch.tensor([net.reactants[r][0] for r in bi], **long))
        self.register_buffer("bi_b", torch.tensor([net.reactants[r][1] for r in bi], **long))
        triples = [(position[r], s, c) for r, s, c in net.stoichiometry()]
        self.dense = net.n_reactions * net.n_states <= DENSE_LIMIT_HANDWRITTEN
        if self.dense:
            S = torch.zeros(net.n_reactions, net.n_states)
            for r, s, c in triples:
                S[r, s] += c
            self.register_buffer("S", S)
        else:
            r, s, c = zip(*triples)
            self.register_buffer("st_flux", torch.tensor(r, **long))
            self.register_buffer("st_state", torch.tensor(s, **long))
            self.register_buffer("st_coef", torch.tensor(c, dtype=torch.float32))

    def forward(self, t, y):
        k, n = self.k, self.n_uni
        flux = torch.cat([
            k[:n] * y.index_select(-1, self.uni_a),
            k[n:] * y.index_select(-1, self.bi_a) * y.index_select(-1, self.bi_b),
        ], -1)
        if self.dense:
            return flux @ self.S
        out = y.new_zeros(y.shape)
        return out.index_add_(-1, self.st_state, flux.index_select(-1, self.st_flux) * self.st_coef)


class Naive(nn.Module):
    """One Python iteration per reaction; per-state derivative tensors, stacked at the end."""

    def __init__(self, net: Network):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(net.rates))
        self.n_states = net.n_states
        self.reactants = net.reactants
        self.effects = [[] for _ in range(net.n_reactions)]
        for r, s, c in net.stoichiometry():
            self.effects[r].append((s, float(c)))

    def forward(self, t, y):
        x = [y[..., j] for j in range(self.n_states)]
        d = [torch.zeros_like(x[0]) for _ in range(self.n_states)]
        for r, ins in enumerate(self.reactants):
            rate = self.k[r] * x[ins[0]]
            if len(ins) == 2:
                rate = rate * x[ins[1]]
            for s, c in self.effects[r]:
                d[s] = d[s] + rate if c == 1.0 else d[s] - rate if c == -1.0 else d[s] + c * rate
        return torch.stack(d, -1)


def candidates(net: Network) -> dict:
    return {"g": generated(net), "a": Handwritten(net), "b": Naive(net)}


# ---------------------------------------------------------------- checks and timing
def check_agree(mods: dict, net: Network):
    """All three compute the same dy/dt and the same gradient w.r.t. y and the rate constants."""
    y0 = torch.rand(3, net.n_states, generator=torch.Generator().manual_seed(1)) + 0.1
    outs, grads_y, grads_k = {}, {}, {}
    for name, m in mods.items():
        y = y0.clone().requires_grad_(True)
        out = m(torch.tensor(0.0), y)
        (out * torch.linspace(0.5, 1.5, net.n_states)).sum().backward()
        outs[name], grads_y[name] = out.detach(), y.grad
        grads_k[name] = rate_gradient(name, m, net)
        m.zero_grad(set_to_none=True)
    for name in ("a", "b"):
        for what, d in (("dy/dt", outs), ("d/dy", grads_y), ("d/dk", grads_k)):
            if not torch.allclose(d["g"], d[name], rtol=1e-4, atol=1e-6):
                raise AssertionError(f"{net.name}: {name} disagrees with g in {what}")


def rate_gradient(name: str, m: nn.Module, net: Network) -> torch.Tensor:
    """The gradient w.r.t. k_0..k_{R-1} in reaction order, whatever each module's internal layout."""
    if name == "g":
        return torch.stack([m.raw_free.grad[m._param_index[f"k{r}"]] for r in range(net.n_reactions)])
    if name == "a":
        order = sorted(range(net.n_reactions), key=lambda r: len(net.reactants[r]))
        g = torch.empty(net.n_reactions)
        g[torch.tensor(order)] = m.k.grad
        return g
    return m.k.grad.clone()


def step(m: nn.Module, t, y, mode: str):
    if mode == "fwd":
        with torch.no_grad():
            m(t, y)
    else:
        m(t, y).sum().backward()


def prepare(m: nn.Module, y: torch.Tensor):
    for p in m.parameters():
        p.grad = None
    y.grad = None


def time_cell(mods: dict, net: Network, batch: int, mode: str, budget: float, min_reps: int, max_reps: int,
              target: float = 2e-3):
    """Median µs per call of each candidate. A repetition runs every candidate once, in rotating order; each
    candidate's turn is one untimed call (so no candidate pays for the cold caches another one left behind)
    followed by `number` timed calls, `number` chosen per candidate so that a turn takes about `target` s."""
    y = (torch.rand(batch, net.n_states, generator=torch.Generator().manual_seed(batch)) + 0.1)
    y.requires_grad_(mode != "fwd")
    t = torch.tensor(0.0)
    names = list(mods)
    number = {}
    for n in names:  # warm-up, and calibration of `number`
        m = mods[n]
        for _ in range(3):
            prepare(m, y)
            step(m, t, y, mode)
        t0 = time.perf_counter()
        prepare(m, y)
        step(m, t, y, mode)
        number[n] = max(1, min(1000, int(target / max(time.perf_counter() - t0, 1e-7))))
    samples = {n: [] for n in names}
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        rep = 0
        while rep < max_reps and (rep < min_reps or time.perf_counter() - start < budget):
            rotation = names[rep % len(names):] + names[:rep % len(names)]
            for n in rotation:
                m, k = mods[n], number[n]
                prepare(m, y)
                step(m, t, y, mode)
                elapsed = 0
                for _ in range(k):
                    prepare(m, y)
                    t0 = time.perf_counter_ns()
                    step(m, t, y, mode)
                    elapsed += time.perf_counter_ns() - t0
                samples[n].append(elapsed / k / 1e3)
            rep += 1
    finally:
        gc.enable()
    return {n: statistics.median(s) for n, s in samples.items()}, rep


# ---------------------------------------------------------------- reporting
def machine() -> dict:
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        **{k: os.environ.get(k) for k in MALLOC_ENV},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def fmt(us: float) -> str:
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def table(rows: list) -> list[str]:
    head = "| N / R | batch | mode | g (µs) | a (µs) | b (µs) | a/g | b/g | reps |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        m = r["median_us"]
        lines.append(f"| {r['n_states']} / {r['n_reactions']} | {r['batch']} | {r['mode']} | {fmt(m['g'])} | "
                     f"{fmt(m['a'])} | {fmt(m['b'])} | {r['a_over_g']:.2f} | {r['b_over_g']:.1f} | {r['reps']} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short budgets (< 1 minute in all)")
    ap.add_argument("--sizes", help="comma-separated N/R pairs, e.g. 10/20,100/300 (default: all three)")
    ap.add_argument("--batches", help="comma-separated batch sizes (default: 1,64,1024)")
    ap.add_argument("--budget", type=float, help="seconds per cell (default 13, or 1 with --quick)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    sizes = [tuple(int(v) for v in s.split("/")) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else list(BATCHES)
    budget = args.budget if args.budget is not None else (1.0 if args.quick else 13.0)
    min_reps, max_reps = (3, 100) if args.quick else (7, 1000)
    info = machine()
    print(f"# {info['cpu_model'] or info['processor']}, {info['cores']} cores, torch {info['torch']}, "
          f"1 thread, float32, budget {budget:g}s/cell", flush=True)
    rows, started = [], time.perf_counter()
    for n_states, n_reactions in sizes:
        net = random_network(n_states, n_reactions, seed=0)
        mods = candidates(net)
        check_agree(mods, net)
        for batch in batches:
            for mode in MODES:
                med, reps = time_cell(mods, net, batch, mode, budget, min_reps, max_reps)
                row = dict(n_states=n_states, n_reactions=n_reactions, batch=batch, mode=mode, median_us=med,
                           a_over_g=med["a"] / med["g"], b_over_g=med["b"] / med["g"], reps=reps)
                rows.append(row)
                print(table([row])[-1], flush=True)
    elapsed = time.perf_counter() - started
    lines = table(rows)
    print("\n" + "\n".join(lines))
    print(f"\n{elapsed:.0f} s")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        payload = dict(machine=info, budget_s=budget, quick=args.quick, elapsed_s=elapsed, rows=rows,
                       candidates={"g": "hodec-generated", "a": "hand-written vectorised", "b": "naive loop"})
        (RESULTS / "forward.json").write_text(json.dumps(payload, indent=2) + "\n")
        md = [
            "# Forward benchmark: hodec-generated (g) vs hand-written vectorised (a) vs naive loop (b)",
            "",
            f"- machine: `{info['processor']}` ({info['cpu_model']}), {info['cores']} cores; "
            f"torch {info['torch']}, Python {info['python']}; 1 thread, float32",
            f"- date: {info['date']}; " + ", ".join(f"{k}={info[k]}" for k in MALLOC_ENV),
            f"- medians over interleaved repetitions, {budget:g} s per cell{' (--quick)' if args.quick else ''}; "
            f"fwd under no_grad, fwd+bwd = forward then `dydt.sum().backward()` (grads w.r.t. params and y)",
            "- a/g, b/g > 1 means the generated module is faster",
            "",
            *lines,
            "",
        ]
        (RESULTS / "forward.md").write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
