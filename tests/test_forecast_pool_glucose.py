"""The glucose benchmark's lstm_day row (benchmarks/glucose/compare.py): the LSTM's input over the day so far, the
like-for-like comparison of the rows with forecast.pool, against features written out by hand for two windows of a
synthetic day; and the plain LSTM's features unchanged by it (its last 54 steps)."""
import numpy as np
import torch

from benchmarks.glucose import compare as C


def day():
    t = np.arange(288) * 5.0
    rng = np.random.default_rng(0)
    return C.Day(7000, 0, t, 100 + np.arange(288.0), {"meal": rng.uniform(0, 5, 288), "insulin": rng.uniform(0, 1, 288),
                                                     "Dbar": np.zeros(288)})


def test_day_features_by_hand():
    d = day()
    wins = [(d, 0), (d, 12)]
    stats = {"meal": 2.0, "insulin": 0.5}
    x, y, last, _ = C.lstm_features(wins, stats, day=True)
    assert x.shape == (2, 12 + 54, 5)  # the longer window's day so far: samples 0 .. 65
    for b, (_, i) in enumerate(wins):
        steps = i + 54
        pad = 66 - steps
        expected = np.zeros((66, 5))
        real = slice(pad, 66)
        known = np.zeros(66)
        known[pad:pad + i + 42] = 1.0
        expected[real, 2] = d.inputs["meal"][:steps] / 2.0
        expected[real, 3] = d.inputs["insulin"][:steps] / 0.5
        expected[real, 4] = 1.0
        expected[:, 1] = known
        expected[real, 0] = (d.cgm[:steps] - d.cgm[i + 41]) / 100 * known[real]
        np.testing.assert_allclose(x[b].numpy(), expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(y[b].numpy(), d.cgm[i + 42:i + 54], rtol=1e-6)
        assert float(last[b, 0]) == d.cgm[i + 41]
    window, _, _, _ = C.lstm_features(wins, stats)
    assert torch.equal(x[1, -54:, :4], window[1])  # the window's own 54 steps are the plain LSTM's input
