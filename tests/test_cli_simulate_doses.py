"""`hodec simulate --dose`: boluses, infusions (rate or dur) and repeats (ii, addl) against the one-compartment
closed forms, and the option's bad input (exit 1, a message naming the option, nothing written)."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from hodec.cli import main

PK = Path(__file__).resolve().parents[1] / "specs" / "pk_oral.hode"
KA, CL, V = 1.2, 0.15, 8.0
K = CL / V


def _simulate(capsys, *options, t_end=30.0, points=31):
    code = main(["simulate", str(PK), "--t-end", str(t_end), "--points", str(points), "--set", "dose=0",
                 "--rtol", "1e-10", "--atol", "1e-12", *options])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code:
        return code, err
    rows = list(csv.DictReader(io.StringIO(out)))
    return code, [{k: float(v) for k, v in row.items()} for row in rows]


def _bateman(t: float, amount: float) -> float:
    """Central amount after an oral bolus at 0 (first-order absorption ka, elimination k)."""
    return amount * KA / (KA - K) * (math.exp(-K * t) - math.exp(-KA * t)) if t >= 0 else 0.0


def test_oral_doses_repeated_by_ii_and_addl_superpose(capsys):
    code, rows = _simulate(capsys, "--dose", "depot=100@0,ii=12,addl=1")
    assert code == 0
    for row in rows:
        t = row["t"]
        expected = _bateman(t, 100) + _bateman(t - 12, 100)
        assert row["central"] == pytest.approx(expected, rel=1e-7, abs=1e-9)
    # the second dose is really there: just after 12 h the depot holds 100 more than the first dose leaves
    at12 = next(r for r in rows if r["t"] == 12.0)
    assert at12["depot"] == pytest.approx(100 * math.exp(-KA * 12) + 100, rel=1e-8)


@pytest.mark.parametrize("infusion", ["dur=2", "rate=50"])
def test_infusion_into_central_follows_the_zero_order_input_closed_form(capsys, infusion):
    code, rows = _simulate(capsys, "--dose", f"central=100@1,{infusion}")
    assert code == 0
    rate, start, end = 50.0, 1.0, 3.0
    for row in rows:
        t = row["t"]
        if t <= start:
            expected = 0.0
        elif t <= end:
            expected = rate / K * (1 - math.exp(-K * (t - start)))
        else:
            expected = rate / K * (1 - math.exp(-K * (end - start))) * math.exp(-K * (t - end))
        assert row["central"] == pytest.approx(expected, rel=1e-7, abs=1e-9)
        assert row["cp"] == pytest.approx(row["central"] / V, rel=1e-12)


def test_several_dose_options_add_up(capsys):
    _, both = _simulate(capsys, "--dose", "depot=100@0", "--dose", "central=40@5")
    for row in both:
        t = row["t"]
        expected = _bateman(t, 100) + (40 * math.exp(-K * (t - 5)) if t >= 5 else 0.0)
        assert row["central"] == pytest.approx(expected, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("option, message", [
    ("cent=1@0", "'cent' is not a state of the model (depot, central)"),
    ("central=1", "expected STATE=AMOUNT@TIME"),
    ("central=x@0", "amount 'x' is not a number"),
    ("central=1@0,rate=2,dur=1", "give rate or dur, not both"),
    ("central=1@0,rate=-1", "rate must be > 0"),
    ("central=1@0,addl=2", "addl needs an interval ii > 0"),
    ("central=1@0,ii=2,addl=1.5", "addl must be a whole number"),
    ("central=1@0,every=2", "'every=2' is not one of rate=..., dur=..., ii=..., addl=..."),
    ("central=1@nan", "time must be finite"),
])
def test_bad_dose_options_name_the_option_and_exit_1(capsys, tmp_path, option, message):
    target = tmp_path / "out.csv"
    code = main(["simulate", str(PK), "--t-end", "1", "--points", "2", "--dose", option, "-o", str(target)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"--dose {option!r}" in err and message in err
    assert not target.exists()


def test_doses_with_a_torchdiffeq_method_are_refused(capsys):
    code, err = _simulate(capsys, "--dose", "central=1@0", "--method", "rk4")
    assert code == 1 and "own solver methods" in err
