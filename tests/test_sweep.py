"""`hodec sweep`: the points of GRID.yaml, the results table and best/, --resume skipping finished trials, and
located errors for a bad grid."""
import csv
import json
import math

import numpy as np
import pytest

from hodec.cli import main
from hodec.compiler import load_text
from hodec.training.config import load_config
from hodec.training.sweep import read_grid

SPEC = """model Decay
param k = 0.5 positive
state x = 2
der x = -k * x
"""
FIT = "method: vanilla\nepochs: 6\nsolver: {method: rk4, step_size: 0.1}\n"


@pytest.fixture
def folder(tmp_path):
    """A decay spec, data with k = 1.2 (exact, 11 points) and a FIT.yaml."""
    (tmp_path / "decay.hode").write_text(SPEC)
    ts = np.linspace(0, 2, 11)
    (tmp_path / "decay.csv").write_text("t,x\n" + "".join(f"{t!r},{2 * math.exp(-1.2 * t)!r}\n" for t in ts.tolist()))
    (tmp_path / "fit.yaml").write_text(FIT)
    return tmp_path


def sweep(folder, grid: str, *extra):
    (folder / "grid.yaml").write_text(grid)
    return main(["sweep", str(folder / "decay.hode"), "--data", str(folder / "decay.csv"), "--grid",
                 str(folder / "grid.yaml"), "--config", str(folder / "fit.yaml"), "--out", str(folder / "out"),
                 "--quiet", *extra])


def table(folder) -> list:
    with open(folder / "out" / "results.csv") as f:
        return list(csv.DictReader(f))


def test_grid_points_are_every_combination_and_random_points_come_from_the_lists(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("grid: {lr: [0.01, 0.1], epochs: [3, 4, 5]}\n")
    points = read_grid(path, {})
    assert len(points) == 6 and {(p["lr"], p["epochs"]) for p in points} == {(a, b) for a in (0.01, 0.1)
                                                                              for b in (3, 4, 5)}
    path.write_text("random: {lr: [0.01, 0.1, 1.0], epochs: [3, 4, 5]}\nsamples: 4\nseed: 3\n")
    drawn = read_grid(path, {})
    assert 1 <= len(drawn) <= 4 and all(p["lr"] in (0.01, 0.1, 1.0) and p["epochs"] in (3, 4, 5) for p in drawn)
    assert drawn == read_grid(path, {})  # the seed fixes the draw
    assert len({json.dumps(p, sort_keys=True) for p in drawn}) == len(drawn)  # no point twice


def test_each_row_is_the_fit_of_its_point_and_best_is_the_lowest_mse(folder):
    assert sweep(folder, "grid:\n  lr: [0.001, 0.1]\n") == 0
    rows = table(folder)
    assert [(r["trial"], r["lr"], r["status"]) for r in rows] == [("1", "0.001", "complete"), ("2", "0.1", "complete")]
    # each row equals hodec.fit of its config, run here independently of the sweep
    from hodec.training.fit import fit

    for row in rows:
        cfg = load_config(folder / "fit.yaml", lr=float(row["lr"]))
        expected = fit(load_text(SPEC, "decay.hode"), str(folder / "decay.csv"), cfg).best_mse
        assert float(row["best_mse"]) == pytest.approx(expected, rel=1e-12)
    best = min(rows, key=lambda r: float(r["best_mse"]))
    report = json.loads((folder / "out" / "best" / "report.json").read_text())
    assert report["config"]["lr"] == float(best["lr"]) and report["best_mse"] == float(best["best_mse"])
    assert "param k = " in (folder / "out" / "best" / "fitted.hode").read_text()
    # best/ is a hodec fit run folder: --resume of the complete run rewrites its outputs (fit.png drawn)
    assert main(["fit", str(folder / "decay.hode"), "--data", str(folder / "decay.csv"), "--resume",
                 str(folder / "out" / "best"), "--quiet"]) == 0
    assert (folder / "out" / "best" / "fit.png").is_file()


def test_resume_skips_finished_trials_and_runs_the_rest(folder):
    grid = "grid:\n  lr: [0.001, 0.01, 0.1]\n"
    assert sweep(folder, grid) == 0
    full = table(folder)
    trials = folder / "out" / "trials"
    # trial 1 finished with a marked record (a rerun would overwrite it); trial 2 died before its record was
    # written; trial 3 never started
    record = json.loads((trials / "001" / "trial.json").read_text())
    (trials / "001" / "trial.json").write_text(json.dumps({**record, "best_mse": 123.0}))
    (trials / "002" / "trial.json").unlink()
    for path in (trials / "003").iterdir():
        path.unlink()
    (trials / "003").rmdir()
    assert sweep(folder, grid) == 1  # the folder exists: neither --resume nor --force given
    assert sweep(folder, grid, "--resume") == 0
    resumed = table(folder)
    assert resumed[0]["best_mse"] == "123.0"  # skipped, not rerun
    assert [r["best_mse"] for r in resumed[1:]] == [r["best_mse"] for r in full[1:]]


def test_resume_refuses_a_changed_grid_and_force_starts_over(folder, capsys):
    assert sweep(folder, "grid:\n  lr: [0.01]\n") == 0
    assert sweep(folder, "grid:\n  lr: [0.02]\n", "--resume") == 1
    assert "changed since the run" in capsys.readouterr().err
    assert sweep(folder, "grid:\n  lr: [0.02, 0.03]\n", "--force") == 0
    assert [r["lr"] for r in table(folder)] == ["0.02", "0.03"]
    assert not (folder / "out" / "trials" / "003").exists()


@pytest.mark.parametrize("grid, message", [
    ("grid:\n  lrr: [0.01]\n", "'lrr' is not a FIT.yaml key"),
    ("grid:\n  executor: [ray]\n", "'executor' is not a FIT.yaml key that a sweep varies"),
    ("grid:\n  starts: [1, 2]\n", "'starts' is not a FIT.yaml key that a sweep varies"),
    ("grid:\n  lr: 0.01\n", "lr: expected a non-empty list"),
    ("grid:\n  lr: [-1]\n", "point 1 ({'lr': -1}): lr: must be > 0"),
    ("lr: [0.01]\n", "unknown key 'lr'"),
    ("grid: {lr: [0.01]}\nsamples: 3\n", "samples and seed belong to a random: search"),
    ("random: {lr: [0.01]}\nsamples: 0\n", "samples: must be >= 1"),
])
def test_bad_grids_exit_1_naming_the_file_and_leave_no_folder(folder, capsys, grid, message):
    assert sweep(folder, grid) == 1
    err = capsys.readouterr().err
    assert message in err and "grid.yaml" in err and "Traceback" not in err
    assert not (folder / "out").exists()


def test_a_failing_point_is_a_failed_row_and_the_others_go_on(folder):
    assert sweep(folder, "grid:\n  k: [1.0, {nope: 1.0}]\n") == 0
    rows = table(folder)
    assert [r["status"] for r in rows] == ["complete", "failed"]
    assert "'nope' is not a fitted column" in rows[1]["error"] and rows[1]["best_mse"] == ""
    assert json.loads((folder / "out" / "best" / "trial.json").read_text())["trial"] == 1
