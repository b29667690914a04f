"""`hodec sparsify`: structure-aware sparsification (step 5 of HGS, Zou & Tian, arXiv 2505.18996).

1. Compile the spec with one gate per prunable edge (reaction, der term, residual-slot argument; `keep` edges are
   never gated; reaction and term gates are kept >= 0 by projection after each step) and train with
       loss = data MSE / s + lambda1 * sum |w| + lambda2 * (||Theta||^2 + ||phi - phi0||^2),
   s the variance of the training data (so the lambdas are unit-free), Theta the slot weights, phi the
   mechanistic params in unconstrained coordinates (free, log, logit) and phi0 their spec values (so a gate
   cannot be evaded by growing a rate constant, and the spec acts as the prior). The trainer minimises s times
   this (the data MSE plus the scaled penalty: the same minimiser, and Adam's steps do not see the factor).
2. lambda1 is chosen along the grid `lambda1` by K-fold cross-validation over trajectories (each trajectory in
   one validation fold; fewer trajectories than folds: leave-one-out). With warm_start (default) the path is
   warm-started (glmnet's device, but run from the dense end): the grid in increasing order, each lambda1's fit
   starting from the previous one's final epoch, so the sparser models continue the denser ones' training
   instead of starting afresh (after a failed fit the next starts from the last good one). Selection one_se
   (default) takes the largest lambda1 whose pooled validation MSE exceeds the lowest by at most one standard
   error of the difference (paired over validation trajectories), selection min the lowest (ties to the larger,
   sparser lambda1). With cv_refit (default) a fold's model is first refit as its pruned spec would be (pruned
   gates at 0, no L1; a relaxed lasso), else the L1 model's final epoch is scored as it is.
3. The model trained on all data with that lambda1 (its final epoch: the penalised objective's end point, not
   the best-MSE epoch, which would be the densest; with warm_start, the end of the path up to that lambda1 on all
   data) gives the gates; every gate with |w| < threshold is pruned.
4. hodec.graph.prune.prune_spec removes the pruned reactions, terms and slot arguments and (drop_states, the
   default) every state that no longer reaches an observable or a state with a data column.
5. The pruned spec (compiled without gates) starts from the trained values (params by name; slot weights by
   argument and output name, each kept argument's gate folded into the first layer, each kept reaction's or
   term's gate folded into its rate constant where that is exact: see folded_gates) and is refit without the L1
   term (lambda2 kept) for `refit_epochs` at `refit_lr` (default lr / 10); its best epoch (data MSE) is written
   back into RUNDIR/pruned.hode.

Effective parameter counts (params_before/params_after) are the trainable spec params read by some rate,
initial value or observable (through lets and neural calls) plus every neural slot weight; gates not counted.
"""
from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..errors import HodecError
from .data import Dataset, read_data
from .fit import FitError, Trainer
from .run import claim_rundir
from .sparsify_config import SparsifyConfig, load_sparsify_config

WHO = "hodec sparsify"
OUTPUTS = ("report.json", "pruned.hode", "graph.png", "fit.png", "checkpoint.pt")
CHECKPOINT_FORMAT = "hodec-sparsify-1"


class PenalisedTrainer(Trainer):
    """The Trainer with the sparsify penalty s * (lambda1 sum|w| + lambda2 (||Theta||^2 + ||phi - phi0||^2)), s
    the variance of the data it trains on (Dataset.variance): the lambdas weigh against the MSE / s, a unit-free
    data term, so one lambda grid suits data in any units."""

    def __init__(self, model, data, config, lambda1: float = 0.0, lambda2: float = 0.0, phi0=None, inputs=None):
        super().__init__(model, data, config, inputs)
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.scale = self.data.variance
        ref = self.model.raw_parameters().detach()
        self.phi0 = ref.clone() if phi0 is None else torch.as_tensor(phi0, dtype=ref.dtype).clone()
        # a reaction's or term's gate scales it between 0 (pruned) and its fitted size and never reverses it (a
        # negative gate would also not fold into a positive rate constant for the refit); an argument's sign is
        # the network's business
        rows = getattr(self.model, "gates_table", ())
        gates = getattr(self.model, "gate_weights", None)
        self.signed = torch.tensor([kind != "neural_input" for _, kind in rows], dtype=torch.bool,
                                   device=None if gates is None else gates.device)

    def step(self) -> dict:
        entry = super().step()
        if self.signed.any():  # projected gradient step onto w >= 0 for the signed gates
            with torch.no_grad():
                w = self.model.gate_weights
                w.copy_(torch.where(self.signed, w.clamp(min=0.0), w))
        return entry

    def penalty(self):
        m = self.model
        total = None
        gates = getattr(m, "gate_weights", None)
        if self.lambda1 and gates is not None and gates.numel():
            total = self.lambda1 * gates.abs().sum()
        if self.lambda2:
            prior = ((m.raw_parameters() - self.phi0) ** 2).sum()
            for p in m.slot_modules.parameters():
                prior = prior + (p * p).sum()
            total = self.lambda2 * prior if total is None else total + self.lambda2 * prior
        return None if total is None else self.scale * total


@dataclass
class SparsifyResult:
    lambda1: float
    path: list  # per lambda1: lambda1, val_mse, edges_kept, edges_kept_folds
    edges: list  # per gate: kind, name, source, target, gate, kept
    gated_model: nn.Module  # the L1 model trained on all data with the chosen lambda1 (final epoch)
    pruned_names: list
    states_kept: tuple
    states_dropped: tuple
    pruned_source: str  # prune_spec's text, values not yet written back
    fitted_source: str  # the text of pruned.hode (refitted values written back)
    model: nn.Module  # the refitted pruned model
    refit: object  # FitResult of the refit
    refit_trainer: Trainer
    params_before: int
    params_after: int
    train_mse_sparse: Optional[float]  # data MSE of the L1 model with the pruned gates at 0, before the refit
    data_variance: float = 1.0  # s: the lambdas are relative to it (PenalisedTrainer)
    l1_epochs: int = 0  # epochs behind the L1 model: its own, plus the warm-started path's before it
    test_mse: Optional[float] = None
    test_mse_sparse: Optional[float] = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)  # seconds of cross_validation, l1_fit (+ pruning), refit (epochs)
    config: SparsifyConfig = field(default_factory=SparsifyConfig)


# ---------------------------------------------------------------- counting
def used_params(sm, exprs=None) -> set:
    """Names of the params read by some rate, initial value or observable, or by `exprs` when given (through
    lets and neural calls)."""
    lets = sm.let_values()
    calls = {c.symbol: c for c in sm.calls}
    if exprs is None:
        exprs = list(sm.initial) + [f.rate for f in sm.fluxes if f.rate is not None] + list(sm.observables)
    stack = list(exprs)
    seen, out = set(), set()
    while stack:
        expr = stack.pop()
        for sym in getattr(expr, "free_symbols", ()):
            if sym in seen:
                continue
            seen.add(sym)
            leaf = sm.leaves.get(sym)
            if leaf is None:
                continue
            if leaf.kind == "param":
                out.add(leaf.name)
            elif leaf.kind == "let" and sym in lets:
                stack.append(lets[sym])
            elif leaf.kind == "call" and sym in calls:
                stack.extend(calls[sym].args)
    return out


def effective_params(sm, model) -> int:
    """Trainable scalars that still affect the output: trainable params used + neural slot weights."""
    used = used_params(sm)
    mech = sum(1 for row in model.parameters_table if row[2] != "fixed" and row[0] in used)
    return mech + sum(p.numel() for p in model.slot_modules.parameters())


# ---------------------------------------------------------------- pieces
def subset(data: Dataset, indices) -> Dataset:
    return Dataset(data.columns, data.inputs, [data.trajectories[i] for i in indices], data.source)


def fold_indices(n: int, folds: int, seed: int) -> list:
    """Validation index sets: each trajectory in exactly one (leave-one-out when n < folds)."""
    k = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in order[j::k]) for j in range(k)]


def _probe(model, data: Dataset, config, inputs=None) -> Trainer:
    """A vanilla Trainer over a copy of the model, only to evaluate it on data."""
    return Trainer(copy.deepcopy(model), data, replace(config, method="vanilla"), inputs)


def data_mse(model, data: Dataset, config, inputs=None) -> float:
    """Uncoupled MSE of a model over a dataset's cells (inf if the simulation fails)."""
    return _probe(model, data, config, inputs).evaluate()


def _fresh(model_class, seed: int):
    torch.manual_seed(seed)
    return model_class()


def spec_prior(model_class, fit_config):
    """phi0: the spec's param values in unconstrained coordinates (taken in float64, then the fit's dtype)."""
    return _fresh(model_class, fit_config.seed).double().raw_parameters().detach().to(getattr(torch, fit_config.dtype))


def trajectory_errors(model, data: Dataset, config, inputs=None):
    """Uncoupled squared errors summed per trajectory and cells per trajectory; None if the simulation fails."""
    return _probe(model, data, config, inputs).trajectory_errors()


def standard_error(sse, cells) -> Optional[float]:
    """Standard error of the pooled MSE sum(sse) / sum(cells) over validation trajectories (the ratio estimator's
    linearisation; with equal cells, sd(per-trajectory MSE) / sqrt(n)); None when it cannot be estimated. Over
    trajectories rather than folds: with 2 or 3 folds the spread of the fold means says little."""
    sse, cells = np.asarray(sse, dtype=float), np.asarray(cells, dtype=float)
    n, total = len(sse), cells.sum()
    if n < 2 or not np.isfinite(sse).all() or total <= 0:
        return None
    residual = sse - sse.sum() / total * cells
    return float(math.sqrt(n / (n - 1) * (residual ** 2).sum()) / total)


def paired_standard_errors(path: list, errors: dict) -> None:
    """Set each finite entry's val_se: the standard error of its validation MSE minus the best entry's, over
    validation trajectories, paired (every trajectory is scored under every lambda1, so the spread between easy
    and hard trajectories cancels). errors: lambda1 -> (squared errors per trajectory, cells per trajectory)."""
    finite = [e for e in path if e["val_mse"] is not None]
    if not finite:
        return
    best = min(finite, key=lambda e: (e["val_mse"], -e["lambda1"]))
    for e in finite:
        e["val_se"] = standard_error(errors[e["lambda1"]][0] - errors[best["lambda1"]][0], errors[e["lambda1"]][1])


def choose_lambda1(path: list, selection: str) -> float:
    """The lowest validation MSE ('min', ties to the larger lambda1), or the largest lambda1 whose validation MSE
    exceeds the lowest by at most its own val_se ('one_se'; see paired_standard_errors)."""
    best = min(path, key=lambda e: (e["val_mse"], -e["lambda1"]))

    def margin(e):
        tiny = best["val_mse"] * 1e-9
        return max(tiny, e.get("val_se") or 0.0) if selection == "one_se" else tiny

    return max(e["lambda1"] for e in path if e["val_mse"] <= best["val_mse"] + margin(e))


def l1_path(model_class, data, config: SparsifyConfig, lambdas, phi0, inputs=None, on_failure=None):
    """The L1 models of `lambdas` (increasing), one (lambda1, trainer or None) at a time. With warm_start each fit
    starts from a copy of the previous good fit's final model, else each from a fresh initialisation; a failed
    fit (FitError) gives None after on_failure(lambda1, error)."""
    start = None
    for lam in lambdas:
        model = _fresh(model_class, config.fit.seed) if start is None else copy.deepcopy(start)
        try:
            trainer = PenalisedTrainer(model, data, config.fit, lam, config.lambda2, phi0, inputs)
            trainer.train()
        except FitError as err:
            if on_failure is not None:
                on_failure(lam, err)
            yield lam, None
            continue
        if trainer.status == "interrupted":
            raise KeyboardInterrupt
        if config.warm_start:
            start = trainer.model
        yield lam, trainer


def folded_gates(sm, model, gates: dict) -> dict:
    """New values of params into which a reaction's or der term's gate folds exactly: p <- w * p when the flux's
    rate is p times something without p, and no other rate, initial value or observable reads p (and w * p is a
    valid value of p's kind). Gates that cannot be folded are left out (the refit absorbs them)."""
    import sympy

    from ..symbolic.lower import substitute_lets

    rates = {f.name: f.rate for f in sm.fluxes if f.kind != "slot" and f.rate is not None}
    readers: dict = {}
    owners = [("flux", name, rate) for name, rate in rates.items()]
    owners += [("other", None, e) for e in list(sm.initial) + list(sm.observables)]
    for kind, name, expr in owners:
        for p in used_params(sm, [expr]):
            readers.setdefault(p, []).append(name if kind == "flux" else None)
    calls = {c.symbol for c in sm.calls}
    rows = {row[0]: row for row in model.parameters_table}
    values = model.params()
    out = {}
    for name, w in gates.items():
        if name not in rates or w == 1.0:
            continue
        rate = substitute_lets(sm, rates[name])
        if rate.free_symbols & calls:
            continue  # a neural call: its arguments may read params non-linearly
        for sym in rate.free_symbols:
            leaf = sm.leaves.get(sym)
            if leaf is None or leaf.kind != "param" or readers.get(leaf.name) != [name]:
                continue
            if sympy.expand(sym * sympy.diff(rate, sym) - rate) != 0:
                continue
            _, _, kind, lower, upper = rows[leaf.name]
            value = w * values[leaf.name]
            if kind == "fixed" or (kind == "positive" and not value > 0) or \
                    (kind == "bounded" and not lower < value < upper):
                continue
            out[leaf.name] = value
            break
    return out


def refit_gated(model, data, config: SparsifyConfig, phi0, inputs=None):
    """The gated model refit as its pruned spec would be: gates below the threshold held at 0, no L1 term,
    `refit_epochs` epochs; returns the best epoch's model (the pruned spec's vector field, see the tests)."""
    model = copy.deepcopy(model)
    keep = (model.gate_weights.detach().abs() >= config.threshold).to(model.gate_weights.dtype)
    with torch.no_grad():
        model.gate_weights.mul_(keep)
    model.gate_weights.register_hook(lambda grad: grad * keep)  # Adam leaves a parameter with zero grads alone
    trainer = PenalisedTrainer(model, data, config.refit, 0.0, config.lambda2, phi0, inputs)
    trainer.train()
    if trainer.status == "interrupted":
        raise KeyboardInterrupt
    return trainer.best_model()


def refit_pruned(pruned_class, gated, sm, data, config: SparsifyConfig, inputs=None) -> PenalisedTrainer:
    """The refit of step 5: the pruned spec's model, started from the L1 model `gated` (whose SymbolicModel is
    `sm`; its gates folded in by transfer), trained without the L1 term; returns the trained trainer."""
    phi0 = spec_prior(pruned_class, config.fit)
    model = _fresh(pruned_class, config.fit.seed)
    transfer(gated, model, gated.gates, sm)
    trainer = PenalisedTrainer(model, data, config.refit, 0.0, config.lambda2, phi0, inputs)
    trainer.train()
    return trainer


def transfer(src, dst, gates: Optional[dict] = None, sm=None):
    """Copy trained values into a (pruned) model: params by name; slot weights by argument and output name, each
    argument's gate folded into the first layer (w * u enters the network as u with the column scaled by w);
    with the source's SymbolicModel `sm`, reaction and term gates folded into rate constants (folded_gates)."""
    gates = gates or {}
    values = src.params()
    if sm is not None:  # reaction and term gates folded into their rate constants where that is exact
        values.update(folded_gates(sm, src, gates))
    dst.set_params({n: v for n, v in values.items() if n in dst.param_names})
    by_name = {row[0]: (row, module) for row, module in zip(src.slots_table, src.slot_modules)}
    for row, module in zip(dst.slots_table, dst.slot_modules):
        name, args, outputs = row[0], list(row[1]), row[2]
        if name not in by_name:
            continue
        srow, smod = by_name[name]
        s_lin = [layer for layer in smod.net.modules() if isinstance(layer, nn.Linear)]
        d_lin = [layer for layer in module.net.modules() if isinstance(layer, nn.Linear)]
        if len(s_lin) != len(d_lin) or not s_lin:
            continue
        columns = [list(srow[1]).index(a) for a in args]
        scale = torch.tensor([gates.get(f"{name}.{a}", 1.0) for a in args], dtype=s_lin[0].weight.dtype)
        rows = None if outputs is None else [list(srow[2]).index(o) for o in outputs]
        with torch.no_grad():
            for i, (a, b) in enumerate(zip(s_lin, d_lin)):
                weight, bias = a.weight.detach().clone(), None if a.bias is None else a.bias.detach().clone()
                if i == 0:
                    weight = weight[:, columns] * scale
                if i == len(s_lin) - 1 and rows is not None:
                    weight = weight[rows]
                    bias = None if bias is None else bias[rows]
                if weight.shape != b.weight.shape:
                    break
                b.weight.copy_(weight.to(b.weight.dtype))
                if bias is not None and b.bias is not None:
                    b.bias.copy_(bias.to(b.bias.dtype))


def edge_entries(G, gates: dict, pruned: set) -> list:
    from ..graph.extract import gate_edges

    ends = {e["name"]: e for e in gate_edges(G)}
    out = []
    for name, (kind, value) in gates.items():
        e = ends.get(name, {})
        out.append({"kind": kind, "name": name, "source": sorted(e.get("source", [])),
                    "target": sorted(e.get("target", [])), "gate": value, "kept": name not in pruned})
    return out


# ---------------------------------------------------------------- the method
def sparsify(source: str, data, config=None, *, filename: str = "<spec>", test=None, inputs: Optional[dict] = None,
             log=None) -> SparsifyResult:
    """Sparsify a spec on data (a Dataset or CSV path); test: an optional held-out Dataset or CSV path.
    config: SparsifyConfig, a mapping, a SPARSIFY.yaml path, or None. log: a callable taking progress lines."""
    from ..compiler import analyse, load_text, symbolic
    from ..graph.extract import interaction_graph
    from ..graph.prune import prune_spec
    from .report import fitted_source

    start = time.perf_counter()
    say = log or (lambda line: None)
    config = config if isinstance(config, SparsifyConfig) else load_sparsify_config(config)
    cfg = config.fit
    sm = symbolic(source, filename)
    gated_class = load_text(source, filename, gates=True)
    if not gated_class.gates_table:
        raise HodecError("the spec has no prunable edge: every reaction, der and neural argument is `keep`", WHO)
    if not isinstance(data, Dataset):
        data = read_data(data, gated_class)
    if test is not None and not isinstance(test, Dataset):
        test = read_data(test, gated_class)
    observed = [c for c in data.columns if c in gated_class.state_names]
    if test is not None:
        observed += [c for c in test.columns if c in gated_class.state_names and c not in observed]
    phi0 = spec_prior(gated_class, cfg)
    n = len(data.trajectories)

    # the regularisation path, cross-validated over trajectories
    path = []
    if len(config.lambda1) > 1:
        if n < 2:
            raise HodecError(f"cross-validation over trajectories needs at least 2 trajectories in the data and "
                             f"{data.source} has {n}; give a single lambda1 (e.g. 'lambda1: [0.01]') or more "
                             f"trajectories (an id column)", WHO)
        folds = fold_indices(n, config.folds, cfg.seed)
        per_fold = {lam: ([], [], []) for lam in config.lambda1}  # squared errors, cells, gates kept
        for k, val in enumerate(folds):
            train = subset(data, [i for i in range(n) if i not in set(val)])
            failed = lambda lam, err: say(f"lambda1 = {lam:g}, fold {k + 1}: training failed "  # noqa: E731
                                          f"({err.diagnostics[0].message})")
            for lam, trainer in l1_path(gated_class, train, config, config.lambda1, phi0, inputs, failed):
                sse, cells, kept = per_fold[lam]
                errors = None
                if trainer is not None:
                    model = trainer.model
                    kept.append(int((model.gate_weights.detach().abs() >= config.threshold).sum()))
                    try:
                        if config.cv_refit:
                            model = refit_gated(model, train, config, phi0, inputs)
                        errors = trajectory_errors(model, subset(data, val), cfg, inputs)
                    except FitError as err:
                        failed(lam, err)
                sse.append(np.full(len(val), np.inf) if errors is None else errors[0])
                cells.append(np.ones(len(val)) if errors is None else errors[1])
        scored = {}  # lambda1 -> (squared errors, cells) per validation trajectory
        for lam in config.lambda1:
            sse, cells, kept = per_fold[lam]
            sse, cells = np.concatenate(sse), np.concatenate(cells)
            scored[lam] = (sse, cells)
            val_mse = float(sse.sum() / cells.sum()) if cells.sum() else math.inf
            entry = {"lambda1": lam, "val_mse": val_mse if math.isfinite(val_mse) else None, "val_se": None,
                     "edges_kept": int(round(float(np.median(kept)))) if kept else None, "edges_kept_folds": kept}
            path.append(entry)
            say(f"lambda1 = {lam:g}: validation MSE {val_mse:.6g}, edges kept {entry['edges_kept']} "
                f"of {len(gated_class.gates_table)} ({len(folds)} folds)")
        paired_standard_errors(path, scored)
        finite = [e for e in path if e["val_mse"] is not None]
        if not finite:
            raise HodecError("training failed for every lambda1 of the path (try a smaller lr or lambda1)", WHO)
        chosen = choose_lambda1(finite, config.selection)
    else:
        chosen = config.lambda1[0]

    # the L1 model on all data, and the pruning
    timings = {"cross_validation": time.perf_counter() - start}
    lineage = [lam for lam in config.lambda1 if lam <= chosen] if config.warm_start else [chosen]
    failures, l1_epochs = {}, 0
    for _, trainer in l1_path(gated_class, data, config, lineage, phi0, inputs, failures.__setitem__):
        l1_epochs += 0 if trainer is None else cfg.total_epochs
    if trainer is None:
        raise failures[chosen]
    gated = copy.deepcopy(trainer.model)
    gates = {name: (kind, float(w)) for (name, kind), w in zip(gated.gates_table, gated.gate_weights.detach())}
    pruned = sorted(name for name, (_, w) in gates.items() if abs(w) < config.threshold)
    cut = copy.deepcopy(gated)  # the pruned model before the refit: pruned gates at 0
    cut.set_gates({name: 0.0 for name in pruned})
    train_mse_sparse = trainer.evaluate(cut)
    if len(config.lambda1) <= 1:
        path.append({"lambda1": chosen, "val_mse": None, "edges_kept": len(gates) - len(pruned),
                     "edges_kept_folds": []})
    say(f"chosen lambda1 = {chosen:g}: {len(gates) - len(pruned)} of {len(gates)} gates kept, "
        f"pruned: {', '.join(pruned) or 'none'}")
    pruning = prune_spec(source, pruned, observed if config.drop_states else gated_class.state_names, filename)
    if not pruning.states_kept:
        raise HodecError(f"lambda1 = {chosen:g} pruned every edge to the observed quantities: no state is left "
                         f"(use a smaller lambda1 or threshold)", WHO)
    try:
        pruned_class = load_text(pruning.source, filename, gates=False)
        pruned_sm = symbolic(pruning.source, filename)
    except HodecError as err:
        raise HodecError(f"the pruned spec does not compile ({err.diagnostics[0].message}); pruned: "
                         f"{', '.join(pruned)}", WHO) from None

    timings["l1_fit"] = time.perf_counter() - start - timings["cross_validation"]
    refit_trainer = refit_pruned(pruned_class, gated, sm, data, config, inputs)
    refit = refit_trainer.result()
    timings["refit"] = refit_trainer.elapsed
    say(f"refit of the pruned spec: best epoch {refit.best_epoch}, MSE {refit.best_mse}")
    header = (f"# Pruned and refitted by hodec sparsify (lambda1 = {chosen:g}, threshold {config.threshold:g}): "
              f"{len(pruned)} of {len(gates)} gated edges removed"
              + (f", states dropped: {', '.join(pruning.states_dropped)}" if pruning.states_dropped else "")
              + f"; refit MSE {refit.best_mse:.6g}.\n")
    if pruned_class.slots_table:
        header += "# The neural slots' weights are in checkpoint.pt (load_state_dict(checkpoint['model'])).\n"
    typed = analyse(pruning.source, filename)
    text = fitted_source(pruning.source, typed.params, refit.params, float32=cfg.dtype == "float32", header=header)

    G = interaction_graph(sm)
    result = SparsifyResult(
        lambda1=chosen, path=path, edges=edge_entries(G, gates, set(pruned)), gated_model=gated,
        pruned_names=pruned, states_kept=pruning.states_kept, states_dropped=pruning.states_dropped,
        pruned_source=pruning.source, fitted_source=text, model=refit.model, refit=refit,
        refit_trainer=refit_trainer, params_before=effective_params(sm, gated),
        params_after=effective_params(pruned_sm, refit.model),
        train_mse_sparse=train_mse_sparse if math.isfinite(train_mse_sparse) else None,
        data_variance=trainer.scale, l1_epochs=l1_epochs, config=config)
    if test is not None:
        mse = data_mse(refit.model, test, config.refit, inputs)
        result.test_mse = mse if math.isfinite(mse) else None
        mse = data_mse(cut, test, cfg, inputs)
        result.test_mse_sparse = mse if math.isfinite(mse) else None
    result.seconds, result.timings = time.perf_counter() - start, {k: round(v, 3) for k, v in timings.items()}
    return result


def report_dict(result: SparsifyResult, meta: Optional[dict] = None) -> dict:
    out = {
        "lambda1": result.lambda1,
        "edges": result.edges,
        "states_kept": list(result.states_kept),
        "states_dropped": list(result.states_dropped),
        "pruned": list(result.pruned_names),
        "params_before": result.params_before,
        "params_after": result.params_after,
        "path": result.path,
        "data_variance": result.data_variance,
        "l1_epochs": result.l1_epochs,
        "train_mse_sparse": result.train_mse_sparse,
        "refit": {"best_epoch": result.refit.best_epoch, "best_mse": result.refit.best_mse,
                  "params": result.refit.params, "metrics": result.refit.metrics},
        "seconds": round(result.seconds, 3),
        "timings": result.timings,
        "config": result.config.to_dict(),
    }
    if result.test_mse is not None or result.test_mse_sparse is not None:
        out["test_mse"] = result.test_mse
        out["test_mse_sparse"] = result.test_mse_sparse
    out.update(meta or {})
    return out


# ---------------------------------------------------------------- the run folder
def run_sparsify(spec, data, test=None, config=None, out=None, force: bool = False, progress: bool = True) -> int:
    import hashlib

    from .. import __version__
    from ..files import write_atomic
    from ..compiler import load, read_source
    from ..graph.draw import write_graph
    from ..graph.extract import graph_of_source
    from .report import _jsonable, plot_fit

    spec = Path(spec)
    rundir = Path(out) if out else Path("runs") / f"{spec.stem}_sparse"
    source = read_source(spec)
    try:
        gated_class = load(spec, gates=True)
    except HodecError as err:
        from ..cli import _at

        raise _at(str(spec), err) from None
    cfg = load_sparsify_config(config)
    dataset = read_data(data, gated_class)
    testset = read_data(test, gated_class) if test is not None else None
    if testset is not None and tuple(testset.columns) != tuple(dataset.columns):
        raise HodecError(f"the test data's fitted columns ({', '.join(testset.columns)}) differ from the training "
                         f"data's ({', '.join(dataset.columns)})", str(test))
    digest = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    meta = {"spec": str(spec), "spec_sha256": digest(source.encode()), "data": str(data),
            "data_sha256": digest(Path(data).read_bytes()), "columns": list(dataset.columns),
            "hodec_version": __version__}
    if test is not None:
        meta.update({"test": str(test), "test_sha256": digest(Path(test).read_bytes())})
    claim_rundir(rundir, force, OUTPUTS, WHO, resumable=False)

    log = (lambda line: print(f"hodec sparsify: {line}", file=sys.stderr, flush=True)) if progress else None
    result = sparsify(source, dataset, cfg, filename=spec.name, test=testset, log=log)
    rundir.mkdir(parents=True, exist_ok=True)
    import io

    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "meta": meta, "config": cfg.to_dict(),
                "model": result.model.state_dict(), "gated_model": result.gated_model.state_dict()}, buffer)
    write_atomic(rundir / "checkpoint.pt", buffer.getvalue())
    write_atomic(rundir / "pruned.hode", result.fitted_source)
    write_atomic(rundir / "report.json", json.dumps(_jsonable(report_dict(result, meta)), indent=1) + "\n")
    gates = {e["name"]: e["gate"] for e in result.edges if e["kept"]}
    write_graph(graph_of_source(result.pruned_source, spec.name), rundir / "graph.png", gates=gates,
                title=f"{spec.stem} sparsified (lambda1 = {result.lambda1:g})")
    plot_fit(rundir / "fit.png", result.refit_trainer, result.model)
    kept = sum(e["kept"] for e in result.edges)
    test_text = "" if result.test_mse is None else f", test MSE {result.test_mse:.6g}"
    print(f"{spec} -> {rundir}: lambda1 {result.lambda1:g}, {kept} of {len(result.edges)} gated edges kept, "
          f"states kept {', '.join(result.states_kept)}, params {result.params_before} -> {result.params_after}, "
          f"refit MSE {result.refit.best_mse:.6g}{test_text}")
    return 0


