"""Issue 14 item 9: SymPy's automatic rewriting must not change what a formula computes where it is undefined.
`exp(log(A))`, `sqrt(A)^2`, `A/A` and `0*log(A)` become A, A, 1 and 0 in SymPy; the generated model must still
give NaN exactly where the formula as written does. The reference is numpy evaluating the written formula with
IEEE semantics (log(-1) = NaN, 0/0 = NaN, 0*inf = NaN)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import hodec
from hodec.compiler import load_source

_counter = itertools.count()

# (spec text, the same formula in numpy)
FORMULAS = {
    "exp_log": ("exp(log(A))", lambda A: np.exp(np.log(A))),
    "sqrt_squared": ("sqrt(A)^2", lambda A: np.sqrt(A) ** 2),
    "a_over_a": ("A/A", lambda A: A / A),
    "exp_minus_log": ("exp(-log(A)) * A", lambda A: np.exp(-np.log(A)) * A),
    "log_minus_log": ("log(A) - log(A)", lambda A: np.log(A) - np.log(A)),
    "power_zero": ("log(A)^0", lambda A: np.log(A) ** 0),
    "zero_times_log": ("0*log(A)", lambda A: 0 * np.log(A)),
    "cancelled_product": ("2*A*B/(4*A)", lambda A, B=3.0: 2 * A * B / (4 * A)),
    "through_a_let": ("w + 1", lambda A: np.log(A) * 0 + A / A + 1),
    "kept_as_written": ("sqrt(A^2) + log(2*A) + A/2", lambda A: np.sqrt(A ** 2) + np.log(2 * A) + A / 2),
}
POINTS = [-1.0, 0.0, 0.5, 2.0, 1e-300]


def _model(formula: str):
    source = (f"model D\nparam B = 3\nstate A = 1\nlet w = 0*log(A) + A/A\nder A = {formula}\n"
              f"observe o = {formula}\n")
    code = hodec.compile_source(source, "domains.hode")
    return load_source(code, f"hodec_test_domains_{next(_counter)}")({}).double()


@pytest.mark.parametrize("name", FORMULAS)
def test_generated_code_is_nan_exactly_where_the_written_formula_is(name):
    text, reference = FORMULAS[name]
    m = _model(text)
    A = np.array(POINTS)
    with np.errstate(all="ignore"):
        want = reference(A)
    y = torch.tensor(A, dtype=torch.float64)[:, None]
    t = torch.tensor(0.0, dtype=torch.float64)
    with torch.no_grad():
        for got in (m(t, y)[:, 0].numpy(), m.observables(t, y)[:, 0].numpy()):
            assert np.array_equal(np.isnan(got), np.isnan(want)), (name, A, got, want)
            finite = ~np.isnan(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12)  # exp(log(A)) rounds
