"""Real PEtab v1 problems: models of the PEtab benchmark collection through `hodec petab evaluate`, their llh at
the nominal parameters against the reference AMICI's tests keep (benchmarks/petab_v1_benchmarks.py). The
collection is read from PETAB_BENCHMARK_COLLECTION or ../shared/data/benchmark_models_petab/Benchmark-Models."""
from __future__ import annotations

import pytest

from benchmarks.petab_v1_benchmarks import COLLECTION, run_model

pytestmark = pytest.mark.skipif(not COLLECTION.is_dir(), reason="the PEtab benchmark collection is not there")


@pytest.mark.parametrize("model", ["Boehm_JProteomeRes2014"])  # one condition, noise parameters by parameter id
def test_benchmark_collection_llh(model):
    result = run_model(COLLECTION / model, 600)
    assert result["status"] == "pass", result
