"""The fitting problem shared by every training method: which model output each data column is, the trajectories'
groups, the initial states, and the simulations with their checks and per-cell losses.

The loss (objective.py) is the mean of squared errors over all non-missing data cells (every time point, the first
included; every fitted column weighted equally), on the data's scale; with noise models declared, the negative
log-likelihood per data cell. Every reported MSE is the mean of squared errors. NaN/inf in a training solve or a
solver failure (step-size underflow, too many steps) raise a FitError naming the epoch, lambda, trajectory, state
and time.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .. import solvers
from ..errors import HodecError
from .conditions import Conditions
from .config import FitConfig, solver_options
from .data import Dataset
from .groups import Group, make_groups, time_at
from .initial import initial_sources
from .objective import NoiseModels
from .priors import Priors
from .scales import Scales
from .result import FitError


class Problem:
    def __init__(self, model, data: Dataset, config: FitConfig, inputs: Optional[dict] = None):
        self.config = config
        self.dtype = getattr(torch, config.dtype)
        self.model = model.to(self.dtype)
        self.model.set_coupling(None)
        self.data = data
        self.columns = tuple(data.columns)
        self._resolve_columns()
        self.noise = NoiseModels(self.model, data)  # active: the loss is -llh per cell, else the MSE
        self.solver = dict(method=config.solver["method"], rtol=config.solver["rtol"], atol=config.solver["atol"],
                           **solver_options(config.solver))
        # A coupled field follows the data's spline, whose third derivative jumps at every data time: steps that
        # end there are not rejected at each one (hodec's solvers; torchdiffeq's have no such option).
        own = config.solver["method"] in solvers.NAMES
        self.coupled_solver = {**self.solver, "stop_at_outputs": True} if own else self.solver
        check_magnitudes(data, config.dtype)
        self.groups = make_groups(data, self.model, self.dtype, dict(inputs or {}))
        self.gains = self.per_column(config.k, "k")  # homotopy's, but checked against the data for every method
        self.alphas = self.per_column(config.smoothing, "smoothing")
        self.sources = initial_sources(self.model)  # state -> the trainable names its initial value reads
        self.pinned = self._pinned()
        self.scales = Scales(self.model, config, self.dtype)  # params trained in another coordinate
        self.conditions = Conditions(self.model, data, config, self.dtype, self.scales)  # each trajectory's values
        self.priors = Priors(self.model, config)
        self.epoch = 1  # the epoch in progress, for messages (kept by the training loop)
        self.show_lambda = False  # whether messages name lambda (homotopy)

    # ---------------------------------------------------------------- set-up
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

    def _pinned(self) -> list:
        """(column, state) pairs whose state starts at the trajectory's first data value: with `initial: data`,
        the states with a column whose spec initial value reads nothing trainable (a trainable param in it is
        never ignored: the state keeps the spec's expression, and the param trains)."""
        if self.config.initial != "data":
            return []
        names = self.model.state_names
        return [(c, j) for c, j in enumerate(self.state_like) if j is not None and not self.sources[names[j]]]

    def initial_report(self) -> dict:
        """Per state, where its initial value comes from: data, spec (trains p, ...) or spec."""
        pinned = {self.model.state_names[j] for _, j in self.pinned}
        return {name: "data" if name in pinned else
                (f"spec (trains {', '.join(self.sources[name])})" if self.sources[name] else "spec")
                for name in self.model.state_names}

    def per_column(self, value, key: str) -> list:
        """A config value given for every column or as a map column -> value (unnamed columns: 0)."""
        if isinstance(value, dict):
            for name in value:
                if name not in self.columns:
                    raise HodecError(f"{key}: '{name}' is not a fitted column of the data "
                                     f"(fitted columns: {', '.join(self.columns)})", "fit config")
            return [float(value.get(name, 0.0)) for name in self.columns]
        return [float(value)] * len(self.columns)

    # ---------------------------------------------------------------- simulations
    def initial(self, model, g: Group) -> torch.Tensor:
        with self.conditions.applied(model, g):
            y0 = model.initial_state((g.size,))
            if self.pinned:
                y0, keep = y0.clone(), torch.zeros(y0.shape, dtype=torch.bool, device=y0.device)
                for c, j in self.pinned:
                    y0[:, j] = torch.where(g.first_mask[:, c], g.first[:, c], y0[:, j])
                    keep[:, j] = g.first_mask[:, c]
                y0 = model.initial_from(y0, keep)  # initial values that read a pinned state read its data value
        return self.conditions.start(model, g, y0, self.where("pre-equilibration", 0.0))

    def solve(self, model, g: Group, y0, ts, phase: str, coupling=None, lam: float = 0.0,
              after_events: bool = False, stats: Optional[dict] = None) -> torch.Tensor:
        """States [T, B, n] at ts from y0; coupled with `coupling` at strength lam when lam > 0; after_events: y0
        is the state after the events and doses at ts[0] (a multiple-shooting segment); stats: hodec's solvers'
        counters (solvers.solve) are put there."""
        if g.inputs:
            model.set_inputs(g.inputs)
        model.set_coupling(coupling if lam > 0 else None, lam)
        try:
            with self.conditions.applied(model, g):
                return model.simulate(ts, y0=y0, doses=g.doses, after_events=after_events,
                                      **(self.coupled_solver if lam > 0 else self.solver),
                                      **({} if stats is None else {"stats": stats}))
        except HodecError as err:
            raise FitError(self.where(phase, lam) + f": {err.diagnostics[0].message}") from None
        except RuntimeError as err:
            if "max_num_steps" not in str(err):
                raise
            raise FitError(self.where(phase, lam) + f": the ODE solver took more than "
                           f"{self.solver.get('max_num_steps')} steps (solver.max_steps); the model is stiff or "
                           f"diverging") from None
        finally:
            model.set_coupling(None)

    def where(self, phase: str, lam: float) -> str:
        lam_text = f", lambda = {lam:.4g}" if self.show_lambda else ""
        return f"epoch {self.epoch}{lam_text}, {phase} simulation"

    @torch.no_grad()
    def uncoupled_states(self, model, g: Group, ts, phase: str) -> Optional[torch.Tensor]:
        """The uncoupled states from the initial ones, or None if the simulation fails or is not finite (an
        untrained model may diverge on its own)."""
        try:
            ys = self.solve(model, g, self.initial(model, g), ts, phase)
        except FitError:
            return None
        return ys if torch.isfinite(ys).all() else None

    def predict(self, model, g: Group, ys: torch.Tensor, ts: torch.Tensor, obs=None) -> torch.Tensor:
        """The fitted columns [T, B, m] from states [T, B, n] (and the observables, when the caller has them)."""
        pred = ys.index_select(-1, self._col_from_state.to(ys.device))
        if self.obs_index:
            obs = self.observe(model, g, ys, ts) if obs is None else obs
            pred = torch.where(self._col_is_obs.to(ys.device), obs.index_select(-1, self._col_obs.to(ys.device)),
                               pred)
        return pred

    def observe(self, model, g: Group, ys: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """Every observable [T, B, n_obs] from states [T, B, n]."""
        if g.inputs:
            model.set_inputs(g.inputs)
        with self.conditions.applied(model, g):
            return model.observe(ys, ts)

    def check_states(self, g: Group, ys: torch.Tensor, ts: torch.Tensor, phase: str, lam: float = 0.0):
        bad = ~torch.isfinite(ys)
        if bad.any():
            k, b, j = (int(v) for v in torch.nonzero(bad)[0])
            kind = "NaN" if torch.isnan(ys[k, b, j]) else "inf"
            raise FitError(f"{self.where(phase, lam)}: state '{self.model.state_names[j]}' of trajectory "
                           f"{g.ids[b]} became {kind} at t = {time_at(ts, k, b):g}; the model diverged (try a smaller "
                           f"lr, other initial params, or a larger k)")

    def check_prediction(self, g: Group, pred: torch.Tensor, ts, phase: str, lam: float = 0.0):
        bad = ~torch.isfinite(pred) & g.mask[: len(ts)]
        if bad.any():
            k, b, c = (int(v) for v in torch.nonzero(bad)[0])
            raise FitError(f"{self.where(phase, lam)}: column '{self.columns[c]}' of trajectory {g.ids[b]} is "
                           f"not finite at t = {time_at(ts, k, b):g} although every state is (check the observable's "
                           f"formula: log or sqrt of a negative value, division by zero?)")

    @staticmethod
    def squared_errors(g: Group, pred: torch.Tensor) -> torch.Tensor:
        """[T, B, m], 0 at missing cells."""
        err = torch.where(g.mask, pred - g.y, torch.zeros_like(pred))
        return err * err

    def cell_losses(self, model, g: Group, ys: torch.Tensor, ts: torch.Tensor, phase: str, lam: float = 0.0,
                    check: bool = True, squared: bool = False) -> torch.Tensor:
        """The loss of each data cell [T, B, m] (0 at missing cells) from states ys [T, B, n]: its squared error,
        or with noise models (unless `squared`) its negative log density."""
        likelihood = self.noise.active and not squared
        obs = self.observe(model, g, ys, ts) if likelihood else None
        pred = self.predict(model, g, ys, ts, obs)
        if check:
            self.check_prediction(g, pred, ts, phase, lam)
        if not likelihood:
            return self.squared_errors(g, pred)
        with self.conditions.applied(model, g):
            return self.noise.negative_log_densities(model, g, ys, ts, obs, pred, self.where(phase, lam))

    def group_errors(self, model, phase: str, check: bool = True, couplings=None, lam: float = 0.0,
                     squared: bool = False, states=None):
        """Per group: (the group, cell_losses [T, B, m]); `couplings` (one per group) apply when lam > 0;
        `states(k, y0)`, where given, gives group k's states [T, B, n] in place of its solve (homotopy's solves
        parallel in time)."""
        for k, g in enumerate(self.groups):
            coupling = None if couplings is None else couplings[k]
            y0 = self.initial(model, g)
            ys = self.solve(model, g, y0, g.t, phase, coupling, lam) if states is None else states(k, y0)
            if check:
                self.check_states(g, ys, g.t, phase, lam)
            yield g, self.cell_losses(model, g, ys, g.t, phase, lam, check, squared)

    def loss(self, model, phase: str, check: bool = True, couplings=None, lam: float = 0.0, states=None):
        """The objective: the cells' losses summed over all data cells, divided by the number of cells (the MSE,
        or with noise models -llh / n)."""
        total, count = 0.0, 0
        for g, cells in self.group_errors(model, phase, check, couplings, lam, states=states):
            total = total + cells.sum()
            count += int(g.mask.sum())
        return total / count + self.prior_term(model)

    def prior_term(self, model):
        """-log prior / n (priors.py; n: the data's cells, the objective's per-cell scale, so with noise models the
        objective is (-llh - log prior) / n, the MAP's); 0 without priors."""
        value = self.priors.negative_log(self.conditions.values(model))
        return 0.0 if value is None else value / self.data.n_cells

    # ---------------------------------------------------------------- evaluation (no gradients; failures tolerated)
    @torch.no_grad()
    def evaluate(self, model=None) -> float:
        """Uncoupled objective (MSE, or -llh per cell) of a model over all data cells; inf if its simulation fails
        or is not finite."""
        try:
            value = float(self.loss(model or self.model, "uncoupled evaluation", check=False))
        except FitError:
            return math.inf
        return value if math.isfinite(value) else math.inf

    @torch.no_grad()
    def trajectory_errors(self, model=None):
        """Uncoupled squared errors summed per trajectory and cells per trajectory (numpy arrays in the data's
        trajectory order); None if the simulation fails."""
        sse, cells = np.zeros(len(self.data.trajectories)), np.zeros(len(self.data.trajectories))
        try:
            for g, sq in self.group_errors(model or self.model, "uncoupled evaluation", check=False, squared=True):
                sse[g.members] = sq.sum(dim=(0, 2)).double().cpu().numpy()
                cells[g.members] = g.mask.sum(dim=(0, 2)).cpu().numpy()
        except FitError:
            return None
        return sse, cells

    def predictions(self, model, ts_per_group: Optional[list] = None) -> list:
        """Uncoupled predictions of the fitted columns per group: [(ts, [T, B, m])]."""
        out = []
        with torch.no_grad():
            for k, g in enumerate(self.groups):
                ts = g.t if ts_per_group is None else ts_per_group[k]
                ys = self.solve(model, g, self.initial(model, g), ts, "final")
                out.append((ts, self.predict(model, g, ys, ts)))
        return out

    def column_mse(self, model) -> Optional[dict]:
        """Uncoupled MSE per fitted column (None where a column has no cells); None if the simulation fails."""
        per, cells = np.zeros(len(self.columns)), np.zeros(len(self.columns))
        try:
            for g, (_, pred) in zip(self.groups, self.predictions(model)):
                per += self.squared_errors(g, pred).sum((0, 1)).double().numpy()
                cells += g.mask.sum((0, 1)).numpy()
        except FitError:
            return None
        return {c: finite(float(per[i] / cells[i])) for i, c in enumerate(self.columns)}


def finite(x):
    return x if x is not None and math.isfinite(x) else None


def check_magnitudes(data: Dataset, dtype: str):
    """Refuse data the run's float type cannot square: the reader's bound (tables.LARGEST) is float64's; in float32
    a value beyond ~1.8e19 makes every squared error inf, which would surface as advice about the lr."""
    if dtype != "float32":
        return
    limit = math.sqrt(torch.finfo(torch.float32).max) / 10  # room for the sum over cells
    for tr in data.trajectories:
        for values, names in ((tr.y, data.columns), (tr.u, data.inputs)):
            big = np.argwhere(np.abs(np.nan_to_num(values)) > limit)
            if len(big):
                row, col = big[0]
                where = f"trajectory {tr.id}, t = {tr.t[row]:g}, column '{names[col]}'"
                raise HodecError(f"{where}: {values[row, col]:g} is too large for dtype: float32 (its square "
                                 f"overflows beyond ±{limit:.2g}); use dtype: float64 or rescale the data",
                                 data.source)
