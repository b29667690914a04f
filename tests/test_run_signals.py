"""`hodec fit` under real signals to real processes: SIGINT in the middle of an epoch (epoch numbers stay exact
across --resume), SIGKILL (at most the epoch in progress is lost), SIGTERM during a solver grinding through its
steps (honoured within a second)."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hodec.cli import main
from hodec.training.report import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LV = ROOT / "specs" / "lotka_volterra.hode"
# Runs `hodec fit ARGS...` and sends itself a real signal in the middle of step number N of this process (after the
# epoch's loss and MSE are computed, before its AdamW update), the most exposed point of an epoch.
SIGNAL_AT_STEP = """
import os, signal, sys, torch
from hodec.cli import main
n, sig = int(sys.argv[1]), getattr(signal, sys.argv[2])
real, steps = torch.optim.AdamW.step, [0]
def step(self, *args, **kwargs):
    steps[0] += 1
    if steps[0] == n:
        os.kill(os.getpid(), sig)
    return real(self, *args, **kwargs)
torch.optim.AdamW.step = step
sys.exit(main(sys.argv[3:]))
"""
LV_DATA = "t,prey,predators\n" + "".join(f"{0.4 * i},{x},{y}\n" for i, (x, y) in enumerate(
    [(0.44, 4.63), (0.22, 2.60), (0.27, 1.53), (0.43, 0.95), (0.72, 0.66), (1.18, 0.52), (1.88, 0.49),
     (2.76, 0.62), (3.40, 1.14), (2.69, 2.54), (1.03, 3.61)]))


def fit_args(tmp_path, *extra):
    data = tmp_path / "lv.csv"
    data.write_text(LV_DATA)
    return ["fit", str(LV), "--data", str(data), "--quiet", *extra]


def run(args, signal_at=None, sig="SIGINT"):
    prefix = ["-c", SIGNAL_AT_STEP, str(signal_at), sig] if signal_at else ["-m", "hodec.cli"]
    return subprocess.run([sys.executable, *prefix, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_sigint_mid_epoch_after_resume_keeps_epoch_numbers_exact(tmp_path):
    config = tmp_path / "fit.yaml"
    config.write_text("method: vanilla\nepochs: 8\nlr: 0.02\nsolver: {rtol: 1e-5, atol: 1e-7}\n")
    out = tmp_path / "run"
    first = run(fit_args(tmp_path, "--config", str(config), "--out", str(out)), signal_at=3)
    assert first.returncode == 130, first.stderr
    report = json.loads((out / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]] == [1, 2] and report["best_epoch"] <= 2
    assert f"interrupted after epoch 2; best epoch {report['best_epoch']} kept" in first.stderr
    second = run(fit_args(tmp_path, "--resume", str(out)), signal_at=3)  # steps 3 and 4 done, then 5 interrupted
    assert second.returncode == 130, second.stderr
    report = json.loads((out / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3, 4]
    assert report["status"] == "interrupted" and 1 <= report["best_epoch"] <= 4
    assert report["best_mse"] == min(h["mse"] for h in report["history"])
    assert report["best_mse"] == report["history"][report["best_epoch"] - 1]["mse"]
    assert f"interrupted after epoch 4; best epoch {report['best_epoch']} kept" in second.stderr
    header = (out / "fitted.hode").read_text().splitlines()[0]
    assert f"best epoch {report['best_epoch']} of 4," in header
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert (checkpoint["resume"]["epoch"], checkpoint["best_epoch"]) == (4, report["best_epoch"])
    assert main(fit_args(tmp_path, "--resume", str(out))) == 0  # the rest runs in this process: no signal in it
    assert [h["epoch"] for h in json.loads((out / "report.json").read_text())["history"]] == list(range(1, 9))


def test_sigkill_loses_at_most_the_epoch_in_progress(tmp_path):
    config = tmp_path / "fit.yaml"
    config.write_text("method: vanilla\nepochs: 7\nsolver: {rtol: 1e-5, atol: 1e-7}\n")
    out = tmp_path / "run"
    killed = run(fit_args(tmp_path, "--config", str(config), "--out", str(out)), signal_at=5, sig="SIGKILL")
    assert killed.returncode == -signal.SIGKILL
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint["resume"]["epoch"] == 4  # epochs 1-4 were complete, the fifth in progress
    assert [h["epoch"] for h in checkpoint["resume"]["history"]] == [1, 2, 3, 4]
    assert main(fit_args(tmp_path, "--resume", str(out))) == 0  # the rest runs in this process: no signal in it
    assert [h["epoch"] for h in json.loads((out / "report.json").read_text())["history"]] == list(range(1, 8))


# dx/dt = -1e6 (x - cos t): an explicit method that does not detect stiffness (torchdiffeq's bosh3; hodec's own
# name the stiffness and `auto` switches to rodas5p) at rtol 1e-10 needs millions of steps: the first epoch grinds
STIFF = "model Stiff\nparam k = 1000000 positive\nparam a = 1.0\nstate x = 1\nder x = -k * (x - a * cos(t))\n" \
        "observe y = x\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_grinding_solve_ends_the_run_within_a_second(tmp_path, sig):
    spec = tmp_path / "stiff.hode"
    spec.write_text(STIFF)
    data = tmp_path / "stiff.csv"
    data.write_text("t,y\n" + "".join(f"{t},1.0\n" for t in range(11)))
    config = tmp_path / "fit.yaml"
    config.write_text("method: vanilla\nepochs: 5\nsolver: {method: bosh3, rtol: 1e-10, atol: 1e-12}\n")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "hodec.cli", "fit", str(spec), "--data", str(data), "--config",
                             str(config), "--out", str(out), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.is_dir() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)  # well inside the first epoch's solve
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert proc.returncode == 130 and "interrupted after epoch 0" in err and "Traceback" not in err, err
    assert took < 1.0, f"{took:.2f} s from the signal to the exit"
    assert json.loads((out / "report.json").read_text())["status"] == "interrupted"
    assert load_checkpoint(out / "checkpoint.pt")["resume"]["epoch"] == 0


# At step N of this process: a thread sends SIGTERM (printing when) while the main thread is inside one long C++ call
# (a matrix product, standing in for the backward pass of a long solve), where Python cannot run a signal handler.
SIGNAL_IN_CPP = """
import os, signal, sys, threading, time, torch
from hodec.cli import main
torch.set_num_threads(1)
n, real, steps = int(sys.argv[1]), torch.optim.AdamW.step, [0]
def send():
    time.sleep(0.3)
    print(f"SENT {time.time()!r}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
def step(self, *args, **kwargs):
    steps[0] += 1
    if steps[0] == n:
        threading.Thread(target=send).start()
        torch.linalg.matrix_power(torch.rand(3000, 3000, dtype=torch.float64) / 3000, 64)  # one call, seconds
    return real(self, *args, **kwargs)
torch.optim.AdamW.step = step
sys.exit(main(sys.argv[2:]))
"""


def test_a_signal_during_a_long_cpp_call_ends_the_run_within_a_second(tmp_path):
    config = tmp_path / "fit.yaml"
    config.write_text("method: vanilla\nepochs: 6\nsolver: {rtol: 1e-5, atol: 1e-7}\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_CPP, "3",
                           *fit_args(tmp_path, "--config", str(config), "--out", str(out))],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    ended = time.time()
    sent = float(next(line for line in proc.stderr.splitlines() if line.startswith("SENT ")).split()[1])
    assert ended - sent < 1.0, f"{ended - sent:.2f} s from the signal to the exit"
    assert proc.returncode == 130, proc.stderr
    assert "the checkpoint of epoch 2 is kept" in proc.stderr and "Traceback" not in proc.stderr
    assert load_checkpoint(out / "checkpoint.pt")["resume"]["epoch"] == 2
