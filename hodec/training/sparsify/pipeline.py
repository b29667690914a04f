"""`sparsify`: the pipeline of `hodec sparsify` over one Compilation (see the package docstring for the steps)."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Optional, Union

from torch import nn

from ...compiler import Compilation, compile_text
from ...errors import HodecError
from ...graph.extract import gate_edges
from ...graph.prune import Pruning, prune_spec
from ...runtime.transfer import transfer
from ...symbolic.dependencies import used_params
from ...symbolic.folding import folded_gates
from ..data import Dataset, read_data
from ..loop import Trainer
from ..report import fitted_spec
from ..sparsify_config import SparsifyConfig, load_sparsify_config
from .path import WHO, continuing, cross_validate, data_mse, fresh, l1_path, spec_prior
from .penalty import PenalisedTrainer


@dataclass
class SparsifyResult:
    lambda1: float
    path: list  # per lambda1: lambda1, val_mse, edges_kept, edges_kept_folds
    edges: list  # per gate: kind, name, source, target, gate, kept
    gated_model: nn.Module  # the L1 model trained on all data with the chosen lambda1 (final epoch)
    pruned_names: list
    states_kept: tuple
    states_dropped: tuple
    pruned: Compilation  # prune_spec's text compiled, values not yet written back
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

    @property
    def pruned_source(self) -> str:
        return self.pruned.source


def effective_params(sm, model) -> int:
    """Trainable scalars that still affect the output: trainable params read by some rate, initial value or
    observable (through lets and neural calls) + neural slot weights; gates not counted."""
    used = used_params(sm)
    mech = sum(1 for row in model.parameters_table if row[2] != "fixed" and row[0] in used)
    return mech + sum(p.numel() for p in model.slot_modules.parameters())


def edge_entries(G, gates: dict, pruned: set) -> list:
    ends = {e["name"]: e for e in gate_edges(G)}
    out = []
    for name, (kind, value) in gates.items():
        e = ends.get(name, {})
        out.append({"kind": kind, "name": name, "source": sorted(e.get("source", [])),
                    "target": sorted(e.get("target", [])), "gate": value, "kept": name not in pruned})
    return out


def refit_pruned(pruned_class, gated, sm, data, config: SparsifyConfig, inputs=None,
                 carried=None) -> PenalisedTrainer:
    """The refit of step 5: the pruned spec's model, started from the L1 model `gated` (whose SymbolicModel is
    `sm`; its gates folded into rate constants and slot inputs) and what its fit carried (Method.carry: forecast's
    estimator, row by kept state), trained without the L1 term; returns the trained trainer."""
    phi0 = spec_prior(pruned_class, config.fit)
    model = fresh(pruned_class, config.fit.seed)
    transfer(gated, model, gated.gates, folded_gates(sm, gated, gated.gates))
    trainer = PenalisedTrainer(model, data, continuing(config.refit), 0.0, config.lambda2, phi0, inputs)
    trainer.method.take(carried)
    trainer.train()
    return trainer


def sparsify(spec: Union[Compilation, str], data, config=None, *, filename: str = "<spec>", test=None,
             inputs: Optional[dict] = None, log=None) -> SparsifyResult:
    """Sparsify a spec (a Compilation, or a spec's text named `filename`) on data (a Dataset or CSV path); test:
    an optional held-out Dataset or CSV path. config: SparsifyConfig, a mapping, a SPARSIFY.yaml path, or None.
    log: a callable taking progress lines."""
    start = time.perf_counter()
    say = log or (lambda line: None)
    spec = spec if isinstance(spec, Compilation) else compile_text(spec, filename)
    config = config if isinstance(config, SparsifyConfig) else load_sparsify_config(config)
    gated_class = spec.model_class(gates=True)
    if not gated_class.gates_table:
        raise HodecError("the spec has no prunable edge: every reaction, der and neural argument is `keep`", WHO)
    data = data if isinstance(data, Dataset) else read_data(data, gated_class, config.fit)
    test = test if test is None or isinstance(test, Dataset) else read_data(test, gated_class, config.fit)
    phi0 = spec_prior(gated_class, config.fit)

    path, chosen = [], config.lambda1[0]
    if len(config.lambda1) > 1:
        path, chosen = cross_validate(spec, data, config, inputs, say)
    timings = {"cross_validation": time.perf_counter() - start}
    trainer, l1_epochs = _l1_model(gated_class, data, config, chosen, phi0, inputs)
    gated, gates, pruned, cut = _thresholded(trainer.model, config.threshold)
    if not path:
        path.append({"lambda1": chosen, "val_mse": None, "edges_kept": len(gates) - len(pruned),
                     "edges_kept_folds": []})
    say(f"chosen lambda1 = {chosen:g}: {len(gates) - len(pruned)} of {len(gates)} gates kept, "
        f"pruned: {', '.join(pruned) or 'none'}")
    observed = _observed(gated_class, data, test) if config.drop_states else gated_class.state_names
    pruning, small = _prune(spec, pruned, observed, chosen)

    timings["l1_fit"] = time.perf_counter() - start - timings["cross_validation"]
    refit_trainer = refit_pruned(small.model_class(), gated, spec.symbolic, data, config, inputs,
                                 trainer.method.carry())
    refit = refit_trainer.result()
    timings["refit"] = refit_trainer.elapsed
    say(f"refit of the pruned spec: best epoch {refit.best_epoch}, MSE {refit.best_mse}")
    result = SparsifyResult(
        lambda1=chosen, path=path, edges=edge_entries(spec.graph, gates, set(pruned)), gated_model=gated,
        pruned_names=pruned, states_kept=pruning.states_kept, states_dropped=pruning.states_dropped, pruned=small,
        fitted_source=_fitted(small, pruning, refit, chosen, len(pruned), len(gates), config), model=refit.model,
        refit=refit, refit_trainer=refit_trainer, params_before=effective_params(spec.symbolic, gated),
        params_after=effective_params(small.symbolic, refit.model), train_mse_sparse=_finite(trainer.evaluate(cut)),
        data_variance=trainer.scale, l1_epochs=l1_epochs, config=config)
    if test is not None:
        result.test_mse = _finite(data_mse(refit.model, test, config.refit, inputs,
                                           refit_trainer.method.carry(best=True)))
        result.test_mse_sparse = _finite(data_mse(cut, test, config.fit, inputs, trainer.method.carry()))
    result.seconds, result.timings = time.perf_counter() - start, {k: round(v, 3) for k, v in timings.items()}
    return result


def _l1_model(gated_class, data: Dataset, config: SparsifyConfig, chosen: float, phi0, inputs) -> tuple:
    """The L1 model on all data with the chosen lambda1 (with warm_start, the end of the path up to it) and the
    epochs behind it."""
    lineage = [lam for lam in config.lambda1 if lam <= chosen] if config.warm_start else [chosen]
    failures, l1_epochs, trainer = {}, 0, None
    for _, trainer in l1_path(gated_class, data, config, lineage, phi0, inputs, failures.__setitem__):
        l1_epochs += 0 if trainer is None else config.fit.total_epochs
    if trainer is None:
        raise failures[chosen]
    return trainer, l1_epochs


def _thresholded(model, threshold: float) -> tuple:
    """A copy of the L1 model, its gates (name -> (kind, w)), the names of those under the threshold (pruned),
    and a copy with those at 0 (the pruned model before the refit)."""
    gated = copy.deepcopy(model)
    gates = {name: (kind, float(w)) for (name, kind), w in zip(gated.gates_table, gated.gate_weights.detach())}
    pruned = sorted(name for name, (_, w) in gates.items() if abs(w) < threshold)
    cut = copy.deepcopy(gated)
    cut.set_gates({name: 0.0 for name in pruned})
    return gated, gates, pruned, cut


def _observed(gated_class, data: Dataset, test: Optional[Dataset]) -> list:
    """The states with a data column (training or test): pruning keeps every state that still reaches one."""
    columns = list(data.columns) + ([] if test is None else list(test.columns))
    return [s for s in gated_class.state_names if s in columns]


def _prune(spec: Compilation, pruned: list, observed, chosen: float) -> tuple[Pruning, Compilation]:
    pruning = prune_spec(spec, pruned, observed)
    if not pruning.states_kept:
        raise HodecError(f"lambda1 = {chosen:g} pruned every edge to the observed quantities: no state is left "
                         f"(use a smaller lambda1 or threshold)", WHO)
    try:
        small = spec.derived(pruning.source)
        small.model_class()
    except HodecError as err:
        raise HodecError(f"the pruned spec does not compile ({err.diagnostics[0].message}); pruned: "
                         f"{', '.join(pruned)}", WHO) from None
    return pruning, small


def _fitted(small: Compilation, pruning: Pruning, refit, chosen: float, n_pruned: int, n_gates: int,
            config: SparsifyConfig) -> str:
    """The text of pruned.hode: the pruned spec with the refitted values written back, under a header."""
    summary = (f"Pruned and refitted by hodec sparsify (lambda1 = {chosen:g}, threshold {config.threshold:g}): "
               f"{n_pruned} of {n_gates} gated edges removed"
               + (f", states dropped: {', '.join(pruning.states_dropped)}" if pruning.states_dropped else "")
               + f"; refit MSE {refit.best_mse:.6g}.")
    return fitted_spec(small, refit.params, summary, float32=config.fit.dtype == "float32")


def _finite(x: float) -> Optional[float]:
    return x if math.isfinite(x) else None
