"""What a gradient of a mechanistic model's loss costs: hodec's native forward sensitivities against its torch
solvers, torchdiffeq and diffrax (issue 15: "hodec fit ... use the fastest suitable one by default").

    python benchmarks/bench_gradients.py [--repeats 7] [--cases lv pk uva] [--tag gradients]

The loss of every candidate: sum over output times and states of (w_j y_j(t))^2, w_j = 1 + j/n, on bench_solve's
cases (benchmarks/cases.py: the same spec for hodec, the same field by hand for diffrax), B = 1 and a batch of 64
members differing in their initial states or params; gradients with respect to the initial state (every
candidate) and the params (hodec: every param of the spec; diffrax: the case's varied params, where it has any).
Candidates: hodec native (its model and solver loops in C, forward sensitivities: the default of `simulate` and
`hodec fit` for such a model), hodec tsit5 on the torch solvers (native=False, backpropagation), torchdiffeq
dopri5 on hodec's module (backpropagation), diffrax Tsit5 under jax.jit with jax.grad (its default
RecursiveCheckpointAdjoint). All at rtol 1e-7, atol = rtol * the case's atol ratio; accuracy: the relative error
of the initial-state gradient against hodec native at rtol 1e-12. Protocol: float64, one process, one thread for
torch, XLA and BLAS, candidates interleaved, medians. Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy / torch / jax
    os.environ.setdefault(_var, "1")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.cases import CASES  # noqa: E402
from benchmarks.peers import MAX_STEPS, hodec_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RTOL = 1e-7
CELLS = (("lv", 1), ("pk", 1), ("uva", 1), ("pk", 64))


def weights(n: int, xp):
    return 1 + xp.arange(n) / n


class Hodec:
    """loss.backward() through model.simulate: native (sensitivities) or the torch solvers / torchdiffeq."""

    def __init__(self, case, batch, route):
        self.model, y0 = hodec_model(case, batch)
        self.y0 = y0.clone().requires_grad_()
        self.ts = torch.as_tensor(case.ts, dtype=torch.float64)
        self.route = route

    def gradient(self, rtol, atol):
        self.model.zero_grad()
        self.y0.grad = None
        if self.route == "torchdiffeq":
            from torchdiffeq import odeint

            ys = odeint(self.model, self.y0, self.ts, method="dopri5", rtol=rtol, atol=atol)
        else:
            ys = self.model.simulate(self.ts, y0=self.y0, method="tsit5", rtol=rtol, atol=atol, max_steps=MAX_STEPS,
                                     native=self.route == "native")
        (ys * weights(ys.shape[-1], torch)).square().sum().backward()
        return self.y0.grad.numpy().copy()


class Diffrax:
    def __init__(self, case, batch):
        import diffrax
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        self.jax = jax
        ts = jnp.asarray(case.ts)

        def loss(y0, p, rtol, atol):
            sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, q: case.rhs(t, y, q, jnp)), diffrax.Tsit5(),
                                      ts[0], ts[-1], None, y0, args=p, saveat=diffrax.SaveAt(ts=ts),
                                      max_steps=MAX_STEPS,
                                      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol))
            return jnp.sum((sol.ys * weights(sol.ys.shape[-1], jnp)) ** 2)

        params = case.member_params(batch) if batch > 1 else dict(case.params)
        self.p = {k: jnp.asarray(v) for k, v in params.items()}
        y0 = case.member_y0(batch)
        grad = jax.grad(loss, argnums=(0, 1))
        if batch == 1:
            self.fn, self.y0 = jax.jit(grad), jnp.asarray(y0[0])
        else:  # each member's loss, summed: the gradients of a batch
            self.fn = jax.jit(jax.vmap(grad, in_axes=(0, 0, None, None)))
            self.y0 = jnp.asarray(y0)

    def gradient(self, rtol, atol):
        g = self.jax.block_until_ready(self.fn(self.y0, self.p, rtol, atol))
        return np.asarray(g[0])


def candidates(case, batch):
    out = {route: Hodec(case, batch, route) for route in ("native", "torch", "torchdiffeq")}
    if importlib.util.find_spec("diffrax") is not None:
        out["diffrax"] = Diffrax(case, batch)
    return out


def measure(name, batch, repeats):
    case = CASES[name]()
    atol = RTOL * case.atol_ratio
    runners = candidates(case, batch)
    reference = Hodec(case, batch, "native").gradient(1e-12, 1e-12 * case.atol_ratio)
    errors = {}
    for key, runner in runners.items():
        g = runner.gradient(RTOL, atol)  # also the first call: builds, compiles
        errors[key] = float(np.abs(g - reference).max() / np.abs(reference).max())
    times = {key: [] for key in runners}
    for _ in range(repeats):
        for key, runner in runners.items():
            start = time.perf_counter()
            runner.gradient(RTOL, atol)
            times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(v) for key, v in times.items()}
    return {"case": name, "batch": batch, "seconds": medians, "error": errors,
            "ratio": {key: medians["native"] / medians[key] for key in medians}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", nargs="*", default=None, help="case names (default: all cells)")
    parser.add_argument("--tag", default="gradients")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = [measure(name, batch, args.repeats) for name, batch in CELLS if not args.cases or name in args.cases]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
            "load_before": load_before, "load_after": os.getloadavg(), "rtol": RTOL, "repeats": args.repeats}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    keys = list(rows[0]["seconds"])
    lines = [f"# Gradient of a loss through a solve (issue 15)", "",
             f"{meta['date']}, {meta['machine']}, torch {meta['torch']}, 1 thread, load "
             f"{' '.join(f'{x:.1f}' for x in load_before)} before / "
             f"{' '.join(f'{x:.1f}' for x in meta['load_after'])} after; rtol {RTOL}, medians of {args.repeats} "
             f"interleaved repeats. Cells: ms per loss + gradient (relative error of the initial-state gradient "
             f"against hodec native at rtol 1e-12); ratio = hodec native's time / the candidate's.", "",
             "| case | B | " + " | ".join(keys) + " | " + " | ".join(f"native ÷ {k}" for k in keys[1:]) + " |",
             "|---|---|" + "---|" * (2 * len(keys) - 1)]
    for r in rows:
        cells = [f"{1e3 * r['seconds'][k]:.3g} ({r['error'][k]:.1e})" for k in keys]
        lines.append(f"| {r['case']} | {r['batch']} | " + " | ".join(cells) + " | "
                     + " | ".join(f"{r['ratio'][k]:.3g}" for k in keys[1:]) + " |")
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{args.tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
