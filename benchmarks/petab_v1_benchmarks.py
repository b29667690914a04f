"""PEtab v1 problems of the benchmark collection (github Benchmarking-Initiative/Benchmark-Models-PEtab, BSD 3)
through `hodec petab evaluate` (without gradients): the llh at the nominal parameters against the reference values
AMICI's tests keep for them (AMICI-dev/AMICI, tests/benchmark_models/benchmark_models.yaml), judged at 1e-6
relative.

    python benchmarks/petab_v1_benchmarks.py [--collection DIR] [--models A,B] [--timeout S] [--results DIR]

DIR is the collection's Benchmark-Models/ folder (one folder per model, MODEL/MODEL.yaml; default: the
environment's PETAB_BENCHMARK_COLLECTION, else ../shared/data/benchmark_models_petab/Benchmark-Models). Writes
benchmarks/results/petab_v1_benchmarks.json (per model: status, llh, reference, relative error, seconds, reason)
and .md."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

from hodec.errors import HodecError
from hodec.files import write_atomic
from hodec.interop.petab.evaluate import evaluate_problem
from hodec.interop.petab.problem import read_problem

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
COLLECTION = Path(os.environ.get("PETAB_BENCHMARK_COLLECTION",
                                 ROOT.parent / "shared" / "data" / "benchmark_models_petab" / "Benchmark-Models"))
RTOL = 1e-6
REFERENCE_LLH = {  # AMICI's benchmark_models.yaml (commit 5c524dd)
    "Bachmann_MSB2011": 418.40573341425295, "Beer_MolBioSystems2014": 58622.9145631413,
    "Boehm_JProteomeRes2014": -138.22199693517703, "Borghans_BiophysChem1997": 83.3237191357272,
    "Brannmark_JBC2010": -141.889113770537, "Bruno_JExpBot2016": 46.688176988431806,
    "Chen_MSB2009": -115700.1192629893, "Crauste_CellSystems2017": -190.96521897435176,
    "Elowitz_Nature2000": 63.20279991419332, "Fiedler_BMCSystBiol2016": 58.58390161681,
    "Fujita_SciSignal2010": 53.08377736998929, "Isensee_JCB2018": -3949.375966548649,
    "Lucarelli_CellSystems2018": -1681.6059879426584, "Schwen_PONE2014": -943.9992988598723,
    "Sneyd_PNAS2002": 319.79177818768756, "Smith_BMCSystBiol2013": -888198.436541014,
    "Weber_BMC2015": -296.2017922646865, "Zheng_PNAS2012": 278.33353271001477}

NOTES = {  # an independent solve where hodec and the reference differ
    "Crauste_CellSystems2017": "libRoadRunner (CVODE at rtol 1e-12, the llh by hand from its outputs) gives "
                               "-190.96397757229, hodec's llh to 2e-11: the reference is 6.5e-6 off",
}


class Timeout(Exception):
    pass


def run_model(folder: Path, seconds: int) -> dict:
    reference = REFERENCE_LLH[folder.name]
    start = time.perf_counter()

    def expire(*_):
        raise Timeout()

    previous = signal.signal(signal.SIGALRM, expire)  # (checked between Python steps: a long C call runs on)
    signal.alarm(seconds)
    try:
        llh = evaluate_problem(read_problem(folder / f"{folder.name}.yaml"), gradients=False).llh
    except HodecError as err:
        return {"status": "refused", "reason": str(err).strip().splitlines()[0][:300], "reference": reference}
    except Timeout:
        return {"status": "timeout", "reason": f"over {seconds} s", "reference": reference}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    error = abs(llh - reference) / abs(reference)
    return {"status": "pass" if error <= RTOL else "fail", "llh": llh, "reference": reference,
            "relative_error": error, "seconds": round(time.perf_counter() - start, 1),
            "reason": NOTES.get(folder.name, "") if error > RTOL else ""}


def report(results: dict) -> str:
    passed = sum(r["status"] == "pass" for r in results.values())
    lines = [f"# PEtab v1 benchmark collection: {passed} of {len(results)} agree with AMICI's llh", "",
             f"(llh at the nominal parameters within {RTOL:g} relative; `python benchmarks/petab_v1_benchmarks.py`)",
             "", "| model | status | llh | reference | relative error | seconds | reason |",
             "|---|---|---|---|---|---|---|"]
    for name, r in sorted(results.items()):
        llh = f"{r['llh']:.12g}" if "llh" in r else ""
        error = f"{r['relative_error']:.1e}" if "relative_error" in r else ""
        lines.append(f"| {name} | {r['status']} | {llh} | {r['reference']:.12g} | {error} | {r.get('seconds', '')} | "
                     f"{r['reason'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", type=Path, default=COLLECTION, help="the collection's Benchmark-Models folder")
    parser.add_argument("--models", help="comma-separated model names (default: all with a reference llh)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per model")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = args.models.split(",") if args.models else sorted(REFERENCE_LLH)
    results = {}
    for name in names:
        results[name] = run_model(args.collection / name, args.timeout)
        print(name, results[name], flush=True)
    store = args.results / "petab_v1_benchmarks.json"
    write_atomic(store, json.dumps(results, indent=0) + "\n")
    write_atomic(store.with_suffix(".md"), report(results))


if __name__ == "__main__":
    sys.exit(main())
