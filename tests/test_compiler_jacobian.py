"""Issue 14 item 8: the observation Jacobian sees through chains of lets by the chain rule, let by let, so compile
time stays linear in the chain's length (inlined, `sin(v) + cos(v)` chains double at every level); and its
values agree with torch.func.jacrev of the generated observables. Also the dependency walker (issue 13) through
long chains."""
from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hodec
from hodec.compiler import load_source, symbolic
from hodec.graph.extract import interaction_graph
from hodec.symbolic.dependencies import Dependencies, used_params

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def chain(n: int, kind: str) -> str:
    lines = ["model Chain", "param k = 0.1", "state x = 0.1", "state y = 0.2", "der x = -k * x", "der y = -y",
             "let v0 = x * y"]
    for i in range(1, n + 1):
        body = {"exp": f"exp(v{i - 1}) - 1",
                "sincos": f"0.5 * sin(v{i - 1}) + 0.5 * cos(v{i - 1}) + k * y - 0.5"}[kind]
        lines.append(f"let v{i} = {body}")
    lines += [f"observe last = v{n}", f"observe mixed = v{n // 2} * x + v{n}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", ["exp", "sincos"])
def test_a_60_level_let_chain_compiles_in_seconds(kind):
    # the spec comes on stdin, so the child imports hodec only (not this module, which imports torch)
    script = ("import sys, time\nimport hodec\nsource = sys.stdin.read()\nt = time.perf_counter()\n"
              "hodec.compile_source(source, 'chain.hode')\nprint(time.perf_counter() - t)\n")
    try:  # before the fix: minutes (exponential in the length), so a subprocess with a deadline
        out = subprocess.run([sys.executable, "-c", script], input=chain(60, kind), capture_output=True, text=True,
                             timeout=60, cwd=ROOT, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("compiling a 60-level let chain took over 60 s")
    assert float(out.stdout) < 20  # about 1.5 s on a quiet machine; generous for a loaded one


@pytest.mark.parametrize("kind, n", [("exp", 30), ("sincos", 30), ("sincos", 3)])
def test_observation_jacobian_of_a_let_chain_matches_autograd(kind, n):
    code = hodec.compile_source(chain(n, kind), "chain.hode")
    m = load_source(code, f"hodec_test_jacobian_{next(_counter)}")({}).double()
    t = torch.tensor(0.0, dtype=torch.float64)
    for point in ([0.1, 0.2], [-0.3, 0.5], [0.05, -0.4]):
        y = torch.tensor(point, dtype=torch.float64)
        want = torch.func.jacrev(lambda s: m.observables(t, s))(y)
        got = m.observation_jacobian(t, y)
        assert torch.isfinite(want).all()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    batch = torch.tensor([[0.1, 0.2], [-0.3, 0.5]], dtype=torch.float64)
    assert m.observation_jacobian(t, batch).shape == (2, 2, 2)


def test_dependency_walker_follows_long_chains_and_calls():
    n = 700  # deeper than Python's recursion limit: the walker is iterative
    lines = ["model Long", "param k = 1", "param q = 2", "input u", "state x = 1", "state y = 1",
             "neural f(a, b) hidden 2", "let v0 = f(x, u) + q"]
    lines += [f"let v{i} = v{i - 1} + k" for i in range(1, n + 1)]
    lines += [f"der y = v{n}", "der x = -x"]
    sm = symbolic("\n".join(lines) + "\n", "long.hode")
    deps = Dependencies(sm)
    rate = sm.fluxes[0].rate
    by_name = {sm.leaves[s].name: deps.steps(rate, s) for s in deps.reads(rate)}
    assert by_name["x"] == frozenset({"v0", "f.a"} | {f"v{i}" for i in range(1, n + 1)})
    assert by_name["u"] == by_name["x"] - {"f.a"} | {"f.b"}
    assert by_name["q"] == frozenset(f"v{i}" for i in range(n + 1))
    assert used_params(sm) == {"k", "q"}
    assert deps.reads_kind(sm.fluxes[0].rate, {"input"}) and not deps.reads_kind(sm.fluxes[1].rate, {"input"})
    G = interaction_graph(sm)
    assert sorted(G.edges) == [("u", "y"), ("x", "x"), ("x", "y")]
