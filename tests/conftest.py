"""Under CI (CI set in the environment) property tests replay a fixed set of examples, so a submission's result
does not depend on the luck of the draw; locally they explore new random examples on every run. The fixture
single_thread is for modules of many tiny tensor operations, float64 for modules computed in double precision
(`pytestmark = pytest.mark.usefixtures(...)`)."""
import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def single_thread():
    """Many tiny tensor ops: one intra-op thread avoids thread-pool contention on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def float64():
    """float64 as torch's default dtype for one test, the previous default restored after it (the suite's tests
    share processes: a module-level set_default_dtype would leak into the next module's)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)
