"""PEtab's placeholder parameters of observable and noise formulas, whose values each measurement row gives in its
observableParameters and noiseParameters columns (';'-separated, in the placeholders' order: a number or a
parameter id each). PEtab v2 declares them per observable (the observables table's observablePlaceholders and
noisePlaceholders columns); PEtab v1 names them observableParameter{n}_{observableId} and
noiseParameter{n}_{observableId}, in the order of n."""
from __future__ import annotations

import re

from .tables import Row

# placeholder kind -> (v2's declaring column, the measurements table's values column, v1's name prefix)
KINDS = {"observableFormula": ("observablePlaceholders", "observableParameters", "observableParameter"),
         "noiseFormula": ("noisePlaceholders", "noiseParameters", "noiseParameter")}


def declared(observable: Row) -> list[str]:
    """The placeholder names of one observable, observable ones first, each kind in its order."""
    return [name for formula in KINDS for name in declared_kind(observable, formula)]


def assigned(measurement: Row, observable: Row) -> tuple:
    """((placeholder, value text), ...) of one measurement row: its observableParameters and noiseParameters
    matched to its observable's placeholders (a count that differs is an error naming the row)."""
    pairs: list = []
    for formula, (_, values, _) in KINDS.items():
        names = declared_kind(observable, formula)
        given = _split(measurement, values) if measurement[values] else []
        if len(given) != len(names):
            measurement.fail(f"{values}: {len(given)} value(s) for the {len(names)} placeholder(s) of observable "
                             f"'{observable['observableId']}' ({', '.join(names) or 'none'})")
        pairs += zip(names, given)
    return tuple(pairs)


def declared_kind(observable: Row, formula: str) -> list[str]:
    """The placeholders of one formula (observableFormula or noiseFormula) of an observable."""
    column, _, prefix = KINDS[formula]
    if observable[column]:
        return _split(observable, column)
    pattern = re.compile(rf"\b{prefix}(\d+)_{re.escape(observable['observableId'])}\b")
    return [f"{prefix}{n}_{observable['observableId']}"
            for n in sorted({int(n) for n in pattern.findall(observable[formula])})]


def _split(row: Row, column: str) -> list[str]:
    parts = [part.strip() for part in row[column].split(";")]
    if not all(parts):
        row.fail(f"{column} {row[column]!r}: an empty entry")
    return parts
