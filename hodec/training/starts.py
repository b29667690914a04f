"""`starts: N` of FIT.yaml: a multi-start `hodec fit`. Start 0 is the plain fit (the spec's values, the neural
weights seeded by `seed`); start n > 0 perturbs the trainable params (trials.perturb) and seeds the neural weights
with seed + n. The starts are trials run by the config's executor (serial, or in parallel on Ray); RUNDIR/starts/
NNN/ holds each start's run, RUNDIR/starts.csv one row per start, and RUNDIR itself the files of the start with
the lowest best MSE (report.json, fitted.hode, checkpoint.pt). `--resume` skips the starts already finished."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..compiler import compile as compile_spec
from ..errors import HodecError
from ..files import read_text
from .config import load_config
from .data import read_data
from .forecast.heldout import heldout_summary, read_heldout, score_run
from .report import OUTPUTS
from .run import claim_rundir, fit_meta, run_fit, run_folder
from .trials import FILES, RECORD, FitTrial, TrialRun

WHO = "hodec fit"
PLAN = "starts.json"


def run_fit_starts(spec, data, config: Optional[str] = None, out: Optional[str] = None, resume=None,
                   force: bool = False, progress: bool = True, slots: Optional[dict] = None, test=None) -> int:
    """`hodec fit`: a multi-start fit when the config has starts > 1 (or --resume names a multi-start run
    folder), else run_fit (slots: as run_fit's; one start only: trials rebuild the model from the spec's text)."""
    spec = Path(spec)
    rundir, resuming = run_folder(spec, out, resume, force)  # also refuses --resume with --force
    multi = (rundir / PLAN).is_file() if resuming else load_config(config).starts > 1
    if multi and slots:
        raise HodecError(f"starts > 1 with networks put into the slots ({', '.join(slots)}): a multi-start fit "
                         f"rebuilds each start's model from the spec alone", WHO)
    if not multi:
        return run_fit(spec, data, config=config, out=out, resume=resume, force=force, progress=progress,
                       slots=slots, test=test)
    compilation = compile_spec(spec)
    base = load_config(config if config or not resuming else json.loads(read_text(rundir / PLAN))["config"])
    dataset = read_data(data, compilation.model_class(), base)
    heldout = None if test is None else read_heldout(test, compilation.model_class(), base, dataset.columns)
    base = base.to_dict()
    meta = fit_meta(spec, compilation.source, data, dataset)
    plan = {"spec_sha256": meta["spec_sha256"], "data_sha256": meta["data_sha256"], "config": base}
    points = [{"start": n} for n in range(base["starts"])]
    trials = [FitTrial(compilation.source, compilation.filename, compilation.path, dataset, base, meta, n)
              for n in range(base["starts"])]
    with claim_rundir(rundir, force, (*OUTPUTS, PLAN, "starts.csv", RECORD), WHO, resume=resuming):
        run = TrialRun(rundir, WHO, PLAN, "starts")
        records = run.run(plan, trials, points, resuming, force, progress)
        if records is None:
            return 130
        best = run.finish(rundir / "starts.csv", rundir, records)
        tested = None if heldout is None else score_run(heldout, compilation.model_class(), rundir)
    scores = ", ".join("failed" if r.get("best_mse") is None else f"{r['best_mse']:.3g}" for r in records)
    print(f"{spec} -> {rundir}: {base['method']}, {len(records)} starts (best MSE {scores}); start {best} kept: "
          f"best epoch {records[best]['best_epoch']}, MSE {records[best]['best_mse']:.6g} "
          f"({', '.join(FILES)}; starts.csv){heldout_summary(tested)}")
    return 0
