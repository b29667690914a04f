"""FIT.yaml: how `hodec fit` trains. Every key is optional; each key's default and description are defined once,
in FitConfig's fields (`config_help(FitConfig)` lists them; the README's table is that list). Numbers may be
written as YAML reads them or as strings ('1e-7', which YAML 1.1 reads as a string).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

from ..errors import did_you_mean
from . import condition_keys
from .options import (as_number, check_keys, choice, defaults, flag, integer, number, option, optional, per_column,
                      raise_errors, read_yaml_mapping, show, text, to_dict)

METHODS = ("homotopy", "vanilla", "multiple_shooting", "forecast")
INITIAL = ("data", "spec")
DTYPES = ("float32", "float64")
EXECUTORS = ("serial", "ray")
FIXED_GRID = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams", "heun2", "heun3")
NO_GRADIENTS = ("scipy_solver",)  # solvers that return plain arrays: nothing to train through
FILTER_ESTIMATORS = ("ekf", "map")  # forecast: the filters (training/forecast/filters.py); they infer states only
ESTIMATORS = ("gru", "lstm", "mlp") + FILTER_ESTIMATORS  # forecast: learned encoders, then filters
PRIORS = ("model",)
SOLVER_DEFAULTS = {"method": "auto", "rtol": 1e-7, "atol": 1e-9, "max_steps": 100000, "step_size": None,
                   "compile": False}


def solver_methods() -> tuple:
    """hodec's own methods (auto first), then the torchdiffeq ones that give gradients."""
    from torchdiffeq._impl.odeint import SOLVERS  # torch loads only for the commands that train, not for --help

    from ..solvers import NAMES

    return NAMES + tuple(m for m in SOLVERS if m not in NAMES and m not in NO_GRADIENTS)


def _solver(value, key, fail):
    """A mapping of solver options ('solver: rk4' is shorthand for {method: rk4})."""
    out = dict(SOLVER_DEFAULTS)
    if isinstance(value, str):
        value = {"method": value}
    if not isinstance(value, Mapping):
        fail(f"{key}: expected a mapping such as {{method: auto, rtol: 1e-7, atol: 1e-9}}, got {show(value)}")
        return out
    checks = {"method": choice(solver_methods()), "rtol": number(positive=True),
              "atol": number(positive=True), "max_steps": integer(minimum=1),
              "step_size": lambda v, k, f: None if v is None else number(positive=True)(v, k, f), "compile": flag}
    for name, v in value.items():
        if name == "method" and v in NO_GRADIENTS:
            fail(f"{key}.method: {v} cannot train: training differentiates through the solver and {v} gives no "
                 f"gradients (use auto, or another method)")
        elif name in checks:
            out[name] = checks[name](v, f"{key}.{name}", fail)
        else:
            hint = did_you_mean(name, checks) if isinstance(name, str) and len(name) < 100 else None
            fail(f"{key}: unknown key {show(name)}" + (f"; {hint}" if hint else f" (known: {', '.join(checks)})"))
    return out


def _sigmas(value, key, fail):
    """A mapping name -> number > 0."""
    if not isinstance(value, Mapping):
        fail(f"{key}: expected a mapping such as {{glucose: 5.0}}, got {show(value)}")
        return {}
    return {str(name): number(positive=True)(v, f"{key}.{show(name)}", fail) for name, v in value.items()}


def _name_list(value, key, fail):
    """A list of non-empty strings (names)."""
    if not isinstance(value, list):
        fail(f"{key}: expected a list of names such as [sex, age], got {show(value)}")
        return []
    return [text(name, f"{key}[{k}]", fail) for k, name in enumerate(value)]


def _anchors(value, key, fail) -> dict:
    """forecast.anchor: a mapping column -> state (names)."""
    if not isinstance(value, Mapping):
        fail(f"{key}: expected a mapping column -> state such as {{CGM: e}}, got {show(value)}")
        return {}
    return {text(column, key, fail): text(state, f"{key}.{column}", fail) for column, state in value.items()}


def _name_map(value, key, fail):
    """A mapping of numbers or names -> names; its keys as text (1 and 1.0 both '1': how a data cell reads)."""
    if not isinstance(value, Mapping):
        fail(f"{key}: expected a mapping such as {{1: cp, 2: pca}}, got {show(value)}")
        return {}
    out = {}
    for name, target in value.items():
        if isinstance(name, bool) or not isinstance(name, (int, float, str)) or not str(name).strip():
            fail(f"{key}: {show(name)} is not a dvid (a number or a name)")
            continue
        out[number_text(name)] = None if target is None else text(target, f"{key}.{show(name)}", fail)
    return out


@dataclass
class ForecastConfig:
    """The keys of FIT.yaml's `forecast:` mapping (method: forecast; README "Forecast training")."""
    history: Optional[float] = option(None, "each window's history covers [t0, t0 + history) (data time units); "
                                            "needed by method forecast", optional(number(positive=True)))
    horizon: Optional[float] = option(None, "the loss is on the samples in (origin, origin + horizon], the origin "
                                            "the last history sample; needed by method forecast",
                                      optional(number(positive=True)))
    stride: Optional[float] = option(None, "window starts t0 = first time + k stride; null: horizon",
                                     optional(number(positive=True)))
    estimator: str = option("gru", "the state at the origin from the history: gru | lstm | mlp (encoders trained "
                                   "with the model) | ekf | map (filters)", choice(ESTIMATORS))
    hidden: int = option(64, "encoder width", integer(minimum=1, maximum=1 << 16))
    observed: bool = option(False, "true: states that are data columns start at their last history value",
                            flag)
    process_noise: Union[float, dict] = option(0.0, "filters: Q, variance per time unit, a number or a map state "
                                                    "-> number", per_column)
    measurement_noise: dict = option({}, "filters: map column -> sigma (default: the column's noise model sigma, "
                                         "else its training data's standard deviation / 10)", _sigmas)
    prior: str = option("model", "filters: the state prior at t0: model = mean and covariance of the model's own "
                                 "states at the training windows' t0", choice(PRIORS))
    anchor: dict = option({}, "encoders: map column -> state: the state set so that the column's observable at the "
                              "origin equals its last history value (the observable linear in that state, "
                              "independent of t and inputs), e.g. {CGM: e} for CGM = Gs / Vg + e", _anchors)
    batch: Optional[int] = option(None, "windows per optimiser step: each epoch a fresh random partition of the "
                                        "training windows into minibatches; null: every window in one step",
                                  optional(integer(minimum=1)))
    estimate: list = option([], "positive params the encoder also infers per window from its history: a factor "
                                "within [1 / estimate_factor, estimate_factor] of the trained population value",
                            _name_list)
    estimate_factor: float = option(3.0, "the most a window's inferred param differs from the population value, as "
                                         "a factor (1: none)", number(minimum=1.0))
    pool: Optional[float] = option(None, "with estimate: each window's params pooled (geometric mean) over its "
                                         "trajectory's histories with an origin in the last `pool` time units, its "
                                         "own and the earlier windows'; null: its own history only",
                                   optional(number(positive=True)))
    pool_adjust: Optional[float] = option(None, "with pool: each window's pooled params times an adjustment its own "
                                                "history gives, a factor within [1 / pool_adjust, pool_adjust]; "
                                                "null: none", optional(number(minimum=1.0)))
    pool_states: list = option([], "with pool: states constant in time (der 0: per-trajectory constants such as a "
                                   "latent patient context) whose estimate at the origin is pooled the same way "
                                   "(arithmetic mean)", _name_list)


def _forecast(value, key, fail) -> dict:
    """The `forecast:` mapping, checked key by key (ForecastConfig), as a plain dict with every default filled."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        fail(f"{key}: expected a mapping such as {{history: 210, horizon: 60}}, got {show(value)}")
        value = {}
    kwargs, errors = check_keys(ForecastConfig, value)
    for error in errors:
        fail(f"{key}: {error}" if error.startswith("unknown key") else f"{key}.{error}")
    options = ForecastConfig(**kwargs)
    _check_estimate(options, key, fail)
    return to_dict(options)


def _check_estimate(options: ForecastConfig, key: str, fail) -> None:
    """forecast.estimate without the model: names once each, a learned encoder to infer them (the model's side:
    hodec/training/forecast/params.py)."""
    names = options.estimate
    for k, name in enumerate(names):
        if name in names[:k]:
            fail(f"{key}.estimate[{k}]: '{name}' is listed twice")
    if names and options.estimator in FILTER_ESTIMATORS:
        fail(f"{key}.estimate: needs a learned encoder (estimator gru, lstm or mlp); the {options.estimator} filter "
             f"infers the state only")
    for k, name in enumerate(options.pool_states):
        if name in options.pool_states[:k]:
            fail(f"{key}.pool_states[{k}]: '{name}' is listed twice")
    if options.pool is not None and not names and not options.pool_states:
        fail(f"{key}.pool: pools the params of forecast.estimate and the states of forecast.pool_states over earlier "
             f"histories, and both are empty")
    if options.pool_states and options.pool is None:
        fail(f"{key}.pool_states: needs forecast.pool (the time span to pool over)")
    if options.pool_adjust is not None and (options.pool is None or not names):
        fail(f"{key}.pool_adjust: adjusts the pooled params of forecast.estimate per window, so it needs "
             f"forecast.pool and forecast.estimate")


def number_text(value) -> str:
    """A data label (an id, a dvid) as text: a number as the shortest float text, integral ones without '.0' (so 1,
    1.0 and '1.0' are '1'; 1.50 is '1.5'); other text stripped."""
    x = as_number(value)
    if x is None or not math.isfinite(x):
        return str(value).strip()
    return str(int(x)) if x == int(x) else repr(x)


@dataclass
class FitConfig:
    method: str = option("homotopy", "homotopy | vanilla | multiple_shooting | forecast", choice(METHODS))
    k: Union[float, dict] = option(6.0, "coupling gain (1/time): a number, or a map column -> gain (unnamed: 0)",
                                   per_column)
    steps: int = option(6, "homotopy plateaus, including the final lambda = 0 one",
                        integer(minimum=2, maximum=10 ** 6))
    epochs_per_step: int = option(100, "homotopy epochs per plateau (homotopy runs steps x epochs_per_step)",
                                  integer(minimum=1))
    kappa: float = option(0.6, "homotopy power-law decrement ratio", number(positive=True))
    parallel_in_time: bool = option(True, "homotopy: coupled solves parallel in time (Newton over the data "
                                          "intervals; sequential where it does not apply or converge)", flag)
    smoothing: Union[float, dict] = option(0.0, "spline smoothing alpha (data time units), or a map column -> "
                                                "alpha (0 interpolates)", per_column)
    epochs: int = option(600, "epochs of vanilla and multiple shooting", integer(minimum=1))
    segments: int = option(5, "multiple shooting: number of segments", integer(minimum=1))
    continuity: float = option(1.0, "multiple shooting: weight of the continuity penalty", number(minimum=0.0))
    forecast: dict = option(defaults(ForecastConfig), "forecast training (method forecast): windows and the "
                                                      "state estimator; its keys below", _forecast)
    lr: float = option(0.01, "AdamW learning rate (of the first epoch)", number(positive=True))
    lr_end: float = option(1.0, "the last epoch's lr as a fraction of lr (cosine annealing); 1.0: constant",
                           number(positive=True, maximum=1.0))
    weight_decay: float = option(0.01, "AdamW weight decay, on neural weights only", number(minimum=0.0))
    initial: str = option("data", "data: states with a column start at their first value; spec: the spec's "
                                  "initial values", choice(INITIAL))
    solver: dict = option(SOLVER_DEFAULTS, "ODE solver: hodec's (auto, tsit5, dopri5, rodas5p, ...; compile: "
                          "torch.compile its step) or torchdiffeq's (step_size: its fixed-grid ones)",
                          _solver)
    seed: int = option(0, "seeds the neural weights' initialisation (and anything else random)",
                       integer(minimum=0))
    dtype: str = option("float64", "float32 | float64", choice(DTYPES))
    starts: int = option(1, "multi-start: N fits, from the spec's values and N - 1 perturbations of them; the one "
                            "with the lowest best MSE is kept", integer(minimum=1, maximum=1000))
    executor: str = option("serial", "how independent trials run (sparsify's folds x lambda1, starts, sweeps): "
                                     "serial | ray", choice(EXECUTORS))
    workers: Optional[int] = option(None, "trials at once with executor: ray; null: every core (or every CPU of "
                                          "the cluster)", optional(integer(minimum=1)))
    ray_address: Optional[str] = option(None, "a running Ray cluster to join (e.g. ray://head:10001); null: "
                                              "a local Ray on this machine's cores", optional(text))
    dose_state: Optional[str] = option(None, "the state that dose rows (evid 1) without a cmt dose into; null: "
                                             "every dose row names its cmt", optional(text))
    dv: Optional[str] = option(None, "the observable or state a dv value is on rows without a dvid; null: those "
                                     "rows need a dvid", optional(text))
    dvid: dict = option({}, "map dvid values (numbers or text) -> observable or state names, or null: their values "
                            "are not fitted (another endpoint); a dvid that is such a name needs no entry", _name_map)
    ignore_columns: list = option([], "data columns hodec does not read (covariates; text such as sex)",
                                  _name_list)
    conditions: dict = option({}, "data id -> that trajectory's values: param -> number or another param's name; "
                                  "state -> initial value (number or param name)", condition_keys.values_by_id)
    preequilibrate: dict = option({}, "data id -> values to run to steady state under first, over its own (as "
                                      "conditions; {}: its own); it then starts there", condition_keys.values_by_id)
    priors: dict = option({}, "param -> [distribution, a, b]: normal, laplace, lognormal, loglaplace (location, "
                              "scale), uniform (lower, upper); -log prior / n added to the objective",
                          condition_keys.priors)
    scales: dict = option({}, "param -> lin | log | log10: the coordinate the optimiser trains it in (default: its "
                              "kind's)", condition_keys.scales)
    slot_weights: Optional[str] = option(None, "torch file {slot: {array: tensor}} the neural slots start from "
                                               "(relative to this FIT.yaml); null: seeded initialisation",
                                         optional(text))
    frozen: list = option([], "neural slot arrays not trained: SLOT.ARRAY (e.g. f.net.0.weight) or a whole SLOT",
                          _name_list)

    @property
    def forecast_options(self) -> ForecastConfig:
        """The `forecast:` keys as a ForecastConfig (stride filled in: horizon when not given)."""
        options = ForecastConfig(**self.forecast)
        if options.stride is None:
            options.stride = options.horizon
        return options

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
        return to_dict(self)


DEFAULTS = defaults(FitConfig)


def load_config(source: Union[None, str, Path, Mapping, FitConfig] = None, **overrides) -> FitConfig:
    """A FitConfig from a FIT.yaml path, a mapping, or None (all defaults); keyword overrides win."""
    return validate(*config_source(source, overrides))


def config_source(source, overrides: Mapping, what: str = "fit") -> tuple[dict, str]:
    """The raw key -> value mapping of a config given as a YAML path, a mapping, a config object or None, with
    overrides applied; and the file name to report errors against."""
    if hasattr(source, "to_dict"):
        source = source.to_dict()
    filename = "<config>"
    if isinstance(source, (str, Path)):
        filename = str(source)
        source = _relative_to(read_yaml_mapping(Path(source), what), Path(source).parent)
    raw = dict(source or {})
    raw.update(overrides)
    return raw, filename


def _relative_to(raw: dict, folder: Path) -> dict:
    """A FIT.yaml's keys with a relative slot_weights path made relative to the file's folder (the written
    folder of `hodec petab write` works from wherever hodec fit runs)."""
    value = raw.get("slot_weights")
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return {**raw, "slot_weights": str((folder / value).absolute())}
    return raw


def validate(raw: Mapping, filename: str = "<config>") -> FitConfig:
    kwargs, errors = check_keys(FitConfig, raw)
    if kwargs.get("method") == "forecast":
        errors += [f"forecast.{key}: needed by method forecast (data time units)" for key in ("history", "horizon")
                   if kwargs["forecast"][key] is None]
    raise_errors(errors, "fit", filename)
    return FitConfig(**kwargs)


def solver_options(solver: dict) -> dict:
    """Keyword options for model.simulate beyond method/rtol/atol: hodec's solvers' or torchdiffeq's."""
    if solver["method"] in FIXED_GRID:
        return {} if solver.get("step_size") is None else {"step_size": solver["step_size"]}
    steps = solver.get("max_steps", SOLVER_DEFAULTS["max_steps"])
    from ..solvers import NAMES  # (torch loads only for the commands that train, as above)

    if solver["method"] in NAMES:
        return {"max_steps": steps, "compile": solver.get("compile", False)}
    return {"max_num_steps": steps}
