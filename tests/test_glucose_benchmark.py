"""The glucose benchmark's own pieces: its metrics against hand computation, and its scaled MNODE spec keeping
the expert's interaction graph of specs/uva_padova.hode."""
import numpy as np
import pytest

from benchmarks.glucose import compare as C  # python -m pytest puts the repo root on sys.path
from hodec.compiler import symbolic
from hodec.graph.extract import interaction_graph


class _Day:
    def __init__(self, cgm):
        self.cgm = np.asarray(cgm, dtype=float)


def test_metrics_against_hand_computation():
    horizon = np.arange(C.HORIZON, dtype=float)
    true_a = 100 + 10 * horizon  # rises to 210: a post-meal peak (> 180)
    true_b = np.full(C.HORIZON, 60.0)  # hypoglycaemic, no peak
    day_a = _Day(np.concatenate([np.zeros(C.HISTORY), true_a]))
    day_b = _Day(np.concatenate([np.zeros(C.HISTORY), true_b]))
    pred = np.stack([true_a - 20, true_b + 15], 1)  # [12, 2]: a 20 low everywhere, b 15 high everywhere
    m = C.metrics(pred, [(day_a, 0), (day_b, 0)])
    assert m["rmse"] == pytest.approx(np.sqrt((20 ** 2 + 15 ** 2) / 2))
    assert m["peak_rmse"] == pytest.approx(20.0)  # only window a peaks above 180
    # classes: a true 100..210, predicted 80..190 -> hyper (>180) only where true > 180 and pred > 180
    true_cls = np.digitize(true_a, [70, 180 + 1e-9])
    pred_cls = np.digitize(true_a - 20, [70, 180 + 1e-9])
    agree_a = (true_cls == pred_cls).sum()
    agree_b = 0  # b: true 60 (hypo), predicted 75 (normal)
    assert m["accuracy"] == pytest.approx((agree_a + agree_b) / (2 * C.HORIZON))
    assert m["accuracy_hypo"] == 0.0
    assert m["accuracy_hyper"] == pytest.approx(((true_cls == 2) & (pred_cls == 2)).sum() / (true_cls == 2).sum())
    diverged = pred.copy()
    diverged[3, 1] = np.nan
    assert C.metrics(diverged, [(day_a, 0), (day_b, 0)])["diverged"] == 1


def test_scaled_mnode_keeps_the_expert_graph():
    expert = interaction_graph(symbolic(C.SPEC.read_text(), "uva_padova.hode"))
    scaled = interaction_graph(symbolic(C.scaled_mnode(), "mnode.hode"))
    assert set(scaled.edges) == set(expert.edges)
    assert set(scaled.nodes) == set(expert.nodes)
