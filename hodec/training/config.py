"""FIT.yaml: how `hodec fit` trains. Every key is optional; the defaults are below and in DEFAULTS.

    method: homotopy          # homotopy | vanilla | multiple_shooting
    k: 6.0                    # coupling gain (1/time): a number, or a map column -> gain (unnamed columns: 0)
    steps: 6                  # homotopy plateaus, including the final lambda = 0 one
    epochs_per_step: 100      # homotopy epochs per plateau (homotopy runs steps x epochs_per_step epochs)
    kappa: 0.6                # homotopy power-law decrement ratio
    smoothing: 0.0            # spline smoothing alpha (data time units): a number, or a map column -> alpha
    epochs: 600               # vanilla and multiple shooting
    segments: 5               # multiple shooting: number of segments
    continuity: 1.0           # multiple shooting: weight of the continuity penalty
    lr: 0.01                  # AdamW learning rate (of the first epoch)
    lr_end: 1.0               # the last epoch's lr as a fraction of lr, reached by cosine annealing over the
                              #   run's epochs (all homotopy plateaus together); 1.0: constant lr
    weight_decay: 0.01        # AdamW weight decay, on neural weights only (mechanistic params get none)
    initial: data             # data: states with a column start at their trajectory's first value; spec: all
                              #   states start at the spec's initial values (params in them are trained)
    solver: {method: dopri5, rtol: 1.0e-7, atol: 1.0e-9, max_steps: 100000, step_size: null}
    seed: 0                   # seeds the neural weights' initialisation (and anything else random)
    dtype: float64            # float32 | float64

Numbers may be written as YAML reads them or as strings ('1e-7', which YAML 1.1 reads as a string).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..errors import HodecError, did_you_mean
from ..files import read_text

METHODS = ("homotopy", "vanilla", "multiple_shooting")
INITIAL = ("data", "spec")
DTYPES = ("float32", "float64")
FIXED_GRID = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams", "heun2", "heun3")

DEFAULTS: dict = {
    "method": "homotopy",
    "k": 6.0,
    "steps": 6,
    "epochs_per_step": 100,
    "kappa": 0.6,
    "smoothing": 0.0,
    "epochs": 600,
    "segments": 5,
    "continuity": 1.0,
    "lr": 0.01,
    "lr_end": 1.0,
    "weight_decay": 0.01,
    "initial": "data",
    "solver": {"method": "dopri5", "rtol": 1e-7, "atol": 1e-9, "max_steps": 100000, "step_size": None},
    "seed": 0,
    "dtype": "float64",
}


@dataclass
class FitConfig:
    method: str = "homotopy"
    k: Union[float, dict] = 6.0
    steps: int = 6
    epochs_per_step: int = 100
    kappa: float = 0.6
    smoothing: Union[float, dict] = 0.0
    epochs: int = 600
    segments: int = 5
    continuity: float = 1.0
    lr: float = 0.01
    lr_end: float = 1.0
    weight_decay: float = 0.01
    initial: str = "data"
    solver: dict = field(default_factory=lambda: dict(DEFAULTS["solver"]))
    seed: int = 0
    dtype: str = "float64"

    @property
    def total_epochs(self) -> int:
        return self.steps * self.epochs_per_step if self.method == "homotopy" else self.epochs

    def lr_at(self, epoch: int) -> float:
        """The lr of epoch 1..total_epochs: cosine from lr down to lr * lr_end (a function of the epoch alone, so a
        resumed run continues the same curve)."""
        total = self.total_epochs
        progress = 0.0 if total <= 1 else (min(epoch, total) - 1) / (total - 1)
        return self.lr * (self.lr_end + (1 - self.lr_end) * 0.5 * (1 + math.cos(math.pi * progress)))

    def to_dict(self) -> dict:
        return {name: copy.deepcopy(getattr(self, name)) for name in DEFAULTS}


def load_config(source: Union[None, str, Path, Mapping, FitConfig] = None, **overrides) -> FitConfig:
    """A FitConfig from a FIT.yaml path, a mapping, or None (all defaults); keyword overrides win."""
    return validate(*config_source(source, overrides))


def config_source(source, overrides: Mapping) -> tuple[dict, str]:
    """The raw key -> value mapping of a config given as a YAML path, a mapping, a config object or None, with
    overrides applied; and the file name to report errors against."""
    if hasattr(source, "to_dict"):
        source = source.to_dict()
    filename = "<config>"
    if isinstance(source, (str, Path)):
        filename = str(source)
        source = _read_yaml(Path(source))
    raw = dict(source or {})
    raw.update(overrides)
    return raw, filename


def _read_yaml(path: Path) -> dict:
    import yaml

    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise HodecError(f"{where}not valid YAML ({getattr(err, 'problem', None) or err})", str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HodecError("a fit config is a YAML mapping of keys to values (e.g. 'method: homotopy')", str(path))
    return data


def validate(raw: Mapping[str, Any], filename: str = "<config>") -> FitConfig:
    errors = []

    def fail(message):
        errors.append(message)

    for key in raw:
        if key not in DEFAULTS:
            hint = did_you_mean(str(key), DEFAULTS)
            fail(f"unknown key '{key}'" + (f"; {hint}" if hint else f" (known: {', '.join(DEFAULTS)})"))
    values = {key: raw.get(key, copy.deepcopy(default)) for key, default in DEFAULTS.items()}
    out: dict = {}
    out["method"] = _choice(values["method"], "method", METHODS, fail)
    out["initial"] = _choice(values["initial"], "initial", INITIAL, fail)
    out["dtype"] = _choice(values["dtype"], "dtype", DTYPES, fail)
    for key in ("steps", "epochs_per_step", "epochs", "segments"):
        out[key] = _integer(values[key], key, fail, minimum=2 if key == "steps" else 1)
    out["seed"] = _integer(values["seed"], "seed", fail, minimum=0)
    out["kappa"] = _number(values["kappa"], "kappa", fail, positive=True)
    out["lr"] = _number(values["lr"], "lr", fail, positive=True)
    out["lr_end"] = _number(values["lr_end"], "lr_end", fail, positive=True)
    if out["lr_end"] > 1:
        fail(f"lr_end: the final lr as a fraction of lr, at most 1 (annealing only lowers it), "
             f"got {values['lr_end']!r}")
    out["continuity"] = _number(values["continuity"], "continuity", fail, minimum=0.0)
    out["weight_decay"] = _number(values["weight_decay"], "weight_decay", fail, minimum=0.0)
    out["k"] = _per_column(values["k"], "k", fail)
    out["smoothing"] = _per_column(values["smoothing"], "smoothing", fail)
    out["solver"] = _solver(values["solver"], fail)
    if errors:
        raise HodecError("; ".join(errors) if len(errors) == 1 else "invalid fit config:\n  " + "\n  ".join(errors),
                         filename)
    return FitConfig(**out)


def _choice(value, key, options, fail):
    if value not in options:
        hint = did_you_mean(str(value), options)
        fail(f"{key}: {value!r} is not one of {', '.join(options)}" + (f"; {hint}" if hint else ""))
        return options[0]
    return value


def as_number(value) -> Optional[float]:
    """A float from an int, float or numeric string ('1e-7'); None if it is not one (booleans are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _number(value, key, fail, positive=False, minimum=None):
    x = as_number(value)
    if x is None or not math.isfinite(x):
        fail(f"{key}: expected a finite number, got {value!r}")
        return 1.0
    if positive and not x > 0:
        fail(f"{key}: must be > 0, got {value!r}")
    if minimum is not None and x < minimum:
        fail(f"{key}: must be >= {minimum:g}, got {value!r}")
    return x


def _integer(value, key, fail, minimum):
    x = as_number(value)
    if x is None or not math.isfinite(x) or x != int(x):
        fail(f"{key}: expected an integer, got {value!r}")
        return minimum
    if x < minimum:
        fail(f"{key}: must be >= {minimum}, got {value!r}")
    return int(x)


def _per_column(value, key, fail):
    """A number (every column), or a map column name -> number."""
    if isinstance(value, Mapping):
        out = {}
        for name, v in value.items():
            out[str(name)] = _number(v, f"{key}.{name}", fail, minimum=0.0)
        return out
    return _number(value, key, fail, minimum=0.0)


def _solver(value, fail):
    out = dict(DEFAULTS["solver"])
    if isinstance(value, str):  # 'solver: rk4' is shorthand for {method: rk4}
        value = {"method": value}
    if not isinstance(value, Mapping):
        fail(f"solver: expected a mapping such as {{method: dopri5, rtol: 1e-7, atol: 1e-9}}, got {value!r}")
        return out
    from torchdiffeq._impl.odeint import SOLVERS

    for key, v in value.items():
        if key == "method":
            out["method"] = _choice(v, "solver.method", tuple(SOLVERS), fail)
        elif key in ("rtol", "atol"):
            out[key] = _number(v, f"solver.{key}", fail, positive=True)
        elif key == "max_steps":
            out[key] = _integer(v, "solver.max_steps", fail, minimum=1)
        elif key == "step_size":
            out[key] = None if v is None else _number(v, "solver.step_size", fail, positive=True)
        else:
            hint = did_you_mean(str(key), out)
            fail(f"solver: unknown key '{key}'" + (f"; {hint}" if hint else f" (known: {', '.join(out)})"))
    return out


def solver_options(solver: dict) -> dict:
    """Keyword options for torchdiffeq beyond method/rtol/atol."""
    if solver["method"] in FIXED_GRID:
        return {} if solver.get("step_size") is None else {"step_size": solver["step_size"]}
    if solver["method"] == "scipy_solver":
        return {}
    return {"max_num_steps": solver.get("max_steps", DEFAULTS["solver"]["max_steps"])}
