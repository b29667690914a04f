"""The warfarin benchmark end to end, shortened: `hodec fit` on nlmixr2data's warfarin.csv as it is (FIT.yaml's
`dvid: {pca: null}` leaves the PD rows out), checked against a hand-written likelihood (the closed-form
one-compartment solution, the file read with the csv module), scipy's maximum-likelihood estimate of the same closed
form, a finite-difference Hessian, and the published typical values."""
import csv

import pytest

from benchmarks.warfarin import run as W  # python -m pytest puts the repo root on sys.path

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not W.DATA.is_file(), reason="warfarin.csv not present")]


@pytest.fixture(scope="module")
def ref():
    return W.read_reference(W.DATA)


def test_pooled_fit_against_closed_form_and_published_values(ref, tmp_path):
    out = W.run_pooled(ref, W.DATA, tmp_path, epochs=100)  # ~40 s at load 1-2 on 2 shared cores
    # the report's llh is the hand-written one of the cp values at the fitted params; the pca rows are not fitted
    assert out["llh_rel_diff"] < 1e-9
    assert out["n"] == len(ref["cp"]) == 251  # every cp row, patient 9's replicates included
    assert out["k"] == 5
    # close to scipy's MLE of the same model after 100 of the benchmark's 400 epochs
    for name in ("ka", "cl", "v"):
        assert out["params"][name] == pytest.approx(out["mle"][name], rel=0.02), name
    # standard errors: the report's autograd Hessian against a finite-difference Hessian of the closed form
    for name in W.PK + W.ERROR:
        assert out["se"][name] == pytest.approx(out["se_fd"][name], rel=0.02), name
    # the typical clearance and volume of the published mixed-effects fits (Monolix, nlmixr), within 10 %; their
    # ka is not comparable (a lag time, a transit compartment)
    for pub in W.PUBLISHED:
        assert out["params"]["cl"] == pytest.approx(pub["cl"][0], rel=0.10)
        assert out["params"]["v"] == pytest.approx(pub["v"][0], rel=0.10)


def test_two_stage_binds_each_patient_to_its_own_params(tmp_path):
    """Patients 1, 2 and 9 (9 has replicate rows, fitted by a twin trajectory) copied verbatim: after a few epochs
    each patient's params differ, and the report's llh is the hand-written one with each patient's own params."""
    with open(W.DATA, newline="") as f:
        rows = list(csv.reader(f))
    subset = tmp_path / "warfarin_subset.csv"
    with open(subset, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if r[0] in ("1", "2", "9")])
    ref = W.read_reference(subset)
    start = {"ka": 0.57, "cl": 0.131, "v": 7.58}
    out = W.run_two_stage(ref, subset, tmp_path, epochs=5, start=start)
    assert sorted(out["individual"]["cl"]) == ["1", "2", "9"]
    for name in W.POPULATION:
        values = list(out["individual"][name].values())
        assert len(set(values)) == 3 and all(v != start[name] for v in values), name
    assert out["llh_rel_diff"] < 1e-9
    assert out["n"] == len(ref["cp"]) and out["k"] == 3 * 3 + 2
