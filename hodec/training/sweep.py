"""`hodec sweep`: a grid or random search over FIT.yaml keys, each point one `hodec fit` trial (trials.py) run by
the config's executor. GRID.yaml:

    grid:                  # every combination (or `random:` with `samples: N` and `seed: S`: N points, each key
      lr: [0.01, 0.03]     #   drawn uniformly from its list)
      k: [2, 6]

OUT/ holds sweep.json (the plan: inputs' digests, base config, points), trials/NNN/ (each trial's report.json,
fitted.hode, checkpoint.pt and trial.json, its record, written last), results.csv (one row per trial) and best/
(the folder of the trial with the lowest best MSE). `--resume` skips the trials whose trial.json exists.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..compiler import compile as compile_spec
from ..errors import HodecError
from .config import FitConfig, load_config
from .data import read_data
from .options import defaults, integer, raise_errors, read_yaml_mapping, show
from .run import claim_rundir, fit_meta
from .trials import FitTrial, TrialRun

WHO = "hodec sweep"
NOT_SWEPT = ("starts", "executor", "workers", "ray_address")  # each point is one fit; how trials run


def read_grid(path, base: dict) -> list:
    """The points of GRID.yaml (each a mapping key -> value over the base config), each checked as a FIT.yaml."""
    raw = read_yaml_mapping(Path(path), "grid")
    errors = []
    modes = [mode for mode in ("grid", "random") if mode in raw]
    for key in raw:
        if key not in ("grid", "random", "samples", "seed"):
            errors.append(f"unknown key {show(key)} (known: grid, random, samples, seed)")
    if len(modes) != 1:
        errors.append("give one of grid: (every combination) or random: (samples drawn from the lists)")
    elif modes == ["grid"] and ("samples" in raw or "seed" in raw):
        errors.append("samples and seed belong to a random: search")
    space = _space(raw.get(modes[0]) if len(modes) == 1 else {}, errors)
    raise_errors(errors, "grid", str(path))
    keys = list(space)
    if modes == ["grid"]:
        points = [dict(zip(keys, values)) for values in itertools.product(*space.values())]
    else:
        samples = integer(minimum=1, maximum=100000)(raw.get("samples", 10), "samples", errors.append)
        seed = integer(minimum=0)(raw.get("seed", 0), "seed", errors.append)
        raise_errors(errors, "grid", str(path))
        rng = np.random.default_rng(seed)
        points = [{key: values[int(rng.integers(len(values)))] for key, values in space.items()}
                  for _ in range(samples)]
        points = [json.loads(text) for text in dict.fromkeys(json.dumps(p, sort_keys=True) for p in points)]
    for i, point in enumerate(points):
        try:
            load_config({**base, **point})
        except HodecError as err:
            raise HodecError(f"point {i + 1} ({show(point)}): {err.diagnostics[0].message}", str(path)) from None
    return points


def _space(value, errors: list) -> dict:
    if not isinstance(value, dict) or not value:
        errors.append(f"grid/random: expected a mapping of FIT.yaml keys to lists of values, got {show(value)}")
        return {}
    known = [key for key in defaults(FitConfig) if key not in NOT_SWEPT]
    space = {}
    for key, values in value.items():
        if key not in known:
            errors.append(f"{show(key)} is not a FIT.yaml key that a sweep varies (known: {', '.join(known)})")
        elif not isinstance(values, list) or not values:
            errors.append(f"{key}: expected a non-empty list of values, got {show(values)}")
        else:
            space[key] = values
    return space


def run_sweep(spec, data, grid, config: Optional[str] = None, out: Optional[str] = None, resume: bool = False,
              force: bool = False, progress: bool = True) -> int:
    spec = Path(spec)
    rundir = Path(out) if out else Path("runs") / f"{spec.stem}_sweep"
    if resume and force:
        raise HodecError("--resume continues a sweep and --force starts it over: give one of them", WHO)
    compilation = compile_spec(spec)
    config = load_config(config)
    dataset = read_data(data, compilation.model_class(), config)
    base = config.to_dict()
    points = read_grid(grid, base)
    meta = fit_meta(spec, compilation.source, data, dataset)
    plan = {"spec_sha256": meta["spec_sha256"], "data_sha256": meta["data_sha256"], "config": base,
            "points": points}
    trials = [FitTrial(compilation.source, compilation.filename, compilation.path, dataset, {**base, **point}, meta)
              for point in points]
    with claim_rundir(rundir, force, ("sweep.json", "results.csv"), WHO, resume=resume):
        run = TrialRun(rundir, WHO, "sweep.json", "trials")
        records = run.run(plan, trials, points, resume, force, progress)
        if records is None:
            return 130
        best = run.finish(rundir / "results.csv", rundir / "best", records)
    print(f"{spec} -> {rundir}: {len(records)} trials ({sum(r['status'] == 'failed' for r in records)} failed), "
          f"best trial {best + 1} ({show(records[best]['point'])}), MSE {records[best]['best_mse']:.6g}; "
          f"results.csv, best/")
    return 0
