"""FIT.yaml priors: -log prior / n added to the objective, against hand-written densities, and the MAP estimate
of a fit against its closed form."""
import math

import numpy as np
import pytest
import torch

import hodec
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.problem import Problem

SPEC = """model Priors
param m = 1.5
param a = 0.3
param b = 2 positive
param c = 4 in (0, 10)
param e = 0.7 positive
param d = 1 fixed
state x = m
der x = 0 * (a + b + c + e + d)
observe obs = x
"""


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "priors.hode"
    path.write_text(SPEC)
    return hodec.compile(path).model_class()().double()


Y = np.array([1.0, 2.0, 1.7, 1.2, 2.4])


def problem(model, **config):
    data = make_dataset(model, np.arange(5.0), {"obs": Y})
    return Problem(model, data, load_config({"method": "vanilla", "initial": "spec", **config}))


def test_each_distribution_against_its_formula(model):
    priors = {"a": ["normal", 1.0, 2.0], "m": ["laplace", 0.5, 0.25], "b": ["lognormal", 0.5, 0.3],
              "e": ["loglaplace", -0.2, 0.4], "c": ["uniform", -1.0, 10.0]}
    p = problem(model, priors=priors)
    expected = (0.5 * math.log(2 * math.pi * 4) + (0.3 - 1) ** 2 / 8  # normal(1, 2) at 0.3
                + math.log(2 * 0.25) + abs(1.5 - 0.5) / 0.25  # laplace(0.5, 0.25) at 1.5
                + math.log(2 * 0.3 * math.sqrt(2 * math.pi)) + (math.log(2) - 0.5) ** 2 / (2 * 0.09)  # lognormal at 2
                + math.log(2 * 0.4 * 0.7) + abs(math.log(0.7) + 0.2) / 0.4  # loglaplace(-0.2, 0.4) at 0.7
                + math.log(11.0))  # uniform(-1, 10)
    assert math.isclose(float(p.priors.negative_log(model.parameter_values()).detach()), expected, rel_tol=1e-12)
    with torch.no_grad():
        plain = float(problem(model).loss(model, "test"))
        assert math.isclose(float(p.loss(model, "test")), plain + expected / 5, rel_tol=1e-12)


def test_the_fit_reaches_the_map_estimate(model):
    """x = m constant; objective (1/N) sum (m - y)^2 + (m - mu)^2 / (2 s^2) / N: the MAP is
    m = (2 sum y + mu / s^2) / (2 N + 1 / s^2); a param the data do not see goes to its prior's mode."""
    mu, s = 0.0, 0.5
    config = {"method": "vanilla", "initial": "spec", "epochs": 300, "lr": 0.05, "lr_end": 0.01,
              "priors": {"m": ["normal", mu, s], "a": ["normal", -2.0, 1.0]},
              "solver": {"method": "rk4", "step_size": 1.0}}
    data = make_dataset(model, np.arange(5.0), {"obs": Y})
    result = hodec.fit(model, data, config)
    expected = (2 * Y.sum() + mu / s ** 2) / (2 * len(Y) + 1 / s ** 2)
    assert math.isclose(result.params["m"], expected, rel_tol=1e-4)
    assert abs(result.params["a"] + 2.0) < 1e-3
    assert not math.isclose(expected, Y.mean(), rel_tol=1e-2)  # the prior moved it from the MLE


def test_multiple_shooting_adds_the_prior_too(model):
    from hodec.training.loop import Trainer

    data = make_dataset(model, np.arange(5.0), {"obs": Y})
    config = {"method": "multiple_shooting", "segments": 2, "initial": "spec"}
    plain = Trainer(model, data, load_config(config)).method.loss(0.0)[0]
    prior = Trainer(model, data, load_config({**config, "priors": {"a": ["normal", 1.0, 2.0]}})).method.loss(0.0)[0]
    expected = 0.5 * math.log(2 * math.pi * 4) + (0.3 - 1) ** 2 / 8
    assert math.isclose(float(prior.detach()) - float(plain.detach()), expected / 5, rel_tol=1e-10)
