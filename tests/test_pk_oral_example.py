"""specs/pk_oral.hode (oral doses as events, a combined error model) against the closed-form superposition of
one-compartment first-order-absorption responses, its gradient against finite differences of that closed form,
and its noise scale against the formula."""
import math
from pathlib import Path

import torch

import hodec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "pk_oral.hode"


def conc(t, ka=1.2, cl=0.15, v=8.0, dose=100.0, tau=24.0):
    """cp(t): each dose's response D ka / (V (ka - k)) (e^{-k s} - e^{-ka s}), s the time since the dose."""
    k = cl / v
    return sum(dose * ka / (v * (ka - k)) * (math.exp(-k * (t - d)) - math.exp(-ka * (t - d)))
               for d in (0.0, tau, 2 * tau) if t >= d)


def test_simulate_is_the_superposition_of_the_doses():
    m = hodec.load(SPEC)().double()
    ts = torch.linspace(0, 72, 145, dtype=torch.float64)
    cp = m.observe(m.simulate(ts, rtol=1e-11, atol=1e-12), ts)[:, 0]
    want = torch.tensor([conc(float(t)) for t in ts], dtype=torch.float64)
    torch.testing.assert_close(cp, want, rtol=1e-8, atol=1e-10)


def test_the_gradient_to_ka_matches_finite_differences():
    m = hodec.load(SPEC)().double()
    ts = torch.tensor([0.0, 30.0, 60.0], dtype=torch.float64)
    cp60 = m.observe(m.simulate(ts, rtol=1e-11, atol=1e-12), ts)[-1, 0]
    (g_log_ka,) = torch.autograd.grad(cp60, m.raw_positive)  # positive params train as their logs
    names = [row[0] for row in m.parameters_table if row[2] == "positive"]
    eps = 1e-6
    fd_ka = (conc(60.0, ka=1.2 * (1 + eps)) - conc(60.0, ka=1.2 * (1 - eps))) / (2 * eps)  # d cp / d log ka
    assert abs(float(g_log_ka[names.index("ka")]) - fd_ka) < 1e-6 * max(1.0, abs(fd_ka))


def test_the_noise_scale_is_the_combined_error_formula():
    m = hodec.load(SPEC)().double()
    y = torch.tensor([[10.0, 40.0]], dtype=torch.float64)
    obs = m.observables(torch.tensor(5.0), y)
    sigma = m.noise_scale(torch.tensor(5.0), y, obs)
    assert m.noise_table == (("cp", "normal"),)
    assert abs(float(sigma[0, 0]) - math.sqrt(0.3 ** 2 + (0.1 * 40.0 / 8.0) ** 2)) < 1e-14
