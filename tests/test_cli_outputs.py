"""Outputs are checked before anything is written: an output that is an input, two outputs on one path, an output
folder that is a file, and inputs that are not spec files (devices, FIFOs) are clear errors with exit code 1 and
leave every file as it was."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hodec.cli import main

SPEC = "model M\nparam k = 0.5 positive\nstate x = 1\nder x = -k * x\nobserve y = x\n"
INPUT_SPEC = "model U\ninput u\nstate x = 0\nder x = u - x\n"


def test_compile_output_that_is_its_input_is_refused(tmp_path, capsys):
    spec = tmp_path / "self.hode"
    spec.write_text(SPEC)
    assert main(["compile", str(spec), "-o", str(spec)]) == 1
    assert "is the input" in capsys.readouterr().err
    assert spec.read_text() == SPEC
    link = tmp_path / "link.py"
    link.symlink_to(spec)  # an output resolving to the input through a link is the input too
    assert main(["compile", str(spec), "-o", str(link)]) == 1
    assert spec.read_text() == SPEC


def test_compile_colliding_outputs_write_nothing(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "m.hode").write_text(SPEC)
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "a" / "m.hode"), str(tmp_path / "b" / "m.hode"),
                 "--out-dir", str(out)]) == 1
    assert "two outputs" in capsys.readouterr().err
    assert not out.exists()


def test_out_dir_naming_a_file(tmp_path, capsys):
    spec = tmp_path / "m.hode"
    spec.write_text(SPEC)
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main(["compile", str(spec), "--out-dir", str(target)]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_simulate_output_that_is_its_spec_is_refused(tmp_path, capsys):
    spec = tmp_path / "m.hode"
    spec.write_text(SPEC)
    assert main(["simulate", str(spec), "--t-end", "1", "--points", "3", "-o", str(spec)]) == 1
    assert spec.read_text() == SPEC


def test_transform_output_that_is_its_spec_is_refused(tmp_path):
    spec = tmp_path / "m.hode"
    spec.write_text(SPEC)
    assert main(["transform", str(spec), "--mnode", "-o", str(spec)]) == 1
    assert spec.read_text() == SPEC


def test_device_is_not_a_spec(capsys):
    assert main(["check", "/dev/zero"]) == 1
    assert "not a regular file" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_spec_does_not_hang(tmp_path):
    fifo = tmp_path / "spec.hode"
    os.mkfifo(fifo)
    run = subprocess.run([sys.executable, "-m", "hodec.cli", "check", str(fifo)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1 and "not a regular file" in run.stderr


def test_simulate_unbound_input_speaks_cli(tmp_path, capsys):
    spec = tmp_path / "u.hode"
    spec.write_text(INPUT_SPEC)
    assert main(["simulate", str(spec), "--t-end", "1", "--points", "3"]) == 1
    err = capsys.readouterr().err
    assert "--input u=" in err and "set_inputs" not in err
    assert main(["simulate", str(spec), "--t-end", "1", "--points", "3", "--input", "u=2"]) == 0


@pytest.mark.parametrize("command, keys", [("fit", ("method: homotopy", "epochs: 600", "solver:", "dtype:")),
                                           ("sparsify", ("method: vanilla", "lambda1:", "refit_lr:", "warm_start:"))])
def test_help_lists_the_config_keys_with_defaults(command, keys, capsys):
    """`--help` names every config key and its default (a user does not read source)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "hodec/training" not in out
    for key in keys:
        assert key in out


def test_fit_says_what_it_read_before_setting_up(tmp_path, capsys):
    """A large data file takes a while to read and set up: the first line comes before the progress bar."""
    data = tmp_path / "lv.csv"
    data.write_text("t,prey,predators\n" + "".join(f"{i / 10},{1 + i / 100},{1 - i / 200}\n" for i in range(5)))
    config = tmp_path / "fit.yaml"
    config.write_text("method: vanilla\nepochs: 1\nsolver: {method: rk4, step_size: 0.1}\n")
    spec = Path(__file__).resolve().parents[1] / "specs" / "lotka_volterra.hode"
    assert main(["fit", str(spec), "--data", str(data), "--config", str(config),
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"hodec fit: {data}: 1 trajectories, 10 values in prey, predators")
