"""The candidates of bench_solve.py: hodec's solve paths and the peers, each behind one small interface.

    cand = CANDIDATES["diffrax Tsit5"]
    cand.missing()                       # None, or why it cannot run here ("jax not installed", ...)
    runner = cand.prepare(case, batch)   # builds the model / jit function for one cell
    runner.run(rtol, atol)               # one solve (blocks until done); what the timing loop calls
    runner.states(result)                # -> numpy [T, B, n] for the accuracy check
    runner.compile_s                     # one-time compile (jit) seconds, measured by the first call, or None
    runner.counts(rtol, atol)            # {"nfev": .., "steps": ..} of one solve, or {}

The hodec candidates run hodec's generated module; the peers (diffrax, libRoadRunner, scipy) run the case's
hand-written right-hand side (cases.py), never hodec's module. torchode runs hodec's module (the issue's
"torchode running hodec's own module" row). Solves run without gradients (inference), float64.
"""
from __future__ import annotations

import functools
import importlib.util
import inspect
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from benchmarks.cases import Case

MAX_STEPS = 100_000


# ---------------------------------------------------------------- the interface
@dataclass
class Candidate:
    name: str
    group: str  # "hodec" or "peer"
    prepare: Callable  # (case, batch) -> Runner
    kinds: tuple  # which cases: "explicit" (non-stiff ones), "stiff"
    batched: bool  # runs batches (else B = 1 only)
    needs: tuple = ()  # importable modules
    check: Optional[Callable] = None  # () -> None or a reason it is not available
    cells: Optional[tuple] = None  # only these (case, batch) cells (compile variants: each cell compiles anew)
    ladder_from: Optional[str] = None  # start the tolerance ladder where this candidate's ended (same numerics)

    def missing(self) -> Optional[str]:
        for module in self.needs:
            if importlib.util.find_spec(module) is None:
                return f"{module} not installed"
        return self.check() if self.check else None

    def applies(self, case: Case, batch: int) -> bool:
        if batch > 1 and not self.batched or self.cells is not None and (case.name, batch) not in self.cells:
            return False
        kinds = {"stiff"} if case.stiff else ({"explicit", "stiff"} if case.explicit_too else {"explicit"})
        return bool(kinds & set(self.kinds))


class Runner:
    jit = False  # compiles on its first call (bench_solve then reports compile_s = first call - second call)
    compile_s: Optional[float] = None

    def run(self, rtol: float, atol: float):
        raise NotImplementedError

    def states(self, result) -> np.ndarray:
        raise NotImplementedError

    def counts(self, rtol: float, atol: float) -> dict:
        return {}

    def rhs_us(self) -> Optional[float]:
        """µs per right-hand-side evaluation at this batch, outside any solver (hodec only)."""
        return None


# ---------------------------------------------------------------- hodec
@functools.lru_cache(maxsize=None)
def model_class(spec: str, name: str):
    """The generated class of a spec, compiled once per process (N=1000 takes seconds)."""
    import hodec
    from hodec.compiler import load_source

    return load_source(hodec.compile_source(spec, f"{name}.hode"), f"bench_solve_{name}")


def hodec_model(case: Case, batch: int):
    """hodec's module of the case (float64), per-member params set, inputs bound; and y0 ([n] for B = 1)."""
    cls = model_class(case.spec, case.name)
    params = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in case.member_params(batch).items()}
    model = cls(**params if batch > 1 else {}).double()
    if case.inputs:
        model.set_inputs({k: (knots, values, "previous") for k, (knots, values) in case.inputs.items()})
    y0 = torch.as_tensor(case.member_y0(batch), dtype=torch.float64)
    return model, (y0[0] if batch == 1 else y0)


class HodecRunner(Runner):
    """model.simulate with one of hodec's own methods, on its torch solvers or natively (its model and solver
    loops compiled to C), or torchdiffeq.odeint on the module (the path before hodec had its own solvers)."""

    def __init__(self, case: Case, batch: int, method: str, torchdiffeq: bool = False, compile: bool = False,
                 native: bool = False):
        self.model, self.y0 = hodec_model(case, batch)
        self.ts = torch.as_tensor(case.ts, dtype=torch.float64)
        self.method, self.torchdiffeq, self.compile, self.native = method, torchdiffeq, compile, native
        self.jit = compile or native  # the first native solve builds the C library (or reads it from the cache)

    def run(self, rtol, atol, **extra):
        with torch.no_grad():
            if self.torchdiffeq:
                from torchdiffeq import odeint

                return odeint(self.model, self.y0, self.ts, method=self.method, rtol=rtol, atol=atol)
            options = {"compile": True} if self.compile else {}
            return self.model.simulate(self.ts, y0=self.y0, method=self.method, rtol=rtol, atol=atol,
                                       max_steps=MAX_STEPS, native=self.native, **options, **extra)

    def states(self, result):
        ys = result.numpy()
        return ys[:, None, :] if ys.ndim == 2 else ys

    def counts(self, rtol, atol):
        if self.torchdiffeq:
            calls = [0]
            forward = self.model.forward

            def counted(t, y):
                calls[0] += 1
                return forward(t, y)

            self.model.forward = counted
            try:
                self.run(rtol, atol)
            finally:
                del self.model.forward
            return {"nfev": calls[0]}
        stats: dict = {}
        self.run(rtol, atol, stats=stats)
        return {"nfev": stats.get("n_f"), "steps": stats.get("steps"), "njac": stats.get("n_jac"),
                "method": stats.get("method")}

    def rhs_us(self):
        if self.native:  # its right-hand side is C inside the solve: no torch forward to time
            return None
        t = self.ts[:1].reshape(()) if self.y0.dim() == 1 else self.ts[:1].expand(self.y0.shape[0])
        with torch.no_grad():
            for _ in range(20):
                self.model(t, self.y0)
            n = 200
            start = time.perf_counter()
            for _ in range(n):
                self.model(t, self.y0)
        return (time.perf_counter() - start) / n * 1e6


def hodec_methods_check(*methods: str, compile: bool = False):
    def check():
        try:
            from hodec import solvers
        except ImportError:
            return "hodec.solvers not available"
        unknown = [m for m in methods if m != "auto" and m not in solvers.METHODS]
        if unknown:
            return f"method {', '.join(unknown)} not in hodec.solvers"
        if compile and "compile" not in inspect.signature(solvers.solve).parameters:
            return "hodec.solvers.solve has no compile option"
        if "method" not in inspect.signature(_simulate()).parameters:
            return "simulate takes no method"
        return None

    return check


def native_check(method: str):
    def check():
        try:
            from hodec.solvers.native import NAMES
        except ImportError:
            return "hodec.solvers.native not available"
        if method not in NAMES:
            return f"method {method} not in hodec.solvers.native"
        if "native" not in inspect.signature(_simulate()).parameters:
            return "simulate takes no native option"
        return None

    return check


def _simulate():
    from hodec.runtime.model import CompiledModel

    return CompiledModel.simulate


# compile=True compiles anew for each shape (and tolerance): run on a few cells only
COMPILE_CELLS = (("lv", 1), ("net100", 1), ("net100", 4096), ("robertson", 1))


def hodec_candidate(method: str, kinds: tuple, compile: bool = False) -> Candidate:
    name = f"hodec {method}" + (" compile" if compile else "")
    return Candidate(name, "hodec", lambda case, batch: HodecRunner(case, batch, method, compile=compile),
                     kinds, batched=True, check=hodec_methods_check(method, compile=compile),
                     cells=COMPILE_CELLS if compile else None, ladder_from=f"hodec {method}" if compile else None)


def native_candidate(method: str, kinds: tuple) -> Candidate:
    return Candidate(f"hodec native {method}", "hodec",
                     lambda case, batch: HodecRunner(case, batch, method, native=True), kinds, batched=True,
                     check=native_check(method))


# ---------------------------------------------------------------- torchode on hodec's module
class TorchodeRunner(Runner):
    def __init__(self, case: Case, batch: int):
        self.model, y0 = hodec_model(case, batch)
        self.y0 = y0.reshape(batch, case.n)
        self.t_eval = torch.as_tensor(case.ts, dtype=torch.float64).expand(batch, len(case.ts)).contiguous()
        self.solvers: dict = {}

    def _solver(self, rtol, atol):
        import torchode as to

        if (rtol, atol) not in self.solvers:
            term = to.ODETerm(self.model)
            controller = to.IntegralController(atol=atol, rtol=rtol, term=term)
            self.solvers[rtol, atol] = to.AutoDiffAdjoint(to.Tsit5(term=term), controller, max_steps=MAX_STEPS)
        return self.solvers[rtol, atol]

    def run(self, rtol, atol):
        import torchode as to

        with torch.no_grad():
            sol = self._solver(rtol, atol).solve(to.InitialValueProblem(y0=self.y0, t_eval=self.t_eval))
        return sol

    def states(self, sol):
        if bool((sol.status != 0).any()):
            raise RuntimeError(f"torchode status {sol.status.unique().tolist()}")
        return sol.ys.permute(1, 0, 2).numpy()

    def counts(self, rtol, atol):
        stats = self.run(rtol, atol).stats
        return {"nfev": int(stats["n_f_evals"].max()), "steps": int(stats["n_steps"].max())}


# ---------------------------------------------------------------- diffrax
class DiffraxRunner(Runner):
    """diffeqsolve under jax.jit (vmap over members for B > 1); rtol/atol are traced, so one compilation serves
    every tolerance."""

    def __init__(self, case: Case, batch: int, solver: str):
        import diffrax
        import jax
        import jax.numpy as jnp

        self.jax = jax
        ts = jnp.asarray(case.ts)

        def field(t, y, p):
            return case.rhs(t, y, p, jnp)

        def one(y0, p, rtol, atol):
            sol = diffrax.diffeqsolve(diffrax.ODETerm(field), getattr(diffrax, solver)(), ts[0], ts[-1], None, y0,
                                      args=p, saveat=diffrax.SaveAt(ts=ts), max_steps=MAX_STEPS,
                                      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol))
            return sol.ys, sol.stats["num_steps"]

        params = case.member_params(batch) if batch > 1 else dict(case.params)
        self.p = {k: jnp.asarray(v) for k, v in params.items()}
        y0 = case.member_y0(batch)
        if batch == 1:
            self.fn, self.y0 = jax.jit(one), jnp.asarray(y0[0])
        else:
            self.fn, self.y0 = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None))), jnp.asarray(y0)
        self.jit = True

    def run(self, rtol, atol):
        self.last = self.jax.block_until_ready(self.fn(self.y0, self.p, rtol, atol))
        return self.last

    def states(self, result):
        ys = np.asarray(result[0])
        return ys[:, None, :] if ys.ndim == 2 else ys.transpose(1, 0, 2)

    def counts(self, rtol, atol):
        """Of the last solve (the timing loop's, at this tolerance): no extra solve of a slow vmap."""
        return {"steps": int(np.max(np.asarray(self.last[1])))}


def jax_x64_check():
    import jax

    return None if jax.config.read("jax_enable_x64") else "jax_enable_x64 is off (bench_solve sets it)"


# ---------------------------------------------------------------- libRoadRunner (CVODE)
def sbml(case: Case) -> str:
    import antimony

    antimony.clearPreviousLoads()
    if antimony.loadAntimonyString(f"model {case.name}\n{case.antimony}\nend") < 0:
        raise RuntimeError(f"Antimony: {antimony.getLastError()}")
    return antimony.getSBMLString(case.name)


class RoadRunnerRunner(Runner):
    def __init__(self, case: Case, batch: int, stiff: bool):
        import roadrunner

        roadrunner.Logger.setLevel(roadrunner.Logger.LOG_ERROR)
        self.rr = roadrunner.RoadRunner(sbml(case))
        # PK's states are named A1/A2 in its Antimony text; the others use the spec's names
        self.rr.timeCourseSelections = ["time", *(("A1", "A2") if case.name == "pk" else case.state_names)]
        self.integrator = self.rr.getIntegrator()
        self.integrator.stiff = stiff
        self.integrator.maximum_num_steps = MAX_STEPS
        self.ts = list(case.ts)

    def run(self, rtol, atol):
        self.integrator.relative_tolerance = rtol
        self.integrator.absolute_tolerance = atol
        self.rr.reset()
        return self.rr.simulate(times=self.ts)

    def states(self, result):
        return np.asarray(result)[:, None, 1:]


# ---------------------------------------------------------------- scipy
class ScipyRunner(Runner):
    def __init__(self, case: Case, batch: int, method: str):
        self.case, self.method = case, method

    def run(self, rtol, atol):
        from scipy.integrate import solve_ivp

        case = self.case
        sol = solve_ivp(lambda t, y: case.rhs(t, y, case.params, np), (case.ts[0], case.ts[-1]), case.y0,
                        method=self.method, t_eval=case.ts, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(sol.message)
        return sol

    def states(self, sol):
        return sol.y.T[:, None, :]

    def counts(self, rtol, atol):
        sol = self.run(rtol, atol)
        return {"nfev": int(sol.nfev), "njac": int(sol.njev)}


def reference(case: Case, member: int, batch: int, rtol: float = 1e-12) -> np.ndarray:
    """[T, n]: scipy Radau (stiff) or DOP853 at rtol 1e-12, integrated piece by piece between input jumps."""
    from scipy.integrate import solve_ivp

    params = {k: v[member] for k, v in case.member_params(batch).items()} or dict(case.params)
    y = case.member_y0(batch)[member]
    edges = [case.ts[0], *[b for b in case.breakpoints if case.ts[0] < b < case.ts[-1]], case.ts[-1]]
    out = np.empty((len(case.ts), case.n))
    out[0] = y
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (case.ts > lo) & (case.ts <= hi)
        below = np.nextafter(hi, -np.inf)  # a stage at hi itself reads the inputs of this piece, not the next
        sol = solve_ivp(lambda t, v: case.rhs(min(t, below), v, params, np), (lo, hi), y,
                        method="Radau" if case.stiff else "DOP853", t_eval=case.ts[inside], rtol=rtol,
                        atol=rtol * case.atol_ratio, dense_output=True)
        if not sol.success:
            raise RuntimeError(f"reference for {case.name}: {sol.message}")
        if inside.any():
            out[inside] = sol.y.T
        y = sol.sol(hi)
    return out


# ---------------------------------------------------------------- the list
EXPLICIT, STIFF = ("explicit",), ("stiff",)
BOTH = ("explicit", "stiff")

CANDIDATES = {c.name: c for c in [
    Candidate("hodec+torchdiffeq dopri5", "hodec",
              lambda case, batch: HodecRunner(case, batch, "dopri5", torchdiffeq=True), EXPLICIT, batched=True,
              needs=("torchdiffeq",)),
    hodec_candidate("tsit5", EXPLICIT),
    hodec_candidate("dopri5", EXPLICIT),
    hodec_candidate("rodas5p", STIFF),
    hodec_candidate("auto", BOTH),
    hodec_candidate("tsit5", EXPLICIT, compile=True),
    hodec_candidate("rodas5p", STIFF, compile=True),
    native_candidate("tsit5", EXPLICIT),
    native_candidate("dopri5", EXPLICIT),
    native_candidate("rodas5p", STIFF),
    native_candidate("auto", BOTH),
    Candidate("torchode Tsit5 (hodec module)", "peer", TorchodeRunner, EXPLICIT, batched=True, needs=("torchode",)),
    Candidate("diffrax Tsit5", "peer", lambda case, batch: DiffraxRunner(case, batch, "Tsit5"), EXPLICIT,
              batched=True, needs=("diffrax", "jax"), check=jax_x64_check),
    Candidate("diffrax Kvaerno5", "peer", lambda case, batch: DiffraxRunner(case, batch, "Kvaerno5"), STIFF,
              batched=True, needs=("diffrax", "jax"), check=jax_x64_check),
    Candidate("CVODE Adams", "peer", lambda case, batch: RoadRunnerRunner(case, batch, stiff=False), EXPLICIT,
              batched=False, needs=("roadrunner", "antimony")),
    Candidate("CVODE BDF", "peer", lambda case, batch: RoadRunnerRunner(case, batch, stiff=True), BOTH,
              batched=False, needs=("roadrunner", "antimony")),
    Candidate("scipy DOP853", "peer", lambda case, batch: ScipyRunner(case, batch, "DOP853"), EXPLICIT,
              batched=False),
    Candidate("scipy Radau", "peer", lambda case, batch: ScipyRunner(case, batch, "Radau"), STIFF, batched=False),
    Candidate("scipy BDF", "peer", lambda case, batch: ScipyRunner(case, batch, "BDF"), STIFF, batched=False),
]}
