"""The run folder of `hodec fit`: claimed by one run at a time (real processes), and --resume loads no code."""
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hodec.cli import main
from hodec.errors import HodecError
from hodec.training.run import LOCK, claim_rundir

ROOT = Path(__file__).resolve().parents[1]
LV = ROOT / "specs" / "lotka_volterra.hode"
LV_DATA = "t,prey,predators\n0,0.44,4.63\n0.4,0.22,2.60\n0.8,0.27,1.53\n1.2,0.43,0.95\n1.6,0.72,0.66\n"


@pytest.fixture
def lv(tmp_path):
    data = tmp_path / "lv.csv"
    data.write_text(LV_DATA)
    long, short = tmp_path / "long.yaml", tmp_path / "short.yaml"
    long.write_text("method: vanilla\nepochs: 100000\nsolver: {rtol: 1e-5, atol: 1e-7}\n")
    short.write_text("method: vanilla\nepochs: 2\nsolver: {rtol: 1e-5, atol: 1e-7}\n")
    return ["fit", str(LV), "--data", str(data), "--quiet"], long, short


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(tmp_path, lv, capsys):
    args, long, short = lv
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "hodec.cli", *args, "--config", str(long), "--out", str(out)],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for extra in ([], ["--force"], ["--resume"]):  # the second runs: this process, another than the first
            assert main([*args, "--config", str(short), "--out", str(out), *extra]) == 1
            err = capsys.readouterr().err
            assert f"in use by hodec fit (pid {first.pid} on " in err and "started" in err
        assert first.poll() is None  # the first run goes on
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    # the lock of a dead run is taken over: --resume continues it, --force starts over
    assert str(first.pid) in (out / LOCK).read_text()
    assert main([*args, "--config", str(short), "--out", str(out), "--force"]) == 0, capsys.readouterr().err
    assert str(first.pid) not in (out / LOCK).read_text()


def test_the_claim_is_released_and_repeatable_in_one_process(tmp_path):
    out = tmp_path / "run"
    with claim_rundir(out, False) as lock:
        (out / "report.json").write_text("{}")
        assert claim_rundir(out, True) is lock  # this process holds it already; --force cleared the outputs
        assert not (out / "report.json").exists()
        (out / "report.json").write_text("{}")
    with pytest.raises(HodecError, match="already exists"):
        claim_rundir(out, False)
    claim_rundir(out, True).release()


class Payload:
    """Unpickling this creates the marker file: what a malicious checkpoint would do with os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("wrap", [False, True])
def test_resume_refuses_a_pickle_payload_without_running_it(tmp_path, lv, wrap, capsys):
    args, _, short = lv
    out = tmp_path / "run"
    assert main([*args, "--config", str(short), "--out", str(out)]) == 0
    marker = tmp_path / "pwned"
    payload = Payload(marker)
    if wrap:  # inside an otherwise well-formed hodec checkpoint
        payload = {**torch.load(out / "checkpoint.pt", weights_only=True), "meta": payload}
    torch.save(payload, out / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError):  # weights_only refuses it; without, loading it runs its code
        torch.load(out / "checkpoint.pt", weights_only=True)
    capsys.readouterr()
    assert main([*args, "--resume", str(out)]) == 1  # in this process: a payload run here leaves the marker too
    err = capsys.readouterr().err
    assert "is not a hodec fit checkpoint: it holds objects other than tensors and plain data" in err
    assert "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a zip", pickle.dumps({"format": "hodec-fit-1"}, protocol=2)])
def test_resume_refuses_a_foreign_or_broken_checkpoint(tmp_path, lv, capsys, content):
    args, _, short = lv
    out = tmp_path / "run"
    assert main([*args, "--config", str(short), "--out", str(out)]) == 0
    (out / "checkpoint.pt").write_bytes(content)
    assert main([*args, "--resume", str(out)]) == 1
    err = capsys.readouterr().err
    assert "checkpoint" in err and "internal error" not in err


def test_a_second_sparsify_into_a_busy_folder_is_refused_naming_the_first(tmp_path, capsys):
    data = tmp_path / "lv.csv"
    rows = LV_DATA.splitlines()
    data.write_text("t,id," + rows[0][2:] + "\n" + "".join(f"{r.split(',', 1)[0]},{i},{r.split(',', 1)[1]}\n"
                                                          for i in (1, 2) for r in rows[1:]))
    config = tmp_path / "sparsify.yaml"
    config.write_text("epochs: 100000\nlambda1: [0, 0.01]\nfolds: 2\nsolver: {rtol: 1e-5, atol: 1e-7}\n")
    out = tmp_path / "run"
    args = ["sparsify", str(LV), "--data", str(data), "--config", str(config), "--out", str(out), "--quiet"]
    first = subprocess.Popen([sys.executable, "-m", "hodec.cli", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / LOCK).exists() or not (out / LOCK).read_text():
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.poll() else ""
            time.sleep(0.05)
        assert main([*args, "--force"]) == 1  # the second run: this process, another than the first
        assert f"in use by hodec sparsify (pid {first.pid} on " in capsys.readouterr().err
    finally:
        first.kill()
        first.wait()
