"""The likelihood of `hodec fit` with noise models: per-cell log densities against scipy.stats and hand-written
formulas, the fit problem's llh against a hand-written likelihood of a closed-form model (each distribution), AIC and
BIC as defined, standard errors against a finite-difference Hessian of the closed-form likelihood, and the located
errors of data that a noise model cannot describe."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.stats
import torch

import hodec
from hodec import HodecError
from hodec.runtime.likelihood import LOG_DENSITIES, log_densities
from hodec.training.config import load_config
from hodec.training.data import read_data
from hodec.training.information import likelihood_report, n_params
from hodec.training.problem import Problem

Y = np.array([0.3, 1.0, 2.5, 7.0])
MU = np.array([0.5, 1.2, 2.0, 9.0])
SIGMA = np.array([0.2, 0.7, 1.5, 0.05])


def _log_density(name):
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return LOG_DENSITIES[name](t(Y), t(MU), t(SIGMA)).numpy()


def test_normal_and_laplace_against_scipy():
    assert _log_density("normal") == pytest.approx(scipy.stats.norm.logpdf(Y, MU, SIGMA), rel=1e-13)
    assert _log_density("laplace") == pytest.approx(scipy.stats.laplace.logpdf(Y, MU, SIGMA), rel=1e-13)


def test_lognormal_against_scipy_and_by_hand():
    # scipy's lognorm(s, scale=exp(m)) is the density of y whose log is normal(m, s): PEtab's lognormal
    assert _log_density("lognormal") == pytest.approx(scipy.stats.lognorm.logpdf(Y, SIGMA, scale=MU), rel=1e-13)
    hand = (-0.5 * np.log(2 * np.pi) - np.log(SIGMA) - np.log(Y)
            - (np.log(Y) - np.log(MU)) ** 2 / (2 * SIGMA ** 2))
    assert _log_density("lognormal") == pytest.approx(hand, rel=1e-13)


def test_loglaplace_by_hand():
    hand = -np.log(2 * SIGMA) - np.log(Y) - np.abs(np.log(Y) - np.log(MU)) / SIGMA
    assert _log_density("loglaplace") == pytest.approx(hand, rel=1e-13)


@pytest.mark.parametrize("name", sorted(LOG_DENSITIES))
def test_every_density_integrates_to_one_over_y(name):
    """A density of y itself (the log-scale ones with their -log y term), so likelihoods compare across models."""
    def density(y):
        t = torch.tensor([y], dtype=torch.float64)
        return math.exp(float(LOG_DENSITIES[name](t, torch.tensor([2.0], dtype=torch.float64),
                                                  torch.tensor([0.4], dtype=torch.float64))[0]))
    low = 0.0 if name.startswith("log") else -np.inf  # split at the mode, where the Laplace ones have a kink
    total = scipy.integrate.quad(density, low, 2.0, limit=200)[0] + scipy.integrate.quad(density, 2.0, np.inf)[0]
    assert total == pytest.approx(1.0, abs=1e-7)


def test_log_densities_takes_each_column_with_its_distribution():
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    out = log_densities(("normal", "lognormal"), t([[Y[0], Y[1]]]), t([[MU[0], MU[1]]]), t([[SIGMA[0], SIGMA[1]]]))
    assert out[0].tolist() == pytest.approx([scipy.stats.norm.logpdf(Y[0], MU[0], SIGMA[0]),
                                             scipy.stats.lognorm.logpdf(Y[1], SIGMA[1], scale=MU[1])], rel=1e-13)


# ---------------------------------------------------------------- the fit problem's likelihood
FOUR = """model Four
param k = 0.3 positive
param a = 0.2 positive
param b = 0.1 positive
param s = 0.25 in (0, 2)
param x0 = 5 fixed
state x = x0
der x = -k * x
observe cn = x ~ normal(a + b * cn)
observe cl = x ~ laplace(a)
observe cg = 2 * x ~ lognormal(s)
observe cq = x ~ loglaplace(s * 2)
"""
TIMES = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 7.0])


def _write_data(path, columns: dict, ids: int = 2, seed: int = 0, times=TIMES):
    rng = np.random.default_rng(seed)
    lines = ["id,t," + ",".join(columns)]
    for i in range(ids):
        for t in times:
            cells = [f"{f(t) * np.exp(0.2 * rng.standard_normal()):.10g}" if rng.random() > 0.1 else ""
                     for f in columns.values()]
            lines.append(f"{i},{t:g}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def _problem(spec: str, csv, **config):
    model = hodec.compile("spec.hode", source=spec).model_class()()
    cfg = load_config({"dtype": "float64", "method": "vanilla", "initial": "spec", **config})
    return Problem(model, read_data(csv, model, cfg), cfg)


def _hand_llh(csv, k, a, b, s):
    data = np.genfromtxt(csv, delimiter=",", names=True)
    x = 5 * np.exp(-k * data["t"])
    columns = {"cn": scipy.stats.norm.logpdf(data["cn"], x, a + b * x),
               "cl": scipy.stats.laplace.logpdf(data["cl"], x, a),
               "cg": scipy.stats.lognorm.logpdf(data["cg"], s, scale=2 * x),
               "cq": -np.log(4 * s) - np.log(data["cq"]) - np.abs(np.log(data["cq"]) - np.log(x)) / (2 * s)}
    return sum(np.nansum(v) for v in columns.values()), int(sum(np.isfinite(data[c]).sum() for c in columns))


def test_llh_aic_bic_against_a_hand_written_likelihood(tmp_path):
    csv = tmp_path / "four.csv"
    decay = lambda t: 5 * np.exp(-0.3 * t)  # noqa: E731
    _write_data(csv, {"cn": decay, "cl": decay, "cg": lambda t: 2 * decay(t), "cq": decay})
    problem = _problem(FOUR, csv)
    problem.model.set_params({"k": 0.27, "a": 0.15, "b": 0.05, "s": 0.3})
    report = likelihood_report(problem, problem.model)
    llh, n = _hand_llh(csv, 0.27, 0.15, 0.05, 0.3)
    assert report["llh"] == pytest.approx(llh, rel=1e-7)  # the solver's rtol 1e-7 (FIT.yaml's default)
    assert (report["n_params"], report["n_cells"]) == (4, n)  # k, a, b, s trained; x0 fixed
    assert report["aic"] == pytest.approx(2 * 4 - 2 * report["llh"], rel=1e-14)
    assert report["bic"] == pytest.approx(4 * math.log(n) - 2 * report["llh"], rel=1e-14)
    # what the optimiser sees: -llh per data cell
    assert float(problem.loss(problem.model, "test").detach()) == pytest.approx(-llh / n, rel=1e-7)


def test_n_params_counts_neural_weights():
    spec = FOUR.replace("der x = -k * x", "neural nn(x) -> x hidden 3\nder x = -k * x")
    model = hodec.compile("spec.hode", source=spec).model_class()()
    assert n_params(model) == 4 + (1 * 3 + 3) + (3 * 1 + 1)


def test_every_fitted_column_needs_a_noise_model(tmp_path):
    csv = tmp_path / "d.csv"
    _write_data(csv, {"cn": lambda t: 5 * np.exp(-0.3 * t), "x": lambda t: 5 * np.exp(-0.3 * t)})
    with pytest.raises(HodecError) as info:
        _problem(FOUR, csv)
    text = info.value.render()
    assert str(csv) in text and "column 'x' has no noise model" in text


def test_log_scale_data_must_be_positive(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("t,cg\n0,1.5\n1,-0.25\n")
    with pytest.raises(HodecError) as info:
        _problem(FOUR, csv)
    text = info.value.render()
    assert str(csv) in text and "t = 1, column 'cg': -0.25 is not > 0" in text and "lognormal" in text


def test_without_noise_models_the_objective_stays_the_mse(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("t,c\n0,5.5\n1,3.5\n2,2.5\n")
    problem = _problem("model D\nparam k = 0.3 positive\nstate x = 5\nder x = -k * x\nobserve c = x\n", csv)
    x = 5 * np.exp(-0.3 * np.array([0.0, 1.0, 2.0]))
    assert not problem.noise.active
    loss = float(problem.loss(problem.model, "test").detach())
    assert loss == pytest.approx(np.mean((x - [5.5, 3.5, 2.5]) ** 2), rel=1e-7)


# ---------------------------------------------------------------- standard errors
PK = """model PK
param k = 0.1 positive
param V = 5 positive
param a = 0.2 positive
param b = 0.3 in (0, 1)
state central = 100
der central = -k * central
observe conc = central / V ~ normal(a + b * conc)
"""
PK_TIMES = np.array([0.25, 0.5, 1, 2, 3, 4, 6, 8, 10, 12, 16, 24.0])


def _pk_data(path, subjects: int, seed: int, k=0.2, V=10.0, a=0.05, b=0.1):
    rng = np.random.default_rng(seed)
    lines = ["id,t,conc"]
    for i in range(subjects):
        c = 100 / V * np.exp(-k * PK_TIMES)
        y = c + (a + b * c) * rng.standard_normal(len(PK_TIMES))
        lines += [f"{i},0,"] + [f"{i},{t:g},{v:.10g}" for t, v in zip(PK_TIMES, y)]
    path.write_text("\n".join(lines) + "\n")


def _pk_closed_form(csv):
    data = np.genfromtxt(csv, delimiter=",", names=True)
    data = data[np.isfinite(data["conc"])]

    def nll(theta):
        k, V, a, b = theta
        c = 100 / V * np.exp(-k * data["t"])
        return -scipy.stats.norm.logpdf(data["conc"], c, a + b * c).sum()
    return nll


def _fd_hessian(f, x, rel=1e-4):
    h = rel * np.abs(x)
    n = len(x)
    H = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ei, ej = np.eye(n)[i] * h[i], np.eye(n)[j] * h[j]
            H[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
    return H


def _pk_mle(nll):
    fit = scipy.optimize.minimize(lambda th: nll(np.exp(th)), np.log([0.15, 8, 0.1, 0.2]), method="Nelder-Mead",
                                  options=dict(xatol=1e-11, fatol=1e-13, maxiter=40000, maxfev=80000))
    return np.exp(fit.x)


def test_standard_errors_against_a_finite_difference_hessian_of_the_closed_form(tmp_path):
    csv = tmp_path / "pk.csv"
    _pk_data(csv, subjects=10, seed=3)
    nll = _pk_closed_form(csv)
    mle = _pk_mle(nll)
    problem = _problem(PK, csv)
    problem.model.set_params(dict(zip(("k", "V", "a", "b"), mle)))
    report = likelihood_report(problem, problem.model)
    assert report["llh"] == pytest.approx(-nll(mle), rel=1e-7)
    expected = np.sqrt(np.diag(np.linalg.inv(_fd_hessian(nll, mle))))
    got = [report["standard_errors"][name] for name in ("k", "V", "a", "b")]
    assert got == pytest.approx(expected, rel=1e-3)
    assert "warning" not in report


def test_a_singular_hessian_gives_nan_and_a_warning_not_a_crash(tmp_path):
    csv = tmp_path / "pk.csv"
    _pk_data(csv, subjects=4, seed=1)
    spec = PK.replace("param b = 0.3 in (0, 1)", "param b = 0.3 in (0, 1)\nparam unused = 2 positive")
    problem = _problem(spec, csv)
    problem.model.set_params(dict(zip(("k", "V", "a", "b"), _pk_mle(_pk_closed_form(csv)))))  # 'unused': flat
    report = likelihood_report(problem, problem.model)
    assert all(math.isnan(v) for v in report["standard_errors"].values())
    assert "singular" in report["warning"] and "'unused'" in report["warning"]
    assert math.isfinite(report["llh"])


@pytest.mark.parametrize("observe, expected", [
    # (-0.1, not 0: a scale that is 0 exactly would print as rounding leaves it, +-4e-16 on the native solvers)
    ("observe c = x - 3 ~ normal(0.4 + 1 * c)", "the noise scale of column 'c' of trajectory 0 is -0.1 at t = 1"),
    ("observe c = x - 3 ~ lognormal(0.5)", "the model value (under a log-scale noise model) of column 'c' of "
                                           "trajectory 0 is -0.5 at t = 1"),
])
def test_a_cell_the_noise_model_cannot_describe_is_a_fit_error_naming_it(tmp_path, observe, expected):
    csv = tmp_path / "d.csv"
    csv.write_text("t,c\n0,1\n1,0.5\n2,0.25\n")
    spec = "model D\nparam k = 0.5 positive\nstate x = 4\nder x = -k * x\n" + observe + "\n"
    problem = _problem(spec.replace("der x = -k * x", "der x = -1.5 + 0 * k * x"), csv)
    with pytest.raises(HodecError) as info:
        problem.loss(problem.model, "uncoupled")
    assert info.value.diagnostics[0].message == f"epoch 1, uncoupled simulation: {expected}; it must be > 0"


def test_a_failing_simulation_gives_a_report_with_a_warning_not_a_crash(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("t,c\n0,1\n0.5,2\n2,3\n")
    problem = _problem("model B\nparam k = 1 positive\nstate x = 1\nder x = k * x^2\nobserve c = x ~ normal(k)\n",
                       csv, solver={"method": "auto", "max_steps": 200})
    report = likelihood_report(problem, problem.model)  # x = 1 / (1 - t) blows up at t = 1
    assert report["llh"] is None and report["standard_errors"] == {"k": None}
    assert report["warning"].startswith("the best model's simulation failed: ")
