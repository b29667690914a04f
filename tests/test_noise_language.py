"""Noise models in the language: `observe x = e ~ normal(sigma)` parsed, unparsed, checked (located errors, exit 1
from the CLI) and generated (noise_table, noise_scale against values computed by hand)."""
from __future__ import annotations

import math

import pytest
import torch

import hodec
from hodec import HodecError
from hodec.cli import main
from hodec.model.model import NOISE_DISTRIBUTIONS
from hodec.runtime.likelihood import LOG_DENSITIES
from hodec.syntax.parser import parse
from hodec.syntax.unparse import unparse

HEAD = """model M
param a = 0.5 positive
param b = 0.2 in (0, 1)
param f = 0.1
param z = -1 fixed
param w = 3 fixed
param s = 0.3 in (-1, 1)
input u
let la = 2 * a
state x = 4
der x = -a * x + u
"""


def _error(body: str) -> str:
    with pytest.raises(HodecError) as info:
        hodec.compile_source(HEAD + body, "spec.hode")
    return info.value.render()


def test_noise_models_round_trip_through_unparse():
    source = HEAD + ("observe c = x / 2 ~ normal(a + b * c)\nobserve d = x ~ lognormal(0.1)\n"
                     "observe e = x ~ laplace(la ^ 2)\nobserve g = x ~ loglaplace(w * e)\nobserve h = x\n")
    text = unparse(parse(source))
    assert "observe c = x / 2 ~ normal(a + b * c)\n" in text
    assert "observe g = x ~ loglaplace(w * e)\n" in text
    assert "observe h = x\n" in text
    again = parse(text).statements
    noises = [(s.noise.distribution.id, len(s.noise.args)) for s in again if getattr(s, "noise", None)]
    assert noises == [("normal", 1), ("lognormal", 1), ("laplace", 1), ("loglaplace", 1)]
    assert unparse(parse(text)) == text


@pytest.mark.parametrize("body, expected", [
    ("observe c = x ~ normla(a)", "spec.hode:12:17: error: unknown noise distribution 'normla' (one of normal, "
                                  "laplace, lognormal, loglaplace)"),
    ("observe c = x ~ normal(a, b)", "spec.hode:12:15: error: 'normal' takes 1 argument (the noise scale sigma), "
                                     "got 2"),
    ("observe c = x ~ laplace()", "spec.hode:12:15: error: 'laplace' takes 1 argument (the noise scale sigma), got 0"),
    ("observe c = x ~ normal(f)", "spec.hode:12:24: error: the noise scale reads param 'f', which is free (it can "
                                  "train to any value): a noise scale must stay > 0"),
    ("observe c = x ~ normal(a - z)", "spec.hode:12:28: error: the noise scale reads param 'z', which is fixed at -1: "
                                      "a noise scale must stay > 0"),
    ("observe c = x ~ normal(s)", "spec.hode:12:24: error: the noise scale reads param 's', which has bounds (-1, 1) "
                                  "reaching below 0: a noise scale must stay > 0"),
    ("let lf = 2 * f\nobserve c = x ~ normal(lf)", "spec.hode:13:24: error: the noise scale reads param 'f' (through "
                                                   "let 'lf'), which is free (it can train to any value): a noise "
                                                   "scale must stay > 0"),
    ("observe c = x ~ normal(x)", "spec.hode:12:24: error: a noise scale reads numbers, params, lets of params and "
                                  "'c' (its model value); 'x' is a state"),
    ("observe c = x ~ normal(u)", "spec.hode:12:24: error: a noise scale reads numbers, params, lets of params and "
                                  "'c' (its model value); 'u' is an input"),
    ("observe c = x ~ normal(t)", "spec.hode:12:24: error: a noise scale reads numbers, params, lets of params and "
                                  "'c' (its model value); 't' is the time"),
    ("observe d = x\nobserve c = x ~ normal(d)", "spec.hode:13:24: error: a noise scale reads numbers, params, lets "
                                                 "of params and 'c' (its model value); 'd' is an observable"),
    ("let lx = x * a\nobserve c = x ~ normal(lx)", "spec.hode:13:24: error: let 'lx' depends on states, inputs, t or "
                                                   "neural slots; a noise scale reads numbers, params, lets of params "
                                                   "and 'c' (its model value)"),
    ("neural nn(q)\nobserve c = x ~ normal(nn(a))", "spec.hode:13:24: error: a noise scale cannot call 'nn' (only "
                                                    "built-in functions)"),
    ("observe c = x ~ normal(sigmaa)", "spec.hode:12:24: error: undefined name 'sigmaa'"),
    ("observe c = x ~ normal(0)", "spec.hode:12:24: error: the noise scale of 'c' is 0; it must be > 0"),
    ("observe c = x ~ normal(w - 4)", "spec.hode:12:24: error: the noise scale of 'c' is -1 with the params at their "
                                      "values (w = 3); it must be > 0"),
    ("observe c = x ~ normal", "spec.hode:12:23: error: unexpected end of line; expected '('"),
    ("observe c = x ~ normal(a) + 1", "spec.hode:12:27: error: unexpected '+'; expected end of line"),
])
def test_bad_noise_models_are_located_errors(body, expected):
    assert _error(body + "\n").splitlines()[0] == expected


@pytest.mark.parametrize("body, hint", [
    ("observe c = x ~ lognorma(a)", "  did you mean 'lognormal'?"),
    ("observe c = x ~ normal(aa)", "  did you mean 'a'?"),
    ("observe c = x ~ normal(f)", "  declare it 'param f = ... positive' or bounded in (0, ...)"),
])
def test_noise_model_hints(body, hint):
    assert _error(body + "\n").splitlines()[-1] == hint


def test_every_error_of_a_file_is_reported_and_the_cli_exits_1(tmp_path, capsys):
    path = tmp_path / "bad.hode"
    path.write_text(HEAD + "observe c = x ~ normla(a)\nobserve d = x ~ normal(f)\n")
    assert main(["check", str(path)]) == 1
    _, err = capsys.readouterr()
    assert f"{path}:12:17: error: unknown noise distribution 'normla'" in err
    assert f"{path}:13:24: error: the noise scale reads param 'f'" in err
    assert "Traceback" not in err


def test_the_language_and_the_runtime_know_the_same_distributions():
    assert set(NOISE_DISTRIBUTIONS) == set(LOG_DENSITIES)


def test_noise_names_are_not_reserved():
    model = hodec.compile_source(HEAD + "let normal = 2 * a\nobserve c = x ~ normal(normal)\n", "spec.hode")
    assert "noise_table" in model


SCALES = HEAD + """observe c = x / 2 ~ normal(a + b * c)
observe plain = x
observe d = x ~ lognormal(0.25)
observe e = x ~ laplace(la ^ 2)
observe g = 3 * x ~ loglaplace(w * g + if(a > 1, 1, 2))
"""


def _model(source: str):
    return hodec.compile(SCALES, source=source).model_class()().double()


def test_noise_table_lists_the_observables_with_a_noise_model():
    model = _model(SCALES)
    assert model.noise_table == (("c", "normal"), ("d", "lognormal"), ("e", "laplace"), ("g", "loglaplace"))


def test_generated_noise_scale_against_hand_values():
    model = _model(SCALES)
    model.set_params({"a": 0.7, "b": 0.4})
    y = torch.tensor([[4.0], [1.5]], dtype=torch.float64)
    obs = model.observe(y, torch.zeros(()))
    sigma = model.noise_scale(torch.zeros(()), y, obs)
    a, b, w = 0.7, 0.4, 3.0
    for row, x in enumerate((4.0, 1.5)):
        c, g = x / 2, 3 * x
        expected = [a + b * c, 0.25, (2 * a) ** 2, w * g + 2]
        assert sigma[row].tolist() == pytest.approx(expected, rel=1e-14)


def test_noise_scale_broadcasts_over_a_trajectory_and_differentiates():
    model = _model(SCALES)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    ys = model.simulate(ts, inputs={"u": (ts, torch.zeros(5, dtype=torch.float64))})
    sigma = model.noise_scale(ts, ys, model.observe(ys, ts))
    assert sigma.shape == (5, 4)
    sigma[:, 0].sum().backward()
    a = model.params()["a"]
    grad = model.raw_positive.grad  # d/d log a of sum(a + b * x(t)/2), x = 4 exp(-a t)
    x = 4 * torch.exp(-a * ts)
    expected = float((a * (1 + model.params()["b"] * (-ts * x) / 2)).sum())
    assert float(grad[0]) == pytest.approx(expected, rel=1e-5)


def test_a_model_without_noise_models_has_empty_tables():
    model = _model(HEAD + "observe c = x\n")
    y = torch.ones(3, 1, dtype=torch.float64)
    assert model.noise_table == ()
    assert model.noise_scale(0.0, y, model.observe(y, torch.zeros(()))).shape == (3, 0)
    assert not math.isnan(float(model.observe(y, torch.zeros(())).sum()))


def test_transform_mnode_keeps_the_params_and_lets_noise_scales_read():
    from hodec.graph.transform import mnode

    source = ("model T\nparam k = 0.3 positive\nparam a = 0.1 positive\nlet la = 2 * a\nstate x = 1\n"
              "der x = -k * x\nobserve c = x ~ normal(la + a)\n")
    text = mnode(hodec.compile("t.hode", source=source))
    assert "param a = 0.1 positive\n" in text and "let la = 2 * a\n" in text
    assert "observe c = x ~ normal(la + a)\n" in text
    assert "param k" not in text  # what only the replaced equations read goes


def test_a_noise_scale_reads_the_current_value_of_a_param_an_event_assigns():
    source = ("model Ev\nparam k = 0.3 positive\nparam a = 0.1 positive\nstate x = 1\nder x = -k * x\n"
              "at t = 1: a = 0.5\nobserve c = x ~ normal(a + 0.1 * c)\n")
    model = hodec.compile("ev.hode", source=source).model_class()().double()
    ts = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    ys = model.simulate(ts)
    sigma = model.noise_scale(ts, ys, model.observe(ys, ts))[:, 0]
    x = torch.exp(-0.3 * ts)
    expected = torch.where(ts < 1, 0.1, 0.5) + 0.1 * x  # the output at the event's time shows the state after it
    assert sigma.tolist() == pytest.approx(expected.tolist(), rel=1e-6)
