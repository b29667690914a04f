"""Training and pruning take a Compilation: the spec is parsed, checked and lowered once (issue 13)."""
from pathlib import Path

import numpy as np

import hodec
import hodec.compiler
from hodec.graph.prune import prune_spec
from hodec.training.data import make_dataset

ROOT = Path(__file__).resolve().parents[1]
ABC = """model ABC
param k1 = 1 positive
param k2 = 0.5 positive
state A = 1
state B = 0
state C = 0
reaction r1: A -> B ; k1 * A
reaction r2: B -> C ; k2 * B  # the edge that goes
"""


def test_fit_takes_a_compilation_and_a_path_alike():
    compilation = hodec.compile(ROOT / "specs" / "lotka_volterra.hode")
    t = np.linspace(0.0, 2.0, 6)
    data = make_dataset(compilation.model_class(), t, {"prey": 1 + 0 * t})
    config = {"method": "vanilla", "epochs": 2, "solver": {"rtol": 1e-5, "atol": 1e-7}}
    by_compilation = hodec.fit(compilation, data, config)
    by_path = hodec.fit(ROOT / "specs" / "lotka_volterra.hode", data, config)
    assert by_compilation.params == by_path.params and by_compilation.history[0]["mse"] > 0


def test_prune_spec_reads_the_compilation_and_never_the_text_again(monkeypatch):
    compilation = hodec.compiler.compile_text(ABC, "abc.hode")
    compilation.graph  # noqa: B018 - computed before parsing is forbidden

    def no_parse(*args, **kwargs):
        raise AssertionError("the spec was parsed again")

    monkeypatch.setattr(hodec.compiler, "parse", no_parse)
    pruning = prune_spec(compilation, ["r2"], ["B"])
    assert pruning.states_dropped == ("C",) and "r2" not in pruning.source and "reaction r1" in pruning.source
