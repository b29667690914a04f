"""forecast.anchor (hodec/training/forecast/encoders.py): the named state set per window so that the column's
observable at the origin equals its last history value. Checked by hand on an observable y = 2 x + 0.5 e, where the
anchored e must be (y_last - 2 x) / 0.5 for the encoder's x; trained through; config errors located."""
import numpy as np
import pytest
import torch

from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.forecast.encoders import last_values
from hodec.training.loop import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = """
model Sensor
param k = 0.5 positive
param tau = 2 positive
state x = 1
state e = 0
der x = -k * x
der e = -e / tau
observe y = 2 * x + 0.5 * e
"""
T = np.arange(0.0, 6.01, 0.5)


def trainer(forecast=None, spec=SPEC, epochs=3):
    model = compile_text(spec, "sensor.hode").model_class()()
    rng = np.random.default_rng(0)
    y = 2 * np.exp(-0.5 * np.tile(T, 2)) + rng.normal(0, 0.3, 2 * len(T))
    y[len(T) + 4] = np.nan  # a missing sample: that window's last value is an earlier one
    data = make_dataset(model, np.concatenate([T, T]), {"y": y}, ids=np.repeat([1, 2], len(T)))
    keys = {"history": 2.0, "horizon": 1.5, "stride": 1.0, "hidden": 4, "anchor": {"y": "e"}, **(forecast or {})}
    torch.manual_seed(0)
    return Trainer(model, data, load_config({"method": "forecast", "epochs": epochs, "lr": 0.05,
                                             "solver": {"method": "rk4", "step_size": 0.25}, "forecast": keys}))


def test_the_anchored_state_makes_the_observable_equal_the_last_history_value():
    tr = trainer()
    est, w = tr.method.estimator, tr.method.windows
    with torch.no_grad():
        torch.nn.init.normal_(est.head.weight, std=1.0)  # the encoder's x and e differ per window
        y0 = est(tr.model, w)
        h = est.summary(est.features(w), w)
        raw = est.origin_state(h, w)  # before anchoring
    last, has = last_values(w)
    assert has.all()
    np.testing.assert_allclose(y0[:, 0].numpy(), raw[:, 0].numpy(), rtol=0)  # x as the encoder gave it
    expected_e = (last[:, 0].numpy() - 2 * raw[:, 0].numpy()) / 0.5
    np.testing.assert_allclose(y0[:, 1].numpy(), expected_e, rtol=1e-5, atol=1e-5)
    assert not np.allclose(raw[:, 1].numpy(), expected_e, atol=1e-3)  # the anchor changed it


def test_training_with_an_anchor_runs_and_its_gradients_reach_the_encoder():
    tr = trainer(epochs=4)
    before = [p.detach().clone() for p in tr.method.estimator.parameters()]
    tr.train()
    assert np.isfinite(tr.best_mse)
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.method.estimator.parameters()))


@pytest.mark.parametrize("anchor, fragment", [
    ({"z": "e"}, "forecast.anchor.z: not a fitted column"),
    ({"y": "q"}, "forecast.anchor.y: 'q' is not a state of Sensor"),
])
def test_anchor_errors_name_the_key(anchor, fragment):
    with pytest.raises(HodecError, match=fragment.replace(".", r"\.")):
        trainer({"anchor": anchor})


def test_an_observable_that_does_not_read_the_state_is_refused():
    with pytest.raises(HodecError, match="does not depend on x"):
        trainer({"anchor": {"y": "x"}}, spec=SPEC.replace("observe y = 2 * x + 0.5 * e", "observe y = 0.5 * e"))


def test_filters_refuse_anchor_and_a_non_mapping_is_a_config_error():
    with pytest.raises(HodecError, match="forecast.anchor: only the encoders"):
        trainer({"estimator": "ekf"})
    with pytest.raises(HodecError, match="forecast.anchor: expected a mapping"):
        load_config({"method": "forecast", "forecast": {"history": 1, "horizon": 1, "anchor": ["y"]}})
