"""Multiple shooting with doses and spec events: a segment after the first starts after the events at its start
time (no dose applied twice; infusions running then keep running), checked against one whole solve and against
the closed-form superposition."""
import math

import torch

from hodec.compiler import load_text
from hodec.runtime import Doses
from hodec.training.config import load_config
from hodec.training.data import read_data
from hodec.training.methods.shooting import MultipleShooting
from hodec.training.problem import Problem
from test_data_dosing_fit import CL, V, SPEC, files  # noqa: F401  (files: the fixture)

EVENTS = """model E
param k = 0.1 positive
state x = 1
der x = -k * x
at t = 2, 5: x += 3
"""


def test_a_piece_started_after_the_events_at_its_start_continues_the_whole_solve():
    m = load_text(SPEC, "pk1.hode")({"CL": CL, "V": V}).double()
    # member 0: boluses at 0 and 6; member 1: an infusion over [2, 10) and a bolus at 6 (6 is the pieces' joint)
    doses = Doses(time=torch.tensor([[0.0, 2.0], [6.0, 6.0]], dtype=torch.float64),
                  amount=torch.tensor([[100.0, 80.0], [50.0, 40.0]], dtype=torch.float64),
                  state=torch.zeros(2, 2, dtype=torch.long),
                  rate=torch.tensor([[0.0, 10.0], [0.0, 0.0]], dtype=torch.float64))
    y0 = torch.zeros(2, 1, dtype=torch.float64)
    ts = torch.linspace(0, 12, 13, dtype=torch.float64)
    whole = m.simulate(ts, y0=y0, doses=doses, rtol=1e-10, atol=1e-12)
    first = m.simulate(ts[:7], y0=y0, doses=doses, rtol=1e-10, atol=1e-12)
    second = m.simulate(ts[6:], y0=first[-1], doses=doses, after_events=True, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.cat([first[:-1], second]), whole, rtol=1e-8, atol=1e-9)
    # without after_events the joint's bolus would apply twice and the running infusion would be lost
    again = m.simulate(ts[6:], y0=first[-1], doses=doses, rtol=1e-10, atol=1e-12)
    assert (again[-1] - whole[-1]).abs().max() > 1.0


def test_spec_events_at_a_joint_apply_once():
    m = load_text(EVENTS, "e.hode")().double()
    ts = torch.linspace(0, 8, 9, dtype=torch.float64)
    whole = m.simulate(ts, rtol=1e-10, atol=1e-12)
    first = m.simulate(ts[:6], rtol=1e-10, atol=1e-12)  # ends at t = 5, after the event there
    second = m.simulate(ts[5:], y0=first[-1], after_events=True, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.cat([first[:-1], second]), whole, rtol=1e-8, atol=1e-10)
    k, e = 0.1, math.exp
    x8 = ((1 * e(-k * 2.0) + 3) * e(-k * 3.0) + 3) * e(-k * 3.0)
    assert abs(float(whole[-1, 0]) - x8) < 1e-8 * x8


def test_multiple_shooting_with_dose_rows_has_zero_loss_at_the_true_model(files):  # noqa: F811
    spec, data_path = files
    model_class = load_text(SPEC, "pk1.hode")
    config = load_config({"dv": "conc", "initial": "spec", "method": "multiple_shooting", "segments": 4,
                          "solver": {"rtol": 1e-10, "atol": 1e-12}})
    problem = Problem(model_class({"CL": CL, "V": V}), read_data(data_path, model_class, config), config)
    method = MultipleShooting(problem, config)
    loss, _ = method.loss(0.0)
    assert float(loss.detach()) < 1e-12  # the data are the closed form; segments joined exactly at their dose times
    problem.model.set_params({"CL": 2 * CL})
    assert float(method.loss(0.0)[0]) > 1e-3


COMPARTMENT = """model C
param V = 4 positive
param k = 0.5 positive
state x = 0 in V
reaction out: x -> ; k * x * V
"""


def test_a_dose_into_a_state_in_a_compartment_adds_the_amount_divided_by_its_size():
    """x is a concentration: d[x]/dt = -k [x]; a bolus of 8 at t = 0 and an infusion of 8 at rate 4 over [1, 3)
    into V = 4 (per member: V = 4 and 2), against the closed form in concentrations."""
    m = load_text(COMPARTMENT, "c.hode")(V=torch.tensor([4.0, 2.0], dtype=torch.float64)).double()
    doses = Doses(time=torch.tensor([0.0, 1.0], dtype=torch.float64), amount=torch.tensor([8.0, 8.0]),
                  state=torch.tensor([0, 0]), rate=torch.tensor([0.0, 4.0]))
    ts = torch.tensor([0.0, 0.5, 2.0, 5.0], dtype=torch.float64)
    ys = m.simulate(ts, y0=torch.zeros(2, 1, dtype=torch.float64), doses=doses, rtol=1e-10, atol=1e-12)
    k = 0.5
    for b, V in enumerate((4.0, 2.0)):
        def conc(t):
            bolus = 8 / V * math.exp(-k * t)
            infused = 4 / V / k * (1 - math.exp(-k * (min(t, 3.0) - 1))) * math.exp(-k * max(t - 3.0, 0)) \
                if t > 1 else 0.0
            return bolus + infused
        for i, t in enumerate(ts.tolist()):
            assert abs(float(ys[i, b, 0]) - conc(t)) < 1e-8, (b, t)
