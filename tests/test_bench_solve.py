"""benchmarks/bench_solve.py: the peers' hand-written right-hand sides are the models hodec compiles, the
reference and the equal-accuracy rule do what they say, and the quick mode runs end to end (hodec's candidates
and scipy always; diffrax, torchode and libRoadRunner only where installed)."""
import importlib.util
import json
import time

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from benchmarks import bench_solve
from benchmarks.cases import CASES
from benchmarks.peers import CANDIDATES, hodec_model, reference

# a state and time where every term of every case is active (the UVA/Padova meal and bolus included)
T_PROBE = 30.5


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "net1000" else n
                                  for n in sorted(CASES)])
def test_hand_written_rhs_is_the_spec(name):
    case = CASES[name]()
    model, _ = hodec_model(case, 1)
    assert tuple(model.state_names) == case.state_names
    rng = np.random.default_rng(0)
    y = case.y0 * rng.uniform(0.5, 1.5, case.n) + rng.uniform(0.1, 1.0, case.n)
    with torch.no_grad():
        want = model(torch.tensor(T_PROBE, dtype=torch.float64), torch.tensor(y)).numpy()
    got = case.rhs(T_PROBE, y, case.params, np)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_per_member_params_reach_the_hand_written_rhs():
    case = CASES["pk"]()
    model, y0 = hodec_model(case, 8)
    y = torch.rand(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        want = model(torch.tensor(0.5, dtype=torch.float64), y).numpy()
    params = case.member_params(8)
    for m in range(8):
        got = case.rhs(0.5, y[m].numpy(), {k: v[m] for k, v in params.items()}, np)
        np.testing.assert_allclose(got, want[m], rtol=1e-12)
    assert len({float(v) for v in params["CL"]}) == 8 and params["CL"][0] == case.params["CL"]


def test_reference_against_the_exact_solution():
    """PK is linear: during the infusion y(t) = A^-1 (e^(At) - I) b, after it y(t) = e^(A (t - 1)) y(1)."""
    case = CASES["pk"]()
    CL, V1, Q, V2 = 5.0, 20.0, 10.0, 50.0
    A = np.array([[-CL / V1 - Q / V1, Q / V2], [Q / V1, -Q / V2]])
    b = np.array([100.0, 0.0])
    y1 = np.linalg.solve(A, (expm(A) - np.eye(2)) @ b)
    exact = np.stack([np.linalg.solve(A, (expm(A * t) - np.eye(2)) @ b) if t <= 1 else expm(A * (t - 1)) @ y1
                      for t in case.ts])
    assert bench_solve.error(reference(case, 0, 1)[:, None], exact[:, None]) < 1e-10


def test_error_is_componentwise_relative_to_each_peak():
    ref = np.array([[[1.0, 1e-6]], [[2.0, 2e-6]]])  # [T=2, B=1, n=2]
    ys = ref.copy()
    ys[1, 0, 1] += 1e-12  # 1e-12 on a component peaking at 2e-6: relative error 5e-7
    ys[0, 0, 0] += 1e-7  # 1e-7 on a component peaking at 2: 5e-8
    assert bench_solve.error(ys, ref) == pytest.approx(5e-7)


class FakeRunner:
    """A 'solver' whose error is rtol x 5 (and that fails at rtol 1e-4), to check the ladder."""
    jit, compile_s = False, None

    def __init__(self, ref):
        self.ref = ref

    def run(self, rtol, atol):
        if rtol == 1e-4:
            raise RuntimeError("too many steps")
        return self.ref * (1 + 5 * rtol)

    def states(self, result):
        return result


def test_pick_tolerance_takes_the_loosest_rung_meeting_the_target():
    case = CASES["lv"]()
    ref = np.ones((3, 1, 2))
    picked = bench_solve.pick_tolerance(FakeRunner(ref), case, ref, [0], bench_solve.RUNGS,
                                        bench_solve.Mode(quick=True))
    assert picked["rtol"] == 1e-6  # error 5e-6 <= 1e-5; 1e-5 gives 5e-5
    assert picked["ladder"][1]["failed"].startswith("RuntimeError") and len(picked["ladder"]) == 4
    mode = bench_solve.Mode(quick=False)  # refines: 3e-6 gives 1.5e-5, misses; 1e-6 stays
    picked = bench_solve.pick_tolerance(FakeRunner(ref), case, ref, [0], bench_solve.RUNGS, mode)
    assert picked["rtol"] == 1e-6 and picked["ladder"][-1]["rtol"] == pytest.approx(3e-6)
    picked = bench_solve.pick_tolerance(FakeRunner(ref), case, ref * (1 + 1.2e-5), [0], bench_solve.RUNGS, mode)
    assert picked["rtol"] == pytest.approx(3e-6)  # |(1 + 1.5e-5) - (1 + 1.2e-5)| / (1 + 1.2e-5) = 3e-6


class CompilingRunner(FakeRunner):
    """Its first call 'compiles' for 0.2 s; later calls are fast."""
    jit = True

    def __init__(self, ref):
        super().__init__(ref)
        self.calls = 0

    def run(self, rtol, atol):
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.2)
        return self.ref * (1 + 5 * rtol)


def test_compile_time_is_reported_apart_and_does_not_end_the_ladder():
    ref = np.ones((3, 1, 2))
    mode = bench_solve.Mode(quick=True)
    mode.slow_s = 0.1  # a solve slower than this ends the ladder; the compiling first call is slower
    runner = CompilingRunner(ref)
    picked = bench_solve.pick_tolerance(runner, CASES["lv"](), ref, [0], bench_solve.RUNGS, mode)
    assert picked["rtol"] == 1e-6
    assert 0.15 < runner.compile_s < 0.5 and picked["ladder"][0]["seconds"] < 0.1


def installed_peers() -> list:
    needs = {"diffrax Tsit5": ("diffrax",), "CVODE Adams": ("roadrunner", "antimony"),
             "torchode Tsit5 (hodec module)": ("torchode",)}
    return [name for name, modules in needs.items() if all(importlib.util.find_spec(m) for m in modules)]


@pytest.mark.slow  # a real benchmark run: ~10 s of CPU (jit compiles, interleaved timing)
def test_quick_run_on_lv(tmp_path):
    always = ["hodec+torchdiffeq dopri5", "hodec tsit5", "hodec auto", "hodec native tsit5", "scipy DOP853"]
    names = always + installed_peers()
    out = tmp_path / "solve"
    assert bench_solve.main(["--quick", "--cases", "lv", "--no-training", "--no-memory", "--out", str(out),
                             "--candidates", *names]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    (cell,) = result["cells"]
    assert (cell["case"], cell["batch"]) == ("lv", 1)
    for name in names:
        row = cell["candidates"][name]
        assert row["status"] == "ok", (name, row)
        assert row["error"] <= 1e-5 and row["median_s"] > 0 and row["samples"] >= 3
    assert cell["candidates"]["hodec tsit5"]["nfev"] > 0 and cell["candidates"]["hodec tsit5"]["steps"] > 0
    # the torch and the native tsit5: one tableau and controller, so the same steps at the same tolerance
    torch_row, native_row = cell["candidates"]["hodec tsit5"], cell["candidates"]["hodec native tsit5"]
    assert native_row["rtol"] == torch_row["rtol"] and native_row["steps"] == torch_row["steps"]
    assert torch_row["method"] == "tsit5" and native_row["method"] is None  # (only the torch solvers name it)
    assert len(result["load_before"]) == 3 and result["versions"]["torch"] == torch.__version__
    md = out.with_suffix(".md").read_text()
    assert "| hodec tsit5 | 1e-0" in md and "## Goals" in md
    if "diffrax Tsit5" in names:
        assert cell["candidates"]["diffrax Tsit5"]["compile_s"] > 0
        assert any(g["peer"] == "diffrax Tsit5" and "ratio" in g for g in result["goals"])


def test_a_missing_peer_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(CANDIDATES["diffrax Tsit5"], "needs", ("no_such_module_for_hodec_tests",))
    cell = bench_solve.run_cell(CASES["lv"](), 1, [CANDIDATES["diffrax Tsit5"], CANDIDATES["scipy DOP853"]],
                                bench_solve.Mode(quick=True))
    assert cell["candidates"]["diffrax Tsit5"]["status"] == "n/a (no_such_module_for_hodec_tests not installed)"
    assert cell["candidates"]["scipy DOP853"]["status"] == "ok"


def test_join_takes_each_cell_from_the_last_run_that_has_it(tmp_path):
    def run(date, load, cells, training=None):
        return {"date": date, "quick": False, "machine": {"cpu": "x", "cores": 2}, "versions": {}, "source": date,
                "load_before": [load] * 3, "load_after": [load] * 3, "training": training or {}, "memory": {},
                "cells": [{"case": c, "title": c, "batch": b, "stiff": False, "target": 1e-5, "n": 2, "points": 3,
                           "t_end": 1.0, "candidates": {"scipy DOP853": {"status": "ok", "median_s": ms * 1e-3,
                                                                         "rtol": 1e-6, "error": 1e-6}}}
                          for c, b, ms in cells]}

    first = run("d1", 1.0, [("lv", 1, 5.0), ("pk", 1, 7.0)], training={"epochs": 1, "candidates": {}})
    second = run("d2", 3.0, [("pk", 1, 9.0), ("net100", 1024, 11.0)])
    paths = []
    for i, result in enumerate((first, second)):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(result))
    assert bench_solve.main(["--join", *map(str, paths), "--out", str(tmp_path / "joined")]) == 0
    joined = json.loads((tmp_path / "joined.json").read_text())
    got = {(c["case"], c["batch"]): c["candidates"]["scipy DOP853"]["median_s"] for c in joined["cells"]}
    assert got == pytest.approx({("lv", 1): 5e-3, ("pk", 1): 9e-3, ("net100", 1024): 11e-3})
    assert [c["case"] for c in joined["cells"]] == ["lv", "pk", "net100"]  # B = 1 cells first, as a run orders them
    assert [r["cells"] for r in joined["runs"]] == [[["lv", 1]], [["pk", 1], ["net100", 1024]]]
    assert joined["runs"][0]["sections"] == ["training"] and joined["training"]["epochs"] == 1
    assert joined["load_before"] == [1.0] * 3 and joined["load_after"] == [3.0] * 3
    note = (tmp_path / "joined.md").read_text()
    assert "Joined from 2 invocations" in note and "run 2: d2 (d2), load before [3.0, 3.0, 3.0]" in note
    again = tmp_path / "again"  # a joined file joined again keeps its runs
    assert bench_solve.main(["--join", str(tmp_path / "joined.json"), "--out", str(again)]) == 0
    assert json.loads(again.with_suffix(".json").read_text())["runs"] == joined["runs"]


def test_training_epochs_that_compile_are_timed_apart_and_a_failure_keeps_the_rest():
    """An epoch in which torch.compile made a graph (dynamo's unique_graphs counter grows) is left out of mean and
    median and its time over the median is the compile time; warm-up epochs never enter the statistics; a
    candidate that raises is reported with its error and the epochs before, the others go on."""
    from torch._dynamo.utils import counters

    calls = {"compiling": 0, "failing": 0}

    def compiling():  # the first epoch "compiles" and takes 0.2 s, the fourth (a recompile) 0.1 s, others 0.01 s
        calls["compiling"] += 1
        if calls["compiling"] in (1, 4):
            counters["stats"]["unique_graphs"] += 1
        time.sleep({1: 0.2, 4: 0.1}.get(calls["compiling"], 0.01))

    def failing():
        calls["failing"] += 1
        if calls["failing"] == 3:
            raise RuntimeError("boom")
        time.sleep(0.01)

    runners, failed = {"compiling": compiling, "failing": failing}, {}
    warmup = bench_solve.epochs_interleaved(runners, 1, failed, "warm-up")
    timed = bench_solve.epochs_interleaved(runners, 5, failed, "timed")
    stats = bench_solve.epoch_stats(warmup["compiling"], timed["compiling"])
    assert stats["epochs"] == 4 and stats["compiling_epochs"] == 2 and stats["compiling_timed_epochs"] == 1
    assert 0.01 <= stats["median_s"] < 0.05 and stats["mean_s"] < 0.05  # neither compile in them
    assert stats["compile_s"] == pytest.approx(0.3 - 2 * stats["median_s"], abs=0.05)
    assert stats["first_epoch_s"] >= 0.2
    assert failed["failing"]["status"] == "failed in timed epoch 2 (RuntimeError: boom)"
    assert len(failed["failing"]["epoch_s"]) == 1 and calls["failing"] == 3


def test_training_goals_name_a_failed_homotopy_candidate():
    ok = {"status": "ok", "mean_s": 1.0}
    training = {"candidates": {"hodec vanilla (tsit5)": {**ok, "mean_s": 0.4}, "hodec homotopy (tsit5)": ok,
                               "hodec vanilla (tsit5, compile)": {**ok, "mean_s": 0.1},
                               "hodec homotopy (tsit5, compile)": {"status": "failed in timed epoch 9 (x)"},
                               bench_solve.LOOP: ok}}
    rows = {(g["hodec"], g["peer"]): g for g in bench_solve.training_goals(training)}
    assert rows["hodec vanilla (tsit5, compile)", bench_solve.LOOP]["ratio"] == pytest.approx(0.1)
    assert rows["hodec homotopy (tsit5)", "hodec vanilla (tsit5)"]["status"] == "missed by 1.67x"
    failed = rows["hodec homotopy (tsit5, compile)", "hodec vanilla (tsit5, compile)"]
    assert failed["status"] == "not measured (the homotopy candidate failed)" and "ratio" not in failed
