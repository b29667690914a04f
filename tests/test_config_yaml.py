"""FIT.yaml / SPARSIFY.yaml reading: resource bombs, duplicate keys and out-of-range values are clear errors."""
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from hodec.cli import main
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.sparsify_config import load_sparsify_config

ROOT = Path(__file__).resolve().parents[1]
LV = ROOT / "specs" / "lotka_volterra.hode"
# "billion laughs": nine levels of nine aliases, 9**9 = 387 million strings once expanded, in a few hundred bytes
LEVELS = "abcdefgh"
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n" for a, b in zip(LEVELS, LEVELS[1:])) + \
    f"method: [{','.join(['*h'] * 9)}]\n"


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path):
    assert len(BOMB) < 500
    config = tmp_path / "bomb.yaml"
    config.write_text(BOMB)
    data = tmp_path / "lv.csv"
    data.write_text("t,prey,predators\n0,1,2\n1,2,3\n")
    proc = subprocess.run([sys.executable, "-m", "hodec.cli", "fit", str(LV), "--data", str(data), "--config",
                           str(config), "--out", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True,
                          cwd=ROOT, preexec_fn=_limit_memory, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{config}:2:" in proc.stderr and "aliases" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr) < 1000
    assert not (tmp_path / "run").exists()


PYTHON_BOMB = """
from hodec.training.config import load_config
shared = ["lol"] * 9
for _ in range(8):
    shared = [shared] * 9  # the bomb as Python objects: formatting it whole would take gigabytes
try:
    load_config({"method": shared, "initial": "x" * 10 ** 7})
except Exception as err:
    print(err)
"""


def test_a_huge_value_given_in_python_is_quoted_short():
    proc = subprocess.run([sys.executable, "-c", PYTHON_BOMB], capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=_limit_memory, timeout=120)
    assert proc.returncode == 0 and "method: [[[" in proc.stdout and "initial: 'xxx" in proc.stdout
    assert len(proc.stdout) < 1000


def test_duplicate_keys_are_located(tmp_path):
    config = tmp_path / "fit.yaml"
    config.write_text("lr: 0.1\nepochs: 3\nlr: 0.2\n")
    with pytest.raises(HodecError) as info:
        load_config(config)
    assert info.value.render().startswith(f"{config}:3:1: error: duplicate key 'lr' (first given on line 1)")
    nested = tmp_path / "sparsify.yaml"
    nested.write_text("solver:\n  rtol: 1e-5\n  rtol: 1e-6\n")
    with pytest.raises(HodecError, match="duplicate key 'rtol'") as info:
        load_sparsify_config(nested)
    assert info.value.render().startswith(f"{nested}:3:3:")


@pytest.mark.parametrize("text,message", [
    ("seed: 1e20\n", "seed: must be at most 9223372036854775807"),
    ("seed: 100000000000000000000000000\n", "seed: must be at most"),
    ("lr: 1e400\n", "lr: expected a finite number"),
    ("solver: {method: scipy_solver}\n", "scipy_solver cannot train"),
    ("solver: scipy_solver\n", "scipy_solver cannot train"),
    ("steps: 1e12\n", "steps: must be at most"),
    ("[1, 2]\n", "a fit config is a YAML mapping"),
    ("lr: [\n", "not valid YAML"),
    ("seed: " + "9" * 5000 + "\n", "not valid YAML"),
    ("k: " + "[" * 100000 + "]" * 100000 + "\n", "nested too deeply"),
])
def test_bad_values_exit_1_with_a_message_naming_the_key(tmp_path, capsys, text, message):
    config = tmp_path / "fit.yaml"
    config.write_text(text)
    data = tmp_path / "lv.csv"
    data.write_text("t,prey,predators\n0,1,2\n1,2,3\n")
    out = tmp_path / "run"
    assert main(["fit", str(LV), "--data", str(data), "--config", str(config), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert message in err and str(config) in err and "internal error" not in err
    assert not out.exists()


def test_a_config_that_is_not_a_regular_file_or_too_large_is_refused(tmp_path):
    with pytest.raises(HodecError, match="not a regular file"):
        load_config(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(HodecError, match="too large"):
        load_config(big)
