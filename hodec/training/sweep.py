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

import csv
import io
import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from ..compiler import compile as compile_spec
from ..errors import HodecError
from ..files import read_text, write_atomic
from .config import FitConfig, load_config
from .data import read_data
from .executor import Executor, Failed
from .options import defaults, integer, raise_errors, read_yaml_mapping, show
from .run import claim_rundir
from .trials import FitTrial, best_of, fit_meta, run_fit_trial, write_trial

WHO = "hodec sweep"
NOT_SWEPT = ("executor", "workers", "ray_address")  # how trials run, not what they fit
RECORD = "trial.json"
COLUMNS = ("status", "best_mse", "best_epoch", "epochs", "seconds", "error")


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
    dataset = read_data(data, compilation.model_class())
    base = load_config(config).to_dict()
    points = read_grid(grid, base)
    meta = fit_meta(spec, compilation.source, data, dataset)
    plan = {"spec_sha256": meta["spec_sha256"], "data_sha256": meta["data_sha256"], "config": base,
            "points": points}
    say = (lambda line: print(f"{WHO}: {line}", file=sys.stderr, flush=True)) if progress else None
    with claim_rundir(rundir, force, ("sweep.json", "results.csv"), WHO, resume=resume):
        _start(rundir, plan, resume, force)
        records = _records(rundir, points)
        todo = [i for i, record in enumerate(records) if record is None]
        if say and len(todo) < len(points):
            say(f"{len(points) - len(todo)} of {len(points)} trials already done, skipped")
        trials = [FitTrial(compilation.source, compilation.filename, compilation.path, dataset,
                           {**base, **points[i]}, meta) for i in todo]

        def finished(j, result):
            records[todo[j]] = _save(rundir, todo[j], points[todo[j]], result)

        try:
            Executor.of(load_config(base)).map(run_fit_trial, trials, say, finished)
        except KeyboardInterrupt:
            done = sum(r is not None for r in records)
            print(f"{WHO}: interrupted after {done} of {len(points)} trials; continue with --resume "
                  f"(--out {rundir})", file=sys.stderr)
            return 130
        return _finish(spec, rundir, points, records)


def _start(rundir: Path, plan: dict, resume: bool, force: bool):
    """Check a resumed sweep's plan against this one; a new or forced sweep writes its plan, trials cleared."""
    path = rundir / "sweep.json"
    if resume:
        if not path.is_file():
            raise HodecError(f"no sweep to resume in {rundir} (no sweep.json)", WHO)
        if json.loads(read_text(path)) != json.loads(json.dumps(plan)):
            raise HodecError(f"the spec, data, config or grid changed since the sweep in {rundir} started; start "
                             f"over with --force", WHO)
        return
    if force:
        for folder in ("trials", "best"):
            shutil.rmtree(rundir / folder, ignore_errors=True)
    write_atomic(path, json.dumps(plan, indent=1) + "\n")


def _records(rundir: Path, points: list) -> list:
    """Each point's record from its trial.json, None for those not finished."""
    out = []
    for i in range(len(points)):
        path = rundir / "trials" / f"{i + 1:03d}" / RECORD
        out.append(json.loads(read_text(path)) if path.is_file() else None)
    return out


def _save(rundir: Path, i: int, point: dict, result) -> dict:
    """A finished trial's files, then its record (last: a trial without trial.json is run again)."""
    folder = rundir / "trials" / f"{i + 1:03d}"
    record = {"trial": i + 1, "point": point}
    if isinstance(result, Failed):
        record.update(status="failed", error=result.message)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        write_trial(folder, result)
        record.update({key: value for key, value in result.items() if key != "files"})
    write_atomic(folder / RECORD, json.dumps(record, indent=1) + "\n")
    return record


def _finish(spec: Path, rundir: Path, points: list, records: list) -> int:
    """results.csv, best/ and the summary line."""
    keys = list(dict.fromkeys(key for point in points for key in point))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["trial", *keys, *COLUMNS])
    for record in records:
        point = record["point"]
        writer.writerow([record["trial"], *(_cell(point.get(k)) for k in keys), *(record.get(c) for c in COLUMNS)])
    write_atomic(rundir / "results.csv", table.getvalue())
    best = best_of(records)
    shutil.rmtree(rundir / "best", ignore_errors=True)
    failed = sum(r["status"] == "failed" for r in records)
    if best is None:
        raise HodecError(f"every trial failed (see {rundir / 'results.csv'})", WHO)
    source = rundir / "trials" / f"{best + 1:03d}"
    (rundir / "best").mkdir()
    for path in sorted(source.iterdir()):
        write_atomic(rundir / "best" / path.name, path.read_bytes())
    print(f"{spec} -> {rundir}: {len(records)} trials ({failed} failed), best trial {best + 1} "
          f"({show(records[best]['point'])}), MSE {records[best]['best_mse']:.6g}; results.csv, best/")
    return 0


def _cell(value) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
