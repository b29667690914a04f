"""Training data: a CSV table → trajectories, checked against the model's names.

DATA.csv has a `t` column, an optional `id` column (one trajectory per id, rows of an id in time order; without
it the whole file is one trajectory), columns named after observables or states (fitted), and columns named
after inputs (fed to the model, linearly interpolated between their samples, end values held). Empty cells are
missing values. Each trajectory starts at its first row's time and needs a later one and a value to fit. Errors
name the file's line and column (hodec.tables reads the cells).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from ..tables import Table, read_table
from ..errors import HodecError, did_you_mean


@dataclass
class Trajectory:
    id: str
    t: np.ndarray  # [T], strictly increasing
    y: np.ndarray  # [T, m] fitted columns, NaN where missing
    u: np.ndarray  # [T, q] input columns, NaN where missing


@dataclass
class Dataset:
    columns: tuple  # fitted column names (states or observables), in file order
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


def read_data(path, model) -> Dataset:
    """Read and check DATA.csv for a compiled model (class or instance)."""
    return table_to_dataset(read_table(path), model)


def table_to_dataset(table: Table, model) -> Dataset:
    """Split a table into trajectories (by id, in order of first appearance) and check it against the model."""
    header = table.header
    fitted, fed = _columns(table, model)
    if not len(table.values):
        table.fail("the file has a header but no data rows")
    col = {name: i for i, name in enumerate(header)}
    times = table.values[:, col["t"]]
    _first_missing(table, times, col["t"], "the time 't' is missing")
    ids = table.values[:, col["id"]] if "id" in col else np.zeros(len(times))
    if "id" in col:
        _first_missing(table, ids, col["id"], "the 'id' is missing")
    y_all = table.values[:, [col[c] for c in fitted]]
    for j, name in enumerate(fitted):
        if not np.isfinite(y_all[:, j]).any():
            table.fail(f"column '{name}' has no values (every cell is empty or NaN)")
    u_all = table.values[:, [col[c] for c in fed]]
    trajectories = []
    for index in _rows_by_id(ids):
        label = id_label(ids[index[0]])
        what = f"trajectory {label}" if "id" in col else "the data"
        t, y, u = times[index], y_all[index], u_all[index]
        _check_trajectory(table, index, what, t, y, fitted)
        for j, name in enumerate(fed):
            if not np.isfinite(u[:, j]).any():
                table.fail(f"input column '{name}' has no values for {what}")
        trajectories.append(Trajectory(label, t, y, u))
    return Dataset(tuple(fitted), tuple(fed), trajectories, table.source)


def _columns(table: Table, model) -> tuple[list, list]:
    """The fitted (observable or state) and fed (input) columns of the header; any other name is an error."""
    states, observables, inputs = set(model.state_names), set(model.observable_names), set(model.input_names)
    seen = set()
    for name in table.header:
        if name in seen:
            table.fail(f"column '{name}' appears twice in the header")
        seen.add(name)
    if "t" not in table.header:
        table.fail(f"no 't' column (the header is: {', '.join(table.header) or 'empty'})")
    fitted, fed = [], []
    for name in table.header:
        if name in ("t", "id"):
            continue
        if name in observables or name in states:
            fitted.append(name)
        elif name in inputs:
            fed.append(name)
        else:
            hint = did_you_mean(name, [*observables, *states, *inputs, "t", "id"])
            known = ", ".join([*model.observable_names, *model.state_names, *model.input_names])
            table.fail(f"unknown column '{name}': not an observable, state or input of {type_name(model)}"
                       + (f"; {hint}" if hint else f" (known: {known})"))
    if not fitted:
        table.fail(f"no column to fit: name at least one column after an observable or state of {type_name(model)} "
                   f"({', '.join([*model.observable_names, *model.state_names])})")
    return fitted, fed


def _first_missing(table: Table, values: np.ndarray, column: int, message: str):
    missing = np.flatnonzero(np.isnan(values))
    if missing.size:
        table.fail(message, int(missing[0]), column)


def _rows_by_id(ids: np.ndarray) -> list:
    """Row indices of each id, ids in order of first appearance (one sort, not a scan per id)."""
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rows = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    return [rows[k] for k in np.argsort(first)]


def _check_trajectory(table: Table, index: np.ndarray, what: str, t: np.ndarray, y: np.ndarray, fitted: list):
    """A trajectory starts at its first time and is fitted at later ones: it needs two or more increasing times
    and a value to fit. index: its rows in the table."""
    if len(index) < 2:
        table.fail(f"{what} has a single time point; a trajectory needs at least two (it starts at its first time "
                   "and is fitted at the later ones)", index[0])
    steps = np.diff(t)
    if (steps <= 0).any():
        k = int(np.flatnonzero(steps <= 0)[0])
        table.fail(f"time {t[k + 1]:g} does not increase (previous time in {what} is {t[k]:g}); times must be "
                   "strictly increasing within each trajectory", index[k + 1])
    if not np.isfinite(y).any():
        rows = f"{table.unit}s {table.lines[index[0]]} to {table.lines[index[-1]]}"
        table.fail(f"{what} ({rows}) has no value in any fitted column ({', '.join(fitted)}): nothing to fit; "
                   "fill its cells or remove its rows")


def make_dataset(model, t, values: Mapping[str, Sequence], inputs: Optional[Mapping[str, Sequence]] = None,
                 ids: Optional[Sequence] = None) -> Dataset:
    """A Dataset from arrays, checked as a CSV would be: t [N], values name -> [N] (NaN missing), ids [N]."""
    header = ["t"] + (["id"] if ids is not None else []) + list(values) + list(inputs or {})
    columns = [np.asarray(t, dtype=float)] + ([np.asarray(ids, dtype=float)] if ids is not None else [])
    columns += [np.asarray(v, dtype=float).reshape(-1) for v in values.values()]
    columns += [np.asarray(v, dtype=float).reshape(-1) for v in (inputs or {}).values()]
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise HodecError("every column of a dataset needs as many values as t", "<data>")
    return table_to_dataset(Table(tuple(header), np.stack(columns, 1), np.arange(1, n + 1), unit="row"), model)


def id_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def type_name(model) -> str:
    return model.__name__ if isinstance(model, type) else type(model).__name__


def interpolate_input(t_query: np.ndarray, t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Linear interpolation of an input's non-missing samples (end values held)."""
    ok = np.isfinite(u)
    return np.interp(t_query, t[ok], u[ok])


__all__ = ["Dataset", "Trajectory", "read_data", "table_to_dataset", "make_dataset", "interpolate_input",
           "id_label"]
