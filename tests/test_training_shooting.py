"""Multiple shooting's segments (issue 14): more segments than intervals between data times is refused, naming the
config key, the segments asked for and the intervals there are."""
from pathlib import Path

import numpy as np
import pytest

import hodec
from hodec.errors import HodecError
from hodec.training.data import make_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_more_segments_than_intervals_is_refused():
    model = hodec.load(ROOT / "specs" / "lotka_volterra.hode")
    t = np.linspace(0.0, 4.0, 11)
    data = make_dataset(model, t, {"prey": 1 + 0 * t, "predators": 1 + 0 * t})
    config = {"method": "multiple_shooting", "epochs": 1, "solver": {"rtol": 1e-5, "atol": 1e-7}}
    with pytest.raises(HodecError, match=r"segments: 1000 segments asked for, but the trajectories starting at "
                                         r"t = 0 have 11 time points, 10 intervals .* use segments: 10 or fewer"):
        hodec.fit(model, data, {**config, "segments": 1000})
    result = hodec.fit(model, data, {**config, "segments": 10})  # one interval each: the most there can be
    assert result.best_epoch == 1
