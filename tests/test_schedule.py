import math

import pytest
from hypothesis import given, strategies as st

from hodec.training.schedule import homotopy_schedule


def test_six_step_values_from_paper():
    lam = homotopy_schedule(6, 0.6)
    assert [round(v, 3) for v in lam] == [1.0, 0.566, 0.306, 0.150, 0.056, 0.0]


def test_default_kappa_is_0_6():
    assert homotopy_schedule(6) == homotopy_schedule(6, 0.6)


def test_two_steps_is_one_then_zero():
    assert homotopy_schedule(2, 0.3) == [1.0, 0.0]


def test_kappa_one_is_uniform():
    assert homotopy_schedule(5, 1.0) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


# kappa > 1 with many steps makes the first drop smaller than float resolution at 1.0
@given(steps=st.integers(2, 30), kappa=st.floats(0.05, 2.0))
def test_endpoints_decrements_and_monotonicity(steps, kappa):
    lam = homotopy_schedule(steps, kappa)
    assert len(lam) == steps
    assert lam[0] == 1.0 and lam[-1] == 0.0
    drops = [a - b for a, b in zip(lam, lam[1:])]
    assert all(d > 0 for d in drops)
    assert math.fsum(drops) == pytest.approx(1.0, abs=1e-12)
    # power-law decrements: consecutive drops have ratio kappa
    for j, d in enumerate(drops):
        expected = kappa**j / math.fsum(kappa**i for i in range(steps - 1))
        assert d == pytest.approx(expected, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("steps", [0, 1, -3, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        homotopy_schedule(steps)


@pytest.mark.parametrize("kappa", [0.0, -0.5, math.inf, math.nan])
def test_bad_kappa(kappa):
    with pytest.raises(ValueError, match="kappa"):
        homotopy_schedule(4, kappa)
