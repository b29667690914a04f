"""Reading CSV data (hodec.tables, hodec.training.data): the accepted format, and a located error (file, line,
column) for everything else, from the Python API and from the command line (exit 1, no traceback)."""
import math
import time
from pathlib import Path

import numpy as np
import pytest

from hodec.cli import main
from hodec.compiler import load
from hodec.errors import HodecError
from hodec.training.data import make_dataset, read_data

ROOT = Path(__file__).resolve().parents[1]
LV = ROOT / "specs" / "lotka_volterra.hode"
FORCED = "model Forced\ninput u\nstate x = 0\nder x = u - x\nobserve total = x\n"


@pytest.fixture(scope="module")
def model():
    return load(LV)


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def read_error(tmp_path, model, text) -> str:
    path = write(tmp_path, text)
    with pytest.raises(HodecError) as info:
        read_data(path, model)
    message = str(info.value)
    assert message.startswith(f"{path}: error: ")
    return message


# ---------------------------------------------------------------- what is accepted
@pytest.mark.parametrize("cell, value", [
    ("1.5", 1.5), (" 1.5 ", 1.5), ("\t-2\t", -2.0), ("+.5", 0.5), ("7.", 7.0), ("2E-3", 0.002), ("-1e+2", -100.0),
    ("", math.nan), ("  ", math.nan), ("NaN", math.nan), ("nan", math.nan), ("NA", math.nan), ('"3.25"', 3.25),
])
def test_accepted_cells(tmp_path, model, cell, value):
    data = read_data(write(tmp_path, f"t,prey,predators\n0,{cell},1\n1,2,3\n"), model)
    got = data.trajectories[0].y[0, 0]
    assert (math.isnan(got) and math.isnan(value)) or got == value


def test_a_byte_order_mark_is_skipped(tmp_path, model):
    data = read_data(write(tmp_path, b"\xef\xbb\xbft,prey,predators\r\n0,1,2\r\n1,3,4\r\n"), model)
    assert data.columns == ("prey", "predators")
    np.testing.assert_array_equal(data.trajectories[0].t, [0.0, 1.0])
    np.testing.assert_array_equal(data.trajectories[0].y, [[1.0, 2.0], [3.0, 4.0]])


# ---------------------------------------------------------------- cells that are not numbers
@pytest.mark.parametrize("cell, hint", [
    ("1_0", "'_'"), ("1_000.5", "'_'"), ("inf", "infinite"), ("-Infinity", "infinite"), ("\u0661", "decimal"),
    ("1 0", "decimal"), ("0x10", "decimal"), ("-nan", "decimal"), ("1,5", None),
])
def test_python_only_number_syntax_is_refused_at_its_line_and_column(tmp_path, model, cell, hint):
    message = read_error(tmp_path, model, f"t,prey,predators\n0,1,2\n1,{cell},3\n")
    if hint is None:  # a decimal comma makes one cell two
        assert "line 3: 4 cells, but the header has 3" in message
    else:
        assert f"line 3, column 'prey': {cell!r} is not a number" in message and hint in message


def test_a_cell_over_the_csv_field_limit_is_a_located_error(tmp_path, model):
    message = read_error(tmp_path, model, "t,prey,predators\n0,1,2\n1,2," + "7" * 200_000 + "\n")
    assert "line 3, column 'predators': more than 131072 characters" in message


@pytest.mark.parametrize("cell", ["1e308", "-1e200", "1e400"])
def test_absurd_magnitudes_are_refused_at_read_time(tmp_path, model, cell):
    message = read_error(tmp_path, model, f"t,prey,predators\n0,1,2\n1,2,{cell}\n")
    assert "line 3, column 'predators'" in message and "outside ±1e+150" in message


def test_absurd_magnitudes_from_arrays_name_the_row(model):
    with pytest.raises(HodecError, match=r"row 2, column 'prey': 1e\+300 is outside"):
        make_dataset(model, [0.0, 1.0], {"prey": [1.0, 1e300]})
    with pytest.raises(HodecError, match=r"row 1, column 'predators': inf is outside"):
        make_dataset(model, [0.0, 1.0], {"predators": [math.inf, 1.0]})


# ---------------------------------------------------------------- trajectories
@pytest.mark.parametrize("content, message", [
    ("t,prey,predators\n0,1,2\n",
     "line 2: the data has a single time point; a trajectory needs at least two"),
    ("t,id,prey\n0,7,1\n1,7,2\n0,8,1\n0,9,1\n",  # one row per id (but the first)
     "line 4: trajectory 8 has a single time point"),
    ("t,id,prey,predators\n0,1,1,2\n1,1,2,3\n\n0,2,,\n1,2,NaN,\n",  # an id whose cells are all empty
     "trajectory 2 (lines 5 to 6) has no value in any fitted column (prey, predators)"),
    ('t,prey,predators\n\n0,1,"2"\n"1\n",2,3\n2,x,4\n',  # lines count blank lines and quoted line breaks
     "line 6, column 'prey': 'x' is not a number"),
])
def test_trajectories_without_two_times_or_a_value_are_located_errors(tmp_path, model, content, message):
    assert message in read_error(tmp_path, model, content)


def test_many_ids_are_grouped_without_a_scan_per_id(tmp_path, model):
    n = 150_000  # 75000 trajectories of two rows: a scan of all rows per id took 11 s of CPU here
    rows = "".join(f"{i % 2},{i // 2},{i}\n" for i in range(n))
    path = write(tmp_path, "t,id,prey\n" + rows)
    start = time.process_time()
    data = read_data(path, model)
    assert time.process_time() - start < 6.0
    assert len(data.trajectories) == n // 2
    last = data.trajectories[-1]
    assert last.id == str(n // 2 - 1) and last.y[:, 0].tolist() == [n - 2, n - 1]


# ---------------------------------------------------------------- the command line
def test_fit_with_one_row_exits_1_naming_file_and_line(tmp_path, capsys):
    data = write(tmp_path, "t,prey,predators\n0,1,2\n")
    out = tmp_path / "run"
    assert main(["fit", str(LV), "--data", str(data), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{data}: error: line 2: the data has a single time point")
    assert "internal error" not in err and not out.exists()


@pytest.mark.parametrize("content, message", [
    ("t,value\n0,1\n1,1_0\n", "line 3, column 'value': '1_0' is not a number"),
    ("t,value\n0,1\n1," + "5" * 140_000 + "\n", "line 3, column 'value': more than 131072 characters"),
    ("t,value\n0,1\n1,1e308\n", "line 3, column 'value': 1e+308 is outside"),
    ("t,value\n0,1\n1,\n", "line 3, column 'value': empty cell"),
    ("t,value\n0,1\n0,2\n", "line 3: time 0 does not increase"),
])
def test_simulate_input_file_errors_exit_1_naming_file_and_line(tmp_path, capsys, content, message):
    spec = write(tmp_path, FORCED, "forced.hode")
    signal = write(tmp_path, content, "u.csv")
    assert main(["simulate", str(spec), "--t-end", "2", "--points", "3", "--input", f"u={signal}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{signal}: error: {message}")
    assert "internal error" not in err


def test_simulate_reads_an_input_file_with_a_byte_order_mark(tmp_path, capsys):
    spec = write(tmp_path, FORCED, "forced.hode")
    signal = write(tmp_path, b"\xef\xbb\xbft,value\n0,1\n5,1\n", "u.csv")
    assert main(["simulate", str(spec), "--t-end", "2", "--points", "3", "--input", f"u={signal}"]) == 0
    out = capsys.readouterr().out.splitlines()
    x_end = float(out[-1].split(",")[1])
    assert x_end == pytest.approx(1 - math.exp(-2), rel=1e-5)  # x' = 1 - x, x(0) = 0


def test_values_too_large_for_float32_are_refused_when_training_in_float32(tmp_path):
    """The reader's bound is float64's; a float32 run names the value it cannot square instead of failing later
    with advice about the learning rate."""
    from hodec.training.config import load_config
    from hodec.training.fit import Trainer

    model = load(LV)()
    data = make_dataset(model, [0.0, 1.0, 2.0], {"prey": [1.0, 3e25, 2.0], "predators": [1.0, 1.0, 1.0]})
    with pytest.raises(HodecError, match=r"t = 1, column 'prey': 3e\+25 is too large for dtype: float32"):
        Trainer(model, data, load_config({"dtype": "float32"}))
    Trainer(model, data, load_config({"dtype": "float64"}))  # float64 squares it
