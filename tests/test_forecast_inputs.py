"""Forecast windows read their inputs each at its own time: a per-member input signal [T, W] is read once per
member (Signal.each), never as every column at every member's time (an O(W²) tensor per field evaluation: 1 s a
read for 4000 windows)."""
import numpy as np
import pytest
import torch

from hodec.runtime.model import _signal_at
from hodec.runtime.signals import Signal


def test_per_member_times_read_only_their_own_columns(monkeypatch):
    W = 50
    s = Signal(torch.linspace(0, 10, 7, dtype=torch.float64), torch.rand(7, W, dtype=torch.float64))
    t = torch.rand(W, dtype=torch.float64) * 10
    want = torch.tensor([np.interp(float(t[w]), s.times.numpy(), s.values[:, w].numpy()) for w in range(W)],
                        dtype=torch.float64)

    def every_column(self, times):
        raise AssertionError("read every column at every member's time")

    monkeypatch.setattr(Signal, "__call__", every_column)
    torch.testing.assert_close(_signal_at(s, t, (W,)), want)
    with pytest.raises(AssertionError, match="every column"):  # a shared time still reads through __call__
        _signal_at(s, torch.tensor(1.0, dtype=torch.float64).reshape(1), (W,))
