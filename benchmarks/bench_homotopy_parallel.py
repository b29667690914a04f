"""A homotopy epoch with its coupled solve parallel in time against a vanilla epoch (issue 15, item 3: goal <= 1.5x).

    python benchmarks/bench_homotopy_parallel.py [--repeats 5] [--warmup 10] [--models lv_blackbox dandekar]
        [--tag homotopy_parallel]

Candidates, each its own copy of the model and its own AdamW (the homotopy benchmark's lr, 0.01), all interleaved in
one process, one thread: vanilla (lambda = 0), and homotopy at lambda = 1, 0.306, 0.056 with the coupled solve
parallel in time (Homotopy's default, warm-started from the candidate's previous epoch, whose parameters were one
AdamW step behind) and sequential (the method's definition, as bench_homotopy_cost measures it). The epoch is
bench_homotopy_cost's (loss at lambda, the uncoupled no-grad MSE where the loss is not it, backward; timed without
the optimizer step, which follows it untimed). Medians over repeats after `warmup` rounds (the parallel route cuts
its hard data intervals finer over its first epochs: the warm-up rounds' paired ratios are reported apart).

Checks, per model and lambda, at parameters five AdamW steps after a first (sequential) epoch: the parallel coupled
states and the sequential solve's against each other and against a reference (a float64 sequential solve at rtol
1e-10, atol 1e-12), as max |difference| / (atol + rtol |x|), and the loss gradient against the sequential solve's
backpropagated one (relative 2-norm of the difference). Writes benchmarks/results/<tag>.json
and .md.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_homotopy_cost import MODELS, SOLVER, Counter, run_meta, save, trainer

LAMBDAS = (1.0, 0.306, 0.056)


def candidates(name: str, tmp: Path, lambdas) -> dict:
    """(trainer, counter, lambda) per candidate, every model a copy of the same one."""
    model, path, options = MODELS[name](tmp)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def fresh(parallel: bool):
        m = type(model)()
        m.load_state_dict(state)
        tr = trainer(m, path, options, "auto", parallel)
        return tr, Counter(tr.model)

    out = {"vanilla|0.0": (*fresh(True), 0.0)}
    for lam in lambdas:
        for route in ("parallel", "sequential"):
            out[f"{route}|{lam}"] = (*fresh(route == "parallel"), lam)
    return out


def epoch(tr, lam: float, counter: Counter) -> dict:
    """One epoch without the optimizer step (bench_homotopy_cost's, without its solver counters: the no-grad
    evaluation may run natively, where they differ)."""
    counter.calls = 0
    start = time.perf_counter()
    tr.model.zero_grad(set_to_none=True)
    loss, mse = tr.method.loss(lam)
    if mse is None:
        mse = tr.evaluate(tr.model)
    loss.backward()
    return {"seconds": time.perf_counter() - start, "n_f": counter.calls, "loss": float(loss.detach())}


def step(tr):
    tr.optimizer.step()
    tr.optimizer.zero_grad(set_to_none=True)


def gradient(tr) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in tr.model.parameters() if p.grad is not None])


def check(name: str, tmp: Path, lam: float) -> dict:
    """Parallel against sequential at the same parameters (after five epochs, each followed by an AdamW step: the
    parallel route's nodes refined by then), warm start from the last epoch's states."""
    par, _, _ = candidates(name, tmp, [lam])[f"parallel|{lam}"]
    for _ in range(5):  # the first solve: sequential, it seeds the warm start; the next refine the nodes
        par.method.loss(lam)[0].backward()
        step(par)
    seq = type(par.model)()
    seq.load_state_dict(par.model.state_dict())
    p = par.problem
    g = p.groups[0]
    loss = par.method.loss(lam)[0]
    loss.backward()
    grad_par = gradient(par)
    in_time = par.method.in_time[0]
    nodes = in_time.nodes[in_time.rows]
    par.model.zero_grad(set_to_none=True)
    ys = p.solve(par.model, g, p.initial(par.model, g), g.t, "check", par.method.couplings[0], lam)
    seq_loss = p.cell_losses(par.model, g, ys, g.t, "check").sum() / int(g.mask.sum())
    seq_loss.backward()
    grad_seq = gradient(par)
    scale = SOLVER["atol"] + SOLVER["rtol"] * ys.detach().abs()
    reference = tight(par, lam).to(ys.dtype)
    return {"states_vs_sequential_per_tol": float(((nodes - ys.detach()).abs() / scale).max()),
            "parallel_vs_reference_per_tol": float(((nodes - reference).abs() / scale).max()),
            "sequential_vs_reference_per_tol": float(((ys.detach() - reference).abs() / scale).max()),
            "grad_rel_diff": float((grad_par - grad_seq).norm() / grad_seq.norm()),
            "loss_parallel": float(loss.detach()), "loss_sequential": float(seq_loss.detach()),
            "counts": dict(par.method.in_time[0].counts)}


@torch.no_grad()
def tight(tr, lam: float) -> torch.Tensor:
    """The coupled states of group 0 by a float64 sequential solve at rtol 1e-10, atol 1e-12 (the reference)."""
    p = tr.problem
    g = p.groups[0]
    model = copy.deepcopy(p.model).double()
    solver = p.coupled_solver
    p.coupled_solver = {**solver, "rtol": 1e-10, "atol": 1e-12}
    try:
        return p.solve(model, g, p.initial(p.model, g).double(), g.t.double(), "reference", tr.method.couplings[0],
                       lam)
    finally:
        p.coupled_solver = solver


def measure(name: str, repeats: int, warmup: int, lambdas) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        checks = {str(lam): check(name, Path(tmp), lam) for lam in lambdas}
        cands = candidates(name, Path(tmp), lambdas)
        rows: dict = {}
        warm: dict = {}
        for r in range(warmup + repeats):  # the first round also seeds the warm starts
            for key, (tr, counter, lam) in cands.items():
                row = epoch(tr, lam, counter)
                step(tr)
                (rows if r >= warmup else warm).setdefault(key, []).append(row)
        counts = {key: [{**c.counts, "members": c.shape[0] * c.shape[1]} for c in tr.method.in_time if c is not None]
                  for key, (tr, _, _) in cands.items() if key.startswith("parallel")}
    out = {}
    for key, runs in rows.items():
        out[key] = {"seconds_median": statistics.median(r["seconds"] for r in runs),
                    "seconds_all": [round(r["seconds"], 5) for r in runs], "n_f": [r["n_f"] for r in runs],
                    "loss": [r["loss"] for r in runs],
                    "warmup_seconds": [round(r["seconds"], 5) for r in warm.get(key, [])]}
        if key in counts:
            out[key]["in_time"] = counts[key]
    return {"checks": checks, "epochs": out}


def markdown(results: dict, meta: dict) -> str:
    lines = ["# Homotopy epoch cost, coupled solves parallel in time (issue 15 item 3)\n",
             f"{meta['date']}, {meta['machine']}, torch {meta['torch']}, 1 thread, load average {meta['load_before']} "
             f"before / {meta['load_after']} after, {meta['repeats']} interleaved repeats (medians) after "
             f"{meta['warmup']} warm-up rounds, solver auto, "
             f"rtol {SOLVER['rtol']}, atol {SOLVER['atol']}. Epoch = loss at lambda + uncoupled no-grad MSE "
             f"(lambda > 0) + backward, each candidate followed by its own AdamW step (lr 0.01, untimed), so the "
             f"parallel route's warm start is the last two epochs' states (extrapolated). Ratio = s/epoch / "
             f"vanilla's; paired ratio = the median over repeats of the ratio within a repeat (the candidates' epochs "
             f"of one repeat run seconds apart: less exposed to the load drifting); warm-up: the same over the warm-up "
             f"rounds but the first, while the parallel route refines its nodes. Flow evaluations: Newton "
             f"iterations (each one batched solve of all intervals) over all rounds; fallbacks: solves handed to the "
             f"sequential route; members: of the last solve (data intervals' pieces x trajectories), refinements: how "
             f"often pieces were halved.\n"]
    for name, res in results.items():
        lines += [f"\n## {name}\n", "| route | lambda | s/epoch | ratio | paired ratio | paired ratio, warm-up | RHS "
                  "calls (median) | flow evaluations / parallel solves / fallbacks | members / refinements |",
                  "|---|---|---|---|---|---|---|---|---|"]
        vanilla = res["epochs"]["vanilla|0.0"]
        base = vanilla["seconds_median"]
        for key, row in res["epochs"].items():
            paired = statistics.median(a / b for a, b in zip(row["seconds_all"], vanilla["seconds_all"]))
            warm = [a / b for a, b in zip(row["warmup_seconds"][1:], vanilla["warmup_seconds"][1:])]
            route, lam = key.split("|")
            counts = row.get("in_time")
            text, members = "–", "–"
            if counts:
                c = counts[0]
                text = f"{c['evaluations']} / {c['parallel']} / {c['fallback']} (+{c['sequential']} cold)"
                members = f"{c['members']} / {c['refinements']}"
            lines.append(f"| {route} | {lam} | {row['seconds_median']:.4f} | {row['seconds_median'] / base:.2f} | "
                         f"{paired:.2f} | {statistics.median(warm) if warm else float('nan'):.2f} | "
                         f"{statistics.median(row['n_f'])} | {text} | {members} |")
        lines += ["", "| lambda | states, max abs. difference / (atol + rtol abs(x)): parallel - sequential | "
                  "parallel - reference | sequential - reference | gradient: relative difference | loss parallel | "
                  "loss sequential |", "|---|---|---|---|---|---|---|"]
        for lam, c in res["checks"].items():
            lines.append(f"| {lam} | {c['states_vs_sequential_per_tol']:.3g} | "
                         f"{c['parallel_vs_reference_per_tol']:.3g} | {c['sequential_vs_reference_per_tol']:.3g} | "
                         f"{c['grad_rel_diff']:.3g} | "
                         f"{c['loss_parallel']:.10g} | {c['loss_sequential']:.10g} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--lambdas", nargs="+", type=float, default=list(LAMBDAS))
    ap.add_argument("--tag", default="homotopy_parallel")
    args = ap.parse_args()
    torch.set_num_threads(1)
    meta = {**run_meta(args.repeats), "warmup": args.warmup}
    save(args.tag, {name: measure(name, args.repeats, args.warmup, args.lambdas) for name in args.models}, meta,
         markdown)

if __name__ == "__main__":
    main()
