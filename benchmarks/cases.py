"""The cases of bench_solve.py: each a .hode spec for hodec and, written independently of it, the same right-hand
side by hand for the peers (numpy for scipy and the reference, jax.numpy for diffrax: one function over an array
module `xp`) and as Antimony text for libRoadRunner (SBML).

    case = CASES["lv"]()            # a Case
    case.rhs(t, y, p, numpy)        # dy/dt of one member: y [n], p {varied param: value}
    case.member_y0(64)              # [64, n] initial states (member 0: the spec's)
    case.member_params(64)          # {name: [64]} per-member params (member 0: the spec's)

Batch members differ in their initial states (each state scaled by a seeded factor in [0.8, 1.2]) or, where the
initial state is zero (PK), in some of their params. Inputs are piecewise constant (held from each knot on).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.networks import Network, random_network

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
BENCH_SPECS = ROOT / "benchmarks" / "specs"


@dataclass
class Case:
    name: str
    title: str
    spec: str  # .hode source
    state_names: tuple
    y0: np.ndarray  # [n]
    ts: np.ndarray  # output times; ts[0] is the initial time
    rhs: Callable  # (t, y [n], p {name: value}, xp) -> [n]
    antimony: str  # the same model for libRoadRunner (SBML through Antimony)
    stiff: bool = False  # explicit methods are not run on it (except `auto`, which must detect it)
    explicit_too: bool = False  # a stiff-capable case on which explicit methods are run as well
    atol_ratio: float = 1e-3  # every candidate gets atol = rtol * atol_ratio (scalar: all peers accept that)
    params: dict = field(default_factory=dict)  # nominal values of the per-member (varied) params
    vary_params: bool = False  # members differ in `params` (else in their initial states)
    inputs: dict = field(default_factory=dict)  # name -> (knots, values), held from each knot on
    max_batch: int = 1

    @property
    def n(self) -> int:
        return len(self.state_names)

    @property
    def breakpoints(self) -> tuple:
        """Times where an input jumps (the reference integrates piece by piece between them)."""
        return tuple(sorted({float(k) for knots, _ in self.inputs.values() for k in knots[1:]}))

    def member_y0(self, batch: int) -> np.ndarray:
        if self.vary_params:
            return np.broadcast_to(self.y0, (batch, self.n)).copy()
        factors = np.random.default_rng(1).uniform(0.8, 1.2, size=(batch, self.n))
        factors[0] = 1.0
        return self.y0 * factors

    def member_params(self, batch: int) -> dict:
        if not self.vary_params:
            return {}
        rng = np.random.default_rng(2)
        out = {}
        for name, value in self.params.items():
            factors = rng.uniform(0.7, 1.3, size=batch)
            factors[0] = 1.0
            out[name] = value * factors
        return out


def held(t, knots, values, xp):
    """A piecewise-constant signal at time t: values[i] from knots[i] on (values[0] before knots[0])."""
    knots, values = xp.asarray(knots), xp.asarray(values)
    i = xp.clip(xp.searchsorted(knots, t, side="right") - 1, 0, len(values) - 1)
    return values[i]


# ---------------------------------------------------------------- Lotka-Volterra
def lotka_volterra() -> Case:
    a, b, c, d = 1.3, 0.9, 0.8, 1.8

    def rhs(t, y, p, xp):
        x, z = y[0], y[1]
        return xp.stack([a * x - b * x * z, c * x * z - d * z])

    ant = """
    species x = 0.44249296; species y = 4.6280594
    a = 1.3; b = 0.9; c = 0.8; d = 1.8
    birth: x -> 2 x; a*x
    predation: x -> ; b*x*y
    growth: -> y; c*x*y
    death: y -> ; d*y
    """
    return Case("lv", "Lotka-Volterra", (SPECS / "lotka_volterra.hode").read_text(), ("x", "y"),
                np.array([0.44249296, 4.6280594]), np.round(np.arange(61) * 0.1, 10), rhs, ant, atol_ratio=1e-3)


# ---------------------------------------------------------------- random mass-action networks
def network(n_states: int, n_reactions: int) -> Case:
    net = random_network(n_states, n_reactions)
    rhs = functools.partial(_network_rhs, _NetworkArrays(net))
    return Case(f"net{n_states}", f"random network N={n_states}/R={n_reactions}", net.hode, net.state_names,
                np.array(net.initial), np.linspace(0.0, 10.0, 21), rhs, network_antimony(net), atol_ratio=1e-3,
                max_batch=4096 if n_states <= 100 else 1)


class _NetworkArrays:
    """Index arrays of a network: flux_r = k_r y[first_r] y[second_r] (second = a constant 1 for unimolecular
    reactions), dy = S flux with S sparse (scipy for numpy, a segment sum for jax)."""

    def __init__(self, net: Network):
        import scipy.sparse

        self.n = net.n_states
        self.k = np.array(net.rates)
        self.first = np.array([r[0] for r in net.reactants])
        self.second = np.array([r[1] if len(r) == 2 else net.n_states for r in net.reactants])  # n: the 1 slot
        triples = net.stoichiometry()
        self.st_reaction = np.array([r for r, _, _ in triples])
        self.st_state = np.array([s for _, s, _ in triples])
        self.st_coef = np.array([c for _, _, c in triples], dtype=float)
        self.S = scipy.sparse.csr_matrix((self.st_coef, (self.st_state, self.st_reaction)),
                                         shape=(net.n_states, net.n_reactions))


def _network_rhs(arr: _NetworkArrays, t, y, p, xp):
    y1 = xp.concatenate([y, xp.ones(1, dtype=y.dtype)])
    flux = arr.k * y1[arr.first] * y1[arr.second]
    if xp is np:
        return arr.S @ flux
    import jax

    return jax.ops.segment_sum(arr.st_coef * flux[arr.st_reaction], arr.st_state, num_segments=arr.n)


def network_antimony(net: Network) -> str:
    lines = [f"species {s} = {v!r}" for s, v in zip(net.state_names, net.initial)]
    lines += [f"k{i} = {k!r}" for i, k in enumerate(net.rates)]
    for i, (ins, outs) in enumerate(zip(net.reactants, net.products)):
        law = " * ".join([f"k{i}"] + [net.state_names[s] for s in ins])
        lines.append(f"r{i}: {' + '.join(net.state_names[s] for s in ins)} -> "
                     f"{' + '.join(net.state_names[s] for s in outs)}; {law}")
    return "\n".join(lines)


# ---------------------------------------------------------------- two-compartment PK with an infusion
PK_INFUSION = ((0.0, 1.0), (100.0, 0.0))  # 100 mg/h during the first hour


def pk() -> Case:
    Q, V2 = 10.0, 50.0

    def rhs(t, y, p, xp):
        a1, a2 = y[0], y[1]
        infusion = held(t, *PK_INFUSION, xp)
        distribution = Q / p["V1"] * a1 - Q / V2 * a2
        return xp.stack([infusion - p["CL"] / p["V1"] * a1 - distribution, distribution])

    ant = """
    A1 = 0; A2 = 0
    CL = 5; V1 = 20; Q = 10; V2 = 50
    infusion := piecewise(100, time < 1, 0)
    A1' = infusion - CL/V1*A1 - (Q/V1*A1 - Q/V2*A2)
    A2' = Q/V1*A1 - Q/V2*A2
    """
    return Case("pk", "two-compartment PK, 1 h infusion", (SPECS / "pk_two_compartment.hode").read_text(),
                ("central", "peripheral"), np.zeros(2), np.linspace(0.0, 24.0, 25), rhs, ant, atol_ratio=1e-2,
                params={"CL": 5.0, "V1": 20.0}, vary_params=True, inputs={"infusion": PK_INFUSION},
                max_batch=4096)


# ---------------------------------------------------------------- UVA/Padova with one meal
UVA_MEAL = ((0.0, 30.0, 45.0), (0.0, 4.0, 0.0))  # 4 g/min for 15 min from t = 30 (60 g)
UVA_INSULIN = ((0.0, 30.0, 31.0), (0.021122, 6.021122, 0.021122))  # basal; a 6 U bolus during minute 30
UVA_DBAR = ((0.0, 30.0), (0.0, 60000.0))  # the meal's glucose, mg, from its start on
UVA = dict(BW=102.32, Vg=1.9152, Vi=0.054906, kmax=0.046122, kmin=0.0037927, kabs=0.08906, b=0.70391, d=0.21057,
           f=0.9, kp1=4.73140582528, kp2=0.00469, kp3=0.01208, Fsnc=1.0, k1=0.058138, k2=0.087114,
           Vm0=3.2667306607, Vmx=0.031319, Km0=253.52, ke1=0.0005, ke2=339.0, ksc=0.0766, m1=0.15446,
           m2=0.225027424083, m4=0.090010969633, m30=0.23169, ka1=0.0019, ka2=0.0078, kd=0.0152, ki=0.0046374,
           p2u=0.027802, Ib=100.25)
UVA_Y0 = (0.0, 0.0, 0.0, 265.370112, 162.457097269, 5.5043265, 0.0, 100.25, 100.25, 3.20762505142, 72.4341762342,
          141.153779328, 265.370112)
UVA_STATES = ("qsto1", "qsto2", "qgut", "Gp", "Gt", "Ip", "X", "I1", "Id", "Il", "Isc1", "Isc2", "Gs")


def _uva_rhs(t, y, p, xp):
    P = UVA
    qsto1, qsto2, qgut, Gp, Gt, Ip, X, I1, Id, Il, Isc1, Isc2, Gs = (y[i] for i in range(13))
    meal, insulin, dbar = (held(t, *s, xp) for s in (UVA_MEAL, UVA_INSULIN, UVA_DBAR))
    qsto = qsto1 + qsto2
    dpos = xp.maximum(dbar, 1.0)
    alpha = 5.0 / (2.0 * dpos * (1.0 - P["b"]))
    beta = 5.0 / (2.0 * dpos * P["d"])
    kempt_meal = P["kmin"] + (P["kmax"] - P["kmin"]) / 2.0 * (
        xp.tanh(alpha * (qsto - P["b"] * dbar)) - xp.tanh(beta * (qsto - P["d"] * dbar)) + 2.0)
    kempt = xp.where(dbar > 0, kempt_meal, P["kmax"])
    Ra = P["f"] * P["kabs"] * qgut / P["BW"]
    EGP = P["kp1"] - P["kp2"] * Gp - P["kp3"] * Id
    E = xp.where(Gp > P["ke2"], P["ke1"] * (Gp - P["ke2"]), 0.0)
    Uid = (P["Vm0"] + P["Vmx"] * X) * Gt / (P["Km0"] + Gt)
    Ipl = Ip / P["Vi"]
    return xp.stack([
        -P["kmax"] * qsto1 + 1000.0 * meal,
        P["kmax"] * qsto1 - kempt * qsto2,
        kempt * qsto2 - P["kabs"] * qgut,
        xp.maximum(EGP, 0.0) + Ra - P["Fsnc"] - E - P["k1"] * Gp + P["k2"] * Gt,
        -Uid + P["k1"] * Gp - P["k2"] * Gt,
        -(P["m2"] + P["m4"]) * Ip + P["m1"] * Il + P["ka1"] * Isc1 + P["ka2"] * Isc2,
        -P["p2u"] * X + P["p2u"] * (Ipl - P["Ib"]),
        -P["ki"] * (I1 - Ipl),
        -P["ki"] * (Id - I1),
        -(P["m1"] + P["m30"]) * Il + P["m2"] * Ip,
        insulin * 6000.0 / P["BW"] - (P["ka1"] + P["kd"]) * Isc1,
        P["kd"] * Isc1 - P["ka2"] * Isc2,
        -P["ksc"] * Gs + P["ksc"] * Gp,
    ])


def _piecewise(knots, values) -> str:
    """Antimony piecewise() of a held signal."""
    parts = [f"{v!r}, time < {k!r}" for k, v in zip(knots[1:], values[:-1])]
    return f"piecewise({', '.join(parts)}, {values[-1]!r})"


def uva_padova() -> Case:
    params = "; ".join(f"{k} = {v!r}" for k, v in UVA.items())
    states = "; ".join(f"{s} = {v!r}" for s, v in zip(UVA_STATES, UVA_Y0))
    ant = f"""
    {params}
    {states}
    meal := {_piecewise(*UVA_MEAL)}
    insulin := {_piecewise(*UVA_INSULIN)}
    Dbar := {_piecewise(*UVA_DBAR)}
    qsto := qsto1 + qsto2
    Dpos := piecewise(Dbar, Dbar > 1, 1)
    alph := 5 / (2 * Dpos * (1 - b))
    bet := 5 / (2 * Dpos * d)
    tanhs := tanh(alph*(qsto - b*Dbar)) - tanh(bet*(qsto - d*Dbar))
    kempt := piecewise(kmin + (kmax - kmin)/2 * (tanhs + 2), Dbar > 0, kmax)
    Ra := f * kabs * qgut / BW
    EGP := kp1 - kp2 * Gp - kp3 * Id
    Ex := piecewise(ke1 * (Gp - ke2), Gp > ke2, 0)
    Uid := (Vm0 + Vmx * X) * Gt / (Km0 + Gt)
    Ipl := Ip / Vi
    qsto1' = -kmax * qsto1 + 1000 * meal
    qsto2' = kmax * qsto1 - kempt * qsto2
    qgut' = kempt * qsto2 - kabs * qgut
    Gp' = piecewise(EGP, EGP > 0, 0) + Ra - Fsnc - Ex - k1 * Gp + k2 * Gt
    Gt' = -Uid + k1 * Gp - k2 * Gt
    Ip' = -(m2 + m4) * Ip + m1 * Il + ka1 * Isc1 + ka2 * Isc2
    X' = -p2u * X + p2u * (Ipl - Ib)
    I1' = -ki * (I1 - Ipl)
    Id' = -ki * (Id - I1)
    Il' = -(m1 + m30) * Il + m2 * Ip
    Isc1' = insulin * 6000 / BW - (ka1 + kd) * Isc1
    Isc2' = kd * Isc1 - ka2 * Isc2
    Gs' = -ksc * Gs + ksc * Gp
    """
    return Case("uva", "UVA/Padova, one meal + bolus", (SPECS / "uva_padova.hode").read_text(), UVA_STATES,
                np.array(UVA_Y0), np.linspace(0.0, 360.0, 73), _uva_rhs, ant, explicit_too=True, atol_ratio=1.0,
                inputs={"meal": UVA_MEAL, "insulin": UVA_INSULIN, "Dbar": UVA_DBAR})


# ---------------------------------------------------------------- Robertson
def robertson() -> Case:
    k1, k2, k3 = 0.04, 3e7, 1e4

    def rhs(t, y, p, xp):
        a, b, c = y[0], y[1], y[2]
        return xp.stack([-k1 * a + k3 * b * c, k1 * a - k3 * b * c - k2 * b * b, k2 * b * b])

    ant = """
    species A = 1; species B = 0; species C = 0
    k1 = 0.04; k2 = 3e7; k3 = 1e4
    slow: A -> B; k1*A
    fast: B + C -> A + C; k3*B*C
    very_fast: 2 B -> B + C; k2*B^2
    """
    ts = np.concatenate([[0.0], np.logspace(-4, 5, 37)])
    return Case("robertson", "Robertson to t = 1e5", (BENCH_SPECS / "robertson.hode").read_text(),
                ("A", "B", "C"), np.array([1.0, 0.0, 0.0]), ts, rhs, ant, stiff=True, atol_ratio=1e-6)


# ---------------------------------------------------------------- stiff enzyme cascade
CASCADE_STATES = ("S0", "S1", "S2", "S3", "E1", "E2", "E3", "C1", "C2", "C3")
CASCADE_Y0 = (1.0, 0.0, 0.0, 0.0, 0.05, 0.02, 0.05, 0.0, 0.0, 0.0)
CASCADE_RATES = dict(kon1=1e5, koff1=1e4, kcat1=2.0, kon2=2e5, koff2=3e4, kcat2=1.0, kon3=5e4, koff3=1e4, kcat3=0.5,
                     kdeg=0.01)


def _cascade_rhs(t, y, p, xp):
    k = CASCADE_RATES
    S0, S1, S2, S3, E1, E2, E3, C1, C2, C3 = (y[i] for i in range(10))
    bind = [k["kon1"] * E1 * S0 - k["koff1"] * C1, k["kon2"] * E2 * S1 - k["koff2"] * C2,
            k["kon3"] * E3 * S2 - k["koff3"] * C3]
    cat = [k["kcat1"] * C1, k["kcat2"] * C2, k["kcat3"] * C3]
    return xp.stack([-bind[0], cat[0] - bind[1], cat[1] - bind[2], cat[2] - k["kdeg"] * S3,
                     cat[0] - bind[0], cat[1] - bind[1], cat[2] - bind[2],
                     bind[0] - cat[0], bind[1] - cat[1], bind[2] - cat[2]])


def cascade_antimony() -> str:
    lines = [f"species {s} = {v!r}" for s, v in zip(CASCADE_STATES, CASCADE_Y0)]
    lines += [f"{k} = {v!r}" for k, v in CASCADE_RATES.items()]
    for i in (1, 2, 3):
        lines += [f"bind{i}: E{i} + S{i - 1} -> C{i}; kon{i}*E{i}*S{i - 1} - koff{i}*C{i}",
                  f"cat{i}: C{i} -> E{i} + S{i}; kcat{i}*C{i}"]
    lines.append("loss: S3 -> ; kdeg*S3")
    return "\n".join(lines)


def enzyme_cascade() -> Case:
    return Case("cascade", "stiff enzyme cascade (10 states)", (BENCH_SPECS / "enzyme_cascade.hode").read_text(),
                CASCADE_STATES, np.array(CASCADE_Y0), np.linspace(0.0, 100.0, 51), _cascade_rhs,
                cascade_antimony(), stiff=True, atol_ratio=1e-3, max_batch=4096)


CASES = {
    "lv": lotka_volterra,
    "net100": lambda: network(100, 300),
    "net1000": lambda: network(1000, 3000),
    "pk": pk,
    "uva": uva_padova,
    "robertson": robertson,
    "cascade": enzyme_cascade,
}
