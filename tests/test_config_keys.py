"""FIT.yaml and SPARSIFY.yaml keys: defined once (defaults, descriptions, checks), validators return error lists."""
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from hodec.errors import HodecError
from hodec.training.config import FitConfig, load_config
from hodec.training.options import check_keys, config_help, defaults
from hodec.training.sparsify_config import SparsifyConfig, load_sparsify_config

ROOT = Path(__file__).resolve().parents[1]


def readme_fit_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"FIT\.yaml keys, all optional, with defaults:\s*```yaml\n(.*?)```", text, re.S)
    assert match, "the README's `hodec fit` section has no FIT.yaml block"
    return match.group(1)


def test_the_readme_fit_block_lists_every_key_with_the_dataclass_default():
    listed = yaml.safe_load(readme_fit_block())
    expected = {f.name: getattr(FitConfig(), f.name) for f in fields(FitConfig)}  # written here, not via defaults()
    assert list(listed) == list(expected)
    assert listed == expected
    assert load_config(listed) == FitConfig()


def test_the_readme_sparsify_block_lists_every_sparsify_key_with_the_dataclass_default():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"SPARSIFY\.yaml takes every FIT\.yaml key and these.*?```yaml\n(.*?)```", text, re.S)
    assert match, "the README's `hodec sparsify` section has no SPARSIFY.yaml block"
    listed = yaml.safe_load(match.group(1))
    own = {f.name: getattr(SparsifyConfig(), f.name) for f in fields(SparsifyConfig) if f.name != "fit"}
    assert listed == {"method": SparsifyConfig().fit.method, **own}
    assert list(listed)[1:] == list(own)


def test_help_lists_each_key_once_with_its_default_and_a_description():
    for config_class, method in ((FitConfig, "homotopy"), (SparsifyConfig, "vanilla")):
        text = config_help(config_class)
        parsed = yaml.safe_load(text)
        assert parsed == defaults(config_class) and parsed["method"] == method
        lines = text.splitlines()
        assert len(lines) == len(parsed) and all(re.search(r" # \S", line) for line in lines)
    assert set(defaults(FitConfig)) < set(defaults(SparsifyConfig))  # sparsify composes fit's keys


def test_sparsify_defaults_come_from_the_fit_dataclass():
    cfg = load_sparsify_config(None)
    assert cfg.fit == FitConfig(method="vanilla") == SparsifyConfig().fit
    assert cfg == SparsifyConfig()


def test_validators_return_every_error_as_a_list_item():
    kwargs, errors = check_keys(SparsifyConfig, {"lr": -1, "epoch": 3, "folds": 1, "solver": {"rtol": "x"}})
    assert len(errors) == 4
    assert any(e.startswith("lr: must be > 0") for e in errors)
    assert any("unknown key 'epoch'" in e and "did you mean 'epochs'" in e for e in errors)
    assert any(e.startswith("folds: must be >= 2") for e in errors)
    assert any(e.startswith("solver.rtol: expected a finite number") for e in errors)
    with pytest.raises(HodecError) as info:
        load_sparsify_config({"lr": -1, "folds": 1})
    assert info.value.diagnostics[0].message.splitlines() == [
        "invalid sparsify config:", "  lr: must be > 0, got -1", "  folds: must be >= 2, got 1"]
