"""Reading data files: CSV tables with a header, empty cells as missing values, errors with file:line."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from .errors import HodecError
from .files import read_text


def read_table(path: str | Path) -> tuple[list[str], list[list[float]]]:
    """Header and rows of a numeric CSV file; an empty cell is NaN."""
    path = Path(path)
    text = read_text(path)
    rows = [r for r in csv.reader(text.splitlines())]
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise HodecError("the file is empty (expected a header line)", str(path))
    header = [h.strip() for h in rows[0]]
    data = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise HodecError(f"line {line}: {len(row)} cells, but the header has {len(header)}", str(path))
        data.append([_cell(cell, path, line, header[i]) for i, cell in enumerate(row)])
    return header, data


def _cell(cell: str, path, line: int, column: str) -> float:
    cell = cell.strip()
    if not cell:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise HodecError(f"line {line}, column '{column}': {cell!r} is not a number", str(path)) from None


def read_signal_csv(path: str | Path):
    """An input signal from a CSV file with columns t, value: (times, values)."""
    header, rows = read_table(path)
    if len(header) != 2 or header[0] != "t":
        raise HodecError(f"an input signal file has two columns, 't' and a value; got {header}", str(path))
    times = [r[0] for r in rows]
    if not rows or any(math.isnan(v) for r in rows for v in r):
        raise HodecError("an input signal needs at least one row and no empty cells", str(path))
    if any(b <= a for a, b in zip(times, times[1:])):
        raise HodecError("times must be strictly increasing", str(path))
    return times, [r[1] for r in rows]
