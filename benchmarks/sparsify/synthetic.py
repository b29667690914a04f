"""Benchmark 1 of the sparsify issue, scaled down: synthetic data with a known answer.

A mass-action generator network of four states (X1 -> X2 -> X3 -> X4, X1 + X3 -> X4, X4 degraded) produces
trajectories from random initial states (all four states measured, 1% Gaussian noise). Two specs start from it:

- refined: the true reactions plus 3 redundant ones;
- comprehensive: the true reactions plus 9 redundant conversions/degradations and two redundant latent states
  (L1, L2; no data column) with four reactions through them;

in two regimes: true sparsity (the redundant rates are exactly 0 in the generator) and quasi sparsity (0.02,
small but not zero). Methods:

- dense: the whole spec fitted (vanilla), nothing pruned;
- l1: one L1-penalised gated fit at a fixed lambda1 (the grid's middle), gates |w| < threshold pruned, no
  cross-validation, no state dropping, no refit (the gated model with the pruned gates set to 0 is evaluated);
- hgs: `hodec sparsify` (step 5): lambda1 cross-validated over trajectories, pruned, states dropped, refit.

(Steps 2-4 of the pipeline, MNODE / SCC merge / closure, are for neural specs and are not part of this
mechanistic benchmark.) Reported: test RMSE on held-out trajectories, edge (reaction) precision and recall
against the generator (quasi sparsity: the generator's non-zero-by-design reactions are the true ones), states
kept, effective params. Writes benchmarks/results/sparsify_synthetic.json and .md.

    python benchmarks/sparsify/synthetic.py --quick    # <= 2 minutes
    python benchmarks/sparsify/synthetic.py            # <= 10 minutes
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hodec.compiler import load_text, symbolic  # noqa: E402
from hodec.graph.prune import prune_spec  # noqa: E402
from hodec.training.data import Dataset, Trajectory  # noqa: E402
from hodec.training.sparsify import PenalisedTrainer, data_mse, effective_params, sparsify  # noqa: E402
from hodec.training.sparsify_config import load_sparsify_config  # noqa: E402

TRUE = {"r12": ("X1 -> X2", "k12 * X1", 0.8), "r23": ("X2 -> X3", "k23 * X2", 0.5),
        "r34": ("X3 -> X4", "k34 * X3", 0.3), "r134": ("X1 + X3 -> X4", "k134 * X1 * X3", 0.6),
        "r4": ("X4 ->", "k4 * X4", 0.2)}
REFINED_EXTRA = {"r13": ("X1 -> X3", "k13 * X1"), "r24": ("X2 -> X4", "k24 * X2"), "r31": ("X3 -> X1", "k31 * X3")}
COMPREHENSIVE_EXTRA = {**REFINED_EXTRA,
                       "r14": ("X1 -> X4", "k14 * X1"), "r21": ("X2 -> X1", "k21 * X2"),
                       "r32": ("X3 -> X2", "k32 * X3"), "r1": ("X1 ->", "k1 * X1"), "r2": ("X2 ->", "k2 * X2"),
                       "r3": ("X3 ->", "k3 * X3"),
                       "a1": ("X1 -> L1", "ka1 * X1"), "b1": ("L1 -> X4", "kb1 * L1"),
                       "a2": ("X2 -> L2", "ka2 * X2"), "b2": ("L2 -> X3", "kb2 * L2")}
STATES = ("X1", "X2", "X3", "X4")
SPEC_GUESS = 0.3  # every rate constant of a spec starts here (the true ones included): nothing is given away


def spec_text(name: str, extra: dict, values: dict | None = None, latent=()) -> str:
    lines = [f"model {name}"]
    reactions = {**{k: (eq, rate) for k, (eq, rate, _) in TRUE.items()}, **extra}
    for key, (_, rate) in reactions.items():
        param = rate.split(" *")[0]
        value = SPEC_GUESS if values is None else values.get(key, 0.0)
        lines.append(f"param {param} = {value!r} positive" if value > 0 else f"param {param} = 0.0")
    lines += [f"state {s} = 1" for s in STATES] + [f"state {s} = 0" for s in latent]
    lines += [f"reaction {key}: {eq} ; {rate}" for key, (eq, rate) in reactions.items()]
    lines += [f"observe {s.lower()} = {s}" for s in STATES[-1:]]
    return "\n".join(lines) + "\n"


def generate(extra: dict, quasi: float, n: int, seed: int, ts, noise: float, latent=()) -> Dataset:
    values = {k: v for k, (_, _, v) in TRUE.items()}
    values.update({k: quasi for k in extra})
    m = load_text(spec_text("Generator", extra, values, latent), "generator.hode")().double()
    rng = np.random.default_rng(seed)
    y0 = torch.zeros(n, len(m.state_names), dtype=torch.float64)
    y0[:, :4] = torch.as_tensor(rng.uniform(0.2, 2.0, size=(n, 4)))
    with torch.no_grad():
        ys = m.simulate(ts, y0=y0, method="rk4", step_size=0.05).numpy()  # [T, n, states]
    out = []
    for b in range(n):
        y = ys[:, b, :4].copy()
        if noise:
            y = y + noise * np.abs(y).mean(0) * rng.standard_normal(y.shape)
        y[0] = ys[0, b, :4]  # exact initial values (the fit starts from the data's first row)
        out.append(Trajectory(str(b), ts.numpy(), y, np.zeros((len(ts), 0))))
    return Dataset(STATES, (), out, f"generator seed {seed}")


def scores(kept: set, all_names, true_names) -> dict:
    tp = len(kept & true_names)
    return {"precision": tp / len(kept) if kept else 0.0, "recall": tp / len(true_names),
            "edges_kept": len(kept), "edges": len(all_names)}


def run_case(spec: str, train: Dataset, test: Dataset, cfg, true_names: set) -> dict:
    out = {}
    sm = symbolic(spec, "spec.hode")
    gated_class = load_text(spec, "spec.hode", gates=True)
    names = [row[0] for row in gated_class.gates_table]
    fit = cfg.fit

    # dense: the plain spec fitted
    start = time.perf_counter()
    torch.manual_seed(fit.seed)
    dense = load_text(spec, "spec.hode")()
    tr = PenalisedTrainer(dense, train, fit, 0.0, cfg.lambda2)
    tr.train()
    model = tr.result(evaluate=False).model
    out["dense"] = {"test_rmse": math.sqrt(data_mse(model, test, fit)), **scores(set(names), names, true_names),
                    "states_kept": len(dense.state_names), "params": effective_params(sm, model),
                    "seconds": round(time.perf_counter() - start, 1)}

    # L1 alone: one lambda1, threshold, no CV / state dropping / refit
    start = time.perf_counter()
    lam = cfg.lambda1[len(cfg.lambda1) // 2]
    torch.manual_seed(fit.seed)
    tr = PenalisedTrainer(gated_class(), train, fit, lam, cfg.lambda2)
    tr.train()
    gated = copy.deepcopy(tr.model)
    pruned = {n for n, w in gated.gates.items() if abs(w) < cfg.threshold}
    gated.set_gates({n: 0.0 for n in pruned})
    kept = set(names) - pruned
    pruning = prune_spec(spec, pruned, STATES, "spec.hode")
    out["l1"] = {"lambda1": lam, "test_rmse": math.sqrt(data_mse(gated, test, fit)),
                 **scores(kept, names, true_names), "states_kept": len(gated.state_names),
                 "params": effective_params(symbolic(pruning.source, "spec.hode"), load_text(pruning.source,
                                                                                             "spec.hode")()),
                 "seconds": round(time.perf_counter() - start, 1)}

    # HGS step 5: hodec sparsify
    start = time.perf_counter()
    r = sparsify(spec, train, cfg, filename="spec.hode", test=test)
    kept = {e["name"] for e in r.edges if e["kept"]}
    out["hgs"] = {"lambda1": r.lambda1, "test_rmse": math.sqrt(r.test_mse) if r.test_mse is not None else None,
                  **scores(kept, names, true_names), "states_kept": len(r.states_kept), "params": r.params_after,
                  "path": [{k: e[k] for k in ("lambda1", "val_mse", "edges_kept")} for e in r.path],
                  "seconds": round(time.perf_counter() - start, 1)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N and few epochs (<= 2 minutes)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sparsify_synthetic"))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    if args.quick:
        n_train, n_test, epochs, grid, folds = 12, 40, 150, [0.0, 1e-3, 1e-2], 2
    else:
        n_train, n_test, epochs, grid, folds = 100, 400, 300, [0.0, 1e-4, 1e-3, 1e-2], 3
    ts = torch.linspace(0, 8, 9, dtype=torch.float64)
    cfg = load_sparsify_config({"method": "vanilla", "epochs": epochs, "lr": 0.1, "lambda1": grid, "folds": folds,
                                "lambda2": 1e-4, "threshold": 0.05, "refit_epochs": epochs // 2,
                                "solver": {"method": "rk4", "step_size": 0.4}})
    true_names = set(TRUE)
    results = {"settings": {"n_train": n_train, "n_test": n_test, "epochs": epochs, "lambda1": grid,
                            "folds": folds, "noise": 0.01, "quick": args.quick, "times": ts.tolist()},
               "cases": []}
    start = time.perf_counter()
    for spec_name, extra, latent in (("refined", REFINED_EXTRA, ()), ("comprehensive", COMPREHENSIVE_EXTRA,
                                                                       ("L1", "L2"))):
        spec = spec_text(spec_name.capitalize(), extra, latent=latent)
        for regime, quasi in (("true", 0.0), ("quasi", 0.02)):
            train = generate(extra, quasi, n_train, 1, ts, 0.01, latent)
            test = generate(extra, quasi, n_test, 2, ts, 0.0, latent)
            case = run_case(spec, train, test, cfg, true_names)
            results["cases"].append({"spec": spec_name, "sparsity": regime, **case})
            for method, row in case.items():
                print(f"{spec_name:13s} {regime:5s} {method:5s} rmse {row['test_rmse']:.4g} "
                      f"P {row['precision']:.2f} R {row['recall']:.2f} edges {row['edges_kept']}/{row['edges']} "
                      f"states {row['states_kept']} params {row['params']} ({row['seconds']} s)", flush=True)
    results["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(f"{results['seconds']} s -> {out}.json/.md")
    return 0


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [f"# Sparsify, synthetic benchmark ({'quick' if s['quick'] else 'full'})", "",
             f"N train {s['n_train']}, N test {s['n_test']}, {s['epochs']} epochs, lambda1 grid {s['lambda1']}, "
             f"{s['folds']} folds, noise {s['noise']}; {results['seconds']} s in all. Edges = gated reactions; "
             f"true edges = the generator's 5 reactions.", "",
             "| spec | sparsity | method | lambda1 | test RMSE | precision | recall | edges kept | states kept | "
             "effective params |", "|---|---|---|---|---|---|---|---|---|---|"]
    for case in results["cases"]:
        for method in ("dense", "l1", "hgs"):
            r = case[method]
            lam = r.get("lambda1")
            lines.append(f"| {case['spec']} | {case['sparsity']} | {method} | {'-' if lam is None else f'{lam:g}'} | "
                         f"{r['test_rmse']:.4g} | {r['precision']:.2f} | {r['recall']:.2f} | "
                         f"{r['edges_kept']}/{r['edges']} | {r['states_kept']} | {r['params']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
