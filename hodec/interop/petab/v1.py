"""PEtab v1 problems in the v2 shape the rest of hodec.interop.petab reads: the wide conditions table (a column per
target, a row per condition) as (conditionId, targetId, targetValue) rows, and each distinct pair of a
measurement's preequilibrationConditionId and simulationConditionId as an experiment: a pre-equilibration period
from -inf under the first (its steady state), then a period from time 0 under the second. Rows keep their file
and line, so errors name them."""
from __future__ import annotations

import math

from .tables import Row

CONDITION_COLUMNS = ("conditionId", "conditionName")  # the v1 conditions table's columns that name no target


def conditions(rows: list[Row]) -> dict[str, list[Row]]:
    """{conditionId: its (targetId, targetValue) rows}; an empty or NaN cell changes nothing."""
    found: dict = {}
    lines: dict = {}
    for row in rows:
        condition = row["conditionId"]
        if not condition:
            row.fail("empty conditionId")
        if condition in found:
            row.fail(f"condition '{condition}' is defined twice (first on line {lines[condition]})")
        lines[condition] = row.line
        found[condition] = [Row({"conditionId": condition, "targetId": target, "targetValue": value}, row.line,
                                row.source)
                            for target, value in row.cells.items()
                            if target not in CONDITION_COLUMNS and value and not _nan(value)]
    return found


def experiments(measurements: list[Row]) -> tuple[list[Row], dict[str, list[Row]]]:
    """The measurements, each with the experimentId of its (pre-equilibration, simulation) condition pair, and
    {experimentId: its periods' rows}. An experiment is named by its simulation condition, or PRE:SIM with a
    pre-equilibration."""
    rows, periods = [], {}
    for row in measurements:
        simulation, pre = row["simulationConditionId"], row["preequilibrationConditionId"]
        if not simulation:
            row.fail("empty simulationConditionId")
        experiment = f"{pre}:{simulation}" if pre else simulation
        if experiment not in periods:
            periods[experiment] = ([_period(row, experiment, "-inf", pre)] if pre else []) + [
                _period(row, experiment, "0", simulation)]
        rows.append(Row({**row.cells, "experimentId": experiment}, row.line, row.source))
    return rows, periods


def _period(row: Row, experiment: str, time: str, condition: str) -> Row:
    return Row({"experimentId": experiment, "time": time, "conditionId": condition}, row.line, row.source)


def _nan(value: str) -> bool:
    try:
        return math.isnan(float(value))
    except ValueError:
        return False
