"""A `hodec sparsify` run folder: inputs checked first, then report.json, pruned.hode, graph.png, fit.png and
checkpoint.pt written (each atomically)."""
from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import torch

from ...compiler import compile as compile_spec
from ...errors import HodecError
from ...files import write_atomic
from ...graph.draw import write_graph
from ...version import __version__
from ..data import read_data
from ..report import _jsonable, plot_fit
from ..run import claim_rundir
from ..sparsify_config import load_sparsify_config
from .path import WHO
from .pipeline import sparsify
from .report import report_dict

OUTPUTS = ("report.json", "pruned.hode", "graph.png", "fit.png", "checkpoint.pt")
CHECKPOINT_FORMAT = "hodec-sparsify-1"


def run_sparsify(spec, data, test=None, config=None, out=None, force: bool = False, progress: bool = True) -> int:
    spec = Path(spec)
    rundir = Path(out) if out else Path("runs") / f"{spec.stem}_sparse"
    compilation = compile_spec(spec)
    gated_class = compilation.model_class(gates=True)
    cfg = load_sparsify_config(config)
    dataset = read_data(data, gated_class, cfg.fit)
    testset = read_data(test, gated_class, cfg.fit) if test is not None else None
    if testset is not None and tuple(testset.columns) != tuple(dataset.columns):
        raise HodecError(f"the test data's fitted columns ({', '.join(testset.columns)}) differ from the training "
                         f"data's ({', '.join(dataset.columns)})", str(test))
    meta = _meta(spec, compilation.source, data, test, dataset.columns)
    claim_rundir(rundir, force, OUTPUTS, WHO, resumable=False)

    log = (lambda line: print(f"hodec sparsify: {line}", file=sys.stderr, flush=True)) if progress else None
    result = sparsify(compilation, dataset, cfg, test=testset, log=log)
    rundir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    estimator = result.refit_trainer.method.state().get("estimator")  # method forecast: the refit's best epoch's
    torch.save({"format": CHECKPOINT_FORMAT, "meta": meta, "config": cfg.to_dict(),
                "model": result.model.state_dict(), "gated_model": result.gated_model.state_dict(),
                **({"estimator": estimator} if estimator is not None else {})}, buffer)
    write_atomic(rundir / "checkpoint.pt", buffer.getvalue())
    write_atomic(rundir / "pruned.hode", result.fitted_source)
    write_atomic(rundir / "report.json", json.dumps(_jsonable(report_dict(result, meta)), indent=1) + "\n")
    gates = {e["name"]: e["gate"] for e in result.edges if e["kept"]}
    write_graph(result.pruned.graph, rundir / "graph.png", gates=gates,
                title=f"{spec.stem} sparsified (lambda1 = {result.lambda1:g})")
    plot_fit(rundir / "fit.png", result.refit_trainer, result.model)
    kept = sum(e["kept"] for e in result.edges)
    test_text = "" if result.test_mse is None else f", test MSE {result.test_mse:.6g}"
    print(f"{spec} -> {rundir}: lambda1 {result.lambda1:g}, {kept} of {len(result.edges)} gated edges kept, "
          f"states kept {', '.join(result.states_kept)}, params {result.params_before} -> {result.params_after}, "
          f"refit MSE {result.refit.best_mse:.6g}{test_text}")
    return 0


def _meta(spec: Path, source: str, data, test, columns) -> dict:
    """What report.json and the checkpoint record of the inputs: paths, digests, columns, version."""
    digest = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    meta = {"spec": str(spec), "spec_sha256": digest(source.encode()), "data": str(data),
            "data_sha256": digest(Path(data).read_bytes()), "columns": list(columns), "hodec_version": __version__}
    if test is not None:
        meta.update({"test": str(test), "test_sha256": digest(Path(test).read_bytes())})
    return meta
