"""The PEtab-SciML test suite's initialization cases (read from ../shared/data): a parameters-table row with a
numeric nominalValue for a layer (001) or one of its arrays (002: weight, 003: bias) sets those arrays; the others
come from the array file. Judged against the case's reference arrays (net1_ref.hdf5)."""
from __future__ import annotations

import pytest

from benchmarks.petab_sciml_problems import INIT_SUITE, judge_initialization

pytestmark = pytest.mark.skipif(not INIT_SUITE.is_dir(), reason="the PEtab-SciML test suite is not in ../shared/data")


@pytest.mark.parametrize("case", ["001", "002", "003"])
def test_initialization_case(case):
    assert judge_initialization(INIT_SUITE / case) == []
