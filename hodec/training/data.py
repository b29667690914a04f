"""Training data: a CSV table → trajectories, checked against the model's names.

DATA.csv has a `t` (or `time`) column, an optional `id` column (one trajectory per id, rows of an id in time order,
rows at one time making one time point; without it the whole file is one trajectory), columns named after
observables or states (fitted), after inputs (fed to the model, linearly interpolated between their samples, end
values held) and after fixed params (a known value per trajectory: a covariate). NONMEM-style records (evid, amt,
rate, cmt, dv, dvid, mdv: hodec.training.records) add doses and the long format. Empty cells are missing values.
Each trajectory starts at its first row's time (a dose's included) and needs a later one and a value to fit.
Errors name the file's line and column (hodec.tables reads the cells; columns.py says what each column is).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from ..tables import Table, read_table
from ..errors import HodecError
from .columns import TEXT_NOTE, is_text, layout, type_name
from .config import load_config, number_text
from .records import (DOSE, OBSERVATION, DoseRows, check_config, check_infusions, dose_rows, long_values,
                      missing_targets, row_kinds)


@dataclass
class Trajectory:
    id: str
    t: np.ndarray  # [T], strictly increasing
    y: np.ndarray  # [T, m] fitted columns, NaN where missing
    u: np.ndarray  # [T, q] input columns, NaN where missing
    doses: DoseRows = field(default_factory=DoseRows.empty)  # in time order, at times among t
    params: dict = field(default_factory=dict)  # param name -> its value for this trajectory (fixed params)
    subject: str = ""  # the data id it comes from (a replicate's twin has its own id); "": the id itself

    def __post_init__(self):
        self.subject = self.subject or self.id


@dataclass
class Dataset:
    columns: tuple  # fitted column names (states or observables): wide columns in file order, then dv's
    inputs: tuple  # input column names, in file order
    trajectories: list = field(default_factory=list)
    source: str = "<data>"

    @property
    def n_cells(self) -> int:
        return int(sum(np.isfinite(tr.y).sum() for tr in self.trajectories))

    @property
    def variance(self) -> float:
        """The mean over fitted columns of each column's variance over its finite cells (all trajectories
        pooled); 1.0 when there is none to take (no column with two finite values, or all constant)."""
        per_column = []
        for j in range(len(self.columns)):
            values = np.concatenate([tr.y[:, j] for tr in self.trajectories]) if self.trajectories else np.zeros(0)
            values = values[np.isfinite(values)]
            if len(values) >= 2:
                per_column.append(float(values.var()))
        mean = float(np.mean(per_column)) if per_column else 0.0
        return mean if math.isfinite(mean) and mean > 0 else 1.0


def read_data(path, model, config=None) -> Dataset:
    """Read and check DATA.csv for a compiled model (class or instance). config: the FitConfig whose data keys
    apply (dose_state, dv, dvid, ignore_columns); None: their defaults."""
    config = config or load_config()
    ignored = set(config.ignore_columns)
    return table_to_dataset(read_table(path, lambda name: is_text(name, model, ignored), TEXT_NOTE), model, config)


def table_to_dataset(table: Table, model, config=None) -> Dataset:
    """Split a table into trajectories (by id, in order of first appearance) and check it against the model."""
    config = config or load_config()
    check_config(model, config)
    columns = layout(table, model, set(config.ignore_columns))
    if not len(table.values):
        table.fail("the file has a header but no data rows")
    kind, compartment = row_kinds(table, columns)
    cells = dose_rows(table, columns, kind, compartment, model, config.dose_state)
    missing_targets(table, cells.state, kind)
    fitted, y_all = _fitted(table, columns, kind, model, config)
    times = table.values[:, columns.get("t")]
    _first_missing(table, times, columns.get("t"), f"the time '{table.header[columns.get('t')]}' is missing")
    ids = _ids(table, columns.get("id"))
    fed = [name for name, _ in columns.inputs]
    u_all = table.values[:, [c for _, c in columns.inputs]]
    doses = cells if (kind == DOSE).any() else None
    trajectories = []
    for index in _rows_by_id(ids):
        label = ids[index[0]] if ids.dtype == object else id_label(ids[index[0]])
        what = f"trajectory {label}" if columns.has("id") else "the data"
        t, ys, u = _time_points(table, index, what, times[index], y_all[index], u_all[index], fed)
        mine = index[kind[index] == DOSE] if doses is not None else index[:0]
        _check_trajectory(table, index, what, t, ys[0], fitted, len(mine))
        for j, name in enumerate(fed):
            if not np.isfinite(u[:, j]).any():
                table.fail(f"input column '{name}' has no values for {what}")
        given = (_doses(table, mine, doses, times, what, model.state_names),
                 _params(table, index, columns.params, what, model))
        trajectories.append(Trajectory(label, t, ys[0], u, *given))
        trajectories += [Trajectory(f"{label} (replicate {r + 1})", t, y, u, *given, subject=label)
                         for r, y in enumerate(ys[1:], 1)]
    return Dataset(tuple(fitted), tuple(fed), trajectories, table.source)


def _ids(table: Table, column) -> np.ndarray:
    """Each row's id: numbers (a file of numeric ids), or labels (numbers written as id_label writes them, so 1 and
    1.0 are one id; text as it is)."""
    if column is None:
        return np.zeros(len(table.values))
    numbers = table.values[:, column]
    text = table.text.get(column)
    missing = np.isnan(numbers) if text is None else np.isnan(numbers) & (text == "")
    _first_missing(table, np.where(missing, np.nan, 0.0), column, "the 'id' is missing")
    if text is None or np.isfinite(numbers).all():
        return numbers
    return np.asarray([id_label(x) if np.isfinite(x) else cell for x, cell in zip(numbers, text)], dtype=object)


def _fitted(table: Table, columns, kind: np.ndarray, model, config) -> tuple[list, np.ndarray]:
    """The fitted columns' names (wide ones in file order, then the long format's in order of first appearance)
    and their values per row [rows, m]: NaN on rows that are not observations."""
    observed = kind == OBSERVATION
    wide = [name for name, _ in columns.fitted]
    long_names, target = long_values(table, columns, kind, model, config.dv, config.dvid)
    fitted = wide + [name for name in long_names if name not in wide]
    if not fitted:
        table.fail(f"no column to fit: name at least one column after an observable or state of {type_name(model)} "
                   f"({', '.join([*model.observable_names, *model.state_names])}), or give a 'dv' column")
    y = np.full((len(kind), len(fitted)), np.nan)
    for j, (_, c) in enumerate(columns.fitted):
        y[observed, j] = table.values[observed, c]
    if long_names:
        dv = table.values[:, columns.get("dv")]
        for k, name in enumerate(long_names):
            rows = np.flatnonzero((target == k) & np.isfinite(dv))
            j = fitted.index(name)
            both = rows[np.isfinite(y[rows, j])]
            if both.size:
                table.fail(f"two values of '{name}' on one row: its own column and the dv", int(both[0]))
            y[rows, j] = dv[rows]
    for j, name in enumerate(fitted):
        if not np.isfinite(y[:, j]).any():
            what = f"column '{name}'" if name in wide else f"'{name}' (named by dvid or dv)"
            table.fail(f"{what} has no values (every observation's cell is empty or NaN)")
    return fitted, y


def _time_points(table: Table, index, what: str, t, y, u, fed: list) -> tuple:
    """A trajectory's times, fitted values [R, T, m] and inputs [T, q], rows at one time merged into one time
    point. y[0] holds the first value of each cell, y[r] the (r + 1)-th: replicates, fitted by twins."""
    steps = np.diff(t)
    back = np.flatnonzero(steps < 0)
    if back.size:
        k = int(back[0])
        table.fail(f"time {t[k + 1]:g} does not increase (previous time in {what} is {t[k]:g}); the rows of a "
                   "trajectory are in time order (rows at one time are one time point)", index[k + 1])
    new = steps > 0
    if new.all():
        return t, y[None], u
    slot = np.concatenate([[0], np.cumsum(new)])
    merged = t[np.concatenate([[True], new])]
    return merged, _replicates(slot, len(merged), y), _inputs(table, index, slot, merged, u, fed, what)


def _replicates(slot: np.ndarray, size: int, values: np.ndarray) -> np.ndarray:
    """Rows' values [rows, m] onto their time points, the k-th value of a cell at one time point in layer k:
    [layers, time points, m]."""
    finite = np.isfinite(values)
    rank = np.zeros(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):
        rows = np.flatnonzero(finite[:, j])
        rank[rows, j] = np.arange(len(rows)) - np.searchsorted(slot[rows], slot[rows])
    out = np.full((int(rank.max()) + 1, size, values.shape[1]), np.nan)
    rows, columns = np.nonzero(finite)
    out[rank[rows, columns], slot[rows], columns] = values[rows, columns]
    return out


def _inputs(table: Table, index, slot, times, values, names: list, what: str) -> np.ndarray:
    """Rows' input values [rows, q] onto their time points [T, q]; rows at one time point may repeat a value
    (a covariate on a dose row and an observation row), not differ."""
    out = np.full((len(times), values.shape[1]), np.nan)
    for j, name in enumerate(names):
        rows = np.flatnonzero(np.isfinite(values[:, j]))
        twice = np.flatnonzero(np.diff(slot[rows]) == 0)
        differ = twice[values[rows[twice], j] != values[rows[twice + 1], j]]
        if differ.size:
            first, second = rows[differ[0]], rows[differ[0] + 1]  # positions among the trajectory's rows
            table.fail(f"input '{name}' is {values[second, j]:g} at t = {times[slot[second]]:g} in {what}, but "
                       f"{values[first, j]:g} on {table.where(index[first])}: one value per time point", index[second])
        out[slot[rows], j] = values[rows, j]
    return out


def _doses(table: Table, rows: np.ndarray, cells, times, what: str, states) -> DoseRows:
    """A trajectory's doses from its dose rows (their overlapping infusions an error)."""
    if not rows.size:
        return DoseRows.empty()
    out, source = cells.of(rows, times)
    check_infusions(table, source, out, what, states)
    return out


def _params(table: Table, index: np.ndarray, params: list, what: str, model) -> dict:
    """The trajectory's value of each param column: one value per trajectory; empty cells: the spec's value."""
    spec = {row[0]: row[1] for row in model.parameters_table}
    out = {}
    for name, c in params:
        values = table.values[index, c]
        given = np.flatnonzero(np.isfinite(values))
        other = given[values[given] != values[given[0]]] if given.size else given
        if other.size:
            table.fail(f"'{name}' is a param: one value per trajectory, but {what} has {values[given[0]]:g} on "
                       f"{table.where(index[given[0]])} and {values[other[0]]:g} here", index[other[0]], c)
        out[name] = float(values[given[0]]) if given.size else float(spec[name])
    return out


def _first_missing(table: Table, values: np.ndarray, column: int, message: str):
    missing = np.flatnonzero(np.isnan(values))
    if missing.size:
        table.fail(message, int(missing[0]), column)


def _rows_by_id(ids: np.ndarray) -> list:
    """Row indices of each id, ids in order of first appearance (one sort, not a scan per id)."""
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rows = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    return [rows[k] for k in np.argsort(first)]


def _check_trajectory(table: Table, index: np.ndarray, what: str, t: np.ndarray, y: np.ndarray, fitted: list,
                      doses: int):
    """A trajectory starts at its first time and is fitted at later ones: it needs two or more times (its rows'
    distinct times, doses' included) and a value to fit. index: its rows in the table."""
    if len(t) < 2:
        table.fail(f"{what} has a single time point; a trajectory needs at least two (it starts at its first time "
                   "and is fitted at the later ones)", index[0])
    if not np.isfinite(y).any():
        rows = f"{table.unit}s {table.lines[index[0]]} to {table.lines[index[-1]]}"
        held = f"has {doses} dose{'s' * (doses > 1)} but " if doses else "has "
        table.fail(f"{what} ({rows}) {held}no value in any fitted column ({', '.join(fitted)}): nothing to fit; "
                   "fill its cells or remove its rows")


def make_dataset(model, t, values: Mapping[str, Sequence], inputs: Optional[Mapping[str, Sequence]] = None,
                 ids: Optional[Sequence] = None, config=None) -> Dataset:
    """A Dataset from arrays, checked as a CSV would be: t [N], values name -> [N] (NaN missing; record columns
    such as evid and amt too, cmt as numbers), ids [N]."""
    header = ["t"] + (["id"] if ids is not None else []) + list(values) + list(inputs or {})
    columns = [np.asarray(t, dtype=float)] + ([np.asarray(ids, dtype=float)] if ids is not None else [])
    columns += [np.asarray(v, dtype=float).reshape(-1) for v in values.values()]
    columns += [np.asarray(v, dtype=float).reshape(-1) for v in (inputs or {}).values()]
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise HodecError("every column of a dataset needs as many values as t", "<data>")
    return table_to_dataset(Table(tuple(header), np.stack(columns, 1), np.arange(1, n + 1), unit="row"), model,
                            config)


def id_label(value: float) -> str:
    return number_text(value)


def interpolate_input(t_query: np.ndarray, t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Linear interpolation of an input's non-missing samples (end values held)."""
    ok = np.isfinite(u)
    return np.interp(t_query, t[ok], u[ok])


__all__ = ["Dataset", "Trajectory", "read_data", "table_to_dataset", "make_dataset", "interpolate_input",
           "id_label"]
