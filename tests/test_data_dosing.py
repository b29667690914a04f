"""Pharmacometric data as NONMEM, nlmixr2 and Pumas write it (hodec.training.records, columns.py): dose rows
(evid/amt/rate/cmt), the long format (dv/dvid), mdv, the `time` alias and case-insensitive names, text columns,
param columns. The real data sets are checked against counts and values taken from the CSV by the csv module."""
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hodec.cli import main
from hodec.compiler import load_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset, read_data
from hodec.training.groups import make_groups

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nlmixr2data"
WARFARIN, THEO = DATA / "warfarin.csv", DATA / "theo_md.csv"
needs_data = pytest.mark.skipif(not WARFARIN.is_file(), reason="../shared/data/nlmixr2data is not here")

PKPD = """model PKPD
param ka = 1 positive
param CL = 0.1 positive
param V = 8 positive
param ke0 = 0.05 positive
param E0 = 100 positive
param wt = 70 fixed
state depot = 0
state central = 0
state effect = 0
der depot = -ka * depot
der central = ka * depot - CL / V * central
der effect = ke0 * (central / V - effect)
observe cp = central / V
observe pca = E0 / (1 + effect)
"""


@pytest.fixture(scope="module")
def pkpd():
    return load_text(PKPD, "pkpd.hode")


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def read(tmp_path, model, text, **config):
    return read_data(write(tmp_path, text), model, load_config(config))


def error(tmp_path, model, text, **config) -> str:
    with pytest.raises(HodecError) as info:
        read(tmp_path, model, text, **config)
    return str(info.value)


# ---------------------------------------------------------------- the real data sets, as they are
def subjects(path: Path, id_column: str, dose) -> dict:
    """Per id (in file order): every row's time, the doses (time, amount) and the observations (time, endpoint)
    -> values in file order, read with the csv module alone."""
    out: dict = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            s = out.setdefault(row[id_column], {"times": set(), "doses": [], "obs": defaultdict(list), "rows": []})
            s["rows"].append(row)
            time = float(row.get("time", row.get("TIME")))
            s["times"].add(time)
            if dose(row):
                s["doses"].append((time, float(row.get("amt", row.get("AMT")))))
            else:
                s["obs"][(time, row.get("dvid", "cp"))].append(float(row.get("dv", row.get("DV"))))
    return out


def expected_trajectories(subject: dict, label: str, columns: tuple) -> list:
    """(id, t, y) of the subject's trajectory and of one twin per extra replicate."""
    times = sorted(subject["times"])
    layers = max(len(v) for v in subject["obs"].values())
    out = []
    for r in range(layers):
        y = np.full((len(times), len(columns)), np.nan)
        for (time, endpoint), values in subject["obs"].items():
            if r < len(values):
                y[times.index(time), columns.index(endpoint)] = values[r]
        out.append((label if r == 0 else f"{label} (replicate {r + 1})", np.asarray(times), y))
    return out


@needs_data
def test_warfarin_reads_as_is_into_trajectories_doses_and_both_endpoints(pkpd):
    config = load_config({"ignore_columns": ["age", "sex"], "dose_state": "depot"})
    data = read_data(WARFARIN, pkpd, config)
    expected = subjects(WARFARIN, "id", lambda row: row["evid"] == "1")
    assert len(expected) == 32
    assert data.columns == ("cp", "pca")
    rows = [row for s in expected.values() for row in s["rows"]]
    assert data.n_cells == sum(row["evid"] == "0" for row in rows)  # every observation row has a value
    want = [t for label, s in expected.items() for t in expected_trajectories(s, label, data.columns)]
    assert [tr.id for tr in data.trajectories] == [label for label, _, _ in want]
    assert len(data.trajectories) > 32  # patient 9 has replicate cp values at 3, 6, 9 and 12 h: a twin holds them
    by_id = {tr.id: tr for tr in data.trajectories}
    for label, t, y in want:
        tr = by_id[label]
        np.testing.assert_array_equal(tr.t, t)
        np.testing.assert_array_equal(tr.y, y)
        subject = expected[label.split(" ")[0]]
        np.testing.assert_array_equal(tr.doses.time, [time for time, _ in subject["doses"]])
        np.testing.assert_array_equal(tr.doses.amount, [amount for _, amount in subject["doses"]])
        assert (tr.doses.state == 0).all() and (tr.doses.rate == 0).all()  # into depot, boluses
        assert tr.params == {"wt": float(subject["rows"][0]["wt"])}


@needs_data
def test_warfarin_groups_carry_the_doses_padded_and_the_weights(pkpd):
    config = load_config({"ignore_columns": ["age", "sex"], "dose_state": "depot"})
    data = read_data(WARFARIN, pkpd, config)
    groups = make_groups(data, pkpd(), torch.float64, {})
    assert sum(g.size for g in groups) == len(data.trajectories)
    for g in groups:
        trs = [data.trajectories[i] for i in g.members]
        K = max(len(tr.doses) for tr in trs)
        assert tuple(g.doses.time.shape) == (K, g.size)
        for b, tr in enumerate(trs):
            k = len(tr.doses)
            assert g.doses.time[:k, b].tolist() == tr.doses.time.tolist()
            assert g.doses.amount[:k, b].tolist() == tr.doses.amount.tolist()
            assert torch.isnan(g.doses.time[k:, b]).all()
        assert g.params["wt"].tolist() == [tr.params["wt"] for tr in trs]
    g = groups[0]
    some = g.members_only(torch.tensor([2, 0]))  # a process's share under torchrun
    assert torch.equal(some["doses"].time, g.doses.time[:, [2, 0]])
    assert torch.equal(some["doses"].amount, g.doses.amount[:, [2, 0]])
    assert some["params"]["wt"].tolist() == [g.params["wt"][2].item(), g.params["wt"][0].item()]


@needs_data
def test_theo_md_reads_rxode2_dose_codes_and_uppercase_names(pkpd):
    """EVID 101 is rxode2's bolus into compartment 1 (depot, the first state); DV without DVID is FIT.yaml's dv;
    the observations' CMT 2 is not read (an observation's value is its dv)."""
    data = read_data(THEO, pkpd, load_config({"dv": "cp", "ignore_columns": ["WT"]}))
    expected = subjects(THEO, "ID", lambda row: row["EVID"] == "101")
    assert len(expected) == 12 and data.columns == ("cp",)
    want = [t for label, s in expected.items() for t in expected_trajectories(s, label, ("cp",))]
    assert [tr.id for tr in data.trajectories] == [label for label, _, _ in want]
    for tr, (label, t, y) in zip(data.trajectories, want):
        np.testing.assert_array_equal(tr.t, t)
        np.testing.assert_array_equal(tr.y, y)
        subject = expected[label.split(" ")[0]]
        np.testing.assert_array_equal(tr.doses.time, [time for time, _ in subject["doses"]])
        np.testing.assert_array_equal(tr.doses.amount, [amount for _, amount in subject["doses"]])
        assert (tr.doses.state == 0).all()
    assert data.n_cells == sum(row["EVID"] == "0" for s in expected.values() for row in s["rows"])


# ---------------------------------------------------------------- the conventions, one at a time
def test_names_are_case_insensitive_and_time_is_t(tmp_path, pkpd):
    data = read(tmp_path, pkpd, "ID,TIME,EVID,AMT,CMT,DV,DVID\n1,0,1,5,central,,\n1,1,0,,,2,cp\n1,2,0,,,1,cp\n")
    tr = data.trajectories[0]
    assert tr.t.tolist() == [0, 1, 2] and np.isnan(tr.y[0, 0]) and tr.y[1:, 0].tolist() == [2, 1]
    assert tr.doses.state.tolist() == [1] and tr.doses.amount.tolist() == [5]


def test_cmt_is_a_state_name_or_its_one_based_position_and_dose_state_the_default(tmp_path, pkpd):
    text = "t,evid,amt,cmt,cp\n0,1,5,effect,\n0,1,6,2,\n0,1,7,,\n1,0,,,3\n2,0,,,4\n"
    data = read(tmp_path, pkpd, text, dose_state="depot")
    assert data.trajectories[0].doses.state.tolist() == [2, 1, 0]
    assert data.trajectories[0].doses.amount.tolist() == [5, 6, 7]
    assert data.trajectories[0].t.tolist() == [0, 1, 2]  # the dose rows are one time point


def test_rate_makes_an_infusion_and_empty_or_zero_a_bolus(tmp_path, pkpd):
    text = "t,evid,amt,rate,cmt,cp\n0,1,10,2,central,\n1,1,3,,depot,\n2,1,4,0,depot,\n5,1,10,5,central,\n6,0,,,,1\n"
    doses = read(tmp_path, pkpd, text).trajectories[0].doses
    assert doses.rate.tolist() == [2, 0, 0, 5] and doses.time.tolist() == [0, 1, 2, 5]


def test_addl_repeats_a_dose_ii_apart_and_dur_is_an_infusions_duration(tmp_path, pkpd):
    text = ("ID,TIME,EVID,AMT,DUR,CMT,ADDL,II,cp\n1,0,1,10,,depot,3,12,\n1,1,0,,,,,,1\n1,20,1,6,2,central,,,\n"
            "1,30,0,,,,,,2\n")
    tr = read(tmp_path, pkpd, text).trajectories[0]
    assert tr.doses.time.tolist() == [0, 12, 20, 24, 36] and tr.doses.amount.tolist() == [10, 10, 6, 10, 10]
    assert tr.doses.state.tolist() == [0, 0, 1, 0, 0] and tr.doses.rate.tolist() == [0, 0, 3, 0, 0]
    assert tr.t.tolist() == [0, 1, 20, 30]  # the rows' times; the repeats need none


def test_without_evid_a_positive_amt_is_a_dose(tmp_path, pkpd):
    data = read(tmp_path, pkpd, "t,amt,cp\n0,100,\n1,0,3\n2,,4\n", dose_state="depot")
    tr = data.trajectories[0]
    assert tr.doses.time.tolist() == [0] and tr.y[:, 0].tolist()[1:] == [3, 4]


def test_evid_2_and_mdv_1_rows_are_time_points_without_values(tmp_path, pkpd):
    text = "t,evid,mdv,cp\n0,0,0,1\n1,2,,7\n2,0,1,8\n3,0,0,2\n"
    tr = read(tmp_path, pkpd, text).trajectories[0]
    assert tr.t.tolist() == [0, 1, 2, 3]
    assert tr.y[:, 0].tolist()[0] == 1 and np.isnan(tr.y[1:3, 0]).all() and tr.y[3, 0] == 2


def test_a_dose_rows_values_are_not_observations(tmp_path, pkpd):
    tr = read(tmp_path, pkpd, "t,evid,amt,cmt,cp\n0,1,5,depot,99\n1,0,,,1\n2,0,,,2\n").trajectories[0]
    assert np.isnan(tr.y[0, 0]) and tr.y[1:, 0].tolist() == [1, 2]


def test_long_and_wide_values_share_the_fitted_columns(tmp_path, pkpd):
    text = "t,dv,dvid,pca\n0,1,cp,50\n1,2,cp,\n1,40,pca,\n2,,cp,30\n"
    data = read(tmp_path, pkpd, text)
    assert data.columns == ("pca", "cp")
    np.testing.assert_array_equal(data.trajectories[0].y, [[50, 1], [40, 2], [30, np.nan]])


def test_numeric_dvids_are_named_by_the_dvid_map(tmp_path, pkpd):
    data = read(tmp_path, pkpd, "t,dv,dvid\n0,1,1\n1,50,2\n2,3,1.0\n", dvid={1: "cp", "2": "pca"})
    assert data.columns == ("cp", "pca")
    np.testing.assert_array_equal(data.trajectories[0].y, [[1, np.nan], [np.nan, 50], [3, np.nan]])


def test_a_fixed_params_column_gives_each_trajectory_its_value(tmp_path, pkpd):
    text = "id,t,cp,wt\n1,0,1,60\n1,1,2,60\n2,0,1,\n2,1,2,\n3,0,1,\n3,1,2,80\n"
    data = read(tmp_path, pkpd, text)
    assert [tr.params for tr in data.trajectories] == [{"wt": 60.0}, {"wt": 70.0}, {"wt": 80.0}]  # empty: spec's


def test_an_input_repeated_on_rows_of_one_time_is_one_value(tmp_path):
    model = load_text("model F\ninput u\nstate x = 0\nder x = u - x\n", "f.hode")
    tr = read(tmp_path, model, "t,evid,amt,cmt,x,u\n0,1,1,x,,2\n0,0,,,0,2\n1,0,,,1,3\n").trajectories[0]
    assert tr.u[:, 0].tolist() == [2, 3] and tr.y[:, 0].tolist() == [0, 1]


def test_ids_may_be_text_and_numbers_written_either_way_are_one_id(tmp_path, pkpd):
    data = read(tmp_path, pkpd, "id,t,cp\nA-01,0,1\nA-01,1,2\n7,0,3\n7.0,1,4\nB,0,5\nB,1,6\n")
    assert [tr.id for tr in data.trajectories] == ["A-01", "7", "B"]
    assert [tr.y[:, 0].tolist() for tr in data.trajectories] == [[1, 2], [3, 4], [5, 6]]
    assert "line 3, column 'id': the 'id' is missing" in error(tmp_path, pkpd, "id,t,cp\nA,0,1\n,1,2\n")


def test_ignored_columns_may_hold_text(tmp_path, pkpd):
    data = read(tmp_path, pkpd, "t,cp,sex,site\n0,1,male,a\n1,2,female,b\n", ignore_columns=["sex", "site"])
    assert data.columns == ("cp",) and data.inputs == ()


def test_a_model_name_wins_over_a_conventional_one(tmp_path):
    model = load_text("model R\nparam k = 1\nstate rate = 1\nder rate = -k * rate\n", "r.hode")
    data = read(tmp_path, model, "t,rate\n0,1\n1,0.4\n")
    assert data.columns == ("rate",) and len(data.trajectories[0].doses) == 0


def test_make_dataset_takes_record_columns_with_numeric_cmt(pkpd):
    data = make_dataset(pkpd, [0, 0, 1, 2], {"evid": [1, 0, 0, 0], "amt": [4, 0, 0, 0], "cmt": [2, 0, 0, 0],
                                             "cp": [math.nan, 0, 1, 2]})
    tr = data.trajectories[0]
    assert tr.doses.state.tolist() == [1] and tr.t.tolist() == [0, 1, 2] and tr.y[:, 0].tolist() == [0, 1, 2]


# ---------------------------------------------------------------- bad input: located errors
BAD = [
    ("t,evid,amt,cmt,cp\n0,1,5,centrl,\n1,0,,,1\n", {},
     "line 2, column 'cmt': a dose into 'centrl', which is not a state of PKPD; did you mean 'central'?"),
    ("t,evid,amt,cmt,cp\n0,1,5,cp,\n1,0,,,1\n", {}, "line 2, column 'cmt': a dose into 'cp', which is not a state "
                                                    "of PKPD (an observable: doses go into states)"),
    ("t,evid,amt,cmt,cp\n0,1,,depot,\n1,0,,,1\n", {},
     "line 2, column 'amt': a dose row needs an amount (the 'amt' cell is empty)"),
    ("t,evid,cmt,cp\n0,1,depot,\n1,0,,1\n", {}, "line 2: a dose row (evid 1) needs an amount: add an 'amt' column"),
    ("t,evid,amt,cmt,cp\n0,1,-5,depot,\n1,0,,,1\n", {}, "line 2, column 'amt': a dose's amount must be >= 0"),
    ("t,evid,amt,rate,cmt,cp\n0,1,5,-1,depot,\n1,0,,,,1\n", {}, "line 2, column 'rate': a dose's rate must be >= 0"),
    ("t,evid,amt,rate,cmt,cp\n0,1,0,2,depot,\n1,0,,,,1\n", {},
     "line 2, column 'amt': an infusion (rate > 0) needs an amount > 0"),
    ("t,evid,amt,rate,cmt,cp\n0,1,10,2,central,\n4,1,10,5,central,\n9,0,,,,1\n", {},
     "line 3: infusions into 'central' overlap in the data: this one starts at t = 4, while the one on line 2 runs "
     "from t = 0 to 5"),
    ("t,dv,dvid\n0,1,cpp\n1,2,cp\n", {},
     "line 2, column 'dvid': dvid 'cpp' is not an observable or state of PKPD; did you mean 'cp'?"),
    ("t,dv,dvid\n0,1,x\n1,2,cp\n", {},
     "line 2, column 'dvid': dvid 'x' is not an observable or state of PKPD (one of cp, pca, depot, central, effect)"),
    ("t,dv,dvid\n0,1,1\n1,2,1\n", {}, "line 2, column 'dvid': dvid 1 is a number: name what it is in FIT.yaml's "
                                      "dvid map"),
    ("t,dv\n0,1\n1,2\n", {}, "line 2: an observation's dv needs a dvid naming the observable or state it is, or "
                             "FIT.yaml's dv"),
    ("t,evid,amt,cmt,cp\n0,1,five,depot,\n1,0,,,1\n", {},
     "line 2, column 'amt': 'five' is not a number (text is allowed only in id, cmt, dvid and the columns FIT.yaml's "
     "ignore_columns lists)"),
    ("t,evid,amt,cmt,cp\n0,1,5,4,\n1,0,,,1\n", {},
     "line 2, column 'cmt': cmt 4 is not a compartment number: 1 to 3 (the states 1 = depot, 2 = central, "
     "3 = effect), or a state's name"),
    ("t,evid,amt,cmt,cp\n0,1,5,1.5,\n1,0,,,1\n", {}, "line 2, column 'cmt': cmt 1.5 is not a compartment number"),
    ("t,evid,amt,cp\n0,1,5,\n1,0,,1\n", {}, "line 2: a dose row needs a target state: a 'cmt' cell"),
    ("t,evid,amt,cmt,cp\n0,3,5,depot,\n1,0,,,1\n", {}, "line 2, column 'evid': evid 3 (a reset) is not supported"),
    ("t,evid,amt,cmt,cp\n0,,5,depot,\n1,0,,,1\n", {}, "line 2, column 'evid': the evid is missing"),
    ("t,evid,mdv,cp\n0,0,2,1\n1,0,0,1\n", {}, "line 2, column 'mdv': mdv is 2"),
    ("t,evid,amt,cmt,cp\n0,201,5,depot,\n1,0,,,1\n", {},
     "line 2, column 'cmt': the evid doses compartment 2 ('central') but the cmt names 'depot'"),
    ("t,cp,sex\n0,1,male\n1,2,male\n", {}, "line 2, column 'sex': 'male' is not a number (text is allowed only"),
    ("t,cp,age\n0,1,30\n1,2,30\n", {}, "unknown column 'age': not an observable, state, input or param of PKPD"),
    ("t,time,cp\n0,0,1\n1,1,2\n", {}, "columns 't' and 'time' are both the 't' column"),
    ("t,dvid,cp\n0,cp,1\n1,cp,2\n", {}, "a 'dvid' column names what each row's 'dv' value is, but there is no 'dv'"),
    ("id,t,cp,wt\n1,0,1,60\n1,1,2,61\n", {},
     "line 3, column 'wt': 'wt' is a param: one value per trajectory, but trajectory 1 has 60 on line 2 and 61 here"),
    ("t,cp,V\n0,1,8\n1,2,8\n", {}, "column 'V' is a trained param of PKPD"),
    ("id,t,evid,amt,cmt,cp\n1,0,0,,,1\n1,1,0,,,2\n2,0,1,5,depot,\n2,1,0,,,\n", {},
     "trajectory 2 (lines 4 to 5) has 1 dose but no value in any fitted column (cp): nothing to fit"),
    ("t,evid,amt,cmt,cp\n1,1,5,depot,\n0,0,,,1\n", {}, "line 3: time 0 does not increase"),
    ("t,evid,amt,cmt,addl,ii,cp\n0,1,5,depot,-1,12,\n1,0,,,,,1\n", {},
     "line 2, column 'addl': addl is how many more doses follow: a whole number from 0 to 100000"),
    ("t,evid,amt,cmt,addl,ii,cp\n0,1,5,depot,1.5,12,\n1,0,,,,,1\n", {}, "line 2, column 'addl': addl is how many"),
    ("t,evid,amt,cmt,addl,ii,cp\n0,1,5,depot,2,,\n1,0,,,,,1\n", {},
     "line 2, column 'ii': a dose with addl > 0 needs the interval between its doses: ii > 0"),
    ("t,evid,amt,cmt,addl,cp\n0,1,5,depot,2,\n1,0,,,,1\n", {}, "line 2, column 'addl': a dose with addl > 0 needs"),
    ("t,evid,amt,rate,cmt,addl,ii,cp\n0,1,10,1,central,2,6,\n1,0,,,,,,1\n", {},
     "line 2: infusions into 'central' overlap in the data: this one starts at t = 6, while the one on line 2 runs "
     "from t = 0 to 10"),
    ("t,evid,amt,cmt,ss,ii,cp\n0,1,5,depot,1,12,\n1,0,,,,,1\n", {},
     "line 2, column 'ss': ss (a dose at steady state) is not supported"),
    ("t,evid,amt,rate,dur,cmt,cp\n0,1,5,1,2,depot,\n1,0,,,,,1\n", {},
     "line 2, column 'dur': a dose has both a rate and a duration: give one"),
    ("t,evid,amt,dur,cmt,cp\n0,1,5,-2,depot,\n1,0,,,,1\n", {}, "line 2, column 'dur': a dose's duration must be >= 0"),
    ("t,cp,pca\n0,1,2\n0,3,\n1,2,2\n", {}, None),  # a replicate at one time point is not an error
]


@pytest.mark.parametrize("content, config, message", BAD)
def test_bad_records_are_errors_naming_file_line_and_column(tmp_path, pkpd, content, config, message):
    if message is None:
        assert len(read(tmp_path, pkpd, content, **config).trajectories) == 2
        return
    text = error(tmp_path, pkpd, content, **config)
    assert text.startswith(f"{tmp_path / 'data.csv'}: error: ") and message in text


@pytest.mark.parametrize("config, message", [
    ({"dose_state": "dep"}, "dose_state: 'dep' is not a state of PKPD; did you mean 'depot'?"),
    ({"dose_state": "cp"}, "dose_state: 'cp' is not a state of PKPD (one of depot, central, effect)"),
    ({"dv": "depo"}, "dv: 'depo' is not an observable or state of PKPD; did you mean 'depot'?"),
    ({"dvid": {1: "cq"}}, "dvid.1: 'cq' is not an observable or state of PKPD"),
])
def test_fit_yaml_data_keys_name_the_models_states_whether_or_not_a_row_uses_them(tmp_path, capsys, config, message):
    assert message in error(tmp_path, load_text(PKPD, "pkpd.hode"), "t,cp\n0,1\n1,2\n", **config)
    spec, data = write(tmp_path, PKPD, "pkpd.hode"), write(tmp_path, "t,cp\n0,1\n1,2\n")
    fit_yaml = write(tmp_path, yaml.safe_dump(config), "fit.yaml")
    assert main(["fit", str(spec), "--data", str(data), "--config", str(fit_yaml), "--out", str(tmp_path / "run"),
                 "--quiet"]) == 1
    assert capsys.readouterr().err.startswith(f"fit config: error: {message}")


def test_inputs_that_differ_at_one_time_point_are_an_error(tmp_path):
    model = load_text("model F\ninput u\nstate x = 0\nder x = u - x\n", "f.hode")
    text = error(tmp_path, model, "t,x,u\n0,0,2\n0,,3\n1,1,3\n")
    assert "line 3: input 'u' is 3 at t = 0 in the data, but 2 on line 2: one value per time point" in text


@pytest.mark.parametrize("content, config, message", [case for case in BAD if case[2] is not None])
def test_bad_records_through_hodec_fit_exit_1_naming_file_and_line(tmp_path, capsys, content, config, message):
    spec, data = write(tmp_path, PKPD, "pkpd.hode"), write(tmp_path, content)
    fit_yaml = write(tmp_path, yaml.safe_dump({**config, "epochs": 1, "method": "vanilla"}), "fit.yaml")
    out = tmp_path / "run"
    assert main(["fit", str(spec), "--data", str(data), "--config", str(fit_yaml), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{data}: error: ") and message in err
    assert "Traceback" not in err and "internal error" not in err and not out.exists()
