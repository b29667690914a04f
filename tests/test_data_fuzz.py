"""Robustness of CSV reading (hypothesis, a few seconds): whatever the bytes, read_table and read_data return a
checked table or raise HodecError; valid tables round-trip exactly; the fast conversion of plain cells agrees
with the checked one on every string of their alphabet."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hodec.compiler import load_text
from hodec.errors import HodecError
from hodec.tables import LARGEST, NUMBER, PLAIN, read_table
from hodec.training.data import read_data

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MODEL_SPEC = "model M\ninput u\nstate x = 1\nstate y = 2\nder x = u - x\nder y = x - y\nobserve s = x + y\n"
# the characters CSV trouble is made of: digits and number syntax, separators, quotes, line breaks, words
# Python's float() knows, a BOM, NUL, a non-ASCII digit, a non-breaking space
ALPHABET = "0123456789.eE+-_, \t\r\n\"infatyNAIxu\ufeff\x00\u0661\xa0"
HEADERS = ["t", "id", "x", "y", "s", "u", "z"]


@pytest.fixture(scope="module")
def model():
    return load_text(MODEL_SPEC)


def check_table(table):
    assert table.values.shape == (len(table.lines), len(table.header))
    finite = table.values[~np.isnan(table.values)]
    assert (np.abs(finite) <= LARGEST).all()
    assert (np.diff(table.lines) > 0).all()


def check_read_data(path, model):
    """read_data gives trajectories of two or more increasing times with a value, or a HodecError naming the file."""
    try:
        data = read_data(path, model)
    except HodecError as err:
        assert str(err).startswith(f"{path}: error: ")
        return
    for tr in data.trajectories:
        assert len(tr.t) >= 2 and (np.diff(tr.t) > 0).all() and np.isfinite(tr.y).any()


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_give_a_table_or_a_hodec_error(tmp_path, data):
    path = tmp_path / "any.csv"
    path.write_bytes(data)
    try:
        check_table(read_table(path))
    except HodecError as err:
        assert str(err).startswith(f"{path}: error: ")


@SETTINGS
@given(header=st.lists(st.sampled_from(HEADERS), min_size=1, max_size=5),
       body=st.text(alphabet=ALPHABET, max_size=200))
def test_csv_like_text_through_read_data_gives_a_dataset_or_a_hodec_error(tmp_path, model, header, body):
    path = tmp_path / "data.csv"
    path.write_text(",".join(header) + "\n" + body, encoding="utf-8")
    check_read_data(path, model)


NUMBERS = st.integers(-3, 3).map(str)
CELLS = st.one_of(NUMBERS, NUMBERS, NUMBERS, st.floats(allow_nan=True).map(repr),
                  st.sampled_from(["", " ", "NaN", "NA", "1_0", "inf", "1e400", '"1"', " 2 ", "x", "1,2"]))


@SETTINGS
@given(header=st.lists(st.sampled_from(HEADERS[1:-1]), min_size=1, max_size=5, unique=True).map(lambda h: ["t", *h]),
       draw=st.data())
def test_table_shaped_text_through_read_data_gives_a_dataset_or_a_hodec_error(tmp_path, model, header, draw):
    """Rows of numbers and near-numbers under real column names: reaches the checks on ids, times, trajectories."""
    rows = draw.draw(st.lists(st.lists(CELLS, min_size=len(header), max_size=len(header)), max_size=8))
    path = tmp_path / "data.csv"
    path.write_text("\n".join([",".join(header)] + [",".join(row) for row in rows]), encoding="utf-8")
    check_read_data(path, model)


finite_or_missing = st.one_of(st.floats(min_value=-LARGEST, max_value=LARGEST, allow_nan=False),
                              st.just(math.nan))


@SETTINGS
@given(st.integers(1, 4).flatmap(lambda width: st.lists(st.lists(finite_or_missing, min_size=width,
                                                                  max_size=width), max_size=20)),
       st.sampled_from(["\n", "\r\n"]), st.sampled_from(["", " "]), st.sampled_from(["", "NaN", "NA"]))
def test_valid_tables_round_trip(tmp_path, rows, newline, pad, missing):
    width = len(rows[0]) if rows else 2
    header = [f"c{j}" for j in range(width)]
    text = newline.join([",".join(header)] + [",".join(pad + (missing if math.isnan(v) else repr(v)) + pad
                                                       for v in row) for row in rows
                                              if any(not math.isnan(v) for v in row) or missing])
    path = tmp_path / "table.csv"
    path.write_text("\ufeff" + text + newline, encoding="utf-8")
    table = read_table(path)
    kept = [row for row in rows if any(not math.isnan(v) for v in row) or missing]
    assert table.header == tuple(header)
    expected = np.array(kept, dtype=float).reshape(len(kept), width)
    np.testing.assert_array_equal(table.values, expected)  # NaN where NaN, every other value bit for bit
    assert table.lines.tolist() == list(range(2, len(kept) + 2))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789eE.+- \t", max_size=12))
@example("1e5 ")
@example(" ")
@example("1.e3")
def test_plain_cells_are_numbers_exactly_when_float_accepts_them(cell):
    """read_table converts all-plain batches with float() alone: that must accept the same strings as NUMBER."""
    assert PLAIN.fullmatch(cell)
    try:
        float(cell)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == bool(NUMBER.fullmatch(cell.strip())), cell
