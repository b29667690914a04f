"""Independent trials (cross-validation folds x the lambda1 path, multi-start fits, sweep points) run one after
another in this process (`executor: serial`, the default) or as Ray tasks (`executor: ray`: a local Ray on this
machine's cores, or the cluster at `ray_address`).

A trial is a call `function(payload)` of a module-level function on plain data (a spec's text, a Dataset, a
config, a seed, an index), never of model objects, so that a worker process reproduces it exactly: the serial and
the Ray run give the same numbers. A trial whose worker process dies (killed, out of memory, a lost node) is
rerun by Ray (RETRIES times); a trial that raises a HodecError is a failed trial (a Failed in its place in the
results), any other exception is a bug and propagates. Progress lines say trials done / running / failed.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..errors import HodecError

WHO = "executor"
RETRIES = 3  # reruns of a trial whose worker died
PROGRESS_EVERY = 10.0  # seconds between progress lines while nothing finishes


@dataclass
class Failed:
    """A trial that raised a HodecError: its message in place of its result."""
    message: str


@dataclass(frozen=True)
class Executor:
    kind: str = "serial"  # serial | ray
    workers: Optional[int] = None  # trials at once; None: every core (local) or every CPU of the cluster
    address: Optional[str] = None  # a running Ray cluster to join; None: a local Ray

    @classmethod
    def of(cls, config) -> "Executor":
        """The executor a FitConfig (or SparsifyConfig.fit) names."""
        return cls(config.executor, config.workers, config.ray_address)

    def map(self, function: Callable, payloads: Sequence, say=None, on_result=None) -> list:
        """[function(p) for p in payloads] (a Failed for a trial that raised a HodecError), in payload order.
        say: a callable taking progress lines; on_result(index, result): called as each trial finishes."""
        tally = Tally(len(payloads), say, self.kind)
        if self.kind == "serial" or not payloads:
            return _serial(function, payloads, tally, on_result)
        return _ray_map(function, payloads, self, tally, on_result)


class Tally:
    """Trials done / running / failed, reported as a line when one finishes (at most every second) and every
    PROGRESS_EVERY seconds."""

    def __init__(self, total: int, say, kind: str):
        self.total, self.say, self.kind = total, say, kind
        self.done = self.failed = self.running = 0
        self.told = 0.0

    def finished(self, result):
        self.done += 1
        self.failed += isinstance(result, Failed)
        self.tell(force=self.done == self.total)

    def tell(self, force: bool = False):
        now = time.monotonic()
        if self.say is not None and (force or now - self.told >= 1.0):
            self.say(f"trials ({self.kind}): {self.done} of {self.total} done, {self.running} running, "
                     f"{self.failed} failed")
            self.told = now


def call(function: Callable, payload):
    try:
        return function(payload)
    except HodecError as err:
        return Failed(err.diagnostics[0].message if err.diagnostics else str(err))


def _serial(function, payloads, tally: Tally, on_result) -> list:
    results = []
    for i, payload in enumerate(payloads):
        tally.running = 1
        result = call(function, payload)
        tally.running = 0
        results.append(result)
        tally.finished(result)
        if on_result is not None:
            on_result(i, result)
    return results


# ---------------------------------------------------------------- Ray
def _in_worker(function, payload):
    """A trial in a Ray worker: one torch thread per trial (the workers share the cores)."""
    import torch

    torch.set_num_threads(1)
    return call(function, payload)


def ray_module():
    """The ray package, or a HodecError saying how to install it (it is the optional extra `distributed`)."""
    try:
        import ray
    except ImportError:
        raise HodecError("executor: ray needs the Ray package: pip install 'hodec[distributed]' (or pip install "
                         "ray)", WHO) from None
    return ray


def start_ray(executor: Executor):
    """Join the cluster at executor.address, or start a local Ray on this machine's cores (once per process), and
    have its workers import torch and hodec's training (a few seconds each) before the first trial."""
    ray = ray_module()
    if not ray.is_initialized():
        options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if executor.address:
            ray.init(address=executor.address, **options)
        else:  # Ray runs workers at nice 15 by default; the trials are this run's own work, as in the serial run
            ray.init(num_cpus=executor.workers or os.cpu_count(), _system_config={"worker_niceness": 0}, **options)
        warm = ray.remote(num_cpus=1)(_warm)
        ray.get([warm.remote() for _ in range(_slots(ray, executor))])
    return ray


def _slots(ray, executor: Executor) -> int:
    """Trials at once: `workers`, or every CPU of the local Ray or cluster."""
    return executor.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def _warm():
    from . import loop  # noqa: F401 - torch and the trainer, imported once per worker here

    time.sleep(0.5)  # long enough that every warm-up task gets a worker of its own


def _ray_map(function, payloads, executor: Executor, tally: Tally, on_result) -> list:
    ray = start_ray(executor)
    task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(_in_worker)
    limit = _slots(ray, executor)
    function_ref = ray.put(function)
    pending, results, queue = {}, [None] * len(payloads), list(enumerate(payloads))
    while queue or pending:
        while queue and len(pending) < limit:
            i, payload = queue.pop(0)
            pending[task.remote(function_ref, payload)] = i
        tally.running = len(pending)
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_EVERY)
        if not ready:
            tally.tell(force=True)
            continue
        i = pending.pop(ready[0])
        results[i] = _result(ray, ready[0], i)
        tally.running = len(pending)
        tally.finished(results[i])
        if on_result is not None:
            on_result(i, results[i])
    return results


def _result(ray, ref, index: int):
    try:
        return ray.get(ref)
    except ray.exceptions.WorkerCrashedError:
        raise HodecError(f"trial {index + 1}: its worker process died on each of {RETRIES + 1} attempts", WHO) from None
    except ray.exceptions.RayTaskError as err:  # a bug in the trial: raise it here as it was raised there
        raise err.as_instanceof_cause() from None


def shutdown():
    """Stop the local Ray this process started (or leave the cluster it joined)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
