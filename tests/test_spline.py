import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.interpolate import CubicSpline

from hodec.training.spline import SmoothingSpline

f64 = torch.float64


def random_knots(rng, n, lo=0.0, span=10.0):
    gaps = rng.uniform(0.2, 1.0, n - 1)
    return lo + np.concatenate([[0.0], np.cumsum(gaps)]) * span / gaps.sum()


def fit(t, y, alpha=0.0, mask=None):
    mask = None if mask is None else torch.as_tensor(mask)
    return SmoothingSpline(torch.as_tensor(t, dtype=f64), torch.as_tensor(y, dtype=f64), alpha, mask)


def evaluate(s, tq, order=0):
    tq = torch.as_tensor(tq, dtype=f64)
    out = s(tq) if order == 0 else s.derivative(tq, order)
    return out.detach().numpy()


def roughness_matrix(t):
    """K with  integral s''(t)^2 dt = v^T K v  for the natural spline s through values v.

    Built from scipy's natural splines of the unit vectors; s'' is piecewise
    linear, so the integral of its square is exact with the linear mass matrix.
    """
    n = len(t)
    m2 = CubicSpline(t, np.eye(n), bc_type="natural")(t, 2)
    h = np.diff(t)
    mass = np.zeros((n, n))
    for i, hi in enumerate(h):
        mass[i : i + 2, i : i + 2] += hi / 6 * np.array([[2.0, 1.0], [1.0, 2.0]])
    return m2.T @ mass @ m2


def reference_smoother(t, y, alpha):
    """Minimiser of sum (y - g)^2 + alpha * g^T K g, via numpy (independent of the Reinsch solve)."""
    return np.linalg.solve(np.eye(len(t)) + alpha * roughness_matrix(t), y)


def dense_roughness(s, t, n_grid=20001):
    grid = np.linspace(t[0], t[-1], n_grid)
    d2 = evaluate(s, grid, 2)
    return np.trapezoid(d2**2, grid, axis=0)


# ---------------------------------------------------------------- interpolation


def test_interpolates_data_at_alpha_zero():
    rng = np.random.default_rng(0)
    t = random_knots(rng, 12)
    y = rng.normal(size=(12, 3))
    np.testing.assert_allclose(evaluate(fit(t, y), t), y, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_matches_scipy_natural_spline(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 40))
    t = random_knots(rng, n, lo=rng.uniform(-5, 5), span=rng.uniform(0.5, 50))
    y = rng.normal(size=(n, 2)) * 3
    s, ref = fit(t, y), CubicSpline(t, y, bc_type="natural")
    tq = np.sort(np.concatenate([rng.uniform(t[0], t[-1], 2000), t]))
    for order in range(3):
        scale = max(1.0, np.abs(ref(tq, order)).max())
        np.testing.assert_allclose(evaluate(s, tq, order), ref(tq, order), atol=1e-10 * scale)


@settings(max_examples=30, deadline=None)
@given(
    gaps=st.lists(st.floats(0.05, 3.0), min_size=1, max_size=25),
    data=st.data(),
)
def test_matches_scipy_property(gaps, data):
    t = np.concatenate([[0.0], np.cumsum(gaps)])
    y = np.array(data.draw(st.lists(st.floats(-10, 10), min_size=len(t), max_size=len(t))))
    tq = np.linspace(t[0], t[-1], 301)
    ref = CubicSpline(t, y, bc_type="natural")
    s = fit(t, y)
    for order in range(3):
        np.testing.assert_allclose(evaluate(s, tq, order), ref(tq, order), atol=1e-8)


def test_two_points_is_a_straight_line():
    s = fit([1.0, 3.0], [2.0, 6.0], alpha=5.0)
    np.testing.assert_allclose(evaluate(s, [0.0, 2.0, 4.0]), [0.0, 4.0, 8.0], atol=1e-14)
    np.testing.assert_allclose(evaluate(s, [2.0], 1), [2.0])


def test_linear_extrapolation_outside_knots():
    rng = np.random.default_rng(1)
    t = random_knots(rng, 10)
    y = rng.normal(size=10)
    s = fit(t, y, alpha=0.1)
    g = evaluate(s, t)
    slope = evaluate(s, [t[0], t[-1]], 1)
    left, right = t[0] - np.array([0.5, 3.0]), t[-1] + np.array([0.5, 3.0])
    np.testing.assert_allclose(evaluate(s, left), g[0] + slope[0] * (left - t[0]), atol=1e-12)
    np.testing.assert_allclose(evaluate(s, right), g[-1] + slope[1] * (right - t[-1]), atol=1e-12)
    np.testing.assert_allclose(evaluate(s, right, 1), slope[1], atol=1e-12)
    np.testing.assert_allclose(evaluate(s, np.concatenate([left, right]), 2), 0.0, atol=1e-12)


# ---------------------------------------------------------------- smoothing


@pytest.mark.parametrize("alpha", [1e-3, 0.1, 3.0, 100.0])
def test_smoothing_matches_penalised_least_squares(alpha):
    rng = np.random.default_rng(2)
    t = random_knots(rng, 25)
    y = np.sin(t)[:, None] + 0.3 * rng.normal(size=(25, 2))
    s = fit(t, y, alpha)
    np.testing.assert_allclose(evaluate(s, t), reference_smoother(t, y, alpha), atol=1e-9)


def test_smoothing_spline_is_natural_interpolant_of_its_fitted_values():
    rng = np.random.default_rng(3)
    t = random_knots(rng, 20)
    y = rng.normal(size=20)
    s = fit(t, y, alpha=0.5)
    ref = CubicSpline(t, evaluate(s, t), bc_type="natural")
    tq = np.linspace(t[0], t[-1], 997)
    for order in range(3):
        np.testing.assert_allclose(evaluate(s, tq, order), ref(tq, order), atol=1e-10)


def test_roughness_falls_and_residual_grows_with_alpha():
    rng = np.random.default_rng(4)
    t = random_knots(rng, 30)
    y = np.cos(t) + 0.5 * rng.normal(size=30)
    rough, resid = [], []
    for alpha in [0.0, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]:
        s = fit(t, y, alpha)
        rough.append(dense_roughness(s, t))
        resid.append(np.sum((evaluate(s, t) - y) ** 2))
    assert resid[0] < 1e-20
    assert all(a > b for a, b in zip(rough, rough[1:]))
    assert all(a < b for a, b in zip(resid, resid[1:]))
    # the dense numerical roughness agrees with the exact quadratic form
    s = fit(t, y, 0.1)
    g = evaluate(s, t)
    assert dense_roughness(s, t) == pytest.approx(g @ roughness_matrix(t) @ g, rel=1e-6)


def test_large_alpha_approaches_least_squares_line():
    rng = np.random.default_rng(5)
    t = random_knots(rng, 30)
    y = 2.0 * t - 1.0 + np.sin(3 * t) + rng.normal(size=30)
    slope, intercept = np.polyfit(t, y, 1)
    s = fit(t, y, alpha=1e9)
    tq = np.linspace(t[0] - 1, t[-1] + 1, 50)
    np.testing.assert_allclose(evaluate(s, tq), slope * tq + intercept, atol=1e-5)
    np.testing.assert_allclose(evaluate(s, tq, 1), slope, atol=1e-5)


# ---------------------------------------------------------------- batching and masks


def test_batched_equals_per_column_fits_with_per_column_alpha():
    rng = np.random.default_rng(6)
    t = random_knots(rng, 15)
    y = rng.normal(size=(15, 2, 3))
    alpha = np.array([0.0, 0.2, 5.0])  # broadcast over the last batch dim
    s = fit(t, y, torch.tensor(alpha))
    tq = np.linspace(t[0] - 1, t[-1] + 1, 200)
    out = evaluate(s, tq, 0)
    d1 = evaluate(s, tq, 1)
    assert out.shape == (200, 2, 3)
    for i in range(2):
        for j in range(3):
            single = fit(t, y[:, i, j], alpha[j])
            np.testing.assert_allclose(out[:, i, j], evaluate(single, tq), atol=1e-12)
            np.testing.assert_allclose(d1[:, i, j], evaluate(single, tq, 1), atol=1e-12)


def test_output_shapes():
    t = torch.linspace(0, 1, 6, dtype=f64)
    s = SmoothingSpline(t, torch.randn(6, 4, 2, dtype=f64))
    assert s(torch.tensor(0.3)).shape == (4, 2)
    assert s.derivative(torch.rand(7), 2).shape == (7, 4, 2)
    s1 = SmoothingSpline(t, torch.randn(6, dtype=f64))
    assert s1(torch.tensor(0.3)).shape == ()
    assert s1(torch.rand(5)).shape == (5,)


def test_nan_and_mask_columns_equal_fits_of_observed_points():
    rng = np.random.default_rng(7)
    n = 18
    t = random_knots(rng, n)
    y = rng.normal(size=(n, 4))
    mask = np.ones((n, 4), dtype=bool)
    mask[[0, 5, 6, 11], 1] = False  # includes the first knot
    mask[[3, n - 1], 2] = False  # includes the last knot
    mask[2:-2, 3] = False  # only two points left: a straight line
    alpha = np.array([0.0, 0.0, 0.3, 1.0])
    y_nan = np.where(mask, y, np.nan)
    tq = np.linspace(t[0] - 1, t[-1] + 1, 400)
    for s in (fit(t, y_nan, torch.tensor(alpha)), fit(t, y_nan, torch.tensor(alpha), mask)):
        for order in range(3):
            out = evaluate(s, tq, order)
            assert np.all(np.isfinite(out))
            for j in range(4):
                single = fit(t[mask[:, j]], y[mask[:, j], j], alpha[j])
                np.testing.assert_allclose(out[:, j], evaluate(single, tq, order), atol=1e-11)
    # independent reference at alpha = 0 for the column with missing ends
    obs = mask[:, 1]
    ref = CubicSpline(t[obs], y[obs, 1], bc_type="natural")
    inside = tq[(tq >= t[obs][0]) & (tq <= t[obs][-1])]
    s = fit(t, y_nan, 0.0)
    np.testing.assert_allclose(evaluate(s, inside)[:, 1], ref(inside), atol=1e-10)
    obs = mask[:, 2]
    np.testing.assert_allclose(
        evaluate(fit(t, y_nan, 0.3), t[obs])[:, 2], reference_smoother(t[obs], y[obs, 2], 0.3), atol=1e-10
    )


def test_masked_value_does_not_matter_and_gets_no_gradient():
    t = torch.linspace(0, 4, 9, dtype=f64)
    y = torch.randn(9, 2, dtype=f64, requires_grad=True)
    mask = torch.ones(9, 2, dtype=torch.bool)
    mask[4, 0] = False
    s = SmoothingSpline(t, y, 0.1, mask)
    s(torch.linspace(-1, 5, 30, dtype=f64)).sum().backward()
    assert y.grad[4, 0] == 0 and y.grad[4, 1] != 0
    y2 = y.detach().clone()
    y2[4, 0] = 1e6
    s2 = SmoothingSpline(t, y2, 0.1, mask)
    tq = torch.linspace(-1, 5, 30, dtype=f64)
    torch.testing.assert_close(s2(tq), s(tq).detach())


# ---------------------------------------------------------------- gradients, dtype


def test_gradcheck_wrt_y_and_tq():
    torch.manual_seed(0)
    t = torch.tensor([0.0, 0.4, 1.1, 1.5, 2.6, 3.0, 3.9], dtype=f64)
    y = torch.randn(7, 2, dtype=f64, requires_grad=True)
    mask = torch.ones(7, 2, dtype=torch.bool)
    mask[2, 1] = False
    tq = torch.tensor([-0.7, 0.23, 1.31, 2.05, 3.51, 4.6], dtype=f64, requires_grad=True)

    def f(y, tq):
        s = SmoothingSpline(t, y, torch.tensor([0.0, 0.3], dtype=f64), mask)
        return s(tq), s.derivative(tq, 1), s.derivative(tq, 2)

    assert torch.autograd.gradcheck(f, (y, tq))


def test_gradcheck_wrt_alpha():
    t = torch.tensor([0.0, 0.5, 1.2, 2.0, 2.4], dtype=f64)
    y = torch.tensor([0.3, -1.0, 0.5, 2.0, 1.0], dtype=f64)
    tq = torch.tensor([0.1, 1.0, 2.2], dtype=f64)
    alpha = torch.tensor(0.4, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: SmoothingSpline(t, y, a)(tq), (alpha,))


def test_dtype_is_kept_and_double_converts_buffers():
    t = torch.linspace(0, 1, 8)
    y = torch.randn(8, 3)
    s = SmoothingSpline(t, y, 0.01)
    assert s(torch.tensor([0.5])).dtype == torch.float32
    buffers = dict(s.named_buffers())
    assert {"knots", "values", "second", "n_points"} <= buffers.keys()
    s = s.double()
    assert s.values.dtype == f64 and s.n_points.dtype == torch.int64
    assert s(torch.tensor([0.5], dtype=f64)).dtype == f64
    ref = SmoothingSpline(t.double(), y.double(), 0.01)
    tq = torch.linspace(0, 1, 50, dtype=f64)
    torch.testing.assert_close(s(tq), ref(tq), atol=1e-5, rtol=1e-5)


def test_float32_fit_is_stable_for_large_alpha():
    # the Reinsch system is ill-conditioned for large alpha; a float32 Cholesky would break down
    g = torch.Generator().manual_seed(0)
    t = torch.sort(torch.rand(400, generator=g) * 100).values
    y = torch.randn(400, 3, generator=g)
    tq = torch.linspace(-5, 105, 300)
    for alpha in [1.0, 1e3, 1e6]:
        s32 = SmoothingSpline(t, y, alpha)
        s64 = SmoothingSpline(t.double(), y.double(), alpha)
        assert s32.values.dtype == torch.float32
        torch.testing.assert_close(s32(tq).double(), s64(tq.double()), atol=1e-4, rtol=0)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("t", [[0.0, 1.0, 1.0, 2.0], [0.0, 2.0, 1.0, 3.0], [3.0, 2.0, 1.0, 0.0]])
def test_non_increasing_knots_rejected(t):
    with pytest.raises(ValueError, match="strictly increasing"):
        fit(t, np.zeros(4))


def test_too_few_points_rejected():
    with pytest.raises(ValueError, match="at least 2"):
        fit([1.0], [1.0])
    y = np.zeros((5, 2))
    y[1:, 1] = np.nan
    with pytest.raises(ValueError, match=r"columns \(flattened\) \[1\]"):
        fit(np.arange(5.0), y)
    mask = np.ones((5, 2), dtype=bool)
    mask[:4, 0] = False
    with pytest.raises(ValueError, match=">= 2 observed"):
        fit(np.arange(5.0), np.zeros((5, 2)), mask=mask)


def test_other_bad_inputs_rejected():
    with pytest.raises(ValueError, match="shape"):
        fit(np.arange(4.0), np.zeros(5))
    with pytest.raises(ValueError, match="mask shape"):
        fit(np.arange(4.0), np.zeros((4, 2)), mask=np.ones((4, 3), dtype=bool))
    with pytest.raises(ValueError, match="alpha"):
        fit(np.arange(4.0), np.zeros(4), alpha=-1.0)
    with pytest.raises(ValueError, match="not finite"):
        fit(np.arange(4.0), [0.0, np.inf, 1.0, 2.0])
    s = fit(np.arange(4.0), np.zeros(4))
    with pytest.raises(ValueError, match="order"):
        s.derivative(torch.tensor(1.0), 3)
    with pytest.raises(ValueError, match="1-D"):
        s(torch.zeros(2, 2))
