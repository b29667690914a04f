"""`hodec forecast`: a forecast fit's run folder applied to new data.

The model and the estimator are rebuilt from the run's checkpoint (the best epoch's). Each trajectory of HIST.csv
(DATA.csv's format, read with the run's config) makes one window: its origin is the trajectory's last time, its
history the time points in (origin - forecast.history, origin], as training cut its windows; the trajectory must
reach back to origin - forecast.history + step (a whole history, as in training). The forecast's times are origin +
step, origin + 2 step, ... up to origin + horizon, step the history's sampling step (the median spacing of its times)
unless given. INPUTS.csv (columns t, an optional id and the model's inputs) is read as if its rows were in HIST.csv
(at a time both give, an input's values must agree; without an id column its rows apply to every trajectory); the
inputs are interpolated linearly, as in training, and each must have a value at or after the forecast's end.
With forecast.pool the window's params are pooled over the trajectory's earlier histories (pool.py): those
starting every forecast.stride before its t0, as far back as HIST.csv reaches (whole histories) and pool allows.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...errors import HodecError
from ...tables import read_table
from ..columns import TEXT_NOTE, is_text, role
from ..config import FitConfig, load_config
from ..data import Dataset, Trajectory, id_label
from ..problem import Problem
from ..report import load_checkpoint
from ..run import sha256
from ..result import FitError
from .heldout import saved, saved_model, with_columns
from .predict import forecast
from .windows import Cut, assemble, earlier_cuts, pooled

WHO = "hodec forecast"
TOLERANCE = 1e-9  # of a time span: times closer than this count as equal


@dataclasses.dataclass
class Forecaster:
    """A forecast fit's best model and estimator, as its run folder holds them."""
    model: torch.nn.Module
    config: FitConfig
    estimator: dict  # Method.state()["estimator"]: {"options", "state"}
    columns: tuple  # the fitted columns of its training data, in their order


def load_forecaster(compilation, rundir) -> Forecaster:
    """The run in rundir, refused unless it is a forecast fit of this very spec."""
    path = Path(rundir) / "checkpoint.pt"
    if not path.is_file():
        raise HodecError(f"no checkpoint at {path}: --run names the run folder of a `hodec fit`", WHO)
    checkpoint = load_checkpoint(path)
    config = load_config(checkpoint["config"])
    if config.method != "forecast":
        raise HodecError(f"the run in {rundir} was fitted with method {config.method}: only a forecast fit (FIT.yaml "
                         f"method: forecast) has a state estimator to forecast with", WHO)
    meta = checkpoint["meta"]
    if meta.get("spec_sha256") != sha256(compilation.source.encode()):
        raise HodecError(f"{compilation.path} is not the spec the run in {rundir} was fitted with "
                         f"({meta.get('spec', '?')}): their texts differ", WHO)
    estimator = checkpoint["resume"].get("estimator")
    if not isinstance(estimator, dict) or not {"options", "state"} <= set(estimator):
        raise HodecError(f"{rundir}/checkpoint.pt holds no estimator (a run of an older hodec?)", WHO)
    return Forecaster(saved_model(compilation.model_class(), checkpoint, config, rundir), config, estimator,
                      tuple(meta["columns"]))


@dataclasses.dataclass
class InputRows:
    """INPUTS.csv: per id (None: no id column, the rows of every trajectory) its times [N], inputs [N, q] (NaN
    missing) and file rows (for messages)."""
    source: str
    names: tuple
    by_id: dict
    where: dict  # id -> its rows' places in the file ("line 7")


def read_inputs(path, model, config: FitConfig) -> InputRows:
    """INPUTS.csv: t (or time), an optional id, input columns; anything else is an error naming the column."""
    ignored = set(config.ignore_columns)
    table = read_table(path, lambda name: is_text(name, model, ignored), TEXT_NOTE)
    roles, names = {}, []
    for c, name in enumerate(table.header):
        kind = role(name, model, ignored)
        if kind == "model" and name in model.input_names:
            names.append((name, c))
        elif kind in ("t", "id") and kind not in roles:
            roles[kind] = c
        elif kind != "ignore":
            table.fail(f"column '{name}': an inputs file holds t, an optional id and the inputs of "
                       f"{type(model).__name__} ({', '.join(model.input_names) or 'it has none'})")
    if "t" not in roles or not names:
        table.fail("an inputs file needs a 't' column and at least one input column")
    if not len(table.values):
        table.fail("the file has a header but no data rows")
    times = table.values[:, roles["t"]]
    labels = _labels(table, roles.get("id"))
    by_id, where = {}, {}
    for label in dict.fromkeys(labels):
        rows = np.flatnonzero(labels == label) if label is not None else np.arange(len(times))
        t = times[rows]
        bad = np.flatnonzero(~np.isfinite(t))
        if bad.size:
            table.fail("the time is missing", int(rows[bad[0]]), roles["t"])
        back = np.flatnonzero(np.diff(t) <= 0)
        if back.size:
            table.fail(f"time {t[back[0] + 1]:g} does not increase (the previous row of this id is at "
                       f"{t[back[0]]:g})", int(rows[back[0] + 1]))
        by_id[label] = (t, table.values[rows][:, [c for _, c in names]])
        where[label] = [table.where(int(r)) for r in rows]
    return InputRows(table.source, tuple(name for name, _ in names), by_id, where)


def _labels(table, column) -> np.ndarray:
    """Each row's id as data.py labels it (numbers as id_label writes them, text as it is); None without ids."""
    if column is None:
        return np.full(len(table.values), None, dtype=object)
    text = table.text.get(column)
    out = []
    for r, value in enumerate(table.values[:, column]):
        label = id_label(value) if np.isfinite(value) else (text[r] if text is not None else "")
        if not label:
            table.fail("the 'id' is missing", r, column)
        out.append(label)
    return np.asarray(out, dtype=object)


@dataclasses.dataclass
class Forecast:
    """The forecasts: per trajectory id, its times [K] and the fitted columns' values [K, m]."""
    columns: tuple
    rows: list  # (id, times [K], values [K, m])


def forecast_history(forecaster: Forecaster, history: Dataset, inputs: Optional[InputRows], horizon: float,
                     step: Optional[float] = None) -> Forecast:
    """Each trajectory of the history forecast `horizon` time units past its last time (see the module doc)."""
    history = with_columns(history, forecaster.columns, "the run's")
    _check_ids(history, inputs)
    model, options = forecaster.model, forecaster.config.forecast_options
    trajectories, cuts, grids, context, own = [], [], [], [], []
    for i, tr in enumerate(history.trajectories):
        merged, cut, grid = _window(tr, i, model, history, inputs, options.history, horizon, step)
        trajectories.append(merged)
        cuts.append(cut)
        grids.append(grid)
        if options.pool is not None:  # the earlier histories its params are pooled over
            own.append(len(context))
            context += earlier_cuts(merged, cut, float(tr.t[0]), options.history, options.stride, options.pool)
    data = Dataset(history.columns, tuple(model.input_names), trajectories, history.source)
    problem = Problem(model, data, forecaster.config)
    windows = assemble(problem, cuts)
    if options.pool is not None:
        windows = pooled(problem, windows, context, own, options.pool)
    try:
        pred = forecast(model, saved(problem, forecaster.estimator), windows, problem).detach().cpu().numpy()
    except FitError as err:  # its message starts with the epoch, which means nothing here
        message = err.diagnostics[0].message.removeprefix(problem.where("forecast", 0.0) + ": ")
        raise HodecError(f"the model's forecast failed: {message}", WHO) from None
    rows = []
    for w, (tr, cut, (times, at)) in enumerate(zip(trajectories, cuts, grids)):
        values = pred[np.asarray(at) - cut.horizon.start, w]
        bad = np.flatnonzero(~np.isfinite(values).all(1))
        if bad.size:
            raise HodecError(f"the forecast of trajectory {tr.id} is not finite from t = {times[bad[0]]:g} on (the "
                             f"model diverges from the estimated state)", WHO)
        rows.append((tr.id, times, values))
    return Forecast(history.columns, rows)


def _check_ids(history: Dataset, inputs: Optional[InputRows]):
    if inputs is None:
        return
    known = {tr.id for tr in history.trajectories}
    for label in inputs.by_id:
        if label is not None and label not in known:
            raise HodecError(f"{inputs.where[label][0]}: id {label} is not a trajectory of the history "
                             f"{history.source}", inputs.source)


def _window(tr: Trajectory, index: int, model, history: Dataset, inputs: Optional[InputRows], length: float,
            horizon: float, step: Optional[float]) -> tuple:
    """The trajectory with its inputs' rows and the forecast's times merged in, its window's cut, and the
    forecast's times with their indices among the merged times."""
    what = f"trajectory {tr.id}" if len(history.trajectories) > 1 else "the history"
    origin = float(tr.t[-1])
    tol = TOLERANCE * max(1.0, length + horizon)
    step = float(np.median(np.diff(tr.t))) if step is None else step
    if tr.t[0] > origin - length + step + tol:
        raise HodecError(f"{what} covers t = {tr.t[0]:g} to {origin:g}: the run forecasts from {length:g} time units "
                         f"of history (forecast.history), so it needs values from t = {origin - length + step:g} on "
                         f"(a sample every {step:g})", history.source)
    n = int(np.floor(horizon / step + TOLERANCE))
    if n < 1:
        raise HodecError(f"--horizon {horizon:g} is shorter than the sampling step {step:g}: nothing to forecast")
    grid = origin + step * np.arange(1, n + 1)
    given = None if inputs is None else inputs.by_id.get(tr.id, inputs.by_id.get(None))
    t = np.unique(np.concatenate([tr.t, grid] + ([] if given is None else [given[0]])))
    y = np.full((len(t), len(history.columns)), np.nan)
    y[np.searchsorted(t, tr.t)] = tr.y
    u = _inputs(t, tr, model, history, inputs, given, what, float(grid[-1]))
    first, stop = np.searchsorted(t, origin - length + tol, side="right"), np.searchsorted(t, origin) + 1
    if not np.isfinite(y[first:stop]).any():
        raise HodecError(f"{what} has no value in its last {length:g} time units (forecast.history)", history.source)
    end = np.searchsorted(t, grid[-1]) + 1
    merged = dataclasses.replace(tr, t=t, y=y, u=u)
    return merged, Cut(index, float(t[first]), range(first, stop), range(stop, end)), (grid, np.searchsorted(t, grid))


def _inputs(t, tr: Trajectory, model, history: Dataset, inputs: Optional[InputRows], given, what: str,
            end: float) -> np.ndarray:
    """[T, q] the model's inputs at the merged times t (NaN where neither file gives one), checked: the files
    agree where both give a value, and every input has one at or after the forecast's end."""
    u = np.full((len(t), len(model.input_names)), np.nan)
    for q, name in enumerate(model.input_names):
        if name in history.inputs:
            u[np.searchsorted(t, tr.t), q] = tr.u[:, history.inputs.index(name)]
        if given is not None and name in inputs.names:
            values = given[1][:, inputs.names.index(name)]
            at = np.searchsorted(t, given[0])
            both = np.flatnonzero(np.isfinite(u[at, q]) & np.isfinite(values) & (u[at, q] != values))
            if both.size:
                k = int(both[0])
                raise HodecError(f"{inputs.where[tr.id if tr.id in inputs.by_id else None][k]}: input '{name}' is "
                                 f"{values[k]:g} at t = {given[0][k]:g}, but {u[at[k], q]:g} in the history "
                                 f"{history.source}", inputs.source)
            u[at, q] = np.where(np.isfinite(values), values, u[at, q])
        known = t[np.isfinite(u[:, q])]
        if not known.size or known[-1] < end - TOLERANCE * max(1.0, end - t[0]):
            last = f"its last value is at t = {known[-1]:g}" if known.size else "it has no value"
            source = inputs.source if inputs is not None else history.source
            raise HodecError(f"input '{name}' of {what}: {last}, before the forecast's end t = {end:g}; give its "
                             f"values up to there (--inputs INPUTS.csv)", source)
    return u
