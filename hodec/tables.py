"""Reading CSV tables of numbers (data files, input signals); every error names the file, line and column.

The accepted format is what spreadsheets, R, pandas and numpy write: UTF-8 (a leading byte-order mark is
skipped), a header line, commas between cells, RFC 4180 quoting, blank lines ignored. A cell is a decimal number
(`-1.5`, `2e-3`, `.5`, `7.`), spaces around it allowed; an empty cell, `NaN` (any case) or `NA` is a missing
value. Everything else is refused, including what Python's float() would take but a CSV is not expected to hold
(`1_0`, `inf`, `infinity`, non-ASCII digits), and numbers beyond ±1e150 in magnitude (see LARGEST). The reader
may name columns that hold text (a compartment's name, a sex): their cells are kept as text too, and read as a
number where they are one.
"""
from __future__ import annotations

import csv
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

import numpy as np

from .errors import HodecError
from .files import read_text

# Data enters squared errors and variances: beyond sqrt(float64 max) ~ 1.3e154 those overflow, and a sum over
# many cells needs some room below that. No measured quantity in an ODE model's units comes near.
LARGEST = 1e150
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MISSING = frozenset({"", "nan", "na"})  # a cell's text, stripped and lower-cased
# Cells made only of these characters are numbers exactly when float() accepts them (or empty): the fast path.
PLAIN = re.compile(r"[0-9eE.+\- \t]*")
LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+")  # with its ending: \n, \r\n or \r, as editors count lines
# Rows converted at a time: bounds the memory held as Python strings, and lets them die young (batches of 65536
# rows lived long enough for the garbage collector to rescan them, doubling the time of a 10^6-row read).
CHUNK = 512


@dataclass(frozen=True)
class Table:
    """A numeric table: every value is NaN (missing) or a finite number within ±LARGEST (checked on creation)."""

    header: tuple
    values: np.ndarray  # [rows, columns] float64
    lines: np.ndarray  # [rows]: where each row is, for messages (the file line it starts on, or its row number)
    source: str = "<data>"
    unit: str = "line"  # "line" for a file, "row" for arrays
    text: Mapping = field(default_factory=dict)  # column index -> [rows] its cells' stripped text (text columns)

    def __post_init__(self):
        outside = np.abs(self.values) > LARGEST  # inf too; NaN compares False
        if outside.any():
            row, column = (int(k) for k in np.argwhere(outside)[0])
            value = float(self.values[row, column])
            self.fail(f"{value:g} is outside ±{LARGEST:g}; rescale the column (data values are squared in the loss "
                      "and must stay far from float64 overflow)", row, column)

    def where(self, row: int, column: Optional[int] = None) -> str:
        place = f"{self.unit} {int(self.lines[row])}"
        return place if column is None else f"{place}, column '{self.header[column]}'"

    def fail(self, message: str, row: Optional[int] = None, column: Optional[int] = None):
        prefix = "" if row is None else self.where(row, column) + ": "
        raise HodecError(prefix + message, self.source)


def read_table(path: str | Path, text: Optional[Callable[[str], bool]] = None, note: str = "") -> Table:
    """The header and numbers of a CSV file (see the module docstring for the format). text: whether a column
    (by its header name) may hold text; note: what a message about a cell that is not a number adds (which
    columns may hold text)."""
    source = str(path)
    content = read_text(path).removeprefix("\ufeff")
    reader = csv.reader(_physical_lines(content))
    header: tuple = ()
    try:
        header = _header(reader, source)
        texts = tuple(k for k, name in enumerate(header) if text is not None and text(name))
        return _parse(_records(reader), source, header, Cells(texts, note))
    except csv.Error as err:
        raise HodecError(_unreadable(content, reader.line_num, err, header), source) from None


def _header(reader, source: str) -> tuple:
    first = next(_records(reader), None)
    if first is None:
        raise HodecError("the file is empty (expected a header line)", source)
    return tuple(cell.strip() for cell in first[1])


@dataclass(frozen=True)
class Cells:
    """How a file's cells are read: the indices of its text columns, and the note a non-number's message adds."""

    texts: tuple
    note: str = ""


def _parse(records: Iterator[tuple[int, list]], source: str, header: tuple, cells: Cells) -> Table:
    lines, chunks = [], []
    texts: dict = {k: [] for k in cells.texts}
    while batch := list(itertools.islice(records, CHUNK)):
        for line, record in batch:
            if len(record) != len(header):
                raise HodecError(f"line {line}: {len(record)} cells, but the header has {len(header)}", source)
        lines += [line for line, _ in batch]
        for k, column in texts.items():
            column += [record[k].strip() for _, record in batch]
            for _, record in batch:
                record[k] = ""  # read below as missing; its number is taken from the text at the end
        chunks.append(_numbers([cell for _, record in batch for cell in record], batch, header, source, cells.note))
    values = np.concatenate(chunks) if chunks else np.zeros(0)
    values = values.reshape(len(lines), len(header))
    for k, column in texts.items():
        values[:, k] = [_lenient(cell) for cell in column]
    text = {k: np.asarray(column, dtype=object) for k, column in texts.items()}
    return Table(header, values, np.asarray(lines, dtype=np.int64), source, text=text)


def _lenient(cell: str) -> float:
    """A text column's cell as a number: NaN where it is text (or missing)."""
    value = _number(cell)
    return math.nan if value is None else value


def _records(reader) -> Iterator[tuple[int, list]]:
    """(line it starts on, cells) of each CSV record that is not blank."""
    end = reader.line_num
    for record in reader:
        start, end = end + 1, reader.line_num
        if "".join(record).strip():
            yield start, record


def _physical_lines(text: str) -> Iterator[str]:
    """The file's lines with their endings, one at a time (no list of them all: a big file stays small in memory)."""
    return map(re.Match.group, LINE.finditer(text))


def _unreadable(text: str, line: int, err: csv.Error, header: tuple) -> str:
    """What csv could not read on a line: mostly a cell over its field size limit, which no number comes near."""
    physical = next(itertools.islice(_physical_lines(text), line - 1, None), "")
    limit = csv.field_size_limit()
    for index, cell in enumerate(physical.split(",")):
        if len(cell) > limit:
            column = f"column '{header[index]}'" if index < len(header) else f"cell {index + 1}"
            return f"line {line}, {column}: more than {limit} characters (a cell holds one number)"
    return f"line {line}: not readable as CSV ({err})"


def _numbers(cells: list, batch: list, header: tuple, source: str, note: str = "") -> np.ndarray:
    """The cells of a batch of records as floats, NaN where missing; a malformed cell is a located error."""
    if PLAIN.fullmatch("".join(cells)):
        try:
            return np.array([float(cell) if cell else math.nan for cell in cells])
        except ValueError:
            pass  # a malformed cell: the checked conversion below names it
    out = np.empty(len(cells))
    for k, cell in enumerate(cells):
        value = _number(cell)
        if value is None:
            row, column = divmod(k, len(header))
            shown = cell if len(cell) <= 40 else cell[:40] + "..."
            raise HodecError(f"line {batch[row][0]}, column '{header[column]}': {shown!r} is not a number"
                             f"{_hint(cell, note)}", source)
        out[k] = value
    return out


def _number(cell: str) -> Optional[float]:
    text = cell.strip()
    if text.lower() in MISSING:
        return math.nan
    return float(text) if NUMBER.fullmatch(text) else None


def _hint(cell: str, note: str = "") -> str:
    text = cell.strip().lower().lstrip("+-")
    if "_" in text:
        return " (write digits without '_' separators)"
    if text in ("inf", "infinity"):
        return " (infinite values are not data; leave the cell empty if it is missing)"
    if note and cell.strip()[:1].isalpha():  # a word, not a malformed number
        return f" ({note})"
    return " (a decimal number like -1.5 or 2e-3; empty, NaN or NA for a missing value)"


def read_signal_csv(path: str | Path):
    """An input signal from a CSV file with columns t, value: (times, values)."""
    table = read_table(path)
    if len(table.header) != 2 or table.header[0] != "t":
        table.fail(f"an input signal file has two columns, 't' and a value; got {list(table.header)}")
    if not len(table.values):
        table.fail("an input signal needs at least one row")
    missing = np.argwhere(np.isnan(table.values))
    if missing.size:
        table.fail("empty cell: an input signal has a value in every cell", *(int(k) for k in missing[0]))
    times = table.values[:, 0]
    late = np.flatnonzero(np.diff(times) <= 0)
    if late.size:
        table.fail(f"time {times[late[0] + 1]:g} does not increase (previous {times[late[0]]:g}); times must be "
                   "strictly increasing", int(late[0]) + 1)
    return times.tolist(), table.values[:, 1].tolist()
