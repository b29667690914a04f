"""Issue 13, defect 1: an expression that folds to a number works in every position (der term, reaction rate,
observable, neural argument, initial value), batched and unbatched, in float32 and float64. The references are
the formulas written out by hand."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import hodec
from hodec.compiler import load_source

_counter = itertools.count()

# `c` is a let whose value is a number (three kinds of number), `z` a let that folds to 0 through c.
SPEC = """model Constants
param k = 0.5
state x = 1.5
state y = c + 1
state w = 2
let c = {c}
let z = c - c
neural g(a, b) hidden 4
reaction r: x -> y ; c
reaction s: y -> ; c * y
der x = -c - x
der w = g(c, x) + g(z, 2) - k * w + log(2)
observe oc = c
observe oz = z * 3
observe ox = c + x
observe ok = k
"""


class Linear(torch.nn.Module):
    """A hand-written replacement network: a + 10 b, so the arguments are read back exactly."""

    def forward(self, v):
        return (v[..., :1] + 10 * v[..., 1:2])


def _build(c_text: str, dtype):
    code = hodec.compile_source(SPEC.format(c=c_text), "constants.hode")
    cls = load_source(code, f"hodec_test_constants_{next(_counter)}")
    return cls({}, slots={"g": Linear()}).to(dtype)


def _expected(c: float, x: float, y: float, w: float, k=0.5):
    g = lambda a, b: a + 10 * b  # noqa: E731 - the replacement network, written out
    dx = -c - x - c  # der term and reaction r (x -> y at rate c)
    dy = c - c * y  # r into y, s out of y
    dw = g(c, x) + g(0.0, 2.0) - k * w + math.log(2)
    return [dx, dy, dw], [c, 0.0, c + x, k]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c_text, c", [("0", 0.0), ("2", 2.0), ("log(2)", math.log(2)), ("-1.5e-3", -1.5e-3)])
def test_constant_lets_work_in_every_position(c_text, c, dtype):
    m = _build(c_text, dtype)
    tol = dict(rel=1e-6, abs=1e-6) if dtype == torch.float32 else dict(rel=1e-13, abs=1e-13)
    assert m.initial_state().tolist() == pytest.approx([1.5, c + 1, 2.0], **tol)
    assert m.initial_state((2,)).shape == (2, 3)
    points = [[1.5, 0.25, 2.0], [-3.0, 4.0, 0.5]]
    with torch.no_grad():
        for point in points:  # unbatched: y of shape [3]
            y = torch.tensor(point, dtype=dtype)
            dy, obs = m(torch.tensor(0.0, dtype=dtype), y), m.observables(torch.tensor(0.0, dtype=dtype), y)
            assert dy.dtype == obs.dtype == dtype
            want_dy, want_obs = _expected(c, *point)
            assert dy.tolist() == pytest.approx(want_dy, **tol)
            assert obs.tolist() == pytest.approx(want_obs, **tol)
        y = torch.tensor(points, dtype=dtype)  # batched: [2, 3]
        dy = m(torch.tensor(0.0, dtype=dtype), y)
        obs = m.observables(torch.tensor(0.0, dtype=dtype), y)
        for row, point in enumerate(points):
            want_dy, want_obs = _expected(c, *point)
            assert dy[row].tolist() == pytest.approx(want_dy, **tol)
            assert obs[row].tolist() == pytest.approx(want_obs, **tol)
        trajectory = m.simulate(torch.tensor([0.0, 0.1], dtype=dtype))  # the solver path too
        assert torch.isfinite(trajectory).all()
