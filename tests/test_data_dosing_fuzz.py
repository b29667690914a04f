"""Robustness of reading dose records (hypothesis, a few seconds): whatever the cells of the NONMEM-style columns,
read_data gives a dataset whose doses are well formed, or a HodecError naming the file; never another exception."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hodec.compiler import load_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import read_data

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SPEC = "model M\nparam k = 1\nparam w = 1 fixed\nstate a = 0\nstate b = 0\nder a = -k * a\nder b = k * a - b\n" \
       "observe c = b / w\n"
# Every file has ID, time, evid, amt and a value column (dv or c), then some of the others. A cell is valid far more
# often than not (valid values are repeated in the pool), so that many files get through to the trajectories and
# doses; each column has its bad values too.
COLUMNS = ["rate", "dur", "cmt", "addl", "ii", "ss", "dvid", "mdv", "w", "sex"]
VALID = {
    "ID": ["1", "1", "1", "1.0", "2", "A"], "time": ["0", "1", "2", "3", "0.5"],
    "evid": ["0", "0", "0", "0", "1", "1", "2", "101"],
    "amt": ["0", "5"], "rate": ["0", "2", ""], "dur": ["", "1"], "cmt": ["a", "b", "1", "2", ""],
    "addl": ["", "0", "2"], "ii": ["", "1"], "ss": ["", "0"], "dv": ["1", "2.5", "2.5", "", "NaN"],
    "dvid": ["", "c", "b"], "mdv": ["", "0", "1"], "w": ["", "1", "2"], "c": ["3", "3", ""], "sex": ["m", "f", ""],
}
BAD = {
    "ID": [""], "time": ["-1", ""], "evid": ["3", "201", "301", "10101", "", "1.5"], "amt": ["-1", "", "1e200"],
    "rate": ["-2", "1e-300"], "dur": ["-1"], "cmt": ["3", "0", "1.5", "k", "c"], "addl": ["-1", "0.5", "1e9"],
    "ii": ["0", "-3"], "ss": ["1"], "dv": ["x"], "dvid": ["1", "2", "zz"], "mdv": ["2"], "w": ["x"], "c": ["x"],
    "sex": [],
}
CELLS = {name: VALID[name] * 10 + BAD[name] for name in VALID}


@pytest.fixture(scope="module")
def model():
    return load_text(SPEC)


@SETTINGS
@given(header=st.tuples(st.sampled_from(["dv", "c"]), st.lists(st.sampled_from(COLUMNS), max_size=6, unique=True))
       .map(lambda h: ["ID", "time", "evid", "amt", h[0], *h[1]]), draw=st.data(),
       config=st.fixed_dictionaries({}, optional={"dose_state": st.sampled_from(["a", "b"]), "dv": st.just("c"),
                                                 "dvid": st.just({1: "c", 2: "b"})}))
def test_record_cells_give_a_dataset_of_well_formed_doses_or_a_hodec_error(tmp_path, model, header, draw, config):
    rows = draw.draw(st.lists(st.tuples(*(st.sampled_from(CELLS[name]) for name in header)), min_size=2, max_size=10)
                     .map(lambda rows: sorted(rows, key=lambda row: row[1])))  # mostly in time order
    path = tmp_path / "data.csv"
    path.write_text("\n".join([",".join(header)] + [",".join(row) for row in rows]) + "\n")
    try:
        data = read_data(path, model, load_config({**config, "ignore_columns": ["sex"]}))
    except HodecError as err:
        assert str(err).startswith(f"{path}: error: ")
        return
    for tr in data.trajectories:
        assert len(tr.t) >= 2 and (np.diff(tr.t) > 0).all() and np.isfinite(tr.y).any()
        d = tr.doses
        assert ((d.state >= 0) & (d.state < 2)).all() and (d.amount >= 0).all() and (d.rate >= 0).all()
        assert (np.diff(d.time) >= 0).all() and (d.time >= tr.t[0]).all() and (d.amount[d.rate > 0] > 0).all()
