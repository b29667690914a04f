"""The trainer behind `hodec fit`: homotopy (synchronisation coupling relaxed step by step), vanilla, and
multiple shooting, after Ko, Koh, Park & Jhe, "Homotopy-based training of NeuralODEs for accurate dynamics
discovery", NeurIPS 2023.

Conventions (shared by the three methods):
- The loss and every reported MSE are the mean of squared errors over all non-missing data cells (every time
  point, the first included; every fitted column weighted equally), on the data's scale.
- Each epoch is one full-batch AdamW step (lr constant, or cosine-annealed to lr * lr_end; weight decay on neural
  weights only). Before the step the uncoupled model (lambda = 0) is evaluated without gradients; its MSE picks
  the best epoch and checkpoint. So the best parameters are those the epoch's loss was computed with. Where the
  training loss already is the uncoupled MSE (vanilla, the lambda = 0 plateau) it is not computed twice.
- Trajectories are solved batched: trajectories with the same start time form one group, solved together on the
  union of their time grids (each trajectory's loss uses only its own cells). Different start times make
  separate groups (separate solves). A trajectory shorter than its group is simulated to the group's end.
- Homotopy: the generated field gets -lambda k J+ (h(u) - yhat(t)) for every fitted column with k > 0 (see
  runtime.coupling), yhat a cubic smoothing spline of the column per trajectory; a trajectory with fewer than two
  values in a column is not coupled in that column.
- Multiple shooting: the group's grid is split into `segments` pieces sharing their end points (the intervals
  between data times shared out as evenly as numpy.array_split does); segment i > 0 starts at an anchor plus a
  trainable correction (zero at first). The anchor of a state is its data value there (states, or observables
  identical to a state, with a value at that time), else the initial model's uncoupled simulation. Loss = data
  MSE of the joined segments + continuity x mean squared jump between each segment's end and the next one's
  start. An autonomous model (no t, no inputs) solves all its segments in one batched call.
- NaN/inf in a training solve, its loss or its gradients, or a solver failure (step-size underflow, too many
  steps) ends the run with a FitError naming the epoch, lambda, trajectory, state and time. During homotopy with
  lambda > 0 the uncoupled evaluation may fail (an untrained model often diverges on its own): that epoch's MSE
  is recorded as missing (null) and cannot be the best.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import HodecError
from ..runtime.coupling import Coupling
from ..runtime.signals import Signal
from .config import FitConfig, load_config, solver_options
from .data import Dataset, interpolate_input, read_data
from .reference import GridCubic
from .schedule import homotopy_schedule
from .spline import SmoothingSpline


class FitError(HodecError):
    """Training could not go on: non-finite values or a solver failure, with where it came from. When raised
    by hodec.fit after some epochs, `partial` holds the FitResult of the best epoch before the failure."""

    def __init__(self, message: str, filename: str = "hodec fit"):
        super().__init__(message, filename)
        self.partial: Optional[FitResult] = None


@dataclass
class FitResult:
    model: torch.nn.Module  # the best model (uncoupled), a copy
    method: str
    best_epoch: int
    best_mse: float
    params: dict  # every trainable spec param at the best epoch
    history: list  # per epoch: epoch, lam, loss, mse, seconds, elapsed
    metrics: dict
    status: str  # complete | interrupted
    config: FitConfig


@dataclass
class _Group:
    members: list  # dataset trajectory indices
    ids: list
    t: torch.Tensor  # [T] union grid
    y: torch.Tensor  # [T, B, m] data, 0 where missing
    mask: torch.Tensor  # [T, B, m] bool
    first: torch.Tensor  # [B, m] values at the group's first time (0 where missing)
    first_mask: torch.Tensor  # [B, m]
    inputs: dict  # name -> Signal over the group's trajectories
    coupling: Optional[Coupling] = None
    bounds: list = field(default_factory=list)  # multiple shooting: segment boundaries (indices into t)
    anchors: Optional[torch.Tensor] = None  # [S-1, B, n]
    corrections: Optional[torch.nn.Parameter] = None  # [S-1, B, n]


class Trainer:
    def __init__(self, model, data: Dataset, config: Optional[FitConfig] = None, inputs: Optional[dict] = None):
        self.config = config = config or FitConfig()
        self.dtype = getattr(torch, config.dtype)
        self.model = model.to(self.dtype)
        self.model.set_coupling(None)
        self.data = data
        self.extra_inputs = dict(inputs or {})
        self.columns = tuple(data.columns)
        self._resolve_columns()
        self.solver = dict(method=config.solver["method"], rtol=config.solver["rtol"], atol=config.solver["atol"],
                           **solver_options(config.solver))
        self.gains = self._per_column(config.k, "k")
        self.alphas = self._per_column(config.smoothing, "smoothing")
        self.groups = self._make_groups()
        self.schedule = homotopy_schedule(config.steps, config.kappa) if config.method == "homotopy" else None
        if config.method == "homotopy":
            self._make_couplings()
        if config.method == "multiple_shooting":
            self._make_segments()
        self.optimizer = self._make_optimizer()
        self.trainable = [row[0] for row in self.model.parameters_table if row[2] != "fixed"]
        self.epoch = 0
        self.history: list = []
        self.best_mse = math.inf
        self.best_epoch = 0
        self.best_state: Optional[dict] = None
        self.elapsed = 0.0
        self.status = "new"

    # ---------------------------------------------------------------- setup
    def _resolve_columns(self):
        m = self.model
        table = {row[0]: row for row in m.observation_table}
        self.kinds, self.state_like = [], []  # per column: ("state", j) | ("observable", i); state it equals
        for name in self.columns:
            if name in m.state_names:
                j = m.state_names.index(name)
                self.kinds.append(("state", j))
                self.state_like.append(j)
            else:
                i = m.observable_names.index(name)
                self.kinds.append(("observable", i))
                self.state_like.append(table[name][2] if name in table else None)
        self.obs_index = [i for kind, i in self.kinds if kind == "observable"]
        self._col_from_state = torch.tensor([j if kind == "state" else 0 for kind, j in self.kinds])
        self._col_is_obs = torch.tensor([kind == "observable" for kind, _ in self.kinds])
        self._col_obs = torch.tensor([i if kind == "observable" else 0 for kind, i in self.kinds])

    def _per_column(self, value, key: str) -> list:
        if isinstance(value, dict):
            for name in value:
                if name not in self.columns:
                    raise HodecError(f"{key}: '{name}' is not a fitted column of the data "
                                     f"(fitted columns: {', '.join(self.columns)})", "fit config")
            return [float(value.get(name, 0.0)) for name in self.columns]
        return [float(value)] * len(self.columns)

    def _make_groups(self) -> list:
        by_start: dict = {}
        for index, tr in enumerate(self.data.trajectories):
            by_start.setdefault(float(tr.t[0]), []).append(index)
        groups = []
        for members in by_start.values():
            trs = [self.data.trajectories[i] for i in members]
            grid = np.unique(np.concatenate([tr.t for tr in trs]))
            T, B, m = len(grid), len(trs), len(self.columns)
            y = np.full((T, B, m), np.nan)
            for b, tr in enumerate(trs):
                y[np.searchsorted(grid, tr.t), b, :] = tr.y
            mask = np.isfinite(y)
            signals = {}
            for name in self.model.input_names:
                if name in self.data.inputs:
                    q = self.data.inputs.index(name)
                    values = np.stack([interpolate_input(grid, tr.t, tr.u[:, q]) for tr in trs], 1)
                    signals[name] = Signal(torch.as_tensor(grid, dtype=self.dtype),
                                           torch.as_tensor(values, dtype=self.dtype))
                elif name in self.extra_inputs:
                    signals[name] = self.extra_inputs[name]
                else:
                    raise HodecError(f"input '{name}' of {type(self.model).__name__} has no column in the data "
                                     f"{self.data.source} (add a '{name}' column)", "hodec fit")
            as_t = lambda a: torch.as_tensor(a, dtype=self.dtype)  # noqa: E731
            groups.append(_Group(members, [tr.id for tr in trs], as_t(grid), as_t(np.nan_to_num(y)),
                                 torch.as_tensor(mask), as_t(np.nan_to_num(y[0])), torch.as_tensor(mask[0]),
                                 signals))
        return groups

    def _make_couplings(self):
        coupled = [c for c, k in enumerate(self.gains) if k > 0]
        if not coupled:
            raise HodecError("method homotopy needs a coupling gain k > 0 for at least one fitted column", "fit config")
        names = [self.columns[c] for c in coupled]
        for g in self.groups:
            T, B = g.y.shape[:2]
            if T < 2:
                continue
            y = g.y[:, :, coupled].clone()
            mask = g.mask[:, :, coupled].clone()
            gain = torch.tensor([self.gains[c] for c in coupled], dtype=self.dtype).expand(B, -1).clone()
            few = mask.sum(0) < 2  # [B, m']: cannot be splined: not coupled there
            if few.any():
                gain[few] = 0
                y[:, few] = 0
                mask[:2, few] = True
            alpha = torch.tensor([self.alphas[c] for c in coupled], dtype=self.dtype)
            spline = SmoothingSpline(g.t, torch.where(mask, y, torch.nan), alpha, mask)
            g.coupling = Coupling(self.model, names, GridCubic(spline, g.t), gain)

    def _make_segments(self):
        n = len(self.model.state_names)
        with torch.no_grad():
            for g in self.groups:
                T, B = g.y.shape[:2]
                intervals = T - 1
                s = max(1, min(self.config.segments, intervals))
                sizes = [intervals // s + (1 if i < intervals % s else 0) for i in range(s)]
                g.bounds = [0] + [int(b) for b in np.cumsum(sizes)]  # segment i: t[bounds[i] .. bounds[i+1]]
                starts = g.bounds[1:-1]
                if not starts:
                    continue
                try:
                    ys = self._solve(self.model, g, self._initial(self.model, g), g.t, lam=0.0, phase="setup")
                    guess = ys[starts]
                    if not torch.isfinite(guess).all():
                        raise FitError("non-finite")
                except HodecError:
                    guess = self._initial(self.model, g).detach().expand(len(starts), B, n).clone()
                for c, j in enumerate(self.state_like):
                    if j is not None:
                        have = g.mask[starts, :, c]
                        guess[:, :, j] = torch.where(have, g.y[starts, :, c], guess[:, :, j])
                g.anchors = guess.detach()
                g.corrections = torch.nn.Parameter(torch.zeros_like(guess))

    def _make_optimizer(self) -> torch.optim.Optimizer:
        m = self.model
        mechanistic = [p for p in m.mechanistic_parameters() if p.numel()]
        neural = [p for p in m.slot_modules.parameters() if p.numel()]
        extra = [g.corrections for g in self.groups if g.corrections is not None]
        groups = []
        if mechanistic or extra:
            groups.append({"params": mechanistic + extra, "weight_decay": 0.0})
        if neural:
            groups.append({"params": neural, "weight_decay": self.config.weight_decay})
        gates = getattr(m, "gate_weights", None)
        if gates is not None and gates.numel():  # a model compiled with gates: they train too, undecayed
            groups.append({"params": [gates], "weight_decay": 0.0})
        if not groups:
            raise HodecError(f"{type(m).__name__} has nothing to train: every param is fixed and there is no "
                             f"neural slot", "hodec fit")
        return torch.optim.AdamW(groups, lr=self.config.lr)

    def penalty(self):
        """A term added to the loss that is backpropagated (e.g. the sparsity penalty of `hodec sparsify`), or
        None. It never enters the reported or best-epoch-selecting MSE."""
        return None

    # ---------------------------------------------------------------- pieces of an epoch
    def lam_at(self, epoch: int) -> float:
        if self.schedule is None:
            return 0.0
        return self.schedule[min((epoch - 1) // self.config.epochs_per_step, len(self.schedule) - 1)]

    def _initial(self, model, g: _Group) -> torch.Tensor:
        B = g.y.shape[1]
        y0 = model.initial_state((B,))
        if self.config.initial == "data":
            y0 = y0.clone()
            for c, j in enumerate(self.state_like):
                if j is not None:
                    y0[:, j] = torch.where(g.first_mask[:, c], g.first[:, c], y0[:, j])
        return y0

    def _solve(self, model, g: _Group, y0, ts, lam: float, phase: str) -> torch.Tensor:
        if g.inputs:
            model.set_inputs(g.inputs)
        model.set_coupling(g.coupling if lam > 0 else None, lam)
        try:
            ys = model.simulate(ts, y0=y0, **self.solver)
        except HodecError as err:
            raise FitError(self._where(phase, lam) + f": {err.diagnostics[0].message}") from None
        except RuntimeError as err:
            if "max_num_steps" not in str(err):
                raise
            raise FitError(self._where(phase, lam) + f": the ODE solver took more than "
                           f"{self.solver.get('max_num_steps')} steps (solver.max_steps); the model is stiff or "
                           f"diverging") from None
        finally:
            model.set_coupling(None)
        return ys

    def _where(self, phase: str, lam: float) -> str:
        lam_text = f", lambda = {lam:.4g}" if self.schedule is not None else ""
        return f"epoch {self.epoch + 1}{lam_text}, {phase} simulation"

    def _predict(self, model, g: _Group, ys: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """The fitted columns [T, B, m] from states [T, B, n]."""
        idx = self._col_from_state.to(ys.device)
        pred = ys.index_select(-1, idx)
        if self.obs_index:
            if g.inputs:
                model.set_inputs(g.inputs)
            obs = model.observe(ys, ts).index_select(-1, self._col_obs.to(ys.device))
            pred = torch.where(self._col_is_obs.to(ys.device), obs, pred)
        return pred

    def _check_states(self, g: _Group, ys: torch.Tensor, ts: torch.Tensor, phase: str, lam: float):
        bad = ~torch.isfinite(ys)
        if bad.any():
            k, b, j = (int(v) for v in torch.nonzero(bad)[0])
            kind = "NaN" if torch.isnan(ys[k, b, j]) else "inf"
            raise FitError(f"{self._where(phase, lam)}: state '{self.model.state_names[j]}' of trajectory "
                           f"{g.ids[b]} became {kind} at t = {float(ts[k]):g}; the model diverged (try a smaller "
                           f"lr, other initial params, or a larger k)")

    def _check_prediction(self, g: _Group, pred: torch.Tensor, ts, phase: str, lam: float):
        bad = ~torch.isfinite(pred) & g.mask[: len(ts)]
        if bad.any():
            k, b, c = (int(v) for v in torch.nonzero(bad)[0])
            raise FitError(f"{self._where(phase, lam)}: column '{self.columns[c]}' of trajectory {g.ids[b]} is "
                           f"not finite at t = {float(ts[k]):g} although every state is (check the observable's "
                           f"formula: log or sqrt of a negative value, division by zero?)")

    def _group_errors(self, model, lam: float, phase: str, check: bool = True):
        """Per group: (the group, squared errors [T, B, m], 0 at missing cells)."""
        for g in self.groups:
            ys = self._solve(model, g, self._initial(model, g), g.t, lam, phase)
            if check:
                self._check_states(g, ys, g.t, phase, lam)
            pred = self._predict(model, g, ys, g.t)
            if check:
                self._check_prediction(g, pred, g.t, phase, lam)
            err = torch.where(g.mask, pred - g.y, torch.zeros_like(pred))
            yield g, err * err

    def _trajectory_sse(self, model, lam: float, phase: str, check: bool = True):
        """Sum of squared errors over all data cells, and the number of cells."""
        total, count = 0.0, 0
        for g, sq in self._group_errors(model, lam, phase, check):
            total = total + sq.sum()
            count += int(g.mask.sum())
        return total, count

    @torch.no_grad()
    def trajectory_errors(self, model=None):
        """Uncoupled squared errors summed per trajectory and cells per trajectory (numpy arrays in the data's
        trajectory order); None if the simulation fails."""
        sse, cells = np.zeros(len(self.data.trajectories)), np.zeros(len(self.data.trajectories))
        try:
            for g, sq in self._group_errors(model or self.model, 0.0, "uncoupled evaluation", check=False):
                sse[g.members] = sq.sum(dim=(0, 2)).double().cpu().numpy()
                cells[g.members] = g.mask.sum(dim=(0, 2)).cpu().numpy()
        except FitError:
            return None
        return sse, cells

    def _shooting_loss(self):
        total, count, jumps, n_jumps = 0.0, 0, 0.0, 0
        for g in self.groups:
            starts = [self._initial(self.model, g)]
            if g.corrections is not None:
                starts += list(g.anchors + g.corrections)
            pieces, ends = [], []
            for i, ys in enumerate(self._solve_segments(g, starts)):
                pieces.append(ys if i == len(starts) - 1 else ys[:-1])
                ends.append(ys[-1])
            joined = torch.cat(pieces, 0)
            pred = self._predict(self.model, g, joined, g.t)
            self._check_prediction(g, pred, g.t, "multiple-shooting", 0.0)
            err = torch.where(g.mask, pred - g.y, torch.zeros_like(pred))
            total = total + (err * err).sum()
            count += int(g.mask.sum())
            if len(starts) > 1:
                gap = torch.stack(ends[:-1]) - torch.stack(starts[1:])
                jumps = jumps + (gap * gap).sum()
                n_jumps += gap.numel()
        loss = total / count
        if n_jumps:
            loss = loss + self.config.continuity * jumps / n_jumps
        return loss

    def _solve_segments(self, g: _Group, starts: list) -> list:
        """Each segment's states [len, B, n] from its start [B, n]. An autonomous model (no t, no inputs) solves
        them as one batch from t = 0 on the union of their grids relative to their first times (one solver call
        instead of one per segment; dense output makes the extra output times nearly free)."""
        spans = [g.t[g.bounds[i]:g.bounds[i + 1] + 1] for i in range(len(starts))]
        if len(starts) < 2 or self.model.forward_uses_time:
            out = [self._solve(self.model, g, y0, s, 0.0, f"segment {i + 1}") for i, (y0, s) in
                   enumerate(zip(starts, spans))]
        else:
            grid, picks = _union_grid([s - s[0] for s in spans])
            y0 = torch.stack(starts)  # [S, B, n]
            ys = self._solve(self.model, g, y0.reshape(-1, y0.shape[-1]), grid, 0.0, "segments")
            ys = ys.reshape(len(grid), *y0.shape)
            out = [ys[pick, i] for i, pick in enumerate(picks)]
        for i, (ys, s) in enumerate(zip(out, spans)):
            self._check_states(g, ys, s, f"segment {i + 1}", 0.0)
        return out

    def _check_gradients(self):
        names = {}
        for kind in ("free", "positive", "bounded"):
            rows = [row[0] for row in self.model.parameters_table if row[2] == kind]
            names[id(getattr(self.model, f"raw_{kind}"))] = [f"param '{n}'" for n in rows]
        for slot, module in zip(self.model.slots_table, self.model.slot_modules):
            for p in module.parameters():
                names[id(p)] = f"neural slot '{slot[0]}'"
        if getattr(self.model, "gate_weights", None) is not None:
            names[id(self.model.gate_weights)] = "the sparsity gates"
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    label = names.get(id(p), "multiple-shooting initial-state corrections")
                    if isinstance(label, list):
                        label = label[int(torch.nonzero(~torch.isfinite(p.grad))[0, 0])]
                    raise FitError(f"epoch {self.epoch + 1}: the gradient of {label} is not finite (the loss was "
                                   f"finite); try a smaller lr or tighter solver tolerances")

    # ---------------------------------------------------------------- training
    def step(self) -> dict:
        """One epoch: loss, uncoupled MSE (before the update), best checkpoint, AdamW step."""
        epoch = self.epoch + 1
        lam = self.lam_at(epoch)
        start = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        method = self.config.method
        if method == "multiple_shooting":
            loss = self._shooting_loss()
        else:
            phase = "coupled" if lam > 0 else "uncoupled"
            sse, count = self._trajectory_sse(self.model, lam, phase)
            loss = sse / count
        if not torch.isfinite(loss):
            raise FitError(f"{self._where('training', lam)}: the loss is {float(loss.detach())}")
        if method != "multiple_shooting" and lam == 0:
            mse = float(loss.detach())
        else:
            mse = self.evaluate(self.model)
        if mse < self.best_mse:
            self.best_mse, self.best_epoch = mse, epoch
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        penalty = self.penalty()
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
        self._check_gradients()
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr_at(epoch)
        self.optimizer.step()
        seconds = time.perf_counter() - start
        self.elapsed += seconds
        self.epoch = epoch
        entry = {"epoch": epoch, "lam": lam, "loss": float(loss.detach()), "mse": mse if math.isfinite(mse) else None,
                 "seconds": round(seconds, 6), "elapsed": round(self.elapsed, 6)}
        self.history.append(entry)
        return entry

    @torch.no_grad()
    def evaluate(self, model=None) -> float:
        """Uncoupled MSE of a model over all data cells; inf if its simulation fails or is not finite."""
        model = model or self.model
        try:
            sse, count = self._trajectory_sse(model, 0.0, "uncoupled evaluation", check=False)
        except FitError:
            return math.inf
        value = float(sse / count)
        return value if math.isfinite(value) else math.inf

    def train(self, progress: bool = False, on_epoch: Optional[Callable] = None) -> str:
        """Run the remaining epochs. Returns the status: complete, or interrupted (Ctrl-C: best kept)."""
        total = self.config.total_epochs
        bar = _progress(total, self.epoch, self.config.method, progress)
        self.status = "running"
        try:
            while self.epoch < total:
                entry = self.step()
                improved = self.best_epoch == entry["epoch"]
                bar.update(1)
                bar.set_postfix(_postfix(entry, self.best_mse, self.schedule is not None), refresh=False)
                if on_epoch is not None:
                    on_epoch(self, improved)
            self.status = "complete"
        except KeyboardInterrupt:
            self.status = "interrupted"
        except BaseException:
            self.status = "failed"
            raise
        finally:
            bar.close()
        if self.best_state is None and self.status == "complete":
            raise FitError("no epoch produced a finite uncoupled MSE: the uncoupled model diverged throughout "
                           "(try more epochs, a smaller lr, or method vanilla)")
        return self.status

    # ---------------------------------------------------------------- results and resuming
    def best_model(self):
        model = copy.deepcopy(self.model)
        model.set_coupling(None)
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model

    def predictions(self, model, ts_per_group: Optional[list] = None) -> list:
        """Uncoupled predictions of the fitted columns per group: [(ts, [T, B, m])]."""
        out = []
        with torch.no_grad():
            for k, g in enumerate(self.groups):
                ts = g.t if ts_per_group is None else ts_per_group[k]
                ys = self._solve(model, g, self._initial(model, g), ts, 0.0, "final")
                out.append((ts, self._predict(model, g, ys, ts)))
        return out

    def result(self, evaluate: bool = True) -> FitResult:
        """The best model and the run's record; evaluate=False skips the per-column MSE (one more simulation)."""
        model = self.best_model()
        metrics = {"best_mse": _finite(self.best_mse), "best_epoch": self.best_epoch, "epochs_run": self.epoch,
                   "seconds": round(self.elapsed, 3), "n_cells": self.data.n_cells,
                   "n_trajectories": len(self.data.trajectories)}
        if self.history:
            metrics["final_loss"] = self.history[-1]["loss"]
            metrics["final_mse"] = self.history[-1]["mse"]
        try:
            if not evaluate:
                raise FitError("not evaluated")
            per = np.zeros(len(self.columns))
            cells = np.zeros(len(self.columns))
            for g, (_, pred) in zip(self.groups, self.predictions(model)):
                err = torch.where(g.mask, pred - g.y, torch.zeros_like(pred))
                per += (err * err).sum((0, 1)).double().numpy()
                cells += g.mask.sum((0, 1)).numpy()
            metrics["column_mse"] = {c: _finite(float(per[i] / cells[i])) for i, c in enumerate(self.columns)}
        except FitError:
            metrics["column_mse"] = None
        params = {name: value for name, value in model.params().items() if name in self.trainable}
        return FitResult(model, self.config.method, self.best_epoch, _finite(self.best_mse), params,
                         list(self.history), metrics, self.status, self.config)

    def state(self) -> dict:
        """Everything --resume needs."""
        return {"epoch": self.epoch, "history": self.history, "best_mse": self.best_mse,
                "best_epoch": self.best_epoch, "best_state": self.best_state, "elapsed": self.elapsed,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "corrections": [None if g.corrections is None else g.corrections.detach() for g in self.groups],
                "rng": torch.get_rng_state()}

    def restore(self, state: dict):
        self.model.load_state_dict(state["model"])
        for g, c in zip(self.groups, state.get("corrections") or []):
            if c is not None and g.corrections is not None:
                with torch.no_grad():
                    g.corrections.copy_(c)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.best_mse, self.best_epoch = float(state["best_mse"]), int(state["best_epoch"])
        self.best_state, self.elapsed = state["best_state"], float(state.get("elapsed", 0.0))
        if state.get("rng") is not None:
            torch.set_rng_state(state["rng"])


# ---------------------------------------------------------------- the Python entry point
def _union_grid(grids: list) -> tuple:
    """The sorted union of increasing time grids (values closer than 1e-9 of the span merged) and, per grid, the
    indices of its times in it."""
    values = torch.cat(grids).sort().values
    tol = 1e-9 * float(values[-1] - values[0])
    keep = torch.ones_like(values, dtype=torch.bool)
    keep[1:] = values.diff() > tol
    union = values[keep]
    return union, [torch.searchsorted(union, grid - tol) for grid in grids]


def fit(model, data, config=None, *, inputs: Optional[dict] = None, progress: bool = False,
        on_epoch: Optional[Callable] = None) -> FitResult:
    """Train a compiled model on data; returns the best model, the history and metrics.

    model: a spec path, a compiled model class (instantiated after seeding) or an instance (trained in place).
    data: a Dataset (hodec.training.data) or a CSV path. config: FitConfig, a mapping, a FIT.yaml path, or None.
    inputs: signals for model inputs that have no data column (name -> (times, values) or Signal).
    """
    config = load_config(config)
    if isinstance(model, (str, Path)):
        from ..compiler import load

        model = load(model)
    if isinstance(model, type):
        torch.manual_seed(config.seed)
        model = model()
    else:
        torch.manual_seed(config.seed)
    if not isinstance(data, Dataset):
        data = read_data(data, model)
    trainer = Trainer(model, data, config, inputs)
    try:
        trainer.train(progress=progress, on_epoch=on_epoch)
    except FitError as err:
        if trainer.best_state is not None:
            err.partial = trainer.result(evaluate=False)
        raise
    return trainer.result()


# ---------------------------------------------------------------- progress display
def _postfix(entry: dict, best: float, homotopy: bool) -> dict:
    out = {}
    if homotopy:
        out["lam"] = f"{entry['lam']:.3f}"
    out["loss"] = f"{entry['loss']:.3e}"
    out["mse"] = "n/a" if entry["mse"] is None else f"{entry['mse']:.3e}"
    out["best"] = f"{best:.3e}" if math.isfinite(best) else "n/a"
    return out


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


def _progress(total: int, done: int, method: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    return tqdm(total=total, initial=done, desc=method, unit="epoch", dynamic_ncols=True, leave=True)


def _finite(x):
    return x if x is not None and math.isfinite(x) else None
