"""simulate with a fixed-grid solver: a step_size that would make an absurd number of steps is refused before
anything is allocated (a span of 1e12 at step 1 used to ask for 8 TB of time grid); a sane one integrates."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

import hodec
from hodec.compiler import load_text

DECAY = "model Decay\nparam k = 1 positive\nstate x = 1\nder x = -k * x\n"


def test_fixed_grid_euler_takes_the_given_steps():
    m = load_text(DECAY, "decay.hode")().double()
    ys = m.simulate([0.0, 1.0], method="euler", step_size=0.25)
    assert abs(float(ys.detach()[-1, 0]) - 0.75 ** 4) < 1e-14  # four Euler steps of x' = -x: x_n = (1 - h)^n


@pytest.mark.parametrize("ts, step, words", [([0.0, 1e12], 1.0, ["1e+12 steps", "span of 1e+12", "step_size 1"]),
                                             ([0.0, 1.0], 1e-12, ["1e+12 steps", "step_size 1e-12"]),
                                             ([0.0, float("inf")], 1.0, ["inf steps"])])
def test_absurd_step_count_is_refused_at_once(ts, step, words):
    m = load_text(DECAY, "decay.hode")()
    start = time.perf_counter()
    with pytest.raises(hodec.HodecError) as err:
        m.simulate(ts, method="rk4", step_size=step)
    assert time.perf_counter() - start < 1.0
    assert all(w in str(err.value) for w in words), str(err.value)
    assert "rk4" in str(err.value) and "dopri5" in str(err.value)


@pytest.mark.parametrize("step", [0.0, -1.0, float("nan")])
def test_step_size_must_be_positive(step):
    with pytest.raises(hodec.HodecError, match="step_size must be a positive number"):
        load_text(DECAY, "decay.hode")().simulate([0.0, 1.0], method="euler", step_size=step)


@pytest.mark.skipif(sys.platform != "linux", reason="address-space limit via RLIMIT_AS")
def test_refusal_allocates_nothing_under_a_small_memory_limit():
    """In a child process limited to 4 GB of address space: the refusal comes as a HodecError, not a failed
    allocation (the 8 TB grid would fail either way; this proves the guard runs before torchdiffeq)."""
    code = ("import resource, torch, hodec\nfrom hodec.compiler import load_text\n"
            f"m = load_text({DECAY!r}, 'decay.hode')()\n"
            "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
            "try:\n    m.simulate([0.0, 1e9], method='euler', step_size=1.0)\n"
            "except hodec.HodecError as e:\n    print('refused:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    refused = proc.returncode == 0 and "refused:" in proc.stdout and "1e+09 steps" in proc.stdout
    assert refused, proc.stdout + proc.stderr
