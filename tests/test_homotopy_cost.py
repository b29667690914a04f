"""Homotopy's coupled solves (issue 15 item 3): the coupled trajectories of hodec's solver routes against an
independent reference (scipy Radau at rtol 1e-12 of the coupled field written by hand: the spline itself, not
GridCubic, and J+ from hand-derived observable gradients), the stiff route's cost on a coupled field, and a short
homotopy fit's loss against the same reference."""
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import hodec
from hodec.compiler import load
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
f64 = torch.float64
K, ALPHA = 6.0, 1e-3


def lv_blackbox():
    """LV black-box (direct coupling: the columns are states) with seeded weights and noisy LV data."""
    torch.manual_seed(10)
    model = load(ROOT / "specs" / "lotka_volterra_blackbox.hode")().double()
    truth = load(ROOT / "specs" / "lotka_volterra.hode")().double()
    t = np.round(np.arange(31) * 0.1, 10)
    with torch.no_grad():
        y = truth.simulate(torch.as_tensor(t), rtol=1e-10, atol=1e-12).numpy()
    y = y + np.random.default_rng(0).normal(size=y.shape) * 0.05 * y.mean(0)
    return model, make_dataset(model, t, {"prey": y[:, 0], "predators": y[:, 1]}), "data"


def dandekar():
    """benchmarks/specs/dandekar.hode (diagonal coupling: log|I + T| and log|R| read disjoint states) with seeded
    weights and data from its own simulation at a perturbed beta, with noise."""
    torch.manual_seed(0)
    model = load(ROOT / "benchmarks" / "specs" / "dandekar.hode")().double()
    truth = load(ROOT / "benchmarks" / "specs" / "dandekar.hode")(beta=0.25).double()
    t = np.arange(15.0)
    with torch.no_grad():
        obs = truth.observe(truth.simulate(torch.as_tensor(t), rtol=1e-10, atol=1e-6), torch.as_tensor(t)).numpy()
    obs = obs + np.random.default_rng(1).normal(size=obs.shape) * 0.05
    return model, make_dataset(model, t, {"obs_infected": obs[:, 0], "obs_recovered": obs[:, 1]}), "spec"


def trainer(case, method: str, rtol: float = 1e-9) -> Trainer:
    model, data, initial = case()
    config = load_config(dict(method="homotopy", k=K, smoothing=ALPHA, dtype="float64", initial=initial, lr=0.01,
                              epochs_per_step=1, steps=2, solver={"method": method, "rtol": rtol, "atol": 1e-9}))
    return Trainer(model, data, config)


def hand_coupling(model, lam: float):
    """-lam k J+ (h(u) - yhat(t)) written out per model: LV's targets are its states; Dandekar's are log|I + T| and
    log|R|, whose gradients are (0, 1, 0, 1)/(I + T) and (0, 0, 1, 0)/R, so J+ r = sum_i r_i J_i / |J_i|^2."""
    if "x" in model.state_names:
        return lambda u, yhat: -lam * K * (u - yhat)

    def term(u, yhat):
        S, I, R, T = u
        g1, g2 = np.array([0, 1, 0, 1]) / (I + T), np.array([0, 0, 1, 0]) / R
        r1, r2 = np.log(abs(I + T)) - yhat[0], np.log(abs(R)) - yhat[1]
        return -lam * K * (r1 * g1 / (g1 @ g1) + r2 * g2 / (g2 @ g2))
    return term


def radau_coupled(tr: Trainer, lam: float) -> np.ndarray:
    """The coupled trajectory at the data times by scipy Radau (rtol 1e-12) of the hand-written coupled field;
    the reference is the smoothing spline itself (SmoothingSpline, not hodec fit's GridCubic)."""
    p, g = tr.problem, tr.problem.groups[0]
    model = p.model
    spline = spline_of(tr)
    coupling = hand_coupling(model, lam)

    def field(t, u):
        with torch.no_grad():
            plain = model(torch.tensor(t, dtype=f64), torch.as_tensor(u)[None])[0].numpy()
            yhat = spline(torch.tensor(t, dtype=f64))[0].numpy()
        return plain + coupling(u, yhat)

    y0 = p.initial(model, g)[0].detach().numpy()
    ts = g.t.numpy()
    sol = solve_ivp(field, (ts[0], ts[-1]), y0, method="Radau", t_eval=ts, rtol=1e-12, atol=1e-10)
    assert sol.success
    return sol.y.T


def hodec_coupled(tr: Trainer, lam: float) -> np.ndarray:
    p, g = tr.problem, tr.problem.groups[0]
    with torch.no_grad():
        return p.solve(p.model, g, p.initial(p.model, g), g.t, "test", tr.method.couplings[0], lam)[:, 0].numpy()


@pytest.mark.parametrize("case", [lv_blackbox, dandekar])
@pytest.mark.parametrize("method", ["auto", "rodas5p"])
def test_coupled_trajectory_matches_radau_of_the_coupled_field(case, method):
    tr = trainer(case, method, rtol=1e-9)
    for lam in (1.0, 0.3):
        want = radau_coupled(tr, lam)
        got = hodec_coupled(tr, lam)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9)


def spline_of(tr: Trainer):
    """The group's smoothing spline (what GridCubic was built from), rebuilt from the data as Homotopy does."""
    from hodec.training.spline import SmoothingSpline

    g, p = tr.problem.groups[0], tr.problem
    alpha = torch.tensor([p.alphas[c] for c in range(len(p.columns))], dtype=f64)
    return SmoothingSpline(g.t, torch.where(g.mask, g.y, torch.nan), alpha, g.mask)


def test_rodas5p_on_a_coupled_field_takes_as_many_steps_as_tsit5():
    """The coupled field reads yhat(t): not autonomous even where the model's own field is. A Rosenbrock step that
    took df/dt = 0 there lost its order: rodas5p took 13009 steps on LV black-box at lambda = 1 (float32, rtol
    1e-7), tsit5 216."""
    counts = {}
    for method in ("tsit5", "rodas5p"):
        tr = trainer(lv_blackbox, method, rtol=1e-7)
        p, g = tr.problem, tr.problem.groups[0]
        stats = {}
        p.coupled_solver = {**p.coupled_solver, "stats": stats}
        hodec_coupled(tr, 1.0)
        counts[method] = stats["steps"]
    assert counts["rodas5p"] <= 2 * counts["tsit5"], counts


def test_homotopy_fit_loss_equals_the_radau_coupled_loss():
    """A short homotopy fit (hodec.fit, lambda = 1 then 0): its first epoch's loss is the MSE of the coupled
    trajectory, which Radau of the hand-written coupled field gives to 1e-6 relative."""
    tr = trainer(lv_blackbox, "auto", rtol=1e-10)
    g = tr.problem.groups[0]
    want = float(((radau_coupled(tr, 1.0) - g.y[:, 0].numpy()) ** 2).mean())
    model, data, _ = lv_blackbox()
    result = hodec.fit(model, data, dict(method="homotopy", k=K, smoothing=ALPHA, dtype="float64", lr=0.01,
                                         epochs_per_step=1, steps=2, solver={"rtol": 1e-10, "atol": 1e-9}))
    assert [e["lam"] for e in result.history] == [1.0, 0.0]
    assert result.history[0]["loss"] == pytest.approx(want, rel=1e-6)


def test_coupling_jacobian_term_is_exact_in_diagonal_mode():
    """model.jacobian with Dandekar's coupling (log observables: J+ depends on the state) against jacrev of the
    coupled forward; with J+ held constant it was off by the residual's share, and rodas5p took 4954 steps on the
    coupled field at rtol 1e-7 instead of 524."""
    tr = trainer(dandekar, "rodas5p")
    p, g = tr.problem, tr.problem.groups[0]
    model = p.model
    model.set_coupling(tr.method.couplings[0], 0.7)
    y = (p.initial(model, g) * torch.tensor([0.9, 1.5, 1.2, 2.0], dtype=f64)).repeat(3, 1)
    t = torch.tensor([2.5, 7.25, 11.0], dtype=f64)
    want = torch.func.jacrev(lambda x: model(t, x).sum(0))(y).movedim(0, 1)
    torch.testing.assert_close(model.jacobian(t, y), want, rtol=1e-10, atol=0)
