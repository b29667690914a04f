"""`hodec forecast` and `hodec fit --test` end to end on a small model whose one state is observed (forecast.observed:
the state at the origin is the last history value), against scipy's solve_ivp from that value with the fitted
param and the inputs interpolated linearly (as hodec feeds data inputs to the model); and the bad inputs of both."""
import json
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from hodec.cli import main

SPEC = """model Decay
param k = 0.3 positive
input u
state x = 1
der x = -k * x + u
"""
STEP, HISTORY, HORIZON, STRIDE = 0.5, 2.0, 1.5, 2.0
FIT = f"""method: forecast
epochs: 4
lr: 0.05
forecast: {{history: {HISTORY}, horizon: {HORIZON}, stride: {STRIDE}, estimator: mlp, hidden: 4, observed: true}}
"""


def signal(t, i):
    return 0.5 + 0.5 * np.sin(t + i)


def write_data(path, ids, t_end=8.0, k=0.7):
    """Trajectories of dx/dt = -k x + u(t), u sampled at the data times (the model sees their linear
    interpolation)."""
    rows = ["t,id,x,u"]
    t = np.arange(0.0, t_end + 1e-9, STEP)
    for i in ids:
        sol = solve_ivp(lambda s, y: -k * y + signal(s, i), (0, t_end), [1.0 + i], t_eval=t, rtol=1e-10, atol=1e-12)
        rows += [f"{float(a)!r},{i},{float(x)!r},{float(signal(a, i))!r}" for a, x in zip(t, sol.y[0])]
    path.write_text("\n".join(rows) + "\n")
    return path


def reference(k, x0, t0, times, u_t, u_v):
    """x at `times` from x(t0) = x0 under the linearly interpolated input samples (u_t, u_v)."""
    sol = solve_ivp(lambda s, y: -k * y + np.interp(s, u_t, u_v), (t0, times[-1]), [x0], t_eval=times,
                    rtol=1e-11, atol=1e-13, max_step=STEP / 4)
    return sol.y[0]


def read_csv(path):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    return header, [line.split(",") for line in lines[1:]]


def fit_run(folder, fit: str, *options: str):
    """`hodec fit` of the decay spec in folder with the FIT.yaml text `fit` on train.csv (ids 0, 1; test.csv: ids 2,
    3), run folder folder/run: its path."""
    (folder / "decay.hode").write_text(SPEC)
    (folder / "fit.yaml").write_text(fit)
    write_data(folder / "train.csv", [0, 1])
    write_data(folder / "test.csv", [2, 3])
    assert main(["fit", str(folder / "decay.hode"), "--data", str(folder / "train.csv"), "--config",
                 str(folder / "fit.yaml"), "--out", str(folder / "run"), *options, "--quiet"]) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A forecast fit with --test: (folder, run folder, report)."""
    folder = tmp_path_factory.mktemp("forecast")
    fit_run(folder, FIT, "--test", str(folder / "test.csv"), "--peak", "x=1.0", "--classes", "x=0.6,1.1")
    return folder, folder / "run", json.loads((folder / "run" / "report.json").read_text())


def history_files(folder, origin=5.0, end=7.0):
    """hist.csv: the test trajectories up to the origin; inputs.csv: their input after it, to `end`."""
    header, rows = read_csv(folder / "test.csv")
    hist = [",".join(header)] + [",".join(r) for r in rows if float(r[0]) <= origin]
    inputs = ["t,id,u"] + [f"{r[0]},{r[1]},{r[3]}" for r in rows if origin < float(r[0]) <= end]
    (folder / "hist.csv").write_text("\n".join(hist) + "\n")
    (folder / "inputs.csv").write_text("\n".join(inputs) + "\n")
    return rows


def test_forecast_against_scipy_from_the_last_history_value(fitted):
    folder, run, report = fitted
    k = report["params"]["k"]
    assert k != pytest.approx(0.3)  # trained
    rows = history_files(folder)
    out = folder / "forecast.csv"
    assert main(["forecast", str(folder / "decay.hode"), "--run", str(run), "--history", str(folder / "hist.csv"),
                 "--inputs", str(folder / "inputs.csv"), "--horizon", "1.6", "--out", str(out)]) == 0
    header, got = read_csv(out)
    assert header == ["id", "t", "x"]
    for i in ("2", "3"):
        mine = [r for r in rows if r[1] == i]
        t_all, x_all, u_all = (np.array([float(r[c]) for r in mine]) for c in (0, 2, 3))
        times = np.array([float(r[1]) for r in got if r[0] == i])
        values = np.array([float(r[2]) for r in got if r[0] == i])
        assert times == pytest.approx([5.5, 6.0, 6.5])  # origin 5, step 0.5 (the history's), up to 5 + 1.6
        origin = t_all == 5.0
        expected = reference(k, float(x_all[origin][0]), 5.0, times, t_all[t_all <= 7.0], u_all[t_all <= 7.0])
        np.testing.assert_allclose(values, expected, rtol=1e-5)


def by_hand(test_csv, k):
    """Each test window (t0 = 0, 2, 4, ...; history [t0, t0 + 2): origin t0 + 1.5; horizon (origin, origin + 1.5])
    solved by scipy from its last history value: the errors of all cells, of each step, of the peaks over 1.0 and
    whether each cell's class (thresholds 0.6, 1.1) is right."""
    header, rows = read_csv(test_csv)
    errors, steps, peaks, hits = [], [[], [], []], [], []
    for i in ("2", "3"):
        t, x, u = (np.array([float(r[c]) for r in rows if r[1] == i]) for c in (0, 2, 3))
        for t0 in np.arange(0.0, t[-1], STRIDE):
            origin = t0 + HISTORY - STEP
            ahead = (t > origin + 1e-9) & (t <= origin + HORIZON + 1e-9)
            if origin + HORIZON > t[-1] + 1e-9:
                break
            pred = reference(k, float(x[np.isclose(t, origin)][0]), origin, t[ahead], t, u)
            errors += list(pred - x[ahead])
            for s in range(3):
                steps[s].append(pred[s] - x[ahead][s])
            if x[ahead].max() > 1.0:
                peaks.append(pred.max() - x[ahead].max())
            cls = lambda v: np.digitize(v, [0.6]) + (v > 1.1)  # noqa: E731
            hits += list(cls(pred) == cls(x[ahead]))
    return errors, steps, peaks, hits


def rms(errors):
    return math.sqrt(np.mean(np.square(errors)))


def test_fit_test_metrics_against_windows_cut_and_solved_by_hand(fitted):
    """report.json's test section against by_hand, scored with numpy here."""
    folder, run, report = fitted
    test = report["test"]
    errors, steps, peaks, hits = by_hand(folder / "test.csv", report["params"]["k"])
    assert test["windows"] == 6 and test["diverged"] == 0  # t0 = 6's horizon would end at 9, past the data
    x = test["columns"]["x"]
    assert x["cells"] == len(errors) == 18
    assert x["rmse"] == pytest.approx(rms(errors), rel=1e-4)
    assert [s["rmse"] for s in x["steps"]] == pytest.approx([rms(e) for e in steps], rel=1e-4)
    assert [s["lead"] for s in x["steps"]] == pytest.approx([0.5, 1.0, 1.5])
    assert x["peak_threshold"] == 1.0 and x["peak_windows"] == len(peaks) > 0
    assert x["peak_rmse"] == pytest.approx(rms(peaks), rel=1e-4)
    assert x["classes"]["accuracy"] == pytest.approx(np.mean(hits))
    assert (run / "forecast.png").stat().st_size > 1000


def test_fit_test_scores_the_kept_start_of_a_multi_start_fit(fitted, tmp_path):
    folder = fitted[0]
    (tmp_path / "fit.yaml").write_text(FIT.replace("epochs: 4", "epochs: 2") + "starts: 2\n")
    assert main(["fit", str(folder / "decay.hode"), "--data", str(folder / "train.csv"), "--config",
                 str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "run"), "--test", str(folder / "test.csv"),
                 "--quiet"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    errors = by_hand(folder / "test.csv", report["params"]["k"])[0]
    assert report["test"]["columns"]["x"]["rmse"] == pytest.approx(rms(errors), rel=1e-4)
    assert (tmp_path / "run" / "forecast.png").is_file()


def test_fit_test_without_method_forecast_reports_the_test_mse(tmp_path):
    (tmp_path / "decay.hode").write_text(SPEC)
    (tmp_path / "fit.yaml").write_text("method: vanilla\nepochs: 1\nlr: 1.0e-12\n")
    write_data(tmp_path / "train.csv", [0])
    write_data(tmp_path / "test.csv", [2, 3], t_end=4.0)
    assert main(["fit", str(tmp_path / "decay.hode"), "--data", str(tmp_path / "train.csv"), "--config",
                 str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "run"), "--test", str(tmp_path / "test.csv"),
                 "--quiet"]) == 0
    test = json.loads((tmp_path / "run" / "report.json").read_text())["test"]
    header, rows = read_csv(tmp_path / "test.csv")
    errors = []
    for i in ("2", "3"):  # the spec's values (lr 1e-12: unchanged): k = 0.3, x(0) = 1 (initial: data: x's first value)
        t, x, u = (np.array([float(r[c]) for r in rows if r[1] == i]) for c in (0, 2, 3))
        errors += list(reference(0.3, x[0], 0.0, t, t, u) - x)
    assert test["objective"] == "mse" and test["n_cells"] == len(errors)
    assert test["value"] == pytest.approx(np.mean(np.square(errors)), rel=1e-5)
    assert test["column_mse"]["x"] == pytest.approx(test["value"])
    assert not (tmp_path / "run" / "forecast.png").exists()


# ---------------------------------------------------------------- bad inputs
def forecast_args(folder, run, **change):
    args = {"spec": folder / "decay.hode", "--run": run, "--history": folder / "hist.csv",
            "--inputs": folder / "inputs.csv", "--horizon": "1.5", "--out": folder / "bad.csv", **change}
    out = ["forecast", str(args.pop("spec"))]
    for flag, value in args.items():
        if value is not None:
            out += [flag, str(value)]
    return out


def refused(capsys, argv, *fragments):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(f in err for f in fragments), err
    return err


def test_forecast_refuses_bad_runs_and_specs(fitted, tmp_path, capsys):
    folder, run, _ = fitted
    history_files(folder)
    refused(capsys, forecast_args(folder, tmp_path), "no checkpoint at")
    other = tmp_path / "other.hode"
    other.write_text(SPEC.replace("0.3", "0.4"))
    refused(capsys, forecast_args(folder, run, spec=other), "other.hode is not the spec the run", "texts differ")
    (tmp_path / "fit.yaml").write_text("method: vanilla\nepochs: 1\n")
    assert main(["fit", str(folder / "decay.hode"), "--data", str(folder / "train.csv"), "--config",
                 str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "vanilla"), "--quiet"]) == 0
    refused(capsys, forecast_args(folder, tmp_path / "vanilla"), "fitted with method vanilla",
            "only a forecast fit")
    refused(capsys, forecast_args(folder, run, **{"--horizon": "-1"}), "--horizon must be a positive number")
    refused(capsys, forecast_args(folder, run, **{"--horizon": "0.2"}), "shorter than the sampling step 0.5")
    assert not (folder / "bad.csv").exists()


def test_forecast_refuses_short_histories_and_inputs_that_end_early(fitted, tmp_path, capsys):
    folder, run, _ = fitted
    history_files(folder)
    short = tmp_path / "short.csv"
    lines = (folder / "hist.csv").read_text().splitlines()
    short.write_text("\n".join([lines[0]] + [r for r in lines[1:] if float(r.split(",")[0]) >= 4.0]) + "\n")
    refused(capsys, forecast_args(folder, run, **{"--history": short}), "trajectory 2 covers t = 4 to 5",
            "needs values from t = 3.5 on")
    refused(capsys, forecast_args(folder, run, **{"--horizon": "2.5"}), "inputs.csv", "input 'u' of trajectory 2",
            "last value is at t = 7", "before the forecast's end t = 7.5")
    refused(capsys, forecast_args(folder, run, **{"--inputs": None}), "hist.csv", "last value is at t = 5")
    conflict = tmp_path / "conflict.csv"
    conflict.write_text("t,id,u\n4.5,2,99\n5.5,2,1\n7,2,1\n")
    refused(capsys, forecast_args(folder, run, **{"--inputs": conflict}), "conflict.csv: error: line 2:",
            "input 'u' is 99 at t = 4.5")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("t,id,u,x\n5.5,2,1,3\n")
    refused(capsys, forecast_args(folder, run, **{"--inputs": unknown}), "unknown.csv", "column 'x'")
    header, rows = read_csv(folder / "hist.csv")
    dosed = tmp_path / "dosed.csv"
    dosed.write_text("t,id,x,u,evid,amt,cmt\n" + "".join(f"{','.join(r)},0,,\n" for r in rows)
                     + "5.0,3,,,1,2.0,x\n")
    refused(capsys, forecast_args(folder, run, **{"--history": dosed}), "dosed.csv", "does not take dose records")
    stranger = tmp_path / "stranger.csv"
    stranger.write_text("t,id,u\n5.5,2,1\n5.5,9,1\n")
    refused(capsys, forecast_args(folder, run, **{"--inputs": stranger}),
            "stranger.csv: error: line 3: id 9 is not a trajectory")
    assert not (folder / "bad.csv").exists()


def test_fit_refuses_a_bad_test_csv_before_training(fitted, tmp_path, capsys):
    folder = fitted[0]
    base = ["fit", str(folder / "decay.hode"), "--data", str(folder / "train.csv"), "--config",
            str(folder / "fit.yaml"), "--out", str(tmp_path / "run"), "--quiet"]
    bad = tmp_path / "bad.csv"
    bad.write_text("t,x,u\n0,1,0\n0.5,oops,0\n")
    refused(capsys, base + ["--test", str(bad)], "bad.csv: error: line 3")
    write_data(tmp_path / "short.csv", [2], t_end=2.5)  # shorter than history + horizon: no window
    refused(capsys, base + ["--test", str(tmp_path / "short.csv")], "short.csv", "no forecast window fits")
    header, rows = read_csv(folder / "test.csv")
    doses = tmp_path / "doses.csv"  # forecasts take no dose records (yet): refused before training, not diverged
    dose = {("1.0", "2"): "1.0,2,,,1,2.0,x\n"}  # after id 2's observation at t = 1
    doses.write_text("t,id,x,u,evid,amt,cmt\n" + "".join(f"{','.join(r)},0,,\n" + dose.get((r[0], r[1]), "")
                                                         for r in rows))
    refused(capsys, base + ["--test", str(doses)], "does not take dose records")
    refused(capsys, base + ["--test", str(folder / "test.csv"), "--peak", "y=1"], "--peak y: not a fitted column")
    refused(capsys, base + ["--test", str(folder / "test.csv"), "--classes", "x=2,1"], "--classes x")
    refused(capsys, base + ["--peak", "x=1"], "give --test TEST.csv")
    refused(capsys, base + ["--test", str(folder / "test.csv"), "--peak", "x=nan"], "--peak x: the threshold must")
    assert not (tmp_path / "run").exists()


def test_forecast_refuses_a_forecast_that_diverges(tmp_path, capsys):
    """dx/dt = k x^2 blows up at 1 / (k x0): from x0 = 100 within the horizon (nothing written)."""
    (tmp_path / "blow.hode").write_text("model Blow\nparam k = 0.3 positive\nstate x = 0.1\nder x = k * x * x\n")
    (tmp_path / "fit.yaml").write_text(FIT.replace("epochs: 4", "epochs: 1").replace("lr: 0.05", "lr: 1.0e-12"))
    t = np.arange(0.0, 4.01, STEP)
    (tmp_path / "data.csv").write_text("t,x\n" + "".join(f"{float(a)!r},{float(0.1 / (1 - 0.03 * a))!r}\n" for a in t))
    assert main(["fit", str(tmp_path / "blow.hode"), "--data", str(tmp_path / "data.csv"), "--config",
                 str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    (tmp_path / "hist.csv").write_text("t,x\n0,0.1\n0.5,0.1\n1,0.1\n1.5,100\n")
    out = tmp_path / "forecast.csv"
    refused(capsys, ["forecast", str(tmp_path / "blow.hode"), "--run", str(tmp_path / "run"), "--history",
                     str(tmp_path / "hist.csv"), "--horizon", "1", "--out", str(out)], "hodec forecast: error: the")
    assert not out.exists()
