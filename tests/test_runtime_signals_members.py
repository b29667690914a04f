"""A signal with one column per batch member, read at one time per member (as hodec's solvers step each member on
its own): each member reads its own column at its own time, by interpolation written out here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hodec.runtime.signals import Signal


@pytest.mark.parametrize("method", ["linear", "previous"])
def test_each_member_reads_its_own_column_at_its_own_time(method):
    rng = np.random.default_rng(0)
    times = np.array([0.0, 1.0, 2.5, 4.0])
    values = rng.normal(size=(4, 3, 5))  # [T, 3, 5]: a column per member of a [3, 5] batch
    t = rng.uniform(-0.5, 4.5, size=(3, 5))
    got = Signal(torch.tensor(times), torch.tensor(values), method).each(torch.tensor(t))
    expected = np.empty((3, 5))
    for i in range(3):
        for j in range(5):
            if method == "linear":
                expected[i, j] = np.interp(t[i, j], times, values[:, i, j])
            else:
                k = max(0, np.searchsorted(times, t[i, j], side="right") - 1)
                expected[i, j] = values[k, i, j]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14, atol=1e-14)


def test_each_with_leading_batch_axes_and_a_large_batch():
    B = 4096  # the old path read every member at every member's time: B² values
    times = torch.linspace(0, 1, 11, dtype=torch.float64)
    values = torch.rand(11, B, dtype=torch.float64)
    t = torch.rand(2, B, dtype=torch.float64)  # a leading axis the columns do not span
    got = Signal(times, values).each(t)
    b = torch.arange(B)
    for row in range(2):
        right = torch.searchsorted(times, t[row], right=True).clamp(1, 10)
        w = (t[row] - times[right - 1]) / (times[right] - times[right - 1])
        expected = values[right - 1, b] + w * (values[right, b] - values[right - 1, b])
        torch.testing.assert_close(got[row], expected, rtol=1e-13, atol=1e-13)
