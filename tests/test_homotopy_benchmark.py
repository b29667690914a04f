"""The homotopy benchmark's own pieces: its data against scipy and the issue's protocol, the extrapolation metric,
the goal's bookkeeping (per seed and on seed means), joining results files, and a tiny end-to-end run."""
import json

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from benchmarks.homotopy import run as H  # noqa: E402  (python -m pytest puts the repo root on sys.path)
from hodec.compiler import load


def lotka_volterra(_, u, a=1.3, b=0.9, c=0.8, d=1.8):
    x, y = u
    return [a * x - b * x * y, c * x * y - d * y]


def lorenz(_, u, sigma=10.0, rho=28.0, beta=8 / 3):
    x, y, z = u
    return [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]


def reference(f, x0, t):
    return solve_ivp(f, (t[0], t[-1]), x0, t_eval=t, method="DOP853", rtol=1e-12, atol=1e-12).y.T


def test_lotka_volterra_data_follow_the_papers_protocol():
    t, y, n_train = H.lotka_volterra_data()
    assert n_train == 61 and t[n_train - 1] == pytest.approx(6.0) and np.allclose(np.diff(t), 0.1)
    noise = y - reference(lotka_volterra, [0.44249296, 4.6280594], t)
    wanted = 0.05 * (y - noise)[:n_train].mean(0)  # 5% of each state's mean
    assert noise.std(0) == pytest.approx(wanted, rel=0.2)


def test_lorenz_data_follow_the_papers_protocol():
    t, y, n_train = H.lorenz_data()
    assert n_train == 31 and t[n_train - 1] == pytest.approx(3.0)
    noise = y - reference(lorenz, [1.2, 2.1, 1.7], t)
    assert np.abs(noise.mean(0)).max() < 0.15 and noise.std() == pytest.approx(0.25, rel=0.15)


def test_extrapolation_mse_of_the_true_model_is_the_noise_on_the_second_window():
    t, y, n_train = H.lotka_volterra_data()
    truth = load(H.ROOT / "specs" / "lotka_volterra.hode")().double()
    clean = reference(lotka_volterra, [y[0, 0], y[0, 1]], t)  # the metric starts from the first (noisy) point
    expected = float(np.mean((clean[n_train:] - y[n_train:]) ** 2))
    assert H.extrapolation_mse(truth, t, y, n_train, ("prey", "predators")) == pytest.approx(expected, rel=1e-4)


def fake_run(method, seed, curve, extrap):
    best = min(range(len(curve)), key=lambda i: curve[i])
    return {"system": "lv_blackbox", "method": method, "seed": seed, "interpolation_mse": curve[best],
            "extrapolation_mse": extrap, "best_epoch": best + 1, "epochs": len(curve), "seconds": 1.0,
            "mse_curve": curve}


RUNS = [fake_run("vanilla", 1, [4.0] * 7 + [1.0, 1.5, 1.2], 3.0),  # best 1.0 at epoch 8
        fake_run("vanilla", 2, [4.0] * 9 + [2.0], 5.0),  # best 2.0 at epoch 10
        fake_run("homotopy", 1, [5.0, 3.0, 0.9, 0.9, 7.0, 0.8], 2.0),
        fake_run("homotopy", 2, [5.0, 5.0, 5.0, 1.5, 0.5, 9.0], 6.0)]


def test_goal_per_seed_and_on_the_means_over_seeds():
    summary = H.summarize(RUNS)["lv_blackbox"]
    assert summary["goal"] == [
        {"seed": 1, "vanilla_best_epoch": 8, "homotopy_reaches_at": 3, "within_half": True,
         "extrapolation_not_worse": True},
        {"seed": 2, "vanilla_best_epoch": 10, "homotopy_reaches_at": 4, "within_half": True,
         "extrapolation_not_worse": False}]
    mean = summary["goal_mean"]
    # best-so-far means: 5, 4, 2.95, 1.2 <= (1.0 + 2.0) / 2 at epoch 4 <= (8 + 10) / 4; extrapolation 4.0 vs 4.0
    assert (mean["homotopy_reaches_at"], mean["vanilla_best_epoch"], mean["within_half"]) == (4, 9.0, True)
    assert mean["homotopy_extrapolation_mse"] == mean["vanilla_extrapolation_mse"] == 4.0
    assert mean["extrapolation_not_worse"] is True


def test_combine_joins_results_files_and_later_files_win(tmp_path):
    H._write(tmp_path, "a", RUNS[:3], False, [1, 2], 10.0)
    redo = dict(RUNS[2], extrapolation_mse=1.0)
    H._write(tmp_path, "b", [redo, RUNS[3]], False, [1, 2], 5.0)
    assert H.main(["--combine", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path),
                   "--tag", "both"]) == 0
    payload = json.loads((tmp_path / "both.json").read_text())
    assert len(payload["runs"]) == 4 and payload["seconds"] == 15.0
    assert [r["extrapolation_mse"] for r in payload["runs"] if r["method"] == "homotopy" and r["seed"] == 1] == [1.0]
    assert "mean over seeds 1, 2" in (tmp_path / "both.md").read_text()


def test_a_tiny_run_reports_its_best_epoch_and_extrapolation(tmp_path, monkeypatch):
    monkeypatch.setattr(H, "QUICK_DIVISOR", 400)  # 10 vanilla epochs; homotopy 6 plateaus of 1 epoch
    torch.set_num_threads(1)
    data = H.make_data("lv_blackbox")
    for method, epochs in (("vanilla", 10), ("homotopy", 6)):
        run = H.run_one("lv_blackbox", method, 10, True, tmp_path, data)
        assert run["epochs"] == len(run["mse_curve"]) == epochs and "error" not in run
        assert run["interpolation_mse"] == min(run["mse_curve"]) == run["mse_curve"][run["best_epoch"] - 1]
        assert 0 < run["extrapolation_mse"] < 100
