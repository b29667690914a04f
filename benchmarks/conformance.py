"""hodec against the outside conformance suites (issue 17), each a subcommand writing its results file:

    python benchmarks/conformance.py sbml [--cases 1-100] [--suite DIR] [--timeout S]

`sbml`: the SBML Test Suite's semantic cases (../shared/data/sbml_test_suite/cases/semantic/). Each case is
imported (`hodec import`), compiled and simulated at the case's settings (hodec's solvers, rtol 1e-10, atol 1e-14,
species as the settings' amount/concentration lists ask) and judged by the suite's criterion: every compared value
satisfies abs(C - U) <= absolute + relative * abs(C). Per-case results are kept in
benchmarks/results/sbml_conformance.json (a run of some cases updates theirs), and
benchmarks/results/sbml_conformance.md gives the counts per component and test tag and every failure's reason.
One process (the machine is shared): run it in the background with `nice`; the files are rewritten every few
cases, so an interrupted run keeps what it did.

`petab-nets`: the PEtab-SciML suite's network-import cases (benchmarks/petab_sciml_nets.py, whose docstring says
how they are judged), written to benchmarks/results/petab_sciml_nets.json and .md.

`petab-problems`: the PEtab-SciML suite's problem-import cases through `hodec petab evaluate`
(benchmarks/petab_sciml_problems.py), written to benchmarks/results/petab_sciml_problems.json and .md."""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.files import write_atomic
from hodec.interop.sbml import import_sbml

if __package__ in (None, ""):  # run as a script: the repository root, for the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import petab_sciml_nets, petab_sciml_problems  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SBML_SUITE = ROOT.parent / "shared" / "data" / "sbml_test_suite" / "cases" / "semantic"
RTOL, ATOL = 1e-10, 1e-14
SAVE_EVERY = 10  # cases between rewrites of the results files
# The published counts of the semantic cases each tool passes (issue 17), for the README's table.
PEERS = {"AMICI": 1290, "PEtab.jl": 1266}


# ---------------------------------------------------------------- the SBML Test Suite
@dataclass
class CaseResult:
    case: str
    status: str  # pass | fail | refused | error | timeout
    reason: str = ""
    tags: list = field(default_factory=list)
    seconds: float = 0.0


def read_settings(path: Path) -> dict:
    """The case's settings file: key: value lines; variables, amount and concentration are lists of ids."""
    settings = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            settings[key.strip()] = value.strip()
    for key in ("variables", "amount", "concentration"):
        settings[key] = [v.strip() for v in settings.get(key, "").split(",") if v.strip()]
    return settings


def read_tags(path: Path) -> list:
    """componentTags and testTags of the case's NNNNN-model.m."""
    tags = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        for key in ("componentTags:", "testTags:"):
            if line.startswith(key):
                tags += [t.strip() for t in line[len(key):].split(",") if t.strip()]
    return tags


def read_expected(path: Path) -> tuple[list, list, list]:
    """(times, column names, rows of floats) of the case's results CSV."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split(",")]
    rows = [[float(v) for v in line.split(",")] for line in lines[1:]]
    return [r[0] for r in rows], header[1:], [r[1:] for r in rows]


def case_model(folder: Path) -> Path:
    """The case's model at its highest level and version."""
    models = sorted(folder.glob("*-sbml-l*v*.xml"))
    if not models:
        raise FileNotFoundError(f"no SBML model in {folder}")
    return max(models, key=lambda p: p.stem.split("-")[-1])


def simulated(folder: Path, settings: dict, columns: list, times: list):
    """Import, compile and simulate one case: rows [T][len(columns)] of the quantities the settings compare."""
    imported = import_sbml(case_model(folder))
    taken = set(imported.names.values())
    lines = [f"state {_fresh('conformance_zero', taken)} = 0  # a model of rules only has no state to solve"]
    for i, column in enumerate(columns):
        quantity = "amount" if column in settings["amount"] else (
            "concentration" if column in settings["concentration"] else None)
        lines.append(f"observe {_fresh(f'conformance_{i}', taken)} = {imported.value(column, quantity)}")
    text = imported.text + "\n# compared by benchmarks/conformance.py\n" + "\n".join(lines) + "\n"
    model = compile_text(text, f"case{folder.name}.hode").model_class()().double()
    ts = torch.tensor(times, dtype=torch.float64)
    with torch.no_grad():
        ys = model.simulate(ts, rtol=RTOL, atol=ATOL)
        return model.observe(ys, ts).tolist()


def _fresh(name: str, taken: set) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def judge(expected: list, got: list, columns: list, times: list, absolute: float, relative: float) -> str:
    """'' when every value passes the suite's criterion, else the first failure."""
    for t, want_row, got_row in zip(times, expected, got):
        for column, c, u in zip(columns, want_row, got_row):
            if math.isnan(c) and math.isnan(u) or (math.isinf(c) and c == u):
                continue
            if not abs(c - u) <= absolute + relative * abs(c):
                return f"{column} at t = {t:g}: {u:.10g}, expected {c:.10g}"
    return ""


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout()


def run_case(folder: Path, timeout: float) -> CaseResult:
    result = CaseResult(folder.name, "error", tags=read_tags(folder / f"{folder.name}-model.m"))
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        settings = read_settings(folder / f"{folder.name}-settings.txt")
        times, columns, expected = read_expected(folder / f"{folder.name}-results.csv")
        got = simulated(folder, settings, columns, times)
        reason = judge(expected, got, columns, times, float(settings["absolute"]), float(settings["relative"]))
        result.status, result.reason = ("fail", reason) if reason else ("pass", "")
    except CaseTimeout:
        result.status, result.reason = "timeout", f"over {timeout:g} s"
    except HodecError as err:
        refused = "cannot import" in str(err) or "SBML" in err.render()
        result.status = "refused" if refused else "error"
        result.reason = " ".join(err.render().split())[:300]
    except Exception as err:  # noqa: BLE001 - a conformance run records every failure and goes on
        result.reason = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def parse_cases(spec: str) -> list:
    """'1-100,250' -> [1, ..., 100, 250]."""
    numbers = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        numbers += range(int(low), int(high or low) + 1)
    return numbers


def sbml_report(results: dict) -> str:
    counts = Counter(r["status"] for r in results.values())
    total = len(results)
    lines = ["# SBML Test Suite: hodec's conformance", "",
             f"Written by `benchmarks/conformance.py sbml`: {total} of the suite's semantic cases run; "
             f"**{counts['pass']} pass**, {counts['fail']} fail, {counts['refused']} refused by `hodec import`, "
             f"{counts['error']} errors, {counts['timeout']} timeouts. Tolerances of the solves: rtol {RTOL:g}, "
             f"atol {ATOL:g}; each case judged by its own settings (abs(C - U) <= absolute + relative abs(C)). "
             f"For comparison, over all 1821 cases: " + ", ".join(f"{k} {v}" for k, v in PEERS.items()) + ".", "",
             "## Per tag", "", "| tag | cases | pass | fail | refused | error/timeout |", "|---|---|---|---|---|---|"]
    per_tag: dict[str, Counter] = {}
    for r in results.values():
        for tag in r["tags"]:
            per_tag.setdefault(tag, Counter())[r["status"]] += 1
    for tag in sorted(per_tag):
        c = per_tag[tag]
        lines.append(f"| {tag} | {sum(c.values())} | {c['pass']} | {c['fail']} | {c['refused']} | "
                     f"{c['error'] + c['timeout']} |")
    lines += ["", "## Cases that do not pass", "", "| case | status | reason |", "|---|---|---|"]
    for case in sorted(results):
        r = results[case]
        if r["status"] != "pass":
            lines.append(f"| {case} | {r['status']} | {r['reason'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def run_sbml(args):
    store = args.results / "sbml_conformance.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    folders = [args.suite / f"{n:05d}" for n in parse_cases(args.cases)]
    for i, folder in enumerate(f for f in folders if f.is_dir()):
        result = run_case(folder, args.timeout)
        results[result.case] = asdict(result)
        print(f"{result.case} {result.status} {result.seconds:.1f}s {result.reason[:150]}", flush=True)
        if (i + 1) % SAVE_EVERY == 0:
            _save(results, store)
    _save(results, store)


def _save(results: dict, store: Path):
    results = dict(sorted(results.items()))
    write_atomic(store, json.dumps(results, indent=0) + "\n")
    write_atomic(store.with_suffix(".md"), sbml_report(results))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="suite_name", required=True)
    sbml = sub.add_parser("sbml", help="the SBML Test Suite's semantic cases")
    sbml.add_argument("--cases", default="1-1821", help="case numbers, e.g. 1-100,250 (default: all)")
    sbml.add_argument("--suite", type=Path, default=SBML_SUITE, help="the semantic cases' folder")
    sbml.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    sbml.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    petab_sciml_nets.add_arguments(sub.add_parser("petab-nets", help="the PEtab-SciML suite's network cases"))
    petab_sciml_problems.add_arguments(sub.add_parser("petab-problems", help="the PEtab-SciML suite's problem cases"))
    args = parser.parse_args(argv)
    if args.suite_name == "petab-nets":
        return petab_sciml_nets.run(args)
    if args.suite_name == "petab-problems":
        return petab_sciml_problems.run(args)
    run_sbml(args)


if __name__ == "__main__":
    sys.exit(main())
