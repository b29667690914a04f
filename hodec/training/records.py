"""NONMEM-style records (as NONMEM, nlmixr2 and Pumas write them): which rows are observations, doses or neither,
each dose's amount, rate and target state, and the long format's dv values as fitted columns.

- `evid`: 0 observation, 1 dose, 2 neither (NONMEM's "other event": a time point, no value), and rxode2's classic
  100·c + 1 (a dose into compartment c); 3 and 4 (resets) and anything else are refused. Without an `evid`
  column a row with `amt` > 0 is a dose (NONMEM's rule). `mdv` = 1 makes an observation row hold no value.
- A dose's target is its `cmt`: a state's name, or a number k (NONMEM's compartment number: the k-th state of
  the model's state_names, from 1); an empty `cmt` (or no column) doses FIT.yaml's `dose_state`. `amt` >= 0 is
  required; `rate` > 0 infuses amt at that rate over [t, t + amt/rate] (or `dur` > 0: over [t, t + dur]), empty
  or 0 is a bolus. `addl` = n repeats the dose n more times, `ii` apart; `ss` (steady state) is refused. Infusions
  into one state of one trajectory must not overlap. A dose row's other cells (dv, fitted columns) are not read.
- Long format: `dv` holds an observation row's value and `dvid` what it is: an observable's or state's name, or
  a value FIT.yaml's `dvid` map names (numbers need the map); rows without a dvid are FIT.yaml's `dv`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HodecError, did_you_mean
from ..tables import Table
from .columns import Layout, type_name
from .config import number_text

OBSERVATION, DOSE, NEITHER = 0, 1, 2
EVIDS = "evid 0 (observation), 1 (dose), 2 (no observation) and 100·c + 1 (rxode2: a dose into compartment c)"
REFUSED = {3: "a reset", 4: "a reset and dose"}
MAX_ADDL = 100000  # additional doses of one row: a daily dose for 270 years; more is a typo


@dataclass(frozen=True)
class DoseRows:
    """A trajectory's doses, in time order."""

    time: np.ndarray  # [K]
    amount: np.ndarray  # [K]
    state: np.ndarray  # [K] int64: index into the model's state_names
    rate: np.ndarray  # [K]: 0 for a bolus

    def __len__(self) -> int:
        return len(self.time)

    @staticmethod
    def empty() -> "DoseRows":
        none = np.zeros(0)
        return DoseRows(none, none, np.zeros(0, dtype=np.int64), none)


def row_kinds(table: Table, columns: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Each row's kind (OBSERVATION, DOSE or NEITHER) and the compartment number its evid names (NaN: none)."""
    n = len(table.values)
    compartment = np.full(n, np.nan)
    if columns.has("evid"):
        kind, compartment = _evids(table, columns.get("evid"))
    elif columns.has("amt"):
        kind = np.where(table.values[:, columns.get("amt")] > 0, DOSE, OBSERVATION)
    else:
        kind = np.full(n, OBSERVATION)
    if columns.has("mdv"):
        c = columns.get("mdv")
        mdv = np.nan_to_num(table.values[:, c])
        bad = np.flatnonzero((mdv != 0) & (mdv != 1))
        if bad.size:
            table.fail(f"mdv is {mdv[bad[0]]:g}: 0 (or empty) for a value, 1 for none", int(bad[0]), c)
        kind = np.where((kind == OBSERVATION) & (mdv == 1), NEITHER, kind)
    return kind, compartment


def _evids(table: Table, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The kinds of rows by their evid, and the compartment an rxode2 code names (NaN: none)."""
    evid = table.values[:, c]
    missing = np.flatnonzero(np.isnan(evid))
    if missing.size:
        table.fail(f"the evid is missing ({EVIDS})", int(missing[0]), c)
    classic = (evid >= 101) & (evid < 10000) & (evid % 100 == 1)
    bad = np.flatnonzero(~np.isin(evid, (0, 1, 2)) & ~classic)
    if bad.size:
        value = evid[bad[0]]
        what = f" ({REFUSED[int(value)]})" if value in REFUSED else ""
        table.fail(f"evid {value:g}{what} is not supported; hodec reads {EVIDS}", int(bad[0]), c)
    return np.where(classic, DOSE, evid).astype(np.int64), np.where(classic, evid // 100, np.nan)


@dataclass(frozen=True)
class DoseCells:
    """Every row's dose cells, checked on the dose rows (elsewhere: amount NaN, state -1, no repeats)."""

    amount: np.ndarray
    rate: np.ndarray  # 0: a bolus
    state: np.ndarray  # int64
    addl: np.ndarray  # int64: how many more doses follow, ii apart
    ii: np.ndarray

    def of(self, rows: np.ndarray, times: np.ndarray) -> tuple[DoseRows, np.ndarray]:
        """The doses of some dose rows (of one trajectory, in time order), a row's addl more included, in time
        order; and the row each dose comes from."""
        count = self.addl[rows] + 1
        source = np.repeat(rows, count)
        k = np.arange(len(source)) - np.repeat(np.cumsum(count) - count, count)
        time = times[source] + k * self.ii[source]
        order = np.argsort(time, kind="stable")
        source, time = source[order], time[order]
        return DoseRows(time, self.amount[source], self.state[source], self.rate[source]), source


def dose_rows(table: Table, columns: Layout, kind: np.ndarray, compartment: np.ndarray, model,
              dose_state) -> DoseCells:
    """The dose cells of every row (amt, rate or dur, cmt, addl and ii), checked on the dose rows."""
    rows = np.flatnonzero(kind == DOSE)
    n = len(kind)
    cells = DoseCells(np.full(n, np.nan), np.zeros(n), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64),
                      np.zeros(n))
    if not rows.size:
        return cells
    if not columns.has("amt"):
        table.fail("a dose row (evid 1) needs an amount: add an 'amt' column", int(rows[0]))
    c = columns.get("amt")
    cells.amount[rows] = table.values[rows, c]
    _refuse(table, rows, np.isnan(cells.amount[rows]), c, "a dose row needs an amount (the 'amt' cell is empty)")
    _refuse(table, rows, cells.amount[rows] < 0, c, "a dose's amount must be >= 0")
    cells.rate[rows] = _rates(table, columns, rows, cells.amount[rows])
    _refuse(table, rows, (cells.rate[rows] > 0) & (cells.amount[rows] == 0), c,
            "an infusion (rate > 0) needs an amount > 0 (it runs for amt / rate)")
    cells.state[rows] = _targets(table, columns, rows, compartment, model, dose_state)
    _repeats(table, columns, rows, cells)
    if columns.has("ss"):
        c = columns.get("ss")
        _refuse(table, rows, np.nan_to_num(table.values[rows, c]) != 0, c,
                "ss (a dose at steady state) is not supported: give the doses that lead there (addl and ii)")
    return cells


def _rates(table: Table, columns: Layout, rows: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """The dose rows' infusion rates: `rate`, or amt / `dur`; 0 for a bolus."""
    rate = np.zeros(len(rows))
    if columns.has("rate"):
        c = columns.get("rate")
        rate = np.nan_to_num(table.values[rows, c])
        _refuse(table, rows, rate < 0, c, "a dose's rate must be >= 0 (empty or 0: a bolus; rate -1 and -2, a "
                                          "modelled rate or duration, are not supported)")
    if columns.has("dur"):
        c = columns.get("dur")
        duration = np.nan_to_num(table.values[rows, c])
        _refuse(table, rows, duration < 0, c, "a dose's duration must be >= 0 (empty or 0: a bolus)")
        _refuse(table, rows, (duration > 0) & (rate > 0), c, "a dose has both a rate and a duration: give one")
        rate = np.where(duration > 0, amount / np.where(duration > 0, duration, 1.0), rate)
    return rate


def _repeats(table: Table, columns: Layout, rows: np.ndarray, cells: DoseCells):
    """addl (how many more doses) and ii (the interval between them), checked."""
    if not columns.has("addl"):
        return
    c = columns.get("addl")
    addl = np.nan_to_num(table.values[rows, c])
    _refuse(table, rows, (addl < 0) | (addl != np.round(addl)) | (addl > MAX_ADDL), c,
            f"addl is how many more doses follow: a whole number from 0 to {MAX_ADDL}")
    interval = np.nan_to_num(table.values[rows, columns.get("ii")]) if columns.has("ii") else np.zeros(len(rows))
    _refuse(table, rows, (addl > 0) & ~(interval > 0), columns.get("ii", columns.get("addl")),
            "a dose with addl > 0 needs the interval between its doses: ii > 0")
    cells.addl[rows], cells.ii[rows] = addl.astype(np.int64), interval


def _refuse(table: Table, rows: np.ndarray, bad: np.ndarray, column: int, message: str):
    if bad.any():
        table.fail(message, int(rows[np.flatnonzero(bad)[0]]), column)


def _targets(table: Table, columns: Layout, rows, compartment, model, dose_state) -> np.ndarray:
    """The state index each dose row doses: its cmt (a name or a number), its evid's compartment, or dose_state."""
    states = model.state_names
    cells = _cells(table, columns.get("cmt"), rows)
    out = np.empty(len(rows), dtype=np.int64)
    for cell in np.unique(cells.astype(str)):
        where = np.flatnonzero(cells == cell)
        first = int(rows[where[0]])
        out[where] = _target(table, cell, first, columns.get("cmt"), model, dose_state)
    from_evid = np.isfinite(compartment[rows])
    if from_evid.any():
        numbered = compartment[rows][from_evid].astype(np.int64) - 1
        given = cells[from_evid] != ""
        _out_of_range(table, rows[from_evid], numbered, columns.get("evid"), states, "evid's compartment")
        clash = np.flatnonzero(given & (out[from_evid] != numbered))
        if clash.size:
            row = int(rows[from_evid][clash[0]])
            table.fail(f"the evid doses compartment {numbered[clash[0]] + 1} "
                       f"('{states[numbered[clash[0]]]}') but the cmt names '{states[out[from_evid][clash[0]]]}'",
                       row, columns.get("cmt"))
        out[from_evid] = numbered
    return out


def _cells(table: Table, column, rows: np.ndarray) -> np.ndarray:
    """A text column's cells on some rows as text ("" where empty or where there is no such column); a table made
    from arrays holds numbers only."""
    if column is None:
        return np.full(len(rows), "", dtype=object)
    if column in table.text:
        return table.text[column][rows]
    return np.asarray(["" if np.isnan(x) else number_text(x) for x in table.values[rows, column]], dtype=object)


def _target(table: Table, cell: str, row: int, column, model, dose_state) -> int:
    """A cmt cell's state index (-1 for an empty cell whose evid names the compartment: resolved by the caller)."""
    states = model.state_names
    if cell == "":
        return -1 if dose_state is None else states.index(dose_state)  # (check_config checked it)
    number = table.values[row, column]
    if np.isfinite(number):
        if number != int(number) or not 1 <= number <= len(states):
            table.fail(f"cmt {cell} is not a compartment number: 1 to {len(states)} (the states "
                       f"{_numbered(states)}), or a state's name", row, column)
        return int(number) - 1
    if cell not in states:
        other = "an observable" if cell in model.observable_names else "a param" if cell in model.param_names else None
        what = f" ({other}: doses go into states)" if other else ""
        table.fail(f"a dose into '{cell}', which is not a state of {type_name(model)}{what}"
                   + _hint(cell, states), row, column)
    return states.index(cell)


def _out_of_range(table: Table, rows, numbered, column, states, what: str):
    bad = np.flatnonzero(numbered >= len(states))
    if bad.size:
        table.fail(f"the {what} {numbered[bad[0]] + 1} is not a compartment: the model has {len(states)} states "
                   f"({_numbered(states)})", int(rows[bad[0]]), column)


def missing_targets(table: Table, state: np.ndarray, kind: np.ndarray):
    """A dose row whose target nothing named (no cmt, no compartment in its evid, no dose_state) is an error."""
    bad = np.flatnonzero((kind == DOSE) & (state < 0))
    if bad.size:
        table.fail("a dose row needs a target state: a 'cmt' cell (a state's name or number), or FIT.yaml's "
                   "dose_state", int(bad[0]))


def _numbered(states) -> str:
    return ", ".join(f"{k + 1} = {name}" for k, name in enumerate(states))


def _hint(name: str, candidates) -> str:
    hint = did_you_mean(name, candidates)
    return f"; {hint}" if hint else f" (one of {', '.join(candidates)})"


def check_config(model, config):
    """FIT.yaml's data keys name states (dose_state) and observables or states (dv, the dvid map's values), whether
    or not a row uses them."""
    states, fitted = model.state_names, [*model.observable_names, *model.state_names]
    named = [("dose_state", config.dose_state, states, "a state")]
    named += [(key, name, fitted, "an observable or state") for key, name in
              [("dv", config.dv), *((f"dvid.{k}", v) for k, v in config.dvid.items() if v is not None)]]
    for key, name, candidates, what in named:
        if name is not None and name not in candidates:
            raise HodecError(f"{key}: '{name}' is not {what} of {type_name(model)}" + _hint(name, candidates),
                             "fit config")


def long_values(table: Table, columns: Layout, kind: np.ndarray, model, dv_default, dvid_map) -> tuple:
    """Long format: (the fitted names the dv values are, in order of first appearance; per row the index into them,
    -1 where the row holds no dv value or one the dvid map leaves out)."""
    n = len(kind)
    target = np.full(n, -1, dtype=np.int64)
    if not columns.has("dv"):
        return [], target
    rows = np.flatnonzero(kind == OBSERVATION)
    cells = _cells(table, columns.get("dvid"), rows)
    names: list = []
    labels, first, inverse = np.unique(cells.astype(str), return_index=True, return_inverse=True)
    resolved = [_observed(table, str(label), int(rows[first[k]]), columns, model, dv_default, dvid_map)
                for k, label in enumerate(labels)]
    for k in np.argsort(first):  # names in order of first appearance
        if resolved[k] is not None and resolved[k] not in names:
            names.append(resolved[k])
    index = [-1 if name is None else names.index(name) for name in resolved]
    target[rows] = np.asarray(index, dtype=np.int64)[inverse.reshape(-1)]
    return names, target


def _observed(table: Table, cell: str, row: int, columns: Layout, model, dv_default, dvid_map) -> str:
    """The observable or state a dvid cell names (None: the dvid map leaves its rows out)."""
    fitted = [*model.observable_names, *model.state_names]
    column = columns.get("dvid")
    if cell == "":
        if dv_default is None:
            table.fail("an observation's dv needs a dvid naming the observable or state it is, or FIT.yaml's dv "
                       f"(one of {', '.join(fitted)})", row, column)
        return dv_default  # (check_config checked the names FIT.yaml gives)
    if number_text(cell) in dvid_map:
        return dvid_map[number_text(cell)]
    if np.isfinite(table.values[row, column]):
        table.fail(f"dvid {cell} is a number: name what it is in FIT.yaml's dvid map (e.g. dvid: {{{cell}: "
                   f"{fitted[0]}}})", row, column)
    if cell not in fitted:
        table.fail(f"dvid '{cell}' is not an observable or state of {type_name(model)}" + _hint(cell, fitted),
                   row, column)
    return cell


def check_infusions(table: Table, rows: np.ndarray, doses: DoseRows, what: str, states):
    """Infusions into one state must not overlap (one may start where the previous ends). rows: the doses' rows."""
    infusing = np.flatnonzero(doses.rate > 0)
    for j in np.unique(doses.state[infusing]):
        mine = infusing[doses.state[infusing] == j]
        start = doses.time[mine]
        end = start + doses.amount[mine] / doses.rate[mine]
        late = np.flatnonzero(start[1:] < np.maximum.accumulate(end)[:-1])
        if late.size:
            k = late[0] + 1
            before = int(np.argmax(end[:k]))
            table.fail(f"infusions into '{states[j]}' overlap in {what}: this one starts at t = {start[k]:g}, "
                       f"while the one on {table.where(int(rows[mine[before]]))} runs from t = {start[before]:g} "
                       f"to {end[before]:g}", int(rows[mine[k]]))
