"""`hodec petab evaluate` on the two PEtab-SciML benchmark problems (../shared/data/petab_sciml_benchmarks):
train and validation log-likelihoods against the references in their expected_*.yaml, to 1e-6 relative. Their
SBML models leave parameters without a value (the PEtab tables give them), their measurements name no
experiment, and Ko's reference used the tanh GELU (`--gelu tanh`)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from hodec.cli import main
from hodec.errors import HodecError
from hodec.interop.sbml import import_sbml

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "petab_sciml_benchmarks" / "Benchmark-Models"
pytestmark = pytest.mark.skipif(not BENCHMARKS.is_dir(), reason="the benchmark problems are not in ../shared/data")
CASES = [("Dandekar_Patterns2020", "train", "training", "none"),
         ("Dandekar_Patterns2020", "validation", "validation", "none"),
         ("Ko_NeurIPS2023", "train", "training", "tanh"),
         ("Ko_NeurIPS2023", "validation", "validation", "tanh")]


def _evaluate(problem: Path, out: Path, gelu: str) -> float:
    assert main(["petab", "evaluate", str(problem), "--out", str(out), "--gelu", gelu]) == 0
    return yaml.safe_load((out / "result.yaml").read_text())["llh"]


@pytest.mark.slow
@pytest.mark.parametrize("name, split, key, gelu", CASES)
def test_benchmark_llh(name, split, key, gelu, tmp_path):
    folder = BENCHMARKS / name
    expected = yaml.safe_load((folder / f"expected_{name}.yaml").read_text())["llh"][key]
    assert _evaluate(folder / f"{split}_{name}.yaml", tmp_path, gelu) == pytest.approx(expected, rel=1e-6)


def test_importer_takes_values_for_parameters_without_one():
    model = BENCHMARKS / "Dandekar_Patterns2020" / "model_Dandekar_Patterns2020.xml"
    values = dict(beta=0.25, gamma=0.5, delta=0.125, quarantine_rate=0.0, N=1.0)
    text = import_sbml(model, values).text
    assert "param beta = 0.25 fixed" in text
    assert "param N = 66000000 fixed" in text  # a value the file has is kept
    with pytest.raises(HodecError, match=r'<parameter id="delta">: it has no value'):
        import_sbml(model, dict(beta=0.25, gamma=0.5, quarantine_rate=0.0))


def test_parameter_without_a_value_anywhere_stays_a_located_error(tmp_path, capsys):
    shutil.copytree(BENCHMARKS / "Dandekar_Patterns2020", tmp_path / "p")
    table = tmp_path / "p" / "parameters_Dandekar_Patterns2020.tsv"
    table.write_text("\n".join(line for line in table.read_text().split("\n") if not line.startswith("gamma")))
    (tmp_path / "out").mkdir()
    assert main(["petab", "evaluate", str(tmp_path / "p" / "train_Dandekar_Patterns2020.yaml"),
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "model_Dandekar_Patterns2020.xml" in err and '<parameter id="gamma">: it has no value' in err
    assert not (tmp_path / "out" / "result.yaml").exists()
