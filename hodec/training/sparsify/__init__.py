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
5. The pruned spec (compiled without gates) starts from the trained values (runtime.transfer: params by name;
   slot weights by argument and output name, each kept argument's gate folded into the first layer; each kept
   reaction's or term's gate folded into its rate constant where that is exact: symbolic.folding) and is refit
   without the L1 term (lambda2 kept) for `refit_epochs` at `refit_lr` (default lr / 10); its best epoch (data
   MSE) is written back into RUNDIR/pruned.hode.

Effective parameter counts (params_before/params_after) are the trainable spec params read by some rate,
initial value or observable (through lets and neural calls) plus every neural slot weight; gates not counted.

penalty.py   PenalisedTrainer: the objective
path.py      the L1 path, cross-validation over trajectories, the choice of lambda1
pipeline.py  sparsify(): the steps above over one Compilation; SparsifyResult
report.py    report.json's contents
run.py       the run folder of `hodec sparsify`
The options are in ../sparsify_config.py (SPARSIFY.yaml).
"""
from .path import (choose_lambda1, data_mse, fold_indices, l1_path, paired_standard_errors, refit_gated,
                   spec_prior, standard_error, subset, trajectory_errors)
from .penalty import PenalisedTrainer
from .pipeline import SparsifyResult, effective_params, refit_pruned, sparsify
from .report import report_dict
from .run import run_sparsify

__all__ = ["PenalisedTrainer", "SparsifyResult", "choose_lambda1", "data_mse", "effective_params", "fold_indices",
           "l1_path", "paired_standard_errors", "refit_gated", "refit_pruned", "report_dict", "run_sparsify",
           "sparsify", "spec_prior", "standard_error", "subset", "trajectory_errors"]
