"""Every example spec in specs/ against an independent, hand-written reference of the same equations.

For each spec: (a) the generated forward (float64) equals the hand formula at random states and random params,
(b) simulate() (dopri5) matches scipy's solve_ivp of the hand right-hand side, (c) observables equal their hand
formulas, (d) a batched forward equals the row-wise forward. Neural slots are the only part not written by
hand: the reference calls the model's own slot module (the MLP) on the stacked arguments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import hodec

SPEC_DIR = Path(__file__).resolve().parent.parent / "specs"
# Specs whose equivalence tests live in a file of their own (a reference too long to keep here).
OWN_TEST_FILE = {"uva_padova": "tests/test_uva_padova.py", "pk_oral": "tests/test_pk_oral_example.py"}
SPECS = sorted(p for p in SPEC_DIR.glob("*.hode") if p.stem not in OWN_TEST_FILE)
EXPECTED = ["bergman", "double_pendulum", "double_pendulum_neural", "lorenz", "lorenz_blackbox", "lotka_volterra",
            "lotka_volterra_blackbox", "lotka_volterra_graybox", "michaelis_menten", "pk_two_compartment", "sir"]
N_STATES = 20


# ---------------------------------------------------------------- independent numpy pieces
def interp(times, values, method):
    """Input signal at scalar t, written independently of hodec.runtime.signals: ends are held."""
    times, values = np.asarray(times, float), np.asarray(values, float)

    def at(t):
        if method == "linear":
            return float(np.interp(t, times, values))
        k = 0  # 'previous': the last sample at or before t (the first one before the first time)
        for i, ti in enumerate(times):
            if ti <= t:
                k = i
        return float(values[k])
    return at


def slot_call(m, name, *args):
    """The model's own MLP on stacked arguments (each a float or an array of equal length)."""
    x = torch.as_tensor(np.stack(np.broadcast_arrays(*args), -1), dtype=torch.float64)
    with torch.no_grad():
        return m.slot(name)(x).numpy()


@dataclass
class Ref:
    defaults: dict  # the spec's param values, copied by hand from the spec
    random_params: Callable  # rng -> {name: value}
    random_states: Callable  # rng, n -> [n, n_states]
    y0: Callable  # p -> initial state
    rhs: Callable  # (t, Y [..., n], p, u, m) -> dY [..., n]; u: {name: callable t -> value}
    obs: Callable  # (t, Y [..., n], p, u, m) -> [..., n_obs]
    t_end: float
    points: int = 41
    inputs: dict = field(default_factory=dict)  # name -> (times, values, method)


def cols(Y):
    return [Y[..., j] for j in range(Y.shape[-1])]


def positive(rng, value, spread=0.5):
    return float(value * math.exp(rng.uniform(-spread, spread)))


# ---------------------------------------------------------------- references, one per spec
def lv_rhs(t, Y, p, u, m):
    x, y = cols(Y)
    return np.stack([p["a"] * x - p["b"] * x * y, p["c"] * x * y - p["d"] * y], -1)


def blackbox_rhs(t, Y, p, u, m):
    x, y = cols(Y)
    return slot_call(m, "f", x, y)


def graybox_rhs(t, Y, p, u, m):
    x, y = cols(Y)
    U = slot_call(m, "U", x, y)
    return np.stack([p["alpha"] * x + U[..., 0], -p["delta"] * y + U[..., 1]], -1)


def lorenz_rhs(t, Y, p, u, m):
    x, y, z = cols(Y)
    return np.stack([p["sigma"] * (y - x), x * (p["rho"] - z) - y, x * y - p["beta"] * z], -1)


def sir_rhs(t, Y, p, u, m):
    S, I, R = cols(Y)
    infection = p["beta"] * S * I
    recovery = p["gamma"] * I
    U = slot_call(m, "correction", S, I)
    return np.stack([-infection + U[..., 0], infection - recovery + U[..., 1], recovery], -1)


def sir_obs(t, Y, p, u, m):
    S, I, R = cols(Y)
    return np.stack([p["N"] * I, p["N"] * p["beta"] * I * S, p["N"] * R], -1)


def pk_rhs(t, Y, p, u, m):
    A1, A2 = cols(Y)
    k10, k12, k21 = p["CL"] / p["V1"], p["Q"] / p["V1"], p["Q"] / p["V2"]
    rate = np.vectorize(u["infusion"])(t)
    return np.stack([rate - k10 * A1 - k12 * A1 + k21 * A2, k12 * A1 - k21 * A2], -1)


def mm_rhs(t, Y, p, u, m):
    E, S, ES, P = cols(Y)
    bind = p["kf"] * E * S - p["kr"] * ES
    cat = p["kcat"] * ES
    return np.stack([-bind + cat, -bind, bind - cat, cat], -1)


def mm_obs(t, Y, p, u, m):
    E, S, ES, P = cols(Y)
    Km = (p["kr"] + p["kcat"]) / p["kf"]
    return np.stack([P, p["kcat"] * ES, p["kcat"] * p["E0"] * S / (Km + S)], -1)


def bergman_rhs(t, Y, p, u, m):
    G, X, I = cols(Y)
    meal, insulin = np.vectorize(u["meal"])(t), np.vectorize(u["insulin"])(t)
    return np.stack([-(p["p1"] + X) * G + p["p1"] * p["Gb"] + meal / p["VG"],
                     -p["p2"] * X + p["p3"] * (I - p["Ib"]),
                     -p["n"] * (I - p["Ib"]) + insulin / p["VI"]], -1)


def bergman_obs(t, Y, p, u, m):
    G, X, I = cols(Y)
    return np.stack([G, I, (p["p1"] + p["p3"] / p["p2"] * (I - p["Ib"])) * G], -1)


def pendulum_rhs(t, Y, p, u, m):
    """Accelerations by solving the Euler–Lagrange equations M(q) q'' = f(q, q') for q'' (not the closed form
    written in the spec)."""
    th1, th2, w1, w2 = cols(Y)
    m1, m2, l1, l2, g = p["m1"], p["m2"], p["l1"], p["l2"], p["g"]
    D = th1 - th2
    M = np.empty(th1.shape + (2, 2))
    M[..., 0, 0] = (m1 + m2) * l1 ** 2
    M[..., 0, 1] = M[..., 1, 0] = m2 * l1 * l2 * np.cos(D)
    M[..., 1, 1] = m2 * l2 ** 2
    f = np.stack([-m2 * l1 * l2 * w2 ** 2 * np.sin(D) - (m1 + m2) * g * l1 * np.sin(th1),
                  m2 * l1 * l2 * w1 ** 2 * np.sin(D) - m2 * g * l2 * np.sin(th2)], -1)
    acc = np.linalg.solve(M, f[..., None])[..., 0]
    return np.stack([w1, w2, acc[..., 0], acc[..., 1]], -1)


def pendulum_neural_rhs(t, Y, p, u, m):
    th1, th2, w1, w2 = cols(Y)
    U = slot_call(m, "U", th1, th2, w1, w2)
    return np.stack([w1, w2, U[..., 0], U[..., 1]], -1)


def identity_obs(t, Y, p, u, m):
    return Y.copy()


def lorenz_blackbox_rhs(t, Y, p, u, m):
    return slot_call(m, "f", *cols(Y))


def no_obs(t, Y, p, u, m):
    return Y[..., :0].copy()


def lorenz_obs(t, Y, p, u, m):
    return Y[..., [0, 2]].copy()


def pk_obs(t, Y, p, u, m):
    return np.stack([Y[..., 0] / p["V1"], Y[..., 1] / p["V2"]], -1)


def uniform_states(low, high):
    return lambda rng, n: rng.uniform(low, high, size=(n, len(low)))


LV_X0 = [0.44249296, 4.6280594]
PENDULUM_X0 = [1.0, 0.5, 0.0, 0.0]

REFERENCES = {
    "lotka_volterra": Ref(
        defaults=dict(a=1.3, b=0.9, c=0.8, d=1.8),
        random_params=lambda rng: {k: positive(rng, v) for k, v in dict(a=1.3, b=0.9, c=0.8, d=1.8).items()},
        random_states=uniform_states([0.05, 0.05], [6.0, 6.0]),
        y0=lambda p: LV_X0, rhs=lv_rhs, obs=identity_obs, t_end=10.0),
    "lotka_volterra_blackbox": Ref(
        defaults={}, random_params=lambda rng: {}, random_states=uniform_states([0.05, 0.05], [6.0, 6.0]),
        y0=lambda p: LV_X0, rhs=blackbox_rhs, obs=identity_obs, t_end=5.0),
    "lotka_volterra_graybox": Ref(
        defaults=dict(alpha=1.3, delta=1.8),
        random_params=lambda rng: dict(alpha=rng.uniform(0.5, 2.0), delta=rng.uniform(0.5, 2.5)),
        random_states=uniform_states([0.05, 0.05], [6.0, 6.0]),
        y0=lambda p: LV_X0, rhs=graybox_rhs, obs=identity_obs, t_end=5.0),
    "lorenz": Ref(
        defaults=dict(sigma=10.0, rho=28.0, beta=8 / 3),
        random_params=lambda rng: dict(sigma=positive(rng, 10.0), rho=positive(rng, 28.0), beta=positive(rng, 8 / 3)),
        random_states=uniform_states([-20.0, -25.0, 0.0], [20.0, 25.0, 45.0]),
        y0=lambda p: [1.2, 2.1, 1.7], rhs=lorenz_rhs, obs=lorenz_obs, t_end=3.0, points=61),
    "lorenz_blackbox": Ref(
        defaults={}, random_params=lambda rng: {},
        random_states=uniform_states([-20.0, -25.0, 0.0], [20.0, 25.0, 45.0]),
        y0=lambda p: [1.2, 2.1, 1.7], rhs=lorenz_blackbox_rhs, obs=no_obs, t_end=1.0),
    "sir": Ref(
        defaults=dict(beta=0.3, gamma=0.1, N=1000.0, I0=5.0),
        random_params=lambda rng: dict(beta=positive(rng, 0.3), gamma=rng.uniform(0.03, 0.45),
                                       N=rng.uniform(500.0, 5000.0), I0=positive(rng, 5.0)),
        random_states=uniform_states([0.0, 0.0, 0.0], [1.0, 0.6, 0.8]),
        y0=lambda p: [1 - p["I0"] / p["N"], p["I0"] / p["N"], 0.0], rhs=sir_rhs, obs=sir_obs, t_end=60.0),
    "pk_two_compartment": Ref(
        defaults=dict(CL=5.0, V1=20.0, Q=10.0, V2=50.0),
        random_params=lambda rng: {k: positive(rng, v) for k, v in dict(CL=5.0, V1=20.0, Q=10.0, V2=50.0).items()},
        random_states=uniform_states([0.0, 0.0], [200.0, 200.0]),
        y0=lambda p: [0.0, 0.0], rhs=pk_rhs, obs=pk_obs, t_end=24.0, points=49,
        inputs={"infusion": ([0.0, 1.0, 12.0, 12.5], [100.0, 0.0, 200.0, 0.0], "previous")}),
    "michaelis_menten": Ref(
        defaults=dict(kf=2.0, kr=1.0, kcat=0.5, E0=0.1, S0=10.0),
        random_params=lambda rng: {k: positive(rng, v)
                                   for k, v in dict(kf=2.0, kr=1.0, kcat=0.5, E0=0.1, S0=10.0).items()},
        random_states=uniform_states([0.0, 0.0, 0.0, 0.0], [0.1, 10.0, 0.1, 10.0]),
        y0=lambda p: [p["E0"], p["S0"], 0.0, 0.0], rhs=mm_rhs, obs=mm_obs, t_end=100.0),
    "bergman": Ref(
        defaults=dict(p1=0.03, p2=0.02, p3=1e-5, n=0.14, Gb=90.0, Ib=7.0, VG=1.7, VI=0.12),
        random_params=lambda rng: {k: positive(rng, v) for k, v in
                                   dict(p1=0.03, p2=0.02, p3=1e-5, n=0.14, Gb=90.0, Ib=7.0, VG=1.7,
                                        VI=0.12).items()},
        random_states=uniform_states([60.0, 0.0, 5.0], [250.0, 0.02, 80.0]),
        y0=lambda p: [p["Gb"], 0.0, p["Ib"]], rhs=bergman_rhs, obs=bergman_obs, t_end=180.0, points=61,
        inputs={"meal": ([0.0, 30.0, 60.0, 120.0], [0.0, 8.0, 2.0, 0.0], "linear"),
                "insulin": ([0.0, 20.0, 40.0], [0.0, 0.5, 0.0], "previous")}),
    "double_pendulum": Ref(
        defaults=dict(m1=1.0, m2=1.0, l1=1.0, l2=1.0, g=9.81),
        random_params=lambda rng: dict(m1=positive(rng, 1.0), m2=positive(rng, 1.0), l1=positive(rng, 1.0),
                                       l2=positive(rng, 1.0), g=rng.uniform(1.0, 20.0)),
        random_states=uniform_states([-math.pi, -math.pi, -3.0, -3.0], [math.pi, math.pi, 3.0, 3.0]),
        y0=lambda p: PENDULUM_X0, rhs=pendulum_rhs, obs=identity_obs, t_end=5.0, points=51),
    "double_pendulum_neural": Ref(
        defaults={}, random_params=lambda rng: {},
        random_states=uniform_states([-math.pi, -math.pi, -3.0, -3.0], [math.pi, math.pi, 3.0, 3.0]),
        y0=lambda p: PENDULUM_X0, rhs=pendulum_neural_rhs, obs=identity_obs, t_end=3.0),
}


# ---------------------------------------------------------------- helpers
def spec_id(path):
    return path.stem


def build(name, values=None):
    torch.manual_seed(0)  # slot weights
    cls = hodec.load(SPEC_DIR / f"{name}.hode")
    m = cls(**(values or {})).double()  # params by keyword, as a user would
    ref = REFERENCES[name]
    if ref.inputs:
        m.set_inputs(ref.inputs)
    return m, ref


def input_functions(ref):
    return {k: interp(*v) for k, v in ref.inputs.items()}


def close(actual, expected, rtol, what):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.size == 0:
        return
    scale = np.abs(expected).reshape(-1, expected.shape[-1]).max(0)
    tol = rtol * np.maximum(np.abs(expected), scale)
    err = np.abs(actual - expected)
    assert (err <= tol).all(), f"{what}: worst error {err.max():.3g} (allowed {tol.reshape(-1)[err.argmax()]:.3g})"


# ---------------------------------------------------------------- the tests
def test_every_expected_spec_is_present_and_referenced():
    assert [p.stem for p in SPECS] == EXPECTED
    assert sorted(REFERENCES) == EXPECTED


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_spec_checks_clean(spec):
    from hodec.cli import main

    assert main(["check", str(spec)]) == 0


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_default_params_and_initial_state(spec):
    m, ref = build(spec.stem)
    assert set(m.params()) == set(ref.defaults)
    for name, value in ref.defaults.items():
        assert m.params()[name] == pytest.approx(value, rel=1e-14), name
    y0 = m.initial_state()
    assert y0.dtype == torch.float64
    close(y0.detach().numpy(), np.asarray(ref.y0(ref.defaults), float), 1e-14, "initial_state")


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_forward_matches_hand_formula(spec):
    rng = np.random.default_rng(1234)
    for trial in range(2):  # the defaults, then random params set through Model(**values)
        values = ref_values = REFERENCES[spec.stem].defaults if trial == 0 else \
            REFERENCES[spec.stem].random_params(rng)
        m, ref = build(spec.stem, values)
        u = input_functions(ref)
        Y = ref.random_states(rng, N_STATES)
        ts = rng.uniform(0.0, ref.t_end, N_STATES)
        with torch.no_grad():
            got = np.stack([m(torch.tensor(t, dtype=torch.float64), torch.tensor(yi)).numpy()
                            for t, yi in zip(ts, Y)])
        want = np.stack([ref.rhs(t, yi[None], ref_values, u, m)[0] for t, yi in zip(ts, Y)])
        close(got, want, 1e-12, f"forward, params {values}")


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_batched_forward_equals_rowwise(spec):
    rng = np.random.default_rng(7)
    m, ref = build(spec.stem)
    Y = torch.tensor(ref.random_states(rng, 12))
    t = torch.tensor(0.3 * ref.t_end, dtype=torch.float64)
    with torch.no_grad():
        batched = m(t, Y)
        rows = torch.stack([m(t, y) for y in Y])
        nested = m(t, Y.reshape(3, 4, -1))
    assert batched.shape == Y.shape and batched.dtype == torch.float64
    torch.testing.assert_close(batched, rows, rtol=1e-14, atol=1e-14 * float(rows.abs().max()))
    torch.testing.assert_close(nested.reshape(12, -1), batched, rtol=0, atol=0)


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_simulate_matches_scipy(spec):
    m, ref = build(spec.stem)
    p = ref.defaults
    u = input_functions(ref)
    ts = np.linspace(0.0, ref.t_end, ref.points)
    y0 = np.asarray(ref.y0(p), float)
    sol = solve_ivp(lambda t, y: ref.rhs(t, y[None], p, u, m)[0], (0.0, ref.t_end), y0, method="DOP853",
                    t_eval=ts, rtol=1e-10, atol=1e-12)
    assert sol.success, sol.message
    with torch.no_grad():
        ys = m.simulate(torch.tensor(ts), method="dopri5", rtol=1e-10, atol=1e-12)
    assert ys.shape == (len(ts), len(y0)) and ys.dtype == torch.float64
    close(ys.numpy(), sol.y.T, 1e-5, "trajectory")


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_observables_match_hand_formula(spec):
    rng = np.random.default_rng(99)
    values = REFERENCES[spec.stem].random_params(rng)
    m, ref = build(spec.stem, values)
    u = input_functions(ref)
    T = 7
    ts = np.linspace(0.0, ref.t_end, T)
    ys = ref.random_states(rng, T * 3).reshape(T, 3, -1)  # [T, batch, n]
    with torch.no_grad():
        got = m.observe(torch.tensor(ys), torch.tensor(ts)).numpy()
    want = np.stack([ref.obs(t, ys[i], values, u, m) for i, t in enumerate(ts)])
    assert got.shape == want.shape == (T, 3, len(m.observable_names))
    close(got, want, 1e-12, "observables")
    # and without ts, for a single state (these observables read neither t nor inputs)
    with torch.no_grad():
        single = m.observe(torch.tensor(ys[0, 0])).numpy()
    close(single, ref.obs(0.0, ys[0, 0], values, u, m), 1e-12, "observables of one state")
