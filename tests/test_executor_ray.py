"""The Ray executor against the serial path: sparsify's cross-validation and a sweep give the same numbers, a
trial whose worker process is killed (SIGKILL, mid-trial) is rerun with the same result, and a failing trial is a
Failed in both. One local Ray of 2 CPUs is shared by the module's tests."""
import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray and its workers: multi-process by nature (.ci/run runs it)

from hodec.compiler import compile_text  # noqa: E402
from hodec.errors import HodecError  # noqa: E402
from hodec.training.executor import Executor, Failed, shutdown, start_ray  # noqa: E402
from hodec.training.sparsify import sparsify  # noqa: E402
from hodec.training.sparsify.path import fold_trials, run_fold_trial  # noqa: E402
from hodec.training.sparsify_config import load_sparsify_config  # noqa: E402

from test_sparsify import ABC, FAST, synthetic  # noqa: E402
from test_sweep import folder, sweep, table  # noqa: E402,F401

RAY = {"executor": "ray", "workers": 2}
CONFIG = {**FAST, "epochs": 30, "lambda1": [0, 1e-3, 1e-2], "folds": 2, "refit_epochs": 15}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    start_ray(Executor("ray", workers=2))
    yield
    shutdown()


def same_path(a, b):
    assert [e["lambda1"] for e in a] == [e["lambda1"] for e in b]
    assert [e["edges_kept_folds"] for e in a] == [e["edges_kept_folds"] for e in b]
    assert [e["val_mse"] for e in a] == pytest.approx([e["val_mse"] for e in b], rel=1e-12)


@pytest.mark.parametrize("warm_start", [True, False])  # a fold's whole path per trial; one (fold, lambda1) pair
def test_sparsify_on_ray_equals_serial(warm_start):
    data = synthetic()
    config = {**CONFIG, "warm_start": warm_start}
    serial = sparsify(ABC, data, config, filename="abc.hode")
    lines = []
    parallel = sparsify(ABC, data, {**config, **RAY}, filename="abc.hode", log=lines.append)
    assert parallel.lambda1 == serial.lambda1
    same_path(parallel.path, serial.path)
    assert [e["kept"] for e in parallel.edges] == [e["kept"] for e in serial.edges]
    assert parallel.refit.best_mse == pytest.approx(serial.refit.best_mse, rel=1e-10)
    trials = 2 if warm_start else 6
    assert f"trials (ray): {trials} of {trials} done, 0 running, 0 failed" in lines


def test_a_trial_whose_worker_is_killed_is_rerun_with_the_same_result(tmp_path):
    spec = compile_text(ABC, "abc.hode")
    trials = fold_trials(spec, synthetic(), load_sparsify_config({**CONFIG, **RAY}), None)
    serial = [run_fold_trial(t) for t in trials]
    marker = str(tmp_path / "killed")

    def killed_once(trial):
        """The first fold's first attempt: its worker process is sent SIGKILL 0.5 s into the trial."""
        if trial.fold == 0 and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()
            time.sleep(5)  # the trial is killed mid-run
        return run_fold_trial(trial)

    rerun = Executor("ray", workers=2).map(killed_once, trials)
    with open(marker) as f:
        pid = int(f.read())
    with pytest.raises(ProcessLookupError):  # the first attempt's worker is dead
        os.kill(pid, 0)
    assert len(rerun) == len(serial)
    for got, want in zip(rerun, serial):
        for (lam, sse, cells, kept, message), (lam2, sse2, cells2, kept2, message2) in zip(got, want):
            assert (lam, kept, message) == (lam2, kept2, message2)
            np.testing.assert_allclose(sse, sse2, rtol=1e-12)
            np.testing.assert_array_equal(cells, cells2)


def test_a_failing_trial_is_failed_in_both_and_a_bug_propagates():
    def trial(x):
        if x == 2:
            raise HodecError(f"no good: {x}", "trial")
        return x * x

    for executor in (Executor(), Executor("ray", workers=2)):
        assert executor.map(trial, [1, 2, 3]) == [1, Failed("no good: 2"), 9]

    def bug(x):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        Executor("ray", workers=2).map(bug, [1])


def test_a_sweep_on_ray_equals_the_serial_sweep(folder):  # noqa: F811
    grid = "grid:\n  lr: [0.001, 0.01, 0.1]\n"
    assert sweep(folder, grid) == 0
    serial = table(folder)
    (folder / "fit.yaml").write_text((folder / "fit.yaml").read_text() + "executor: ray\nworkers: 2\n")
    assert sweep(folder, grid, "--force") == 0
    parallel = table(folder)
    assert [(r["lr"], r["best_mse"], r["best_epoch"]) for r in parallel] == \
        [(r["lr"], r["best_mse"], r["best_epoch"]) for r in serial]


def test_multi_start_on_ray_equals_serial(folder):  # noqa: F811
    from test_fit_starts import run, starts

    (folder / "fit.yaml").write_text((folder / "fit.yaml").read_text() + "starts: 3\n")
    assert run(folder) == 0
    serial = starts(folder)
    (folder / "fit.yaml").write_text((folder / "fit.yaml").read_text() + "executor: ray\n")
    assert run(folder, "--force") == 0
    assert [(r["start"], r["best_mse"]) for r in starts(folder)] == [(r["start"], r["best_mse"]) for r in serial]
