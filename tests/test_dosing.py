"""Dosing at run time (runtime.Doses: bolus and zero-order infusions, each batch member its own regimen) and the
spec's events (`at`, `when`) in simulate: multiple-dose one- and two-compartment PK against hand-written closed-form
superposition solutions to 1e-8, a `when` event located against brentq, gradients through dose amounts, times and
rates and through event times and assignments (param expressions) against finite differences, stiff and auto
methods, bad input."""
import math

import pytest
import torch
from scipy.optimize import brentq

import hodec
from hodec.errors import HodecError
from hodec.runtime import Doses

pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor operations
NAN = float("nan")
TIGHT = dict(rtol=1e-11, atol=1e-12)
KA, KE = 1.2, 0.25  # one compartment: absorption and elimination rate constants
CL, V1, Q, V2 = 5.0, 20.0, 10.0, 50.0  # two compartments

ONE = """
model PKOne "depot -> central -> 0"
param ka = 1.2 positive
param ke = 0.25 positive
compartment depot = 0
compartment central = 0
reaction absorption: depot -> central ; ka * depot
reaction elimination: central -> 0 ; ke * central
"""

TWO = """
model PKTwo "two compartments, CL V1 Q V2"
param CL = 5 positive
param V1 = 20 positive
param Q = 10 positive
param V2 = 50 positive
compartment central = 0
compartment peripheral = 0
reaction elimination: central -> 0 ; CL / V1 * central
reaction distribution: central <-> peripheral ; Q / V1 * central - Q / V2 * peripheral
"""

EVENTS = """
model PKEvents "doses as events: every tau, and a rescue dose when the level falls below a threshold"
param ka = 1.2 positive
param ke = 0.25 positive
param dose = 100 positive
param tau = 12 positive
param low = 5 positive
param rescue = 40 positive
compartment depot = 0
compartment central = 0
reaction absorption: depot -> central ; ka * depot
reaction elimination: central -> 0 ; ke * central
at t = 0, tau, 2 * tau: depot += dose
when central < low: central += rescue
"""


def model(tmp_path, text, name="spec.hode", **params):
    path = tmp_path / name
    path.write_text(text)
    return hodec.compile(str(path)).model_class()(**params).double()


# ---------------------------------------------------------------- closed forms, by hand
def one_compartment(t, doses):
    """[depot, central] at t: the sum over doses (time, amount, state 0/1, rate or None) of each one's response."""
    depot = central = 0.0
    for time, amount, state, rate in doses:
        s = t - time
        if s < 0:
            continue
        if rate is not None and rate > 0:  # an infusion into central over amount / rate (NaN: a bolus)
            inside = min(s, amount / rate)
            central += rate / KE * (1 - math.exp(-KE * inside)) * math.exp(-KE * (s - inside))
        elif state == 0:
            depot += amount * math.exp(-KA * s)
            central += amount * KA / (KA - KE) * (math.exp(-KE * s) - math.exp(-KA * s))
        else:
            central += amount * math.exp(-KE * s)
    return [depot, central]


def two_compartment(t, doses):
    """[central, peripheral] amounts at t for boluses and infusions into central: the macro-constant solution
    (α, β the roots of λ² − (k10 + k12 + k21) λ + k10 k21), superposed over doses."""
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    total = k10 + k12 + k21
    root = math.sqrt(total ** 2 - 4 * k10 * k21)
    alpha, beta = (total + root) / 2, (total - root) / 2
    central = peripheral = 0.0
    for time, amount, rate in doses:
        s = t - time
        if s < 0:
            continue
        if rate is not None and rate > 0:  # the unit response integrated over the infusion so far
            # ∫ e^{−λ(s−u)} du over u in [0, τ] = (e^{−λ(s−τ)} − e^{−λ s}) / λ
            inside = min(s, amount / rate)
            e = {lam: (math.exp(-lam * (s - inside)) - math.exp(-lam * s)) / lam for lam in (alpha, beta)}
            scale = rate
        else:
            e = {lam: math.exp(-lam * s) for lam in (alpha, beta)}
            scale = amount
        central += scale * ((alpha - k21) * e[alpha] + (k21 - beta) * e[beta]) / (alpha - beta)
        peripheral += scale * k12 * (e[beta] - e[alpha]) / (alpha - beta)
    return [central, peripheral]


def regimen(doses, K):
    """Doses for a batch from one list of (time, amount, state, rate) per member, NaN-padded to K."""
    rows = [member + [(NAN, NAN, 0, NAN)] * (K - len(member)) for member in doses]
    columns = [torch.tensor([[row[k][j] for row in rows] for k in range(K)]) for j in range(4)]
    return Doses(columns[0].double(), columns[1].double(), columns[2].long(), columns[3].double())


# ---------------------------------------------------------------- closed forms
@pytest.mark.parametrize("method", ["tsit5", "rodas5p", "auto"])
def test_one_compartment_bolus_and_infusion_regimens_per_member(tmp_path, method):
    m = model(tmp_path, ONE)
    members = [
        [(0.0, 100.0, 0, NAN), (12.0, 100.0, 0, NAN), (24.0, 100.0, 0, NAN)],  # oral, every 12 h
        [(1.0, 50.0, 1, 25.0), (24.0, 30.0, 0, 0.0)],  # a 2 h infusion, then an oral dose (rate 0: bolus)
        [(6.5, 80.0, 1, NAN)],  # one intravenous bolus between outputs
    ]
    ts = torch.linspace(0, 48, 49, dtype=torch.float64)
    stats = {}
    ys = m.simulate(ts, torch.zeros(3, 2, dtype=torch.float64), doses=regimen(members, 3), method=method,
                    stats=stats, **TIGHT)
    expected = torch.tensor([[one_compartment(t, member) for member in members] for t in ts.tolist()],
                            dtype=torch.float64)
    assert ys.shape == (49, 3, 2)  # the infusion rate state stays hidden
    assert (ys - expected).abs().max() < 1e-8
    assert float(ys[12, 0, 0]) == pytest.approx(100 * math.exp(-KA * 12) + 100, abs=1e-8)  # at 12: after the dose


@pytest.mark.parametrize("method", ["rodas5p", "auto"])
def test_two_compartment_infusions_and_boluses(tmp_path, method):
    m = model(tmp_path, TWO)
    members = [
        [(0.0, 100.0, NAN), (12.0, 200.0, 50.0)],  # a bolus, then a 4 h infusion
        [(0.0, 120.0, 60.0), (2.0, 120.0, 10.0), (30.0, 50.0, NAN)],  # infusions back to back, a bolus
    ]
    K = 3
    doses = regimen([[(t, a, 0, r) for t, a, r in member] for member in members], K)
    ts = torch.tensor([0.0, 1.0, 2.0, 3.0, 12.0, 14.0, 16.0, 20.0, 30.0, 48.0], dtype=torch.float64)
    ys = m.simulate(ts, torch.zeros(2, 2, dtype=torch.float64), doses=doses, method=method, **TIGHT)
    expected = torch.tensor([[two_compartment(t, member) for member in members] for t in ts.tolist()],
                            dtype=torch.float64)
    assert (ys - expected).abs().max() < 1e-8


def test_doses_shared_by_every_member_and_a_state_batch(tmp_path):
    """Doses [K] (plain lists: kept in float64, not rounded through float32) apply to every member of a [2, 3]
    batch."""
    m = model(tmp_path, ONE)
    doses = Doses([0.0, 5.1], [10.0, 20.1], [0, 1])
    ys = m.simulate(torch.tensor([0.0, 10.0]), torch.zeros(2, 3, 2, dtype=torch.float64), doses=doses, **TIGHT)
    expected = one_compartment(10.0, [(0.0, 10.0, 0, None), (5.1, 20.1, 1, None)])
    assert torch.allclose(ys[-1], torch.tensor(expected, dtype=torch.float64).expand(2, 3, 2), rtol=0, atol=1e-9)


def test_each_member_its_own_output_times_and_doses(tmp_path):
    """ts [T, B] with doses [K, B]: each member's outputs at its own dose times report the state after the dose."""
    m = model(tmp_path, ONE)
    ts = torch.tensor([[0.0, 0.0], [3.0, 7.0], [9.0, 12.5]], dtype=torch.float64)
    members = [[(3.0, 10.0, 1, NAN)], [(7.0, 20.0, 0, NAN)]]
    ys = m.simulate(ts, torch.zeros(2, 2, dtype=torch.float64), doses=regimen(members, 1), **TIGHT)
    for b, member in enumerate(members):
        expected = torch.tensor([one_compartment(t, member) for t in ts[:, b].tolist()], dtype=torch.float64)
        assert (ys[:, b] - expected).abs().max() < 1e-9
    assert float(ys[1, 0, 1]) == 10.0 and float(ys[1, 1, 0]) == 20.0


# ---------------------------------------------------------------- gradients
GRADIENT = dict(rtol=1e-10, atol=1e-10)


def test_gradients_through_dose_amounts_times_and_rates(tmp_path):
    """d central(20) / d (dose times, amounts, the infusion's rate), each along a direction, against central
    differences; and by hand for the IV bolus's amount."""
    m = model(tmp_path, ONE)
    ts = torch.linspace(0, 20, 21, dtype=torch.float64)
    state = torch.tensor([[0], [1], [1]])  # an oral bolus, an infusion, an IV bolus
    values = dict(time=torch.tensor([[0.5], [3.0], [8.5]]), amount=torch.tensor([[100.0], [60.0], [40.0]]),
                  rate=torch.tensor([[NAN], [20.0], [NAN]]))
    values = {name: v.double().requires_grad_() for name, v in values.items()}

    def central(time, amount, rate):
        ys = m.simulate(ts, torch.zeros(1, 2, dtype=torch.float64), doses=Doses(time, amount, state, rate),
                        **GRADIENT)
        return ys[-1, 0, 1]

    grads = dict(zip(values, torch.autograd.grad(central(**values), list(values.values()))))
    assert float(grads["amount"][2, 0]) == pytest.approx(math.exp(-KE * 11.5), rel=1e-8)
    directions = dict(time=torch.tensor([[1.0], [-0.5], [0.7]]), amount=torch.tensor([[0.3], [1.0], [-0.8]]),
                      rate=torch.tensor([[0.0], [1.0], [0.0]]))
    for name, direction in directions.items():
        h = 1e-4 if name == "time" else 1e-3
        with torch.no_grad():
            moved = [central(**{**values, name: values[name] + sign * h * direction.double()}) for sign in (1, -1)]
        fd = float(moved[0] - moved[1]) / (2 * h)
        assert float(torch.nansum(grads[name] * direction)) == pytest.approx(fd, rel=1e-6), name


# ---------------------------------------------------------------- the spec's events
def events_closed_form(t, dose=100.0, tau=12.0):
    return one_compartment(t, [(k * tau, dose, 0, None) for k in range(3)])


@pytest.mark.parametrize("method", ["tsit5", "rodas5p", "auto"])
def test_spec_time_events_against_the_closed_form(tmp_path, method):
    m = model(tmp_path, EVENTS, low=0.001)  # the rescue never fires
    ts = torch.linspace(0, 48, 97, dtype=torch.float64)
    ys = m.simulate(ts, method=method, **TIGHT)
    expected = torch.tensor([events_closed_form(t) for t in ts.tolist()], dtype=torch.float64)
    assert (ys - expected).abs().max() < 1e-8


def test_per_sample_params_give_each_member_its_own_event_times(tmp_path):
    m = model(tmp_path, EVENTS, low=0.001, tau=torch.tensor([10.0, 12.0, 7.5]))
    # outputs off the dose times: tau is stored as log(tau), and exp(log(10)) · 2 need not be 20 to the last bit
    ts = torch.cat([torch.zeros(1), torch.linspace(0.5, 29.5, 30)]).double()
    ys = m.simulate(ts, **TIGHT)
    for b, tau in enumerate([10.0, 12.0, 7.5]):
        expected = torch.tensor([events_closed_form(t, tau=tau) for t in ts.tolist()], dtype=torch.float64)
        assert (ys[:, b] - expected).abs().max() < 1e-8


def test_gradients_through_event_times_and_assignments(tmp_path):
    """d central(30) / d tau (the event times tau and 2 tau, param expressions) and / d dose (the assignment
    depot += dose) against central differences of the params."""
    m = model(tmp_path, EVENTS, low=0.001)
    ts = torch.tensor([0.0, 12.0, 30.0], dtype=torch.float64)
    positive = [row[0] for row in m.parameters_table if row[2] == "positive"]
    grads, = torch.autograd.grad(m.simulate(ts, **GRADIENT)[-1, 1], m.raw_positive)
    for name, value in (("tau", 12.0), ("dose", 100.0)):
        h = 1e-5 * value
        with torch.no_grad():
            moved = []
            for x in (value + h, value - h):
                m.set_params({name: x})
                moved.append(float(m.simulate(ts, **GRADIENT)[-1, 1]))
        m.set_params({name: value})
        fd = (moved[0] - moved[1]) / (2 * h)
        assert float(grads[positive.index(name)]) / value == pytest.approx(fd, rel=1e-6), name  # raw = log(value)


@pytest.mark.parametrize("method", ["tsit5", "rodas5p"])
def test_a_when_event_is_located_against_brentq(tmp_path, method):
    """A single dose of 100 at 0: central falls below low = 5 after its peak; brentq on the closed form finds when,
    and the rescue dose (central += 40) lands there: central(t) after it adds 40·exp(−ke (t − t*)) (until it falls
    below 5 again, after 20)."""
    m = model(tmp_path, EVENTS, tau=1000.0)
    ts = torch.tensor([0.0, 10.0, 20.0], dtype=torch.float64)
    ys = m.simulate(ts, method=method, rtol=1e-12, atol=1e-13)
    root = brentq(lambda t: events_closed_form(t, tau=1000.0)[1] - 5.0, 5.0, 20.0, xtol=1e-14, rtol=1e-15)
    after = events_closed_form(20.0, tau=1000.0)[1] + 40 * math.exp(-KE * (20.0 - root))
    # the located time, read back through the solution: an error δ in t* shows as 40·ke·δ in central(20)
    located = 20.0 + math.log((float(ys[-1, 1]) - events_closed_form(20.0, tau=1000.0)[1]) / 40) / KE
    assert abs(located - root) < 1e-10, located - root
    assert float(ys[-1, 1]) == pytest.approx(after, abs=1e-9)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("doses, message", [
    (Doses(torch.tensor([0.0, 1.0]), torch.tensor([10.0, 10.0]), torch.tensor([1, 1]), torch.tensor([5.0, 5.0])),
     r"dose 0 \(t = 0\) and dose 1: two infusions into central overlap in time \(\[0, 2\] and \[1, 3\]\)"),
    (Doses(torch.tensor([0.0]), torch.tensor([10.0]), torch.tensor([2])),
     r"dose 0 \(t = 0\): state index 2 is not a state of the model \(0 to 1: depot, central\)"),
    (Doses(torch.tensor([[0.0, 1.0], [3.0, NAN]]), torch.tensor([[1.0, 1.0], [NAN, 1.0]]), torch.tensor([0])),
     r"dose 1 of batch member \[0\] \(t = 3\): amount is NaN"),
    (Doses(torch.tensor([0.0]), torch.tensor([10.0]), torch.tensor([0]), torch.tensor([-1.0])),
     "rate is negative"),
])
def test_bad_doses_are_named(tmp_path, doses, message):
    m = model(tmp_path, ONE)
    with pytest.raises(HodecError, match=message):
        m.simulate(torch.tensor([0.0, 5.0]), torch.zeros(2, 2), doses=doses)


def test_doses_and_events_need_hodecs_own_solvers_without_adjoint(tmp_path):
    one, events = model(tmp_path, ONE), model(tmp_path, EVENTS, "events.hode")
    doses = Doses(torch.tensor([0.0]), torch.tensor([10.0]), torch.tensor([0]))
    ts = torch.tensor([0.0, 1.0])
    with pytest.raises(HodecError, match="doses need one of hodec's own solver methods"):
        one.simulate(ts, doses=doses, method="euler", step_size=0.1)
    with pytest.raises(HodecError, match=r"events \(at t = 0, tau, 2 \* tau: depot \+= dose\) need one of"):
        events.simulate(ts, method="dopri8")
    with pytest.raises(HodecError, match="cannot be solved with adjoint=True"):
        one.simulate(ts, doses=doses, adjoint=True)
    with pytest.raises(HodecError, match="do not broadcast"):
        Doses(torch.zeros(2), torch.zeros(3), torch.zeros(2, dtype=torch.long))


PROMOTED = """
model Switch "elimination slows once the level halves: a param assigned by an event"
param ke = 0.25 positive
param k2 = 0.1 positive
compartment central = 100
reaction elimination: central -> 0 ; ke * central
when central < 50: ke = k2
"""


@pytest.mark.parametrize("method", ["tsit5", "rodas5p"])
def test_a_param_assigned_by_a_when_event_and_its_gradients(tmp_path, method):
    """central(20) = 50 exp(−k2 (20 − t*)), t* = ln 2 / ke: d/dk2 = −(20 − t*) central, d/dke = −k2 ln 2 / ke²
    central (through the event's time, by the implicit function theorem on the generated condition)."""
    m = model(tmp_path, PROMOTED)
    ys = m.simulate(torch.tensor([0.0, 5.0, 20.0]), method=method, rtol=1e-11, atol=1e-12)
    t_star = math.log(2) / 0.25
    central = 50 * math.exp(-0.1 * (20 - t_star))
    assert m.state_names == ("central", "ke") and float(ys[-1, 1]) == pytest.approx(0.1, rel=1e-12)
    assert float(ys[-1, 0]) == pytest.approx(central, abs=1e-8)
    grads, = torch.autograd.grad(ys[-1, 0], m.raw_positive)  # raw = log(value): d/d raw = value · d/d value
    expected = [0.25 * -0.1 * math.log(2) / 0.25 ** 2 * central, 0.1 * -(20 - t_star) * central]
    assert grads.tolist() == pytest.approx(expected, rel=1e-7)
