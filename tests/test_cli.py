"""The command line: compile (outputs, atomic writes, all-or-nothing), check, simulate (CSV that agrees with the
Python API), option errors with exit code 1, and byte-identical output across processes."""
from __future__ import annotations

import csv
import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hodec
import hodec.cli
from hodec.cli import main

REPO = Path(__file__).resolve().parents[1]

DECAY = """model Decay "two coupled decays with a forcing input"
param k = 0.5 positive
param c = 2 fixed
input u
state x = c
state y = 0
let drive = if(t > 1, u, 0)
der x = -k * x + drive
der y = x - y
observe total = x + y
observe ratio = y / (x + 1)
"""

ENZYME = """model Enzyme
param kf = 2 positive
param kr = 1 positive
param kcat = 0.5 positive
state E = 0.1
state S = 10
state ES = 0
state P = 0
reaction binding: E + S <-> ES ; kf * E * S - kr * ES
reaction catalysis: ES -> E + P ; kcat * ES
neural mm(s) hidden 4 positive
observe product = P + 0 * mm(S)
"""

BAD = "model Bad\nstate A = 1\nder A = -kk * A\n"


@pytest.fixture
def specs(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "decay.hode").write_text(DECAY)
    (folder / "enzyme.hode").write_text(ENZYME)
    (folder / "bad.hode").write_text(BAD)
    return folder


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# ---------------------------------------------------------------- compile
def test_compile_out_dir_writes_stem_py(specs, tmp_path, capsys):
    out_dir = tmp_path / "generated" / "nested"  # created as needed
    code, out, err = _run(capsys, "compile", specs / "decay.hode", specs / "enzyme.hode", "--out-dir", out_dir)
    assert (code, err) == (0, "")
    assert sorted(p.name for p in out_dir.iterdir()) == ["decay.py", "enzyme.py"]
    assert out.splitlines() == [f"{specs / 'decay.hode'} -> {out_dir / 'decay.py'}",
                                f"{specs / 'enzyme.hode'} -> {out_dir / 'enzyme.py'}"]
    for stem in ("decay", "enzyme"):
        assert (out_dir / f"{stem}.py").read_text() == hodec.compile_file(specs / f"{stem}.hode")


def test_compile_default_output_is_next_to_the_spec(specs, capsys):
    code, out, _ = _run(capsys, "compile", specs / "decay.hode")
    assert code == 0
    assert (specs / "decay.py").read_text() == hodec.compile_file(specs / "decay.hode")


def test_compile_dash_o_one_spec(specs, tmp_path, capsys):
    target = tmp_path / "model_module.py"
    code, out, _ = _run(capsys, "compile", specs / "decay.hode", "-o", target)
    assert code == 0 and out == f"{specs / 'decay.hode'} -> {target}\n"
    namespace: dict = {}
    exec(compile(target.read_text(), str(target), "exec"), namespace)
    assert namespace["Model"].state_names == ("x", "y")


def test_compile_dash_o_with_two_specs_is_an_error(specs, tmp_path, capsys):
    target = tmp_path / "one.py"
    code, out, err = _run(capsys, "compile", specs / "decay.hode", specs / "enzyme.hode", "-o", target)
    assert code == 1 and out == ""
    assert err == "hodec: error: -o names one output file; use --out-dir for several specs\n"
    assert not target.exists()


def test_compile_dash_o_and_out_dir_exclude_each_other(specs, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["compile", str(specs / "decay.hode"), "-o", str(tmp_path / "a.py"), "--out-dir", str(tmp_path)])
    assert info.value.code == 2  # argparse usage error
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["out-dir", "next-to-spec"])
def test_a_failing_spec_among_several_writes_nothing(specs, tmp_path, capsys, where):
    out_dir = tmp_path / "never"
    extra = ["--out-dir", out_dir] if where == "out-dir" else []
    code, out, err = _run(capsys, "compile", specs / "decay.hode", specs / "bad.hode", specs / "enzyme.hode", *extra)
    assert code == 1 and out == ""
    assert err.splitlines()[0] == f"{specs / 'bad.hode'}:3:10: error: undefined name 'kk'"
    assert not out_dir.exists()
    assert not list(specs.glob("*.py"))


def test_all_failing_specs_are_reported(specs, tmp_path, capsys):
    (specs / "bad2.hode").write_text("model Bad2\nstate A = 1\nder A = (A\n")
    code, _, err = _run(capsys, "compile", specs / "bad.hode", specs / "bad2.hode", "--out-dir", tmp_path / "o")
    assert code == 1
    assert [line for line in err.splitlines() if ": error: " in line] == [
        f"{specs / 'bad.hode'}:3:10: error: undefined name 'kk'",
        f"{specs / 'bad2.hode'}:3:11: error: unexpected end of line; expected ')'"]


def _fail_midway(monkeypatch, exc):
    """Make the write of an output file write half its text, then fail with exc."""
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.f.close()
            return False

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise exc

    monkeypatch.setattr(hodec.cli.os, "fdopen", lambda fd, *a, **k: HalfWriter(real_fdopen(fd, *a, **k)))


def test_output_is_written_atomically(specs, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "decay.py"
    target.write_text("OLD CONTENT\n")
    _fail_midway(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    code, out, err = _run(capsys, "compile", specs / "decay.hode", "--out-dir", out_dir)
    assert code == 1
    assert err == f"hodec: error: cannot write {target}: No space left on device\n"
    assert target.read_text() == "OLD CONTENT\n"  # the old file is intact
    assert sorted(p.name for p in out_dir.iterdir()) == ["decay.py"]  # and no temporary file remains


def test_interrupted_write_leaves_no_temporary_file(specs, tmp_path, capsys, monkeypatch):
    target = tmp_path / "decay.py"
    target.write_text("OLD CONTENT\n")
    _fail_midway(monkeypatch, KeyboardInterrupt())
    code, _, err = _run(capsys, "compile", specs / "decay.hode", "-o", target)
    assert code == 130 and err == "hodec: interrupted\n"
    assert target.read_text() == "OLD CONTENT\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decay.py", "specs"]


def test_failing_rename_keeps_the_old_file(specs, tmp_path, capsys, monkeypatch):
    target = tmp_path / "decay.py"
    target.write_text("OLD CONTENT\n")

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(hodec.cli.os, "replace", refuse)
    code, _, err = _run(capsys, "compile", specs / "decay.hode", "-o", target)
    assert code == 1 and err == f"hodec: error: cannot write {target}: Permission denied\n"
    assert target.read_text() == "OLD CONTENT\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decay.py", "specs"]


def test_missing_output_folder_is_an_error(specs, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "folder" / "x.py"
    code, _, err = _run(capsys, "compile", specs / "decay.hode", "-o", target)
    assert code == 1 and err == f"hodec: error: output folder does not exist: {target.parent}\n"


# ---------------------------------------------------------------- check
def test_check_prints_ok_lines(specs, capsys):
    code, out, err = _run(capsys, "check", specs / "decay.hode", specs / "enzyme.hode")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{specs / 'decay.hode'}: ok (2 states, 0 reactions, 2 params, 0 neural slots)",
        f"{specs / 'enzyme.hode'}: ok (4 states, 2 reactions, 3 params, 1 neural slots)",
    ]
    assert not list(specs.glob("*.py"))  # check writes nothing


def test_check_with_a_bad_spec(specs, capsys):
    code, out, err = _run(capsys, "check", specs / "decay.hode", specs / "bad.hode")
    assert code == 1
    assert out == f"{specs / 'decay.hode'}: ok (2 states, 0 reactions, 2 params, 0 neural slots)\n"
    assert err.splitlines() == [f"{specs / 'bad.hode'}:3:10: error: undefined name 'kk'",
                                "    der A = -kk * A", "             ^^"]


# ---------------------------------------------------------------- simulate
def _read_csv(text: str):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], torch.tensor([[float(v) for v in row] for row in rows[1:]], dtype=torch.float64)


def _api(spec: Path, ts, inputs, params=None):
    model = hodec.load(spec)(params or {}).double()
    with torch.no_grad():
        ys = model.simulate(ts, inputs=inputs, method="auto", rtol=1e-8, atol=1e-10)
        obs = model.observe(ys, ts)
    return torch.cat([ts.reshape(-1, 1), ys, obs], dim=-1)


def test_simulate_csv_header_and_values_agree_with_the_api(specs, capsys):
    code, out, err = _run(capsys, "simulate", specs / "decay.hode", "--t-end", "3", "--points", "7",
                          "--input", "u=0.25")
    assert (code, err) == (0, "")
    header, values = _read_csv(out)
    assert header == ["t", "x", "y", "total", "ratio"]
    assert values.shape == (7, 5)
    ts = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    assert torch.equal(values[:, 0], ts)
    expected = _api(specs / "decay.hode", ts, {"u": ([0.0], [0.25])})
    torch.testing.assert_close(values, expected, rtol=1e-12, atol=1e-12)
    # and the values make sense: x(0) = c = 2, y(0) = 0, total = x + y
    assert values[0, 1:3].tolist() == [2.0, 0.0]
    torch.testing.assert_close(values[:, 3], values[:, 1] + values[:, 2])


def test_simulate_set_overrides_a_param(specs, capsys):
    _, base, _ = _run(capsys, "simulate", specs / "decay.hode", "--t-end", "1", "--points", "3", "--input", "u=0")
    code, out, err = _run(capsys, "simulate", specs / "decay.hode", "--t-end", "1", "--points", "3",
                          "--input", "u=0", "--set", "k=2", "--set", "c=5")
    assert (code, err) == (0, "")
    _, values = _read_csv(out)
    assert values[0, 1].item() == 5.0  # the fixed param c sets x(0)
    ts = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
    expected = _api(specs / "decay.hode", ts, {"u": ([0.0], [0.0])}, {"k": 2.0, "c": 5.0})
    torch.testing.assert_close(values, expected, rtol=1e-12, atol=1e-12)
    assert out != base


def test_simulate_input_from_csv(specs, tmp_path, capsys):
    signal = tmp_path / "u.csv"
    signal.write_text("t,value\n0,0\n1.5,1\n2,3\n4,3\n")
    code, out, err = _run(capsys, "simulate", specs / "decay.hode", "--t-end", "4", "--points", "9",
                          "--input", f"u={signal}")
    assert (code, err) == (0, "")
    _, values = _read_csv(out)
    ts = torch.linspace(0.0, 4.0, 9, dtype=torch.float64)
    expected = _api(specs / "decay.hode", ts, {"u": ([0.0, 1.5, 2.0, 4.0], [0.0, 1.0, 3.0, 3.0])})
    torch.testing.assert_close(values, expected, rtol=1e-12, atol=1e-12)
    # the signal matters: a constant 0 input gives another trajectory
    _, out0, _ = _run(capsys, "simulate", specs / "decay.hode", "--t-end", "4", "--points", "9", "--input", "u=0")
    assert not torch.allclose(_read_csv(out0)[1], values)


def test_simulate_to_a_file(specs, tmp_path, capsys):
    target = tmp_path / "run.csv"
    code, out, err = _run(capsys, "simulate", specs / "decay.hode", "--t-end", "1", "--points", "4",
                          "--input", "u=1", "-o", target)
    assert (code, err) == (0, "")
    assert out == f"{specs / 'decay.hode'} -> {target} (4 points)\n"
    _, stdout_run, _ = _run(capsys, "simulate", specs / "decay.hode", "--t-end", "1", "--points", "4",
                            "--input", "u=1")
    assert target.read_text() == stdout_run


@pytest.mark.parametrize("args, message", [
    (["--set", "kk=1"], "hodec: error: Decay has no param 'kk'; did you mean 'k'?"),
    (["--set", "k=abc"], "hodec: error: --set k: 'abc' is not a number"),
    (["--set", "k"], "hodec: error: --set expects name=value, got 'k'"),
    (["--set", "k=-1"], "hodec: error: param 'k' is positive; cannot set it to -1.0"),
    (["--input", "uu=1"], "hodec: error: Decay has no input 'uu'; did you mean 'u'?"),
    (["--input", "u"], "hodec: error: --input expects name=value, got 'u'"),
    (["--points", "1"], "hodec: error: --points must be at least 2 and --t-end positive"),
])
def test_simulate_option_errors(specs, capsys, args, message):
    argv = ["simulate", specs / "decay.hode", "--t-end", "1", "--points", "3", "--input", "u=0", *args]
    code, out, err = _run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.splitlines() == [message]


def test_simulate_missing_input_csv(specs, tmp_path, capsys):
    missing = tmp_path / "none.csv"
    code, _, err = _run(capsys, "simulate", specs / "decay.hode", "--t-end", "1", "--points", "3",
                        "--input", f"u={missing}")
    assert code == 1 and err == f"{missing}: error: no such file: {missing}\n"


def test_simulate_unknown_param_in_a_subprocess(specs):
    proc = subprocess.run([sys.executable, "-m", "hodec.cli", "simulate", str(specs / "decay.hode"), "--t-end", "1",
                           "--points", "3", "--set", "kk=1"], capture_output=True, text=True, env=_env(),
                          timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "hodec: error: Decay has no param 'kk'; did you mean 'k'?\n"


# ---------------------------------------------------------------- reproducible output
def _env(**extra) -> dict:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HODEC_DEBUG", None)
    return env


def test_byte_identical_output_in_separate_processes(specs, tmp_path):
    sources = [specs / "decay.hode", specs / "enzyme.hode", *sorted((REPO / "specs").glob("*.hode"))]
    outputs = []
    for seed in ("1", "2"):  # different hash seeds: no set or dict ordering may leak into the code
        out_dir = tmp_path / f"run{seed}"
        proc = subprocess.run([sys.executable, "-m", "hodec.cli", "compile", *map(str, sources), "--out-dir",
                               str(out_dir)], capture_output=True, text=True, env=_env(PYTHONHASHSEED=seed),
                              cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs.append({p.name: p.read_bytes() for p in out_dir.iterdir()})
    assert outputs[0].keys() == {f"{Path(s).stem}.py" for s in sources}
    assert outputs[0] == outputs[1]
    # and the same bytes as compiling in this process
    assert outputs[0]["decay.py"] == hodec.compile_file(specs / "decay.hode").encode("utf-8")
