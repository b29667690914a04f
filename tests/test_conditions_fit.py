"""Experimental conditions in `hodec fit`: two experiments with different param values in one fit, per-condition
params recovered on synthetic data, condition-set initial states, pre-equilibration against the analytic steady
state (value and gradient), and per-trajectory values of the data's param columns through the same table."""
import math

import numpy as np
import pytest
import torch

import hodec
from hodec.training.config import load_config
from hodec.training.data import make_dataset
from hodec.training.problem import Problem

# x' = s - k x: steady state s / k; from x0, x(t) = s/k + (x0 - s/k) exp(-k t)
SPEC = """model Turnover
param k = 0.5 positive
param k_a = 0.4 positive
param k_b = 0.4 positive
param s = 1 fixed
param x0 = 2 fixed
state x = x0
der x = s - k * x
observe obs = x
"""

T = np.linspace(0, 4, 9)
FAST = {"epochs": 150, "lr": 0.1, "lr_end": 0.01, "solver": {"method": "rk4", "step_size": 0.1}}  # rk4: ~1e-8 here


def turnover(x0, s, k, t=T):
    return s / k + (x0 - s / k) * np.exp(-k * t)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "turnover.hode"
    path.write_text(SPEC)
    return hodec.compile(path).model_class()().double()


def dataset(model, curves: dict):
    """One trajectory per id: id -> values at T."""
    ids = np.repeat(list(curves), len(T))
    values = np.concatenate(list(curves.values()))
    return make_dataset(model, np.tile(T, len(curves)), {"obs": values}, ids=ids)


def problem(model, data, **config):
    return Problem(model, data, load_config({"method": "vanilla", "initial": "spec", **config}))


def test_two_experiments_with_different_param_values_in_one_fit(model):
    """Experiment 1 at s = 1 from x0 = 2, experiment 2 at s = 3 from x0 = 0.5; k = 0.3 in both: fitted together."""
    data = dataset(model, {1: turnover(2, 1, 0.3), 2: turnover(0.5, 3, 0.3)})
    config = {"conditions": {1: {"s": 1}, 2: {"s": 3, "x0": 0.5}}, **FAST}
    p = problem(model, data, **config)
    with torch.no_grad():  # at the true k the loss is 0 (to the solver's accuracy); without conditions it is not
        model.set_params({"k": 0.3})
        assert float(p.loss(model, "test")) < 1e-14
        assert float(problem(model, data).loss(model, "test")) > 0.1
        model.set_params({"k": 0.5})
    result = hodec.fit(model, data, {"method": "vanilla", "initial": "spec", **config})
    assert math.isclose(result.params["k"], 0.3, rel_tol=1e-3)


def test_per_condition_params_are_recovered(model):
    """k: k_a for id 1 and k: k_b for id 2, both trainable: the data were made with 0.3 and 0.8."""
    data = dataset(model, {1: turnover(2, 1, 0.3), 2: turnover(2, 1, 0.8), 3: turnover(2, 1, 0.8)})
    config = {"method": "vanilla", "initial": "spec", "conditions": {1: {"k": "k_a"}, 2: {"k": "k_b"}, 3: {"k": "k_b"}},
              **FAST}
    result = hodec.fit(model, data, config)
    assert math.isclose(result.params["k_a"], 0.3, rel_tol=1e-3)
    assert math.isclose(result.params["k_b"], 0.8, rel_tol=1e-3)
    assert "k" not in result.params and result.model.params()["k"] == 0.5  # read by no trajectory: not estimated


def test_a_condition_sets_initial_states_over_data_pinning(model):
    data = dataset(model, {1: turnover(2, 1, 0.5), 2: turnover(2, 1, 0.5)})
    p = Problem(model, data, load_config({"method": "vanilla", "initial": "data",
                                          "conditions": {2: {"x": "k_a", "k": 0.25}}}))
    y0 = p.initial(model, p.groups[0])
    assert y0[:, 0].tolist() == [2.0, 0.4]  # id 1: its first data value; id 2: k_a's value
    ys = p.solve(model, p.groups[0], y0, p.groups[0].t, "test")
    assert np.allclose(ys[:, 1, 0].detach().numpy(), turnover(0.4, 1, 0.25), rtol=1e-6)


def test_preequilibration_starts_at_the_analytic_steady_state_with_its_gradient(model):
    """id 1 runs to steady state at s = 0.5 (x = 0.5 / k), then is simulated at s = 1; id 2 is not
    pre-equilibrated; id 3 is, but its condition sets x."""
    data = dataset(model, {i: turnover(2, 1, 0.5) for i in (1, 2, 3)})
    p = problem(model, data, preequilibrate={1: {"s": 0.5}, 3: {"s": 0.5}}, conditions={3: {"x": 7}})
    g = p.groups[0]
    y0 = p.initial(model, g)
    assert torch.allclose(y0[:, 0], torch.tensor([0.5 / 0.5, 2.0, 7.0], dtype=torch.float64), rtol=1e-12)
    y0[0, 0].backward()  # d(0.5 / k) / d log k = -0.5 / k
    positive = [row[0] for row in model.parameters_table if row[2] == "positive"]
    assert math.isclose(float(model.raw_positive.grad[positive.index("k")]), -0.5 / 0.5, rel_tol=1e-9)
    ys = p.solve(model, g, y0.detach(), g.t, "test")
    assert np.allclose(ys[:, 0, 0].detach().numpy(), turnover(1.0, 1, 0.5), rtol=1e-6)


def test_preequilibration_gradient_against_finite_differences(model):
    data = dataset(model, {1: turnover(2, 1, 0.5)})
    config = {"preequilibrate": {1: {"s": 0.5}}, "solver": {"method": "dopri5", "rtol": 1e-11, "atol": 1e-13}}

    def loss(k):
        model.set_params({"k": k})
        return p.loss(model, "test")

    p = problem(model, data, **config)
    model.zero_grad()
    loss(0.7).backward()
    positive = [row[0] for row in model.parameters_table if row[2] == "positive"]
    grad = float(model.raw_positive.grad[positive.index("k")])  # d loss / d log k
    h = 1e-5
    with torch.no_grad():
        fd = (float(loss(0.7 * math.exp(h))) - float(loss(0.7 * math.exp(-h)))) / (2 * h)
    assert math.isclose(grad, fd, rel_tol=1e-6)


def test_data_param_columns_apply_through_the_same_table(model):
    """A fixed param's data column gives each trajectory its value; a condition overrides it."""
    data = make_dataset(model, np.tile(T, 2), {"obs": np.concatenate([turnover(2, 1, 0.5), turnover(2, 4, 0.5)])},
                        ids=np.repeat([1, 2], len(T)))
    for b, s in enumerate((2.0, 4.0)):
        data.trajectories[b].params = {"s": s}
    p = problem(model, data, conditions={1: {"s": 1}})
    g = p.groups[0]
    g.params = {"s": torch.tensor([2.0, 4.0], dtype=torch.float64)}
    ys = p.solve(model, g, p.initial(model, g), g.t, "test")
    assert np.allclose(ys[:, 0, 0].detach().numpy(), turnover(2, 1, 0.5), rtol=1e-6)
    assert np.allclose(ys[:, 1, 0].detach().numpy(), turnover(2, 4, 0.5), rtol=1e-6)
    assert float(p.loss(model, "test").detach()) < 1e-10


def test_homotopy_couples_each_experiment_under_its_own_values(model):
    """The coupled solves read the group's table too: at the true per-condition params the data are the model's
    own solution, so the coupling adds only its spline's interpolation error, and the uncoupled loss is 0."""
    from hodec.training.loop import Trainer

    data = dataset(model, {1: turnover(2, 1, 0.3), 2: turnover(2, 1, 0.8)})
    model.set_params({"k_a": 0.3, "k_b": 0.8})
    config = load_config({"method": "homotopy", "initial": "spec", "conditions": {1: {"k": "k_a"}, 2: {"k": "k_b"}},
                          "solver": {"method": "dopri5", "rtol": 1e-10, "atol": 1e-12}})
    trainer = Trainer(model, data, config)
    coupled, _ = trainer.method.loss(1.0)
    assert float(coupled.detach()) < 1e-6
    assert float(trainer.problem.loss(model, "test").detach()) < 1e-14
    model.set_params({"k_a": 0.5})  # (also what the coupled solve of trajectory 1 would be without its table)
    assert float(trainer.method.loss(1.0)[0].detach()) > 1e-4


def test_a_param_no_trajectory_reads_is_not_estimated_in_the_likelihood_report(tmp_path):
    """With noise models: k, replaced by k_a / k_b in every experiment, is out of n_params and of the Hessian, so
    the per-condition params get finite standard errors (the full Hessian would be singular in k)."""
    from hodec.training.information import likelihood_report

    path = tmp_path / "noisy.hode"
    path.write_text(SPEC.replace("observe obs = x", "param sigma = 0.05 positive\nobserve obs = x ~ normal(sigma)"))
    model = hodec.compile(path).model_class()().double()
    rng = np.random.default_rng(0)
    data = dataset(model, {1: turnover(2, 1, 0.3) + 0.05 * rng.standard_normal(len(T)),
                           2: turnover(2, 1, 0.8) + 0.05 * rng.standard_normal(len(T))})
    model.set_params({"k_a": 0.3, "k_b": 0.8})
    p = problem(model, data, conditions={1: {"k": "k_a"}, 2: {"k": "k_b"}})
    report = likelihood_report(p, model)
    assert report["n_params"] == 3  # k_a, k_b, sigma
    assert set(report["standard_errors"]) == {"k_a", "k_b", "sigma"}
    assert all(0 < se < 1 for se in report["standard_errors"].values()), report
