"""Horizon metrics (hodec/training/forecast/metrics.py) against numbers computed by hand on tiny arrays, and against
the glucose benchmark's own formulas (benchmarks/glucose/compare.py: metrics) written out here."""
import math

import numpy as np
import pytest

from hodec.training.forecast.metrics import class_labels, classify, horizon_metrics

NAN = float("nan")


def tiny():
    """3 horizon steps, 3 windows, 2 columns. Window 2 diverged (NaN where there is data); column b is a copy
    of a shifted by 10 with its first step missing everywhere."""
    truth = np.array([[1, 4, 0], [2, 6, 0], [3, NAN, 0]], dtype=float)
    pred = np.array([[1, 5, 0], [3, 4, NAN], [5, 100, 0]], dtype=float)
    mask = np.isfinite(truth)
    lead = np.array([[5, 5, 5], [10, 10, 10], [15, 20, 15]], dtype=float)
    truth2, pred2, mask2 = truth + 10, pred + 10, mask.copy()
    mask2[0] = False
    return np.stack([pred, pred2], -1), np.stack([truth, truth2], -1), np.stack([mask, mask2], -1), lead


def test_rmse_steps_and_diverged_windows_by_hand():
    pred, truth, mask, lead = tiny()
    out = horizon_metrics(pred, truth, mask, lead, ("a", "b"), peak={"a": 2.5, "b": 13.5})
    assert out["windows"] == 2 and out["diverged"] == 1
    a, b = out["columns"]["a"], out["columns"]["b"]
    # errors of a: window 0: 0, 1, 2; window 1: 1, -2 (its third step has no data, its 100 is not scored)
    assert a["cells"] == 5 and a["rmse"] == pytest.approx(math.sqrt(10 / 5))
    assert [s["step"] for s in a["steps"]] == [1, 2, 3]
    assert [s["cells"] for s in a["steps"]] == [2, 2, 1]
    assert [s["rmse"] for s in a["steps"]] == pytest.approx([math.sqrt(0.5), math.sqrt(2.5), 2.0])
    assert [s["lead"] for s in a["steps"]] == pytest.approx([5, 10, 15])  # window 1's step 3 has no data
    # peaks over 2.5: window 0 (actual 3, predicted 5), window 1 (actual 6, predicted max(5, 4) = 5)
    assert a["peak_windows"] == 2 and a["peak_rmse"] == pytest.approx(math.sqrt((4 + 1) / 2))
    # b: steps 2 and 3 only; errors 1, 2 (window 0) and -2 (window 1); peaks over 13.5: window 1 only (16 vs 14)
    assert b["cells"] == 3 and b["rmse"] == pytest.approx(math.sqrt(9 / 3))
    assert [s["step"] for s in b["steps"]] == [2, 3]
    assert b["peak_windows"] == 1 and b["peak_rmse"] == pytest.approx(2.0)


def test_default_peak_threshold_is_the_upper_quartile_of_the_data():
    pred, truth, mask, lead = tiny()
    a = horizon_metrics(pred, truth, mask, lead, ("a", "b"))["columns"]["a"]
    # the data of a (diverged window left out): 1, 2, 3, 4, 6 -> the 0.75 quantile (linear) is 4: window 1 only
    assert a["peak_threshold"] == pytest.approx(4.0)
    assert a["peak_windows"] == 1 and a["peak_rmse"] == pytest.approx(1.0)


def test_class_accuracy_by_hand():
    pred, truth, mask, lead = tiny()
    a = horizon_metrics(pred, truth, mask, lead, ("a", "b"), classes={"a": [2, 4]})["columns"]["a"]
    assert "classes" not in horizon_metrics(pred, truth, mask, lead, ("a", "b"))["columns"]["a"]
    # actual 1, 2, 3, 4, 6 -> classes 0, 1, 1, 1 (4 is in the closed range 2-4), 2
    # predicted 1, 3, 5, 5, 4 -> classes 0, 1, 2, 2, 1
    classes = a["classes"]
    assert classes["thresholds"] == [2.0, 4.0]
    assert classes["accuracy"] == pytest.approx(2 / 5)
    assert classes["per_class"] == {"< 2": {"cells": 1, "accuracy": 1.0}, "2-4": {"cells": 3, "accuracy": 1 / 3},
                                    "> 4": {"cells": 1, "accuracy": 0.0}}


def test_classes_and_peaks_as_the_glucose_benchmark_defines_them():
    """compare.metrics on a complete [12, B] horizon: classes np.digitize(v, [70, 180 + 1e-9]), peaks over
    windows whose actual maximum exceeds 180."""
    rng = np.random.default_rng(1)
    true = rng.uniform(40, 300, (12, 50))
    true[3, 4], true[5, 6] = 180.0, 70.0  # on the thresholds
    pred = true + rng.normal(0, 30, true.shape)
    pred[0, 7] = 180.0
    cls = lambda v: np.digitize(v, [70.0, 180.0 + 1e-9])  # noqa: E731
    peaks = true.max(0) > 180
    expected_peak = np.sqrt(np.mean((pred.max(0)[peaks] - true.max(0)[peaks]) ** 2))
    out = horizon_metrics(pred[..., None], true[..., None], np.ones(true.shape + (1,), bool),
                          np.ones(true.shape), ("CGM",), peak={"CGM": 180.0}, classes={"CGM": [70, 180]})
    cgm = out["columns"]["CGM"]
    assert cgm["rmse"] == pytest.approx(np.sqrt(np.mean((pred - true) ** 2)))
    assert cgm["peak_rmse"] == pytest.approx(expected_peak) and cgm["peak_windows"] == int(peaks.sum())
    assert cgm["classes"]["accuracy"] == pytest.approx(np.mean(cls(pred) == cls(true)))
    for k, label in enumerate(("< 70", "70-180", "> 180")):
        sel = cls(true) == k
        assert cgm["classes"]["per_class"][label]["accuracy"] == pytest.approx(np.mean(cls(pred)[sel] == k))
    assert (classify(true, [70, 180]) == cls(true)).all()


def test_class_labels_and_a_column_without_data():
    assert class_labels([70, 180]) == ["< 70", "70-180", "> 180"]
    assert class_labels([0.5]) == ["< 0.5", "> 0.5"]
    pred = np.zeros((2, 1, 1))
    out = horizon_metrics(pred, pred, np.zeros((2, 1, 1), bool), np.ones((2, 1)), ("x",), classes={"x": [1.0]})
    x = out["columns"]["x"]
    assert x["cells"] == 0 and x["rmse"] is None and x["steps"] == [] and x["peak_rmse"] is None
    assert x["classes"]["accuracy"] is None and x["classes"]["per_class"]["< 1"]["accuracy"] is None
