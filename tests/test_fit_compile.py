"""FIT.yaml `solver: {compile: true}` hands the solver's step to torch.compile: the fit is the eager fit, epoch by
epoch (the same steps, arithmetic fused), with gradients through the compiled step. Slow: compiling takes tens of
seconds on a CPU."""
from __future__ import annotations

import pytest
import torch

import hodec
from hodec.compiler import compile_source, load_source
from hodec.training.data import make_dataset

pytestmark = pytest.mark.slow

SOURCE = "model Decay\nparam k = 0.5 positive\nparam b = 0.2\nstate x = 2\nder x = -k * x + b\nobserve o = x\n"


def test_a_compiled_solver_fits_as_the_eager_one(single_thread):
    M = load_source(compile_source(SOURCE, "decay.hode"), "hodec_test_fit_compile")
    ts = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0]
    truth = M(k=1.2, b=0.5).double()
    with torch.no_grad():
        observed = truth.simulate(torch.tensor(ts, dtype=torch.float64), rtol=1e-10, atol=1e-12)[:, 0]
    data = make_dataset(M, ts, {"o": observed.tolist()})
    histories = []
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    for compile in (False, True):
        config = {"method": "vanilla", "epochs": 4, "lr": 0.05, "dtype": "float64",
                  "solver": {"method": "tsit5", "rtol": 1e-8, "atol": 1e-10, "compile": compile}}
        result = hodec.fit(M(), data, config, progress=False)
        histories.append([h["mse"] for h in result.history])
        assert bool(counters["stats"]["unique_graphs"]) == compile  # compiled only when asked, and then really
    assert histories[0][-1] < histories[0][0]  # it trains
    for eager, compiled in zip(*histories):
        assert compiled == pytest.approx(eager, rel=1e-9)
