"""A PEtab problem as the files `hodec fit` reads: the `.hode` spec (the import's, its estimated parameters
trainable within their bounds), the measurements in hodec's long format (id = experiment, t, dv, dvid =
observable, and a row without a value at each experiment's start, where its simulation starts) and the FIT.yaml
of the conditions per experiment, the priors, the estimation scales and `initial: spec`. Only what `hodec fit`
means the same way is written: a problem with neural networks, several periods, steady-state measurements,
per-measurement noise or observable parameters, or conditions that are expressions is refused, naming it."""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ...errors import HodecError
from ...files import write_atomic
from .mapping import Hybrid, build, estimated
from .problem import Problem
from .tables import Row

NO_EXPERIMENT = "default"  # the data id of measurements without an experimentId (one experiment from t = 0)
PRIORS = ("normal", "laplace", "uniform")  # PEtab's priors that mean the same in FIT.yaml's priors
SOLVER = {"rtol": 1e-8, "atol": 1e-10}  # tighter than fit's default: a PEtab llh is compared to few digits


@dataclass
class FitFiles:
    spec: str  # model.hode
    data: str  # data.csv
    config: dict  # FIT.yaml


def fit_files(problem: Problem) -> FitFiles:
    if problem.networks:
        raise HodecError(f"neural networks {', '.join(problem.networks)}: a PEtab-SciML network (its architecture "
                         f"and arrays) cannot be written as a .hode neural slot that hodec fit trains; only "
                         f"mechanistic problems are written", str(problem.path))
    hybrid = build(problem)
    return FitFiles(_spec(problem, hybrid), _data(problem), _config(problem, hybrid))


def write_fit_files(files: FitFiles, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "model.hode", files.spec)
    write_atomic(out / "data.csv", files.data)
    write_atomic(out / "FIT.yaml", yaml.safe_dump(files.config, sort_keys=False))


def _spec(problem: Problem, hybrid: Hybrid) -> str:
    """The import's text with each estimated parameter's `fixed` replaced by its bounds (the import declares
    every parameter fixed at the table's value)."""
    text = hybrid.text
    for pid, row in problem.parameters.items():
        if not estimated(row):
            continue
        name = hybrid.names.get(pid, pid)
        line = re.compile(rf"^(param {re.escape(name)} = \S+) fixed$", re.M)
        if not line.search(text):
            row.fail(f"estimated parameter '{pid}' is no parameter of the model hodec fit could train")
        text = line.sub(lambda m: m.group(1) + _domain(row), text, count=1)
    return text


def _domain(row: Row) -> str:
    lower, upper = row.number("lowerBound") if row["lowerBound"] else -math.inf, \
        row.number("upperBound") if row["upperBound"] else math.inf
    if math.isfinite(lower) and math.isfinite(upper):
        return f" in ({lower!r}, {upper!r})"
    if lower >= 0:
        return " positive"
    if math.isfinite(upper):
        row.fail("an upper bound without a lower one: hodec params are free, positive or bounded on both sides")
    return ""


def _data(problem: Problem) -> str:
    if NO_EXPERIMENT in problem.experiments and any(not row["experimentId"] for row in problem.measurements):
        problem.measurements[0].fail(f"measurements without an experimentId and an experiment '{NO_EXPERIMENT}': "
                                     f"both would be data id '{NO_EXPERIMENT}'")
    by_id: dict = {}  # data id -> [(time, dv, dvid)], the start's row without a value first
    for row in problem.measurements:
        for column in ("observableParameters", "noiseParameters"):
            if row[column]:
                row.fail(f"{column} {row[column]!r}: per-measurement parameters are not written for hodec fit")
        time = row.number("time")
        if not math.isfinite(time):
            row.fail("a measurement at time inf (steady state) is not written for hodec fit")
        experiment = row["experimentId"] or NO_EXPERIMENT
        if experiment not in by_id:
            by_id[experiment] = [(_start(problem, row), "", "")]
        by_id[experiment].append((time, repr(row.number("measurement")), row["observableId"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "t", "dv", "dvid", "evid"])
    for experiment, rows in by_id.items():  # a trajectory's rows in time order (sorted is stable: start first)
        writer.writerows([experiment, repr(time), dv, dvid, 0 if dvid else 2] for time, dv, dvid in sorted(
            rows, key=lambda r: r[0]))
    return buffer.getvalue()


def _start(problem: Problem, row: Row) -> float:
    """The time an experiment's simulation starts (its period's time; 0 without one)."""
    periods = _periods(problem, row["experimentId"], row)
    return periods[0].number("time") if periods and periods[0]["time"] else 0.0


def _periods(problem: Problem, experiment: str, row: Row) -> list:
    if not experiment:
        return []
    if experiment not in problem.experiments:
        row.fail(f"experimentId '{experiment}' is not in the experiments table")
    periods = problem.experiments[experiment]
    if len(periods) != 1:
        periods[1].fail(f"experiment '{experiment}' has {len(periods)} periods: only one is written for hodec fit")
    return periods


def _config(problem: Problem, hybrid: Hybrid) -> dict:
    config = {"initial": "spec", "solver": dict(SOLVER)}
    conditions = {}
    for experiment in dict.fromkeys(row["experimentId"] for row in problem.measurements):
        values = {}
        for period in _periods(problem, experiment, problem.measurements[0]):
            for condition in filter(None, period["conditionId"].split(";")):
                if condition not in problem.conditions:
                    period.fail(f"conditionId '{condition}' is not in the conditions table")
                values.update(_condition(row, hybrid) for row in problem.conditions[condition])
        if values:
            conditions[experiment or NO_EXPERIMENT] = values
    priors = {hybrid.names.get(pid, pid): _prior(row) for pid, row in problem.parameters.items()
              if estimated(row) and row["priorDistribution"]}
    scales = {hybrid.names.get(pid, pid): row["parameterScale"] for pid, row in problem.parameters.items()
              if estimated(row) and row["parameterScale"]}
    for key, value in (("conditions", conditions), ("priors", priors), ("scales", scales)):
        if value:
            config[key] = value
    return config


def _condition(row: Row, hybrid: Hybrid) -> tuple:
    """(model name, number or parameter name) of one conditions-table row."""
    target = hybrid.names.get(row["targetId"], row["targetId"])
    value = row["targetValue"].strip()
    try:
        return target, float(value)
    except ValueError:
        if value in hybrid.names:
            return target, hybrid.names[value]
    row.fail(f"targetValue {value!r}: hodec fit's conditions take a number or a parameter's name, not an "
             f"expression")


def _prior(row: Row) -> list:
    kind = row["priorDistribution"]
    if kind not in PRIORS:
        row.fail(f"priorDistribution {kind!r}: only {', '.join(PRIORS)} are written for hodec fit")
    try:
        a, b = (float(v) for v in row["priorParameters"].split(";"))
    except ValueError:
        row.fail(f"priorParameters {row['priorParameters']!r}: two numbers 'a;b' are expected")
    return [kind, a, b]
