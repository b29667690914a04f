"""FIT.yaml's `dvid: {NAME: null}` leaves an endpoint's rows out (NONMEM's IGNORE=(DVID.EQ.2)): warfarin.csv read
as-is by a PK-only spec, its values counted independently with the csv module."""
import csv

import numpy as np
import pytest

from hodec.cli import main
from hodec.compiler import load_text
from hodec.training.config import load_config
from hodec.training.data import read_data
from test_data_dosing import WARFARIN, needs_data

PK = """model PK
param ka = 1 positive
param cl = 0.1 positive
param v = 8 positive
state depot = 0
state central = 0
reaction absorption: depot -> central ; ka * depot
reaction elimination: central -> ; cl / v * central
observe cp = central / v
"""
KEYS = {"dose_state": "depot", "ignore_columns": ["wt", "age", "sex"], "dvid": {"pca": None}}


@needs_data
def test_an_endpoint_mapped_to_null_is_not_fitted():
    data = read_data(WARFARIN, load_text(PK, "pk.hode"), load_config(KEYS))
    assert data.columns == ("cp",)
    with open(WARFARIN, newline="") as f:
        rows = list(csv.DictReader(f))
    cp = [float(r["dv"]) for r in rows if r["evid"] == "0" and r["dvid"] == "cp"]
    values = np.concatenate([tr.y[:, 0] for tr in data.trajectories])
    assert data.n_cells == len(cp)
    assert sorted(values[np.isfinite(values)].tolist()) == sorted(cp)


@needs_data
def test_without_the_null_entry_the_endpoint_is_a_located_error(tmp_path, capsys):
    (tmp_path / "pk.hode").write_text(PK)
    (tmp_path / "FIT.yaml").write_text("dose_state: depot\nignore_columns: [wt, age, sex]\n")
    code = main(["fit", str(tmp_path / "pk.hode"), "--data", str(WARFARIN), "--config", str(tmp_path / "FIT.yaml"),
                 "--out", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "warfarin.csv" in err and "dvid 'pca' is not an observable or state" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["[]", "3"])
def test_a_dvid_map_value_must_be_a_name_or_null(tmp_path, capsys, value):
    (tmp_path / "FIT.yaml").write_text(f"dvid: {{pca: {value}}}\n")
    (tmp_path / "pk.hode").write_text(PK)
    (tmp_path / "d.csv").write_text("t,cp\n0,1\n1,2\n")
    code = main(["fit", str(tmp_path / "pk.hode"), "--data", str(tmp_path / "d.csv"), "--config",
                 str(tmp_path / "FIT.yaml"), "--out", str(tmp_path / "run")])
    assert code == 1
    assert "dvid" in capsys.readouterr().err
