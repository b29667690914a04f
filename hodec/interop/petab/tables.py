"""PEtab's tab-separated tables (parameters, observables, measurements, experiments, conditions, hybridization,
mapping) as rows of text cells, each row knowing its file line, so that every error names the file and row."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ...errors import Diagnostic, HodecError, Span
from ...files import read_text


@dataclass(frozen=True)
class Row:
    cells: dict  # column name -> stripped text ("" for an empty cell)
    line: int  # the file line it stands on (1-based; the header is line 1)
    source: str

    def __getitem__(self, column: str) -> str:
        return self.cells.get(column, "")

    def fail(self, message: str):
        raise row_error(message, self.source, self.line)

    def number(self, column: str) -> float:
        """A cell as a number (PEtab writes inf as 'inf' or 'Inf')."""
        try:
            return float(self[column])
        except ValueError:
            self.fail(f"column '{column}': {self[column]!r} is not a number")


def row_error(message: str, source: str, line: int) -> HodecError:
    return HodecError([Diagnostic(message, Span(line, 1, line, 2))], source)


def read_tsv(path: str | Path, required: Sequence[str], kind: str) -> list[Row]:
    """The rows of a PEtab table; a missing file, a missing required column or a row of the wrong width is an
    error naming the file (and line)."""
    source = str(path)
    if not Path(path).is_file():
        raise HodecError(f"no such {kind} file: {path}", source)
    lines = read_text(path).removeprefix("\ufeff").split("\n")
    records = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not records or not records[0]:
        raise HodecError(f"empty {kind} table: a header line is expected", source)
    header = [name.strip() for name in records[0]]
    missing = [name for name in required if name not in header]
    if missing:
        raise row_error(f"{kind} table lacks the column(s) {', '.join(missing)} (it has: {', '.join(header)})",
                        source, 1)
    rows = []
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(header):
            raise row_error(f"{len(record)} cells, but the header has {len(header)} columns", source, number)
        cells = {name: cell.strip() for name, cell in zip(header, record)}
        rows.append(Row(cells, number, source))
    return rows


def by_id(rows: list[Row], column: str, kind: str) -> dict[str, Row]:
    """{id: row} of a table whose `column` names each row once (a duplicate or empty id is a located error)."""
    found: dict[str, Row] = {}
    for row in rows:
        key = row[column]
        if not key:
            row.fail(f"empty {column}")
        if key in found:
            row.fail(f"{kind} '{key}' is defined twice (first on line {found[key].line})")
        found[key] = row
    return found
