"""specs/uva_padova.hode (UVA/Padova T1D model, simglucose's 13-state version) against an independent numpy
implementation of the same equations, its basal equilibrium, and a meal response.

The parameter values below are literals copied from simglucose 0.2.11 (MIT), simglucose/params/
vpatient_params.csv, rows 'adult#001' (also the spec's defaults) and 'child#001', so that the tests need neither
the package nor the internet. The comparison with simglucose itself runs only where it can be imported (it
needs gym and pandas; normally it is skipped).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

import hodec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "uva_padova.hode"
STATES = ("qsto1", "qsto2", "qgut", "Gp", "Gt", "Ip", "X", "I1", "Id", "Il", "Isc1", "Isc2", "Gs")

# simglucose 0.2.11, simglucose/params/vpatient_params.csv, row 'adult#001' (the equation parameters, the x0_
# columns as Gpb, Gtb, Ipb, Ilb, isc1ss, isc2ss, and u2ss)
ADULT001 = dict(
    BW=102.32, Vg=1.9152, Vi=0.054906, kmax=0.046122, kmin=0.0037927, kabs=0.08906, b=0.70391, d=0.21057, f=0.9,
    kp1=4.73140582528, kp2=0.00469, kp3=0.01208, Fsnc=1.0, k1=0.058138, k2=0.087114, Vm0=3.2667306607,
    Vmx=0.031319, Km0=253.52, ke1=0.0005, ke2=339.0, ksc=0.0766, m1=0.15446, m2=0.225027424083,
    m4=0.090010969633, m30=0.23169, ka1=0.0019, ka2=0.0078, kd=0.0152, ki=0.0046374, p2u=0.027802, Ib=100.25,
    Gpb=265.370112, Gtb=162.457097269, Ipb=5.5043265, Ilb=3.20762505142, isc1ss=72.4341762342,
    isc2ss=141.153779328)
ADULT001_U2SS = 1.2386244136  # pmol/kg/min
# same file, row 'child#001'
CHILD001 = dict(
    BW=34.55648182, Vg=1.919425692, Vi=0.067013558, kmax=0.068714386, kmin=0.007997018, kabs=0.127494918,
    b=0.754915658, d=0.089529251, f=0.9, kp1=4.1652828427, kp2=0.002522654, kp3=0.008379266, Fsnc=1.0,
    k1=0.070852519, k2=0.128243663, Vm0=3.65981019497, Vmx=0.152308243, Km0=185.8820726, ke1=0.0005, ke2=339.0,
    ksc=0.0684, m1=0.314270832, m2=0.154436596254, m4=0.0617746385016, m30=0.471406248, ka1=0.0041, ka2=0.0243,
    kd=0.0131, ki=0.010902381, p2u=0.042802541, Ib=110.3648078, Gpb=271.031853002, Gtb=137.60135923,
    Ipb=7.39593844866, Ilb=1.45378246253, isc1ss=66.4071837276, isc2ss=35.7997574828)
CHILD001_U2SS = 1.14220356012
PATIENTS = {"adult#001": (ADULT001, ADULT001_U2SS), "child#001": (CHILD001, CHILD001_U2SS)}


# ---------------------------------------------------------------- independent reference (simglucose's equations)
def ref_rhs(x, meal, insulin, Dbar, p):
    """dx/dt for one state vector x (13,), meal g/min, insulin U/min, Dbar mg; written from Dalla Man (2007) and
    simglucose's T1DPatient.model, including its (x >= 0) derivative guards."""
    x = np.asarray(x, float)
    dx = np.zeros(13)
    qsto = x[0] + x[1]
    dx[0] = -p["kmax"] * x[0] + 1000.0 * meal
    if Dbar > 0:
        a = 5.0 / (2.0 * Dbar * (1.0 - p["b"]))
        c = 5.0 / (2.0 * Dbar * p["d"])
        kempt = p["kmin"] + (p["kmax"] - p["kmin"]) / 2.0 * (
            np.tanh(a * (qsto - p["b"] * Dbar)) - np.tanh(c * (qsto - p["d"] * Dbar)) + 2.0)
    else:
        kempt = p["kmax"]
    dx[1] = p["kmax"] * x[0] - kempt * x[1]
    dx[2] = kempt * x[1] - p["kabs"] * x[2]
    Ra = p["f"] * p["kabs"] * x[2] / p["BW"]
    EGP = p["kp1"] - p["kp2"] * x[3] - p["kp3"] * x[8]
    E = p["ke1"] * (x[3] - p["ke2"]) if x[3] > p["ke2"] else 0.0
    dx[3] = (max(EGP, 0.0) + Ra - p["Fsnc"] - E - p["k1"] * x[3] + p["k2"] * x[4]) * (x[3] >= 0)
    Uid = (p["Vm0"] + p["Vmx"] * x[6]) * x[4] / (p["Km0"] + x[4])
    dx[4] = (-Uid + p["k1"] * x[3] - p["k2"] * x[4]) * (x[4] >= 0)
    dx[5] = (-(p["m2"] + p["m4"]) * x[5] + p["m1"] * x[9] + p["ka1"] * x[10] + p["ka2"] * x[11]) * (x[5] >= 0)
    It = x[5] / p["Vi"]
    dx[6] = -p["p2u"] * x[6] + p["p2u"] * (It - p["Ib"])
    dx[7] = -p["ki"] * (x[7] - It)
    dx[8] = -p["ki"] * (x[8] - x[7])
    dx[9] = (-(p["m1"] + p["m30"]) * x[9] + p["m2"] * x[5]) * (x[9] >= 0)
    dx[10] = (insulin * 6000.0 / p["BW"] - (p["ka1"] + p["kd"]) * x[10]) * (x[10] >= 0)
    dx[11] = (p["kd"] * x[10] - p["ka2"] * x[11]) * (x[11] >= 0)
    dx[12] = (-p["ksc"] * x[12] + p["ksc"] * x[3]) * (x[12] >= 0)
    return dx


def basal_equilibrium(p, u2ss):
    """The fasting equilibrium under basal insulin u2ss (pmol/kg/min), derived from the equations: the insulin
    subsystem is linear; X = I - Ib, I1 = Id = I; then Gt(Gp) from dGt = 0 and Gp from dGp = 0 (both monotone)."""
    isc1 = u2ss / (p["ka1"] + p["kd"])
    isc2 = p["kd"] * isc1 / p["ka2"]
    A = np.array([[-(p["m2"] + p["m4"]), p["m1"]], [p["m2"], -(p["m1"] + p["m30"])]])
    Ip, Il = np.linalg.solve(A, [-(p["ka1"] * isc1 + p["ka2"] * isc2), 0.0])
    I = Ip / p["Vi"]
    X = I - p["Ib"]

    def gt_of(gp):
        return brentq(lambda gt: -(p["Vm0"] + p["Vmx"] * X) * gt / (p["Km0"] + gt) + p["k1"] * gp - p["k2"] * gt,
                      0.0, 1e5, xtol=1e-13, rtol=1e-15)

    def dgp(gp):
        egp = p["kp1"] - p["kp2"] * gp - p["kp3"] * I
        e = p["ke1"] * (gp - p["ke2"]) if gp > p["ke2"] else 0.0
        return max(egp, 0.0) - p["Fsnc"] - e - p["k1"] * gp + p["k2"] * gt_of(gp)

    gp = brentq(dgp, 1.0, 2000.0, xtol=1e-13, rtol=1e-15)
    return np.array([0, 0, 0, gp, gt_of(gp), Ip, X, I, I, Il, isc1, isc2, gp], float)


# ---------------------------------------------------------------- helpers
pytestmark = pytest.mark.usefixtures("single_thread")  # many tiny tensor ops (conftest.py)


@pytest.fixture(scope="module")
def Model():
    return hodec.load(SPEC)


def make(Model, p):
    return Model(**p).double()


def bind(m, meal, insulin, Dbar):
    """Bind the three inputs as per-row tensors [B] (constant in time)."""
    m.set_inputs({"meal": lambda t: meal, "insulin": lambda t: insulin, "Dbar": lambda t: Dbar})


def random_states(rng, n, p):
    base = np.array([3e4, 2e4, 1e4, p["Gpb"], p["Gtb"], p["Ipb"], 0.0, p["Ib"], p["Ib"], p["Ilb"],
                     p["isc1ss"], p["isc2ss"], p["Gpb"]])
    Y = base * rng.uniform(0.05, 3.0, size=(n, 13))
    Y[:, 6] = rng.uniform(-50, 300, n)  # X, pmol/L, either sign
    Y[: n // 4, 3] = rng.uniform(p["ke2"], 3 * p["ke2"], n // 4)  # renal excretion active
    Y[n // 4: n // 2, 8] = rng.uniform(500, 2000, n // 2 - n // 4)  # EGP clipped at 0
    return Y


# ---------------------------------------------------------------- tests
def test_compiles_with_the_simglucose_layout(Model):
    m = Model().double()
    assert m.state_names == STATES
    assert set(m.input_names) == {"meal", "insulin", "Dbar"}
    assert "CGM" in m.observable_names
    got = m.params()
    for k, v in ADULT001.items():  # the spec's defaults are adult#001
        assert float(got[k]) == pytest.approx(v, rel=1e-12), k
    y0 = m.initial_state().detach().numpy()
    assert np.allclose(y0, [0, 0, 0, ADULT001["Gpb"], ADULT001["Gtb"], ADULT001["Ipb"], 0, ADULT001["Ib"],
                            ADULT001["Ib"], ADULT001["Ilb"], ADULT001["isc1ss"], ADULT001["isc2ss"],
                            ADULT001["Gpb"]], rtol=1e-14)


@pytest.mark.parametrize("name", sorted(PATIENTS))
def test_forward_equals_reference(Model, name):
    p, _ = PATIENTS[name]
    m = make(Model, p)
    rng = np.random.default_rng(7)
    n = 400
    Y = random_states(rng, n, p)
    meal = rng.choice([0.0, 5.0], n) * rng.uniform(0.2, 1.0, n)
    insulin = rng.uniform(0.0, 0.5, n)
    Dbar = rng.choice([0.0, 1.0], n, p=[0.2, 0.8]) * rng.uniform(5e3, 1.5e5, n)
    # Dbar on either side of qsto's thresholds b*Dbar and d*Dbar, and exactly qsto (all tanh regimes)
    Dbar[:20] = (Y[:20, 0] + Y[:20, 1]) / rng.uniform(0.05, 1.5, 20)
    bind(m, torch.tensor(meal), torch.tensor(insulin), torch.tensor(Dbar))
    with torch.no_grad():
        got = m(torch.tensor(0.0, dtype=torch.float64), torch.tensor(Y)).numpy()
    ref = np.stack([ref_rhs(Y[i], meal[i], insulin[i], Dbar[i], p) for i in range(n)])
    # 1e-12 relative to the size of the terms that are summed (a sum may cancel to near 0)
    scale = np.abs(Y) * 1.0 + 1000.0 * meal[:, None] + 1.0
    assert np.all(np.abs(got - ref) <= 1e-12 * np.maximum(np.abs(ref), 1e-3 * scale)), \
        np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-3 * scale))
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("name", sorted(PATIENTS))
def test_basal_equilibrium(Model, name):
    """The CSV's x0_ state is the equilibrium the equations predict under u2ss; it stays there for 24 h."""
    p, u2ss = PATIENTS[name]
    eq = basal_equilibrium(p, u2ss)
    csv_x0 = np.array([0, 0, 0, p["Gpb"], p["Gtb"], p["Ipb"], 0, p["Ib"], p["Ib"], p["Ilb"], p["isc1ss"],
                       p["isc2ss"], p["Gpb"]])
    assert np.allclose(eq[[3, 4, 5, 9, 10, 11, 12]], csv_x0[[3, 4, 5, 9, 10, 11, 12]], rtol=1e-8)  # 2e-11 found
    assert abs(eq[6]) < 1e-8 * p["Ib"]  # X = I - Ib = 0: Ib is the basal plasma insulin
    m = make(Model, p)
    basal = u2ss * p["BW"] / 6000.0  # U/min, simglucose's basal rate
    zero = torch.zeros((), dtype=torch.float64)
    bind(m, zero, torch.tensor(basal, dtype=torch.float64), zero)
    with torch.no_grad():
        assert np.max(np.abs(m(zero, torch.tensor(eq)).numpy())) < 1e-6
        ts = torch.linspace(0, 1440, 25, dtype=torch.float64)
        ys = m.simulate(ts)
        cgm = m.observe(ys, ts)[:, m.observable_names.index("CGM")].numpy()
    Gb = p["Gpb"] / p["Vg"]
    assert np.max(np.abs(cgm - Gb)) < 0.5, (Gb, cgm)


def rk4_minutes(m, y0, minutes, inputs_at, sub=2):
    """Fixed-step RK4 with inputs held constant over each minute (simglucose's 1-min action steps)."""
    y = torch.as_tensor(y0, dtype=torch.float64)
    out = [y]
    h = 1.0 / sub
    for k in range(minutes):
        bind(m, *[torch.tensor(v, dtype=torch.float64) for v in inputs_at(k)])
        for j in range(sub):
            t = torch.tensor(k + j * h, dtype=torch.float64)
            k1 = m(t, y)
            k2 = m(t + h / 2, y + h / 2 * k1)
            k3 = m(t + h / 2, y + h / 2 * k2)
            k4 = m(t + h, y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(y)
    return torch.stack(out)


def test_meal_raises_glucose_and_it_returns(Model):
    """50 g at t = 60 min eaten at 5 g/min (simglucose's EAT_RATE) on basal insulin, with and without a bolus of
    50/CR U (adult#001: CR 10 g/U, simglucose/params/Quest.csv); Dbar as simglucose computes it (the stomach is
    empty when the meal starts, then + 1000 x grams eaten)."""
    p, u2ss = ADULT001, ADULT001_U2SS
    m = make(Model, p)
    basal = u2ss * p["BW"] / 6000.0
    x0 = basal_equilibrium(p, u2ss)
    Gb = x0[3] / p["Vg"]  # mg/dL

    def run(boluses):
        """One batch row per bolus: the rows share every minute's meal and Dbar."""
        def inputs_at(k):
            meal = 5.0 if 60 <= k < 70 else 0.0
            Dbar = 0.0 if k < 60 else 1000.0 * 5.0 * min(k - 59, 10)
            return [meal] * len(boluses), [basal + (b if k == 60 else 0.0) for b in boluses], [Dbar] * len(boluses)
        with torch.no_grad():
            ys = rk4_minutes(m, np.tile(x0, (len(boluses), 1)), 720, inputs_at)
        assert np.all(np.isfinite(ys.numpy()))
        return [(ys[:, i].numpy(), ys[:, i, 3].numpy() / p["Vg"]) for i in range(len(boluses))]

    (ys, bg), (_, bg_bolus) = run([0.0, 5.0])
    assert np.max(np.abs(bg[:61] - Gb)) < 1e-6  # fasting before the meal
    peak = int(np.argmax(bg))
    assert 90 < peak < 420 and bg[peak] > Gb + 50  # the meal raises plasma glucose (about 212 mg/dL at 5 h)
    assert np.all(np.diff(bg[peak + 60:]) < 0)  # then falls monotonically
    assert abs(bg[-1] - Gb) < 0.3 * (bg[peak] - Gb)  # back toward basal (151 vs 138.6 at 12 h)
    assert ys[-1, :3].sum() < 0.02 * 50000  # the meal has left the stomach and gut (mg)
    # the gut delivered f x the meal: integral of Ra dt x BW = f kabs integral qgut dt
    absorbed = p["f"] * p["kabs"] * 0.5 * (ys[:-1, 2] + ys[1:, 2]).sum()
    assert absorbed == pytest.approx(p["f"] * 50000 - p["f"] * ys[-1, :3].sum(), rel=2e-3)
    assert bg_bolus.max() < bg[peak] - 10 and bg_bolus[-1] < bg[-1]  # insulin lowers glucose
    assert bg_bolus.min() > 70  # no hypoglycaemia with the CR bolus for this patient


def test_against_simglucose_if_installed(Model):
    """Only where simglucose (with gym, pandas) imports: its own T1DPatient.model at random states."""
    t1d = pytest.importorskip("simglucose.patient.t1dpatient")
    pd = pytest.importorskip("pandas")
    rows = pd.read_csv(t1d.PATIENT_PARA_FILE)
    rng = np.random.default_rng(3)
    for name in ("adult#001", "child#001", "adolescent#005"):
        row = rows.loc[rows.Name == name].squeeze()
        p = {k: float(row[k]) for k in ADULT001}
        m = make(Model, p)
        for _ in range(20):
            x = random_states(rng, 4, p)[rng.integers(4)]
            cho, ins = rng.uniform(0, 5), rng.uniform(0, 0.3)
            last_q, last_food = rng.uniform(0, 5e4), rng.uniform(1, 80)
            ref = t1d.T1DPatient.model(0.0, x, t1d.Action(CHO=cho, insulin=ins), row, last_q, last_food)
            bind(m, torch.tensor(cho, dtype=torch.float64), torch.tensor(ins, dtype=torch.float64),
                 torch.tensor(last_q + 1000 * last_food, dtype=torch.float64))
            with torch.no_grad():
                got = m(torch.zeros((), dtype=torch.float64), torch.tensor(x)).numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- benchmarks/glucose helpers, on a literal row
def _csv_row(p, u2ss, name):
    x0 = [0, 0, 0, p["Gpb"], p["Gtb"], p["Ipb"], 0, p["Ib"], p["Ib"], p["Ilb"], p["isc1ss"], p["isc2ss"], p["Gpb"]]
    row = {"Name": name, **{f"x0_{i:2d}": v for i, v in enumerate(x0, start=1)}, **p, "u2ss": u2ss}
    return row


def test_patients_reads_a_simglucose_style_csv(tmp_path, Model):
    pytest.importorskip("benchmarks.glucose.patients")
    from benchmarks.glucose import patients as P
    rows = [_csv_row(ADULT001, ADULT001_U2SS, "adult#001"), _csv_row(CHILD001, CHILD001_U2SS, "child#001")]
    header = list(rows[0])
    (tmp_path / "vpatient_params.csv").write_text(
        ",".join(header) + "\n" + "\n".join(",".join(str(r[h]) for h in header) for r in rows) + "\n")
    (tmp_path / "Quest.csv").write_text("Name,CR,CF,Age,TDI\nadult#001,10,8.77,61,50.4\nchild#001,25,42.7,9,17.5\n")
    got = P.load_patients(tmp_path)
    assert list(got) == ["adult#001", "child#001"] and got["child#001"]["CR"] == 25 and got["adult#001"]["group"] == "adult"
    assert got["child#001"]["params"] == CHILD001
    assert got["adult#001"]["basal"] == pytest.approx(ADULT001_U2SS * ADULT001["BW"] / 6000)
    m = Model(**got["child#001"]["params"]).double()
    assert np.allclose(m.initial_state().detach().numpy(), got["child#001"]["x0"], rtol=1e-13)


def test_simulator_meal_bookkeeping_follows_simglucose(Model):
    """A 23 g meal announced at minute 10 is eaten at 5 g/min (5, 5, 5, 5, 3 g); Dbar = stomach content at its
    start (0 here) + 1000 x grams eaten so far, then held."""
    pytest.importorskip("benchmarks.glucose.simulate")
    from benchmarks.glucose.simulate import simulate_patient
    patient = {"params": ADULT001, "x0": list(basal_equilibrium(ADULT001, ADULT001_U2SS)),
               "basal": ADULT001_U2SS * ADULT001["BW"] / 6000}
    carbs = np.zeros((2, 40))
    carbs[0, 10] = 23.0
    insulin = np.full((2, 40), patient["basal"])
    ys, eaten, dbar, _ = simulate_patient(Model, patient, carbs, insulin, substeps=2)
    assert eaten[0, 10:15].tolist() == [5, 5, 5, 5, 3] and eaten[0].sum() == 23 and eaten[1].sum() == 0
    assert dbar[0, 10:16].tolist() == [5000, 10000, 15000, 20000, 23000, 23000] and dbar[0, :10].max() == 0
    assert ys.shape == (41, 2, 13) and np.abs(ys[:, 1] - ys[0, 1]).max() < 1e-6  # no meal: stays at basal
    assert ys[-1, 0, :3].sum() == pytest.approx(23000 - 0.0, rel=0.25)  # most of it still in the stomach/gut
