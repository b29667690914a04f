"""`hodec fit` with noise models: a proportional-plus-additive error model fitted to synthetic one-compartment PK
data recovers the truth and the closed-form maximum-likelihood estimates, the CLI's report keys, and every training
method (vanilla, homotopy, multiple shooting) minimising the same -llh per data cell."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from hodec.cli import main
from hodec.training.fit import fit

PK = """model PK "one compartment, first-order elimination, combined error"
param k = 0.1 positive "elimination rate, 1/h"
param V = 5 positive "volume, L"
param a = 0.2 positive "additive sigma, mg/L"
param b = 0.3 positive "proportional sigma"
state central = 100 "amount, mg: the dose as the initial amount"
der central = -k * central
observe conc = central / V ~ normal(a + b * conc)
"""
TRUTH = {"k": 0.2, "V": 10.0, "a": 0.05, "b": 0.1}
TIMES = np.array([0.25, 0.5, 1, 2, 3, 4, 6, 8, 10, 12, 16, 24.0])


def _write(tmp_path, subjects: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    lines, t_all, y_all = ["id,t,conc"], [], []
    for i in range(subjects):
        c = 100 / TRUTH["V"] * np.exp(-TRUTH["k"] * TIMES)
        y = c + (TRUTH["a"] + TRUTH["b"] * c) * rng.standard_normal(len(TIMES))
        lines += [f"{i},0,"] + [f"{i},{t:g},{v:.12g}" for t, v in zip(TIMES, y)]
        t_all.append(TIMES)
        y_all.append(y)
    (tmp_path / "pk.hode").write_text(PK)
    (tmp_path / "pk.csv").write_text("\n".join(lines) + "\n")
    return np.concatenate(t_all), np.concatenate(y_all)


def _closed_form_mle(t, y):
    def nll(theta):
        k, V, a, b = np.exp(theta)
        c = 100 / V * np.exp(-k * t)
        return -scipy.stats.norm.logpdf(y, c, a + b * c).sum()
    fit_ = scipy.optimize.minimize(nll, np.log([0.1, 5, 0.2, 0.3]), method="Nelder-Mead",
                                   options=dict(xatol=1e-11, fatol=1e-13, maxiter=40000, maxfev=80000))
    return dict(zip(("k", "V", "a", "b"), np.exp(fit_.x))), -fit_.fun


@pytest.mark.slow
def test_combined_error_model_recovers_both_sigmas_within_their_standard_errors(tmp_path, capsys):
    t, y = _write(tmp_path)
    (tmp_path / "fit.yaml").write_text("method: vanilla\nepochs: 400\nlr: 0.05\ndtype: float64\n")
    assert main(["fit", str(tmp_path / "pk.hode"), "--data", str(tmp_path / "pk.csv"), "--config",
                 str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    mle, llh = _closed_form_mle(t, y)
    assert report["llh"] == pytest.approx(llh, rel=1e-6)  # converged to the closed form's maximum
    for name, value in report["params"].items():
        assert value == pytest.approx(mle[name], rel=1e-4), name
        se = report["standard_errors"][name]
        assert 0 < se < 0.2 * value
        assert abs(value - TRUTH[name]) < 2 * se, (name, value, se)  # seed 0: a -1.2 se, b +1.0 se


def test_cli_report_keys_with_noise_models(tmp_path, capsys):
    _write(tmp_path, subjects=3)
    (tmp_path / "fit.yaml").write_text("method: vanilla\nepochs: 3\nlr: 0.05\ndtype: float64\n")
    assert main(["fit", str(tmp_path / "pk.hode"), "--data", str(tmp_path / "pk.csv"), "--config",
                 str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert {"llh", "aic", "bic", "n_params", "n_cells", "standard_errors"} <= set(report)
    assert (report["n_params"], report["n_cells"]) == (4, 36)
    assert report["aic"] == pytest.approx(8 - 2 * report["llh"], rel=1e-12)
    assert report["bic"] == pytest.approx(4 * math.log(36) - 2 * report["llh"], rel=1e-12)
    assert set(report["standard_errors"]) == {"k", "V", "a", "b"}
    assert report["metrics"]["objective"] == "-llh per data cell"
    assert report["best_mse"] == pytest.approx(-report["llh"] / 36, rel=1e-9)  # the best epoch's objective
    assert f"llh {report['llh']:.6g}" in out
    assert "Traceback" not in err


def test_a_fitted_column_without_noise_model_is_a_located_cli_error(tmp_path, capsys):
    (tmp_path / "m.hode").write_text(PK + "observe amount = central\n")
    (tmp_path / "d.csv").write_text("t,conc,amount\n0,10,100\n1,8,80\n")
    assert main(["fit", str(tmp_path / "m.hode"), "--data", str(tmp_path / "d.csv"), "--out",
                 str(tmp_path / "run"), "--quiet"]) == 1
    _, err = capsys.readouterr()
    assert str(tmp_path / "d.csv") in err and "column 'amount' has no noise model" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("method, extra", [("vanilla", {}), ("multiple_shooting", {"segments": 3}),
                                           ("homotopy", {"steps": 2, "epochs_per_step": 2})])
def test_every_method_minimises_the_likelihood(tmp_path, method, extra):
    """Epoch 1 of vanilla and multiple shooting (segments joined at the initial model's own states: no jumps) has
    the loss -llh/n of the initial model, computed here by hand; homotopy trains on it too and ends with an llh."""
    t, y = _write(tmp_path, subjects=3)
    config = {"method": method, "epochs": 4, "lr": 0.01, "dtype": "float64", **extra}
    result = fit(str(tmp_path / "pk.hode"), str(tmp_path / "pk.csv"), config)
    c = 100 / 5 * np.exp(-0.1 * t)
    initial = -scipy.stats.norm.logpdf(y, c, 0.2 + 0.3 * c).mean()
    if method != "homotopy":
        assert result.history[0]["loss"] == pytest.approx(initial, rel=1e-6)
    assert result.history[0]["mse"] == pytest.approx(initial, rel=1e-6)  # the uncoupled objective
    assert result.likelihood["llh"] > -initial * len(y)  # training raised the likelihood
