"""FIT.yaml scales: the coordinate Adam trains a param in (its first step is lr in that coordinate), the domain
kept by projection, the model's own value following, a fit converging on log10, and the scale errors."""
import math

import numpy as np
import pytest

import hodec
from hodec.cli import main
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.loop import Trainer

SPEC = """model Turnover
param k = 0.5 positive
param c = 2 in (1, 5)
param g = 0.1
state x = 2
der x = 1 - k * x + 0 * (c + g)
observe obs = x + c + g
"""
T = np.linspace(0, 4, 9)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "turnover.hode"
    path.write_text(SPEC)
    return hodec.compile(path).model_class()().double()


def data(model, k=0.3, c=2.5, g=0.4):
    return make_dataset(model, T, {"obs": 1 / k + (2 - 1 / k) * np.exp(-k * T) + c + g})


def one_step(model, scales, lr=0.01):
    """The params after one vanilla epoch: Adam's first step moves each trained coordinate by lr (times the sign
    of -gradient)."""
    trainer = Trainer(model, data(model), load_config({"method": "vanilla", "initial": "spec", "epochs": 1,
                                                       "lr": lr, "scales": scales,
                                                       "solver": {"method": "rk4", "step_size": 0.1}}))
    trainer.step()
    return model.params()


@pytest.mark.parametrize("scale, moved", [
    ("log", lambda k: math.log(k / 0.5)),  # the positive kind's own coordinate
    ("log10", lambda k: math.log10(k / 0.5)),
    ("lin", lambda k: k - 0.5),
])
def test_the_first_adam_step_is_lr_in_the_scale(model, scale, moved):
    k = one_step(model, {"k": scale})["k"]
    assert math.isclose(abs(moved(k)), 0.01, rel_tol=1e-6)  # (the loss decreases with k: it moves down)
    assert k < 0.5


def test_a_bounded_param_on_log10_stays_inside_its_bounds(model):
    params = one_step(model, {"c": "log10", "g": "lin"}, lr=0.01)
    assert math.isclose(math.log10(params["c"] / 2), 0.01, rel_tol=1e-6)  # c grows toward the data's 2.5
    assert math.isclose(params["g"] - 0.1, 0.01, rel_tol=1e-6)
    big = one_step(model, {"c": "log10"}, lr=10.0)["c"]  # a step far beyond the upper bound: projected
    assert 4.99999 < big < 5


def test_a_fit_on_log10_recovers_the_params(model):
    result = hodec.fit(model, data(model), {"method": "vanilla", "initial": "spec", "epochs": 200, "lr": 0.05,
                                            "lr_end": 0.01, "scales": {"k": "log10", "c": "log"},
                                            "solver": {"method": "rk4", "step_size": 0.1}})
    assert math.isclose(result.params["k"], 0.3, rel_tol=1e-3)
    assert math.isclose(result.params["c"] + result.params["g"], 2.9, rel_tol=1e-3)
    assert math.isclose(result.model.params()["k"], result.params["k"])


@pytest.mark.parametrize("scales, message", [
    ("{g: log}", "scales.g: log needs g > 0, but param 'g' can be <= 0"),
    ("{kk: log}", "scales: 'kk' is not a param of Turnover; did you mean 'k'?"),
])
def test_scale_errors_exit_1(tmp_path, capsys, scales, message):
    (tmp_path / "m.hode").write_text(SPEC.replace("param g = 0.1", "param g = 0.1\nparam s = 1 fixed"))
    (tmp_path / "d.csv").write_text("t,obs\n0,1\n1,2\n")
    (tmp_path / "fit.yaml").write_text(f"method: vanilla\nepochs: 1\nscales: {scales}\n")
    code = main(["fit", str(tmp_path / "m.hode"), "--data", str(tmp_path / "d.csv"), "--config",
                 str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err, err


def test_a_resumed_fit_continues_on_the_scale(model, tmp_path):
    """Two epochs, the state saved and restored into a fresh trainer, two more: the same params as four epochs
    in one go (theta reloaded from the model, Adam's state from the optimizer's)."""
    config = load_config({"method": "vanilla", "initial": "spec", "epochs": 4, "lr": 0.05, "scales": {"k": "log10"},
                          "solver": {"method": "rk4", "step_size": 0.1}})
    fresh = lambda: hodec.compile(tmp_path / "turnover.hode").model_class()().double()  # noqa: E731
    whole = Trainer(fresh(), data(model), config)
    for _ in range(4):
        whole.step()
    first = Trainer(fresh(), data(model), config)
    first.step()
    first.step()
    second = Trainer(fresh(), data(model), config)
    second.restore(first.state())
    second.step()
    second.step()
    assert math.isclose(second.model.params()["k"], whole.model.params()["k"], rel_tol=1e-12)
    assert second.model.params()["k"] != first.model.params()["k"]
