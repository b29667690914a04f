"""The FIT.yaml keys of experimental conditions, priors and estimation scales: their shapes, checked when the config
is read (torch-free, like config.py). What the names mean is checked against the model by conditions.py and
priors.py, where the model is known."""
from __future__ import annotations

import math
from typing import Mapping

from .options import as_number, choice, show

PRIORS = ("normal", "laplace", "lognormal", "loglaplace", "uniform")  # PEtab's, on the param's own (linear) scale
SCALES = ("lin", "log", "log10")


def id_key(value) -> str:
    """A data id as a config key: text (1 and '1' alike; conditions.py matches 1.0 too)."""
    return str(value).strip()


def _name_or_number(value, key, fail):
    """A finite number (as YAML or a numeric string writes it), or a name."""
    x = as_number(value)
    if x is not None and math.isfinite(x):
        return x
    if x is None and isinstance(value, str) and value.strip():
        return value.strip()
    fail(f"{key}: expected a finite number or a param's name, got {show(value)}")
    return 0.0


def values_by_id(value, key, fail):
    """A mapping data id -> {param or state name: number or param name}."""
    if not isinstance(value, Mapping):
        fail(f"{key}: expected a mapping of data ids to values such as {{1: {{k: k_a}}, 2: {{k: 0.5, x: 1}}}}, got "
             f"{show(value)}")
        return {}
    out = {}
    for ident, entry in value.items():
        if isinstance(ident, bool) or not isinstance(ident, (int, float, str)) or not str(ident).strip():
            fail(f"{key}: {show(ident)} is not a data id (a number or a name)")
            continue
        where = f"{key}.{id_key(ident)}"
        if id_key(ident) in out:
            fail(f"{key}: data id {id_key(ident)} is given twice")
        pairs = _named(entry or {}, where, fail, "param or state names to values", "{k: k_a, x: 1}")
        out[id_key(ident)] = {name: _name_or_number(v, f"{where}.{name}", fail) for name, v in pairs}
    return out


def priors(value, key, fail):
    """A mapping param -> [distribution, a, b] (normal/laplace/lognormal/loglaplace: location, scale > 0;
    uniform: lower < upper)."""
    out = {}
    for name, prior in _named(value, key, fail, "params to priors", "{k: [lognormal, 0.0, 1.0]}"):
        where = f"{key}.{name}"
        if not isinstance(prior, list) or len(prior) != 3:
            fail(f"{where}: expected [distribution, a, b] such as [normal, 0.0, 1.0], got {show(prior)}")
            continue
        kind = choice(PRIORS)(prior[0], f"{where}[0]", fail)
        a, b = (as_number(v) for v in prior[1:])
        if a is None or b is None or not math.isfinite(a) or not math.isfinite(b):
            fail(f"{where}: the distribution's parameters must be finite numbers, got {show(prior[1:])}")
            continue
        if kind == "uniform" and not a < b:
            fail(f"{where}: uniform needs lower < upper, got {a:g} and {b:g}")
        if kind != "uniform" and not b > 0:
            fail(f"{where}: {kind}'s scale (its third entry) must be > 0, got {b:g}")
        out[name] = [kind, a, b]
    return out


def scales(value, key, fail):
    """A mapping param -> lin | log | log10."""
    return {name: choice(SCALES)(scale, f"{key}.{name}", fail)
            for name, scale in _named(value, key, fail, "params to scales", "{k: log10}")}


def _named(value, key, fail, what: str, example: str) -> list:
    """The (name, value) pairs of a mapping keyed by names (stripped); fail for anything else."""
    if not isinstance(value, Mapping):
        fail(f"{key}: expected a mapping of {what} such as {example}, got {show(value)}")
        return []
    pairs = []
    for name, v in value.items():
        if isinstance(name, str) and name.strip():
            pairs.append((name.strip(), v))
        else:
            fail(f"{key}: {show(name)} is not a name")
    return pairs
