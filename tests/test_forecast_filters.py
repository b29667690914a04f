"""The filtering state estimators (hodec.training.forecast.filters: ekf, map) against the closed-form Kalman filter
and Gaussian posterior of linear models written out here with numpy/scipy, on a nonlinear model with noisy data,
with missing cells, through the gradients (finite differences), and with bad options."""
import json
import math

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from hodec.cli import main
from hodec.compiler import compile_text, load
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.forecast import ESTIMATORS, make_windows
from hodec.training.forecast.filters import EKF, JITTER, MAP
from hodec.training.loop import Trainer
from hodec.training.problem import Problem

LINEAR = """
model Linear
param a = -0.5
param b = 0.3
param c = -0.2
state x = 1
state z = 2
der x = a * x + b * z
der z = c * z
observe obs = x + 0.5 * z
"""
A = np.array([[-0.5, 0.3], [0.0, -0.2]])
ROWS = {"x": [1.0, 0.0], "obs": [1.0, 0.5]}  # each column's row of H
MU, SIGMA = np.array([1.0, 2.0]), np.array([[0.5, 0.1], [0.1, 0.3]])


def problem_of(spec, t, values, forecast, ids=None, name="m.hode"):
    model = compile_text(spec, name).model_class()() if "\n" in spec else load(spec)()
    config = load_config({"method": "forecast", "dtype": "float64",
                          "forecast": {"history": 1, "horizon": 1, **forecast}})
    return Problem(model, make_dataset(model, t, values, ids=ids), config), config.forecast_options


def linear_case(columns, forecast, history, stride=4.0, shift=0.5, absent=()):
    """A trajectory of noisy numbers at t = 0..15 (some cells missing; the times `absent` left out: windows of
    fewer samples, padded), its windows, and a filter whose prior is (MU, SIGMA); each window starts `shift` before
    its first sample (a propagation before the first update)."""
    rng = np.random.default_rng(1)
    t = np.setdiff1d(np.arange(16.0), absent)
    values = {c: rng.normal(1.0, 0.5, len(t)) for c in columns}
    values[columns[0]][[2, 6, 9]] = np.nan  # missing cells, one inside each window's history
    if len(columns) > 1:
        values[columns[1]][[1, 5]] = np.nan
    p, options = problem_of(LINEAR, t, values, {"estimator": "ekf", **forecast})
    w = make_windows(p, history=history, horizon=1, stride=stride)
    w.t0 = w.t0 - shift
    return p, options, w


def with_prior(estimator):
    estimator.prior_mean.copy_(torch.tensor(MU))
    estimator.prior_cov.copy_(torch.tensor(SIGMA))
    return estimator


def van_loan(dt, q):
    """exp(A dt) and the exact discrete process noise ∫ exp(A s) Q exp(A s)ᵀ ds by Van Loan's block exponential."""
    n = len(A)
    M = expm(np.block([[-A, np.diag(q)], [np.zeros((n, n)), A.T]]) * dt)
    F = M[n:, n:].T
    return F, F @ M[:n, n:]


def kalman(w, k, columns, q, r):
    """The closed-form Kalman filter of window k: predict by (F, Q_d), update with the present cells' rows."""
    x, P, t = MU.copy(), SIGMA.copy(), float(w.t0[k])
    for i in range(int(w.hist_len[k])):
        F, Qd = van_loan(float(w.hist_t[i, k]) - t, q)
        x, P, t = F @ x, F @ P @ F.T + Qd, float(w.hist_t[i, k])
        present = w.hist_mask[i, k].numpy()
        if present.any():
            H = np.array([ROWS[c] for c in columns])[present]
            S = H @ P @ H.T + np.diag(np.array(r)[present] ** 2)
            K = P @ H.T @ np.linalg.inv(S)
            x = x + K @ (w.hist_y[i, k].numpy()[present] - H @ x)
            P = (np.eye(2) - K @ H) @ P
    return x, P


def filtered(estimator, p, w):
    (index, g), = estimator.groups(w)
    x, P = estimator.filtered(p.model, g, w.select(index))
    return x.detach().numpy()[np.argsort(index.numpy())], P.detach().numpy()[np.argsort(index.numpy())]


@pytest.mark.parametrize("history", [1.0, 4.0])  # one update (after a propagation), several
@pytest.mark.parametrize("columns", [("obs",), ("x", "obs")])  # an observable column; a state column too
def test_ekf_is_the_closed_form_kalman_filter_on_a_linear_model(columns, history):
    q, r = {"x": 0.05, "z": 0.02}, {"x": 0.3, "obs": 0.2}
    p, options, w = linear_case(columns, {"process_noise": q, "measurement_noise": {c: r[c] for c in columns}},
                                history)
    ekf = with_prior(EKF(p, options).double())
    x, P = filtered(ekf, p, w)
    assert len(w.t0) >= 3 and (w.hist_len == history).all() and (history == 1 or not w.hist_mask.all())
    for k in range(len(w.t0)):
        x_ref, P_ref = kalman(w, k, columns, [q["x"], q["z"]], [r[c] for c in columns])
        # Q_d by Simpson's rule per substep: 1e-6 relative here (the module docstring)
        np.testing.assert_allclose(x[k], x_ref, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(P[k], P_ref, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ekf(p.model, w).detach().numpy(), x, rtol=1e-12)  # forward: the means


def test_ekf_process_noise_of_a_scalar_model_is_the_exact_discretisation():
    """x' = a x + noise over a sample gap dt: F = e^{a dt}, Q_d = q (e^{2a dt} - 1) / (2a); no measurement there
    (the cell is missing), so the covariance after the gap is F² P0 + Q_d."""
    a, q, dt = -0.5, 0.7, 1.0
    spec = f"model S\nparam a = {a}\nstate x = 1\nder x = a * x\n"
    p, options = problem_of(spec, [0.0, 1.0, 2.0], {"x": [np.nan, 1.0, 1.0]},
                            {"estimator": "ekf", "process_noise": q})
    w = make_windows(p, history=1.5, horizon=1, stride=1)  # t0 = 0: history [0, 1.5), its first cell missing
    ekf = EKF(p, options).double()
    ekf.prior_mean.fill_(2.0), ekf.prior_cov.fill_(0.4)
    w.hist_mask[:] = False  # predict only
    x, P = filtered(ekf, p, w)
    F, Qd = math.exp(a * dt), q * (math.exp(2 * a * dt) - 1) / (2 * a)
    assert x[0, 0] == pytest.approx(2.0 * F, rel=1e-7)
    assert P[0, 0, 0] == pytest.approx(F * 0.4 * F + Qd, rel=2e-6)  # Simpson, 4 substeps: 1.4e-6 of Q_d


def posterior(w, k, columns, r, jump_at=None):
    """The Gaussian posterior mean of x(t0) of window k (x(t) = exp(A (t - t0)) x(t0), no process noise; plus
    exp(A (t - s)) (1, 0) after an event `at t = s: x += 1` with t0 <= s <= t), moved to the origin."""
    t0 = float(w.t0[k])

    def offset(t):
        return expm(A * (t - jump_at)) @ [1.0, 0.0] if jump_at is not None and t0 <= jump_at <= t else np.zeros(2)

    G, y, noise = [], [], []
    for i in range(int(w.hist_len[k])):
        t = float(w.hist_t[i, k])
        F = expm(A * (t - t0))
        for c, name in enumerate(columns):
            if w.hist_mask[i, k, c]:
                G.append(np.array(ROWS[name]) @ F), noise.append(r[name] ** 2)
                y.append(float(w.hist_y[i, k, c]) - np.array(ROWS[name]) @ offset(t))
    G, y, Rinv, info = np.array(G), np.array(y), np.diag(1 / np.array(noise)), np.linalg.inv(SIGMA)
    z = np.linalg.solve(info + G.T @ Rinv @ G, info @ MU + G.T @ Rinv @ y)
    origin = float(w.origin[k])
    return expm(A * (origin - t0)) @ z + offset(origin)


@pytest.mark.parametrize("absent", [(), (5.0, 10.0)])  # windows of 4 samples; of 4, 3 and 3 (padded)
@pytest.mark.parametrize("estimator", [MAP, EKF])  # the EKF without process noise is the same posterior
def test_map_and_noiseless_ekf_are_the_gaussian_posterior_on_a_linear_model(estimator, absent):
    columns, r = ("x", "obs"), {"x": 0.3, "obs": 0.2}
    p, options, w = linear_case(columns, {"measurement_noise": r}, history=4.0, absent=absent)
    assert sorted(w.hist_len.tolist()) == ([4, 4, 4] if not absent else [3, 3, 4])
    f = with_prior(estimator(p, options).double())
    x = f(p.model, w).detach().numpy()
    for k in range(len(w.t0)):
        np.testing.assert_allclose(x[k], posterior(w, k, columns, r), rtol=1e-6, atol=1e-9)
    other = w.select(torch.tensor([2, 0]))  # other windows (map: not started from the others' estimates), then w
    np.testing.assert_allclose(f(p.model, other).detach().numpy(), x[[2, 0]], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(f(p.model, w).detach().numpy(), x, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("estimator", [MAP, EKF])
def test_an_event_in_the_history_applies_once(estimator):
    """`at t = 5: x += 1` inside a window's history, or at its start: the posterior of the shifted model (the
    filter's interval from a sample at t = 5 starts after the event its last interval applied)."""
    spec = LINEAR + "at t = 5: x += 1\n"
    p, options = problem_of(spec, np.arange(12.0), {"obs": np.random.default_rng(3).normal(1, 0.5, 12)},
                            {"measurement_noise": {"obs": 0.2}})
    w = make_windows(p, history=4, horizon=1, stride=1)  # t0 = 0 .. 7: the event before, at and after t0
    x = with_prior(estimator(p, options).double())(p.model, w).detach().numpy()
    for k in range(len(w.t0)):
        np.testing.assert_allclose(x[k], posterior(w, k, ("obs",), {"obs": 0.2}, jump_at=5.0), rtol=1e-6,
                                   atol=1e-9)


@pytest.mark.parametrize("estimator", [MAP, EKF])
def test_the_estimates_gradients_with_respect_to_the_params_are_the_finite_differences(estimator):
    p, options, w = linear_case(("x", "obs"), {"measurement_noise": {"x": 0.3, "obs": 0.2}, "process_noise": 0.01},
                                history=4.0)
    f = with_prior(estimator(p, options).double())
    weights = torch.tensor(np.random.default_rng(2).normal(size=(len(w.t0), 2)))
    model = p.model
    (f(model, w) * weights).sum().backward()
    grad = model.raw_free.grad.clone()
    eps = 1e-5
    for i, name in enumerate(model.param_names):  # a, b, c: free params, raw_free in that order
        value = model.params()[name]
        sides = []
        for sign in (1, -1):
            model.set_params({name: value + sign * eps})
            with torch.no_grad():
                sides.append(float((f(model, w) * weights).sum()))
        model.set_params({name: value})
        assert grad[i] == pytest.approx((sides[0] - sides[1]) / (2 * eps), rel=1e-5, abs=1e-8), name


@pytest.mark.parametrize("name", ["ekf", "map"])
def test_forecast_training_differentiates_through_the_filter(name):
    """method forecast with a filter: the horizon objective's gradient with respect to the params (through the
    filter's estimate and the forecast from it) is its finite differences."""
    rng = np.random.default_rng(4)
    t = np.arange(0.0, 12.0, 0.5)
    model = compile_text(LINEAR, "linear.hode").model_class()().double()
    data = make_dataset(model, t, {"obs": 2 * np.exp(-0.3 * t) + rng.normal(0, 0.05, len(t))})
    config = load_config({"method": "forecast", "dtype": "float64", "solver": {"method": "dopri5", "rtol": 1e-10,
                                                                                "atol": 1e-12},
                          "forecast": {"history": 3, "horizon": 2, "stride": 2, "estimator": name,
                                       "measurement_noise": {"obs": 0.05}, "process_noise": 0.01}})
    trainer = Trainer(model, data, config)
    method, model = trainer.method, trainer.problem.model
    method.objective(model, "test").backward()
    grad = model.raw_free.grad.clone()
    for i, param in enumerate(model.param_names):
        value, sides = model.params()[param], []
        for sign in (1, -1):
            model.set_params({param: value + sign * 1e-6})
            with torch.no_grad():
                sides.append(float(method.objective(model, "test")))
        model.set_params({param: value})
        assert grad[i] == pytest.approx((sides[0] - sides[1]) / 2e-6, rel=1e-4, abs=1e-9), param


def test_prior_model_is_the_models_own_states_at_the_windows_starts():
    t = np.arange(16.0)
    p, options = problem_of(LINEAR, t, {"obs": np.ones_like(t)}, {"estimator": "map"})
    w = make_windows(p, history=3, horizon=1, stride=2)  # t0 = 0, 2, ..., 12
    f = MAP(p, options).double()
    f.setup(p, w)
    states = np.stack([expm(A * t0) @ np.array([1.0, 2.0]) for t0 in w.t0.numpy()])
    mean, cov = states.mean(0), np.cov(states.T)
    cov += np.diag(JITTER * (np.diag(cov) + mean ** 2))
    np.testing.assert_allclose(f.prior_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(f.prior_cov.numpy(), cov, rtol=1e-5)
    default = np.std(np.ones_like(t)) / 10  # constant column: masked_moments' floor
    assert f.sigma.tolist() == pytest.approx([max(default, 1e-7)])


def test_filters_recover_the_state_of_a_nonlinear_model_from_noisy_data():
    """Lotka-Volterra trajectories from random initial states, the prey observed with noise (sigma 0.1): the
    state at each window's origin from ekf and map is far closer to the truth than the prior's (the model's
    mean state at t0 run to the origin)."""
    rng = np.random.default_rng(0)
    model = load("specs/lotka_volterra.hode")().double()
    t = np.arange(0, 6.01, 0.25)
    starts = np.array([0.44249296, 4.6280594]) * rng.uniform(0.6, 1.6, size=(5, 2))
    with torch.no_grad():
        truth = model.simulate(torch.tensor(t), torch.tensor(starts)).numpy()  # [T, 5, 2]
    prey = truth[..., 0] + rng.normal(0, 0.1, truth[..., 0].shape)
    ids = np.repeat(np.arange(5), len(t))
    errors = {}
    for name in ("ekf", "map"):
        p, options = problem_of("specs/lotka_volterra.hode", np.tile(t, 5), {"prey": prey.T.reshape(-1)},
                                {"estimator": name, "measurement_noise": {"prey": 0.1}, "process_noise": 1e-4},
                                ids=ids)
        w = make_windows(p, history=2.5, horizon=1, stride=1)
        f = ESTIMATORS[name](p, options).double()
        f.setup(p, w)
        with torch.no_grad():
            x = f(p.model, w).numpy()
            g = f.groups(w)
            prior = np.zeros_like(x)
            for index, group in g:
                ts = torch.stack([w.t0[index], w.origin[index]])
                prior[index.numpy()] = p.solve(p.model, group, f.prior_mean.expand(len(index), 2), ts, "test")[-1]
        true = np.stack([truth[np.searchsorted(t, o), int(k)] for o, k in zip(w.origin.numpy(), w.trajectory)])
        errors[name] = (np.sqrt(((x - true) ** 2).mean()), np.sqrt(((prior - true) ** 2).mean()))
        if name == "map":  # the same windows again start from their estimates: the same optimum
            with torch.no_grad():
                np.testing.assert_allclose(f(p.model, w).numpy(), x, rtol=1e-4, atol=1e-5)
    for name, (estimate, prior) in errors.items():
        assert estimate < 0.2 * prior, (name, estimate, prior)


def test_measurement_noise_defaults_to_the_columns_noise_model():
    """obs ~ normal(0.2) in the spec: the filter's R is 0.2², as if forecast.measurement_noise said so (and not the
    data's sd / 10)."""
    columns = ("obs",)
    p, options, w = linear_case(columns, {"measurement_noise": {"obs": 0.2}}, history=4.0)
    given = with_prior(EKF(p, options).double())(p.model, w)
    spec = LINEAR.replace("observe obs = x + 0.5 * z", "observe obs = x + 0.5 * z ~ normal(0.2)")
    noisy, options = problem_of(spec, np.arange(16.0), {"obs": p.data.trajectories[0].y[:, 0]}, {})
    modelled = with_prior(EKF(noisy, options).double())
    assert modelled.sigma.item() != pytest.approx(0.2)  # its default, unused
    torch.testing.assert_close(modelled(noisy.model, w), given, rtol=1e-7, atol=0)


@pytest.mark.parametrize("noise, variance", [("normal(0.1 + 0.2 * obs)", lambda h: (0.1 + 0.2 * h) ** 2),
                                             ("laplace(0.1)", lambda h: 2 * 0.1 ** 2),  # Laplace's variance
                                             ("lognormal(0.1)", lambda h: (0.1 * h) ** 2)])  # to first order
def test_the_noise_models_variance_at_the_state(noise, variance):
    spec = LINEAR.replace("observe obs = x + 0.5 * z", f"observe obs = x + 0.5 * z ~ {noise}")
    p, options = problem_of(spec, np.arange(6.0), {"obs": np.linspace(1, 2, 6)}, {"estimator": "ekf"})
    w = make_windows(p, history=2, horizon=1, stride=1)
    f = EKF(p, options).double()
    (_, g), = f.groups(w)
    x = torch.tensor([[0.3, 0.7], [1.1, 0.2], [2.0, 1.0]], dtype=torch.float64)
    h, _, R = f.columns_at(p.model, g, w.origin[:3], x)
    want = [variance(float(value)) for value in h[:, 0]]
    np.testing.assert_allclose(R[:, 0].detach().numpy(), want, rtol=1e-12)


def test_a_column_calling_a_neural_slot_has_its_jacobian_by_autodiff():
    spec = ("model N\nstate x = 1\nstate v = 0\nneural g(x, v) hidden 4\nder x = v\nder v = -x\n"
            "observe o = g(x, v) + x\n")
    p, options = problem_of(spec, np.arange(6.0), {"o": np.ones(6)}, {"estimator": "ekf"})
    w = make_windows(p, history=2, horizon=1, stride=1)
    f = EKF(p, options).double()
    (index, g), = f.groups(w)
    x, t = torch.tensor([[0.3, -0.7], [1.1, 0.2]], dtype=torch.float64), w.origin[:2]
    _, H, _ = f.columns_at(p.model, g, t, x)
    eps = 1e-6
    for j in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[j] = eps
        difference = (p.predict(p.model, g, x + step, t) - p.predict(p.model, g, x - step, t)) / (2 * eps)
        torch.testing.assert_close(H[..., j].detach(), difference.detach(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["ekf", "map"])
def test_fit_and_forecast_with_a_filter_end_to_end(name, tmp_path):
    """hodec fit (method forecast, the filter) then hodec forecast from its run folder. With a measurement noise far
    below the prior's spread and no process noise, both filters give the least-squares fit of the model's
    trajectory to the history (x(t) = x_0(t) + z exp(-k (t - 3.5)), x_0 scipy's solve from 0), and the forecast is
    scipy's solve from its state at the origin with the fitted k (tests/test_forecast_cli.py's data and
    reference)."""
    from test_forecast_cli import FIT, SPEC, history_files, read_csv, reference, write_data

    (tmp_path / "decay.hode").write_text(SPEC)
    (tmp_path / "fit.yaml").write_text(FIT.replace("estimator: mlp, hidden: 4, observed: true",
                                                   f"estimator: {name}, measurement_noise: {{x: 1.0e-6}}"))
    write_data(tmp_path / "train.csv", [0, 1]), write_data(tmp_path / "test.csv", [2, 3])
    run, out = tmp_path / "run", tmp_path / "forecast.csv"
    assert main(["fit", str(tmp_path / "decay.hode"), "--data", str(tmp_path / "train.csv"), "--config",
                 str(tmp_path / "fit.yaml"), "--out", str(run), "--quiet"]) == 0
    k = json.loads((run / "report.json").read_text())["params"]["k"]
    rows = history_files(tmp_path)  # histories to t = 5: a window [3.5, 5.5), samples 3.5 ... 5
    assert main(["forecast", str(tmp_path / "decay.hode"), "--run", str(run), "--history",
                 str(tmp_path / "hist.csv"), "--inputs", str(tmp_path / "inputs.csv"), "--horizon", "1.6", "--out",
                 str(out)]) == 0
    _, got = read_csv(out)
    for i in ("2", "3"):
        t, x, u = (np.array([float(r[c]) for r in rows if r[1] == i]) for c in (0, 2, 3))
        seen = (t >= 3.5) & (t <= 5.0)
        free = reference(k, 0.0, 3.5, t[seen], t[t <= 7.0], u[t <= 7.0])
        decay = np.exp(-k * (t[seen] - 3.5))
        z = decay @ (x[seen] - free) / (decay @ decay)
        origin = free[-1] + z * decay[-1]
        times = np.array([float(r[1]) for r in got if r[0] == i])
        expected = reference(k, origin, 5.0, times, t[t <= 7.0], u[t <= 7.0])
        np.testing.assert_allclose([float(r[2]) for r in got if r[0] == i], expected, rtol=1e-5)


def test_sparsify_with_a_filter_scores_every_model_by_its_horizon_objective():
    """hodec sparsify (method forecast, ekf): the gated models' path, the refit and the test score, which is the
    refit model's horizon objective on the test windows through its own filter."""
    from test_forecast_sparsify import ABC, FORECAST, synthetic

    from hodec.training.sparsify import data_mse, sparsify

    config = {**FORECAST, "forecast": {**FORECAST["forecast"], "estimator": "ekf", "observed": False,
                                       "measurement_noise": {"A": 0.01, "B": 0.01, "C": 0.01}},
              "lambda1": [0.0, 0.01], "refit_epochs": 2, "folds": 2}
    test = synthetic(2, seed=1)
    r = sparsify(ABC, synthetic(4), config, filename="abc.hode", test=test)
    assert all(math.isfinite(e["val_mse"]) for e in r.path)
    assert r.refit_trainer.method.estimator.name == "ekf"
    assert r.test_mse == pytest.approx(data_mse(r.model, test, r.config.refit,
                                                carried=r.refit_trainer.method.carry(best=True)), rel=1e-12)


def test_bad_filter_options_are_errors_naming_the_fit_config_key():
    t = np.arange(8.0)
    with pytest.raises(HodecError, match=r"forecast\.process_noise: 'zz' is not a state .*did you mean 'z'"):
        p, options = problem_of(LINEAR, t, {"obs": t}, {"estimator": "ekf", "process_noise": {"zz": 1.0}})
        EKF(p, options)
    with pytest.raises(HodecError, match=r"forecast\.measurement_noise: 'ob' is not a fitted column"):
        p, options = problem_of(LINEAR, t, {"obs": t}, {"estimator": "map", "measurement_noise": {"ob": 1.0}})
        MAP(p, options)
    for key, value in (("process_noise", -1.0), ("process_noise", {"x": -0.5}), ("measurement_noise", {"obs": 0})):
        with pytest.raises(HodecError, match=rf"forecast\.{key}"):
            problem_of(LINEAR, t, {"obs": t}, {"estimator": "ekf", key: value})
    with pytest.raises(HodecError) as err:
        p, options = problem_of(LINEAR, t, {"obs": t}, {"estimator": "ekf", "process_noise": {"zz": 1.0}})
        EKF(p, options)
    assert err.value.filename == "fit config"
