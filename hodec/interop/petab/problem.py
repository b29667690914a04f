"""A PEtab problem read from its YAML file: v2 (with the PEtab-SciML extension: the model, the tables and the
networks), or v1 (its conditions and measurements in v2's shape: hodec.interop.petab.v1), every path resolved
against the YAML's folder. Missing files and keys are errors naming the file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import HodecError
from ...training.options import read_yaml_mapping
from . import v1
from .tables import Row, by_id, read_tsv

MEASUREMENT_COLUMNS = ["observableId", "time", "measurement"]
OBSERVABLE_COLUMNS = ["observableId", "observableFormula"]
PARAMETER_COLUMNS = ["parameterId", "nominalValue"]


@dataclass
class Problem:
    path: Path
    model: Path  # the SBML file
    parameters: dict[str, Row]  # parameterId -> row
    observables: dict[str, Row]  # observableId -> row
    measurements: list[Row]
    experiments: dict[str, list[Row]]  # experimentId -> its periods' rows
    conditions: dict[str, list[Row]]  # conditionId -> its (targetId, targetValue) rows
    hybridization: dict[str, Row] = field(default_factory=dict)  # targetId -> row
    mapping: dict[str, Row] = field(default_factory=dict)  # petabEntityId -> row
    networks: dict[str, Path] = field(default_factory=dict)  # network id -> its YAML
    array_files: list[Path] = field(default_factory=list)


def read_problem(path: str | Path) -> Problem:
    path = Path(path)
    data = read_yaml_mapping(path, "PEtab problem")
    version = str(data.get("format_version", ""))
    if version.split(".")[0] == "1":
        return _check_references(_read_v1(path, data))
    if not version.startswith("2"):
        raise HodecError(f"format_version {version or '(none)'}: PEtab v1 and v2 problems are read", str(path))
    files = _Files(path, data)
    models = data.get("model_files")
    if not isinstance(models, dict) or len(models) != 1:
        raise HodecError("model_files must name exactly one model", str(path))
    (model_id, model), = models.items()
    if not isinstance(model, dict) or str(model.get("language", "sbml")).lower() != "sbml":
        raise HodecError(f"model '{model_id}': only SBML models are read", str(path))
    sciml = (data.get("extensions") or {}).get("sciml") or {}
    problem = Problem(
        path=path,
        model=files.resolve(model.get("location"), f"model_files/{model_id}/location"),
        parameters=by_id(files.rows("parameter_files", PARAMETER_COLUMNS, "parameter"), "parameterId", "parameter"),
        observables=by_id(files.rows("observable_files", OBSERVABLE_COLUMNS, "observable"), "observableId",
                          "observable"),
        measurements=files.rows("measurement_files", MEASUREMENT_COLUMNS, "measurement"),
        experiments=_grouped(files.rows("experiment_files", ["experimentId"], "experiment"), "experimentId"),
        conditions=_grouped(files.rows("condition_files", ["conditionId", "targetId", "targetValue"], "condition"),
                            "conditionId"),
        mapping=by_id(files.rows("mapping_files", ["petabEntityId", "modelEntityId"], "mapping"),
                      "petabEntityId", "mapping entity"),
    )
    sciml_files = _Files(path, sciml, "extensions/sciml/")
    problem.hybridization = by_id(sciml_files.rows("hybridization_files", ["targetId", "targetValue"],
                                                   "hybridization"), "targetId", "hybridization target")
    problem.array_files = [sciml_files.resolve(name, "extensions/sciml/array_files")
                           for name in _names(sciml, "array_files", path, "extensions/sciml/")]
    for net_id, net in (sciml.get("neural_networks") or sciml.get("neural_nets") or {}).items():  # (0.1.0 name)
        if not isinstance(net, dict):
            raise HodecError(f"extensions/sciml/neural_networks/{net_id} must be a mapping", str(path))
        problem.networks[str(net_id)] = sciml_files.resolve(net.get("location"),
                                                            f"extensions/sciml/neural_networks/{net_id}/location")
    return _check_references(problem)


def _check_references(problem: Problem) -> Problem:
    """The problem, once every measurement row's experimentId (when given) and observableId name a row of their
    tables (an error naming the measurement row otherwise): what evaluate and write read, checked once."""
    for row in problem.measurements:
        experiment = row["experimentId"]
        if experiment and experiment not in problem.experiments:
            row.fail(f"experimentId '{experiment}' is not in the experiments table "
                     f"({', '.join(problem.experiments) or 'none'})")
        if row["observableId"] not in problem.observables:
            row.fail(f"observableId '{row['observableId']}' is not in the observables table")
    return problem


def _read_v1(path: Path, data: dict) -> Problem:
    """A PEtab v1 problem: its parameter_file, and one entry of `problems` (one SBML model; conditions,
    measurements and observables files)."""
    problems = data.get("problems")
    if not isinstance(problems, list) or len(problems) != 1 or not isinstance(problems[0], dict):
        raise HodecError("problems must list exactly one problem (a mapping of its files)", str(path))
    files = _Files(path, problems[0], "problems/0/")
    models = _names(problems[0], "sbml_files", path, "problems/0/")
    if len(models) != 1:
        raise HodecError("problems/0/sbml_files must name exactly one SBML model", str(path))
    measurements, experiments = v1.experiments(files.rows(
        "measurement_files", MEASUREMENT_COLUMNS + ["simulationConditionId"], "measurement"))
    return Problem(
        path=path,
        model=files.resolve(models[0], "problems/0/sbml_files"),
        parameters=by_id(_Files(path, data).rows("parameter_file", PARAMETER_COLUMNS, "parameter"), "parameterId",
                         "parameter"),
        observables=by_id(files.rows("observable_files", OBSERVABLE_COLUMNS, "observable"), "observableId",
                          "observable"),
        measurements=measurements,
        experiments=experiments,
        conditions=v1.conditions(files.rows("condition_files", ["conditionId"], "condition")),
    )


class _Files:
    """The file lists of one YAML mapping (the problem's, or its sciml extension's)."""

    def __init__(self, path: Path, data: dict, prefix: str = ""):
        self.path, self.data, self.prefix = path, data, prefix

    def resolve(self, name, key: str) -> Path:
        if not isinstance(name, str) or not name:
            raise HodecError(f"{key}: a file name is expected", str(self.path))
        found = self.path.parent / name
        if not found.is_file():
            raise HodecError(f"{key}: no such file: {found}", str(self.path))
        return found

    def rows(self, key: str, required: list[str], kind: str) -> list[Row]:
        return [row for name in _names(self.data, key, self.path, self.prefix)
                for row in read_tsv(self.resolve(name, self.prefix + key), required, kind)]


def _names(data: dict, key: str, path: Path, prefix: str) -> list[str]:
    names = data.get(key) or []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        raise HodecError(f"{prefix}{key} must be a list of file names", str(path))
    return names


def _grouped(rows: list[Row], column: str) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if not row[column]:
            row.fail(f"empty {column}")
        groups.setdefault(row[column], []).append(row)
    return groups
