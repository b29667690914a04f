"""A model's C source and hodec's C solver loops built into one shared library, cached on disk, loaded once.

    lib = library(model_source)   # a ctypes.CDLL exporting hodec_solve, hodec_eval and hodec_dims

One translation unit (the model's functions inline into the solver loops), compiled by the system C compiler ($CC,
else `cc`) with portable flags (no -march=native: the cache may be shared between machines). The library's file
name is the sha256 of everything that decides its contents (the unit's text, the flags, the compiler's command
and version), so a cached file is reused only for the same build; it is written under a temporary name and
renamed, so two processes building the same library at once both end with a complete file.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from ...errors import HodecError
from ...files import write_atomic
from .coefficients import header

FLAGS = ("-std=c99", "-O2", "-fPIC", "-shared")
LIBRARIES = ("-lm",)
SOLVER_SOURCE = Path(__file__).with_name("solver.c")
ERROR_LINES = 12  # of the compiler's output, in NativeUnavailable's message

_loaded: dict = {}  # hash -> the loaded library: one load per process
_by_source: dict = {}  # (model source, compiler command) -> the loaded library, or the NativeUnavailable it raised
_versions: dict = {}  # compiler command -> its --version text
builds = 0  # compiler runs in this process (tests read it to see the cache at work)


class NativeUnavailable(HodecError):
    """No C compiler runs, or it fails on the source: native solving is not available."""


def library(model_source: str) -> ctypes.CDLL:
    """The loaded library of model_source (see NATIVE.md: HODEC_N, HODEC_P, HODEC_U, HODEC_AUTONOMOUS, hodec_rhs,
    hodec_jac, hodec_dfdt) with hodec's solver loops; built at the first use, then read from the cache. A repeated
    call with the same source and compiler costs a dictionary look-up, a failed one too (it raises the same
    NativeUnavailable: a solve that falls back to the torch solvers does not run the compiler again each time)."""
    compiler = _compiler()
    known = _by_source.get((model_source, compiler))
    if known is None:
        try:
            known = _built(model_source, compiler)
        except NativeUnavailable as err:
            known = err
        _by_source[(model_source, compiler)] = known
    if isinstance(known, NativeUnavailable):
        raise known
    return known


def _built(model_source: str, compiler: tuple) -> ctypes.CDLL:
    unit = translation_unit(model_source)
    key = hashlib.sha256("\0".join([unit, *FLAGS, *LIBRARIES, *compiler, _version(compiler)]).encode()).hexdigest()
    if key not in _loaded:
        _loaded[key] = _declare(_load(compiler, unit, cache_folder() / f"{key}.so"))
    return _loaded[key]


def translation_unit(model_source: str) -> str:
    """The C text compiled: the model, the method coefficients (from the Python tableaus), the solver loops."""
    return "\n".join([model_source, _solver_text()])


@functools.lru_cache(maxsize=None)
def _solver_text() -> str:
    return header() + "\n" + SOLVER_SOURCE.read_text(encoding="utf-8")


def cache_folder() -> Path:
    return Path(os.environ.get("HODEC_CACHE") or Path.home() / ".cache" / "hodec" / "native")


def _compiler() -> tuple:
    text = os.environ.get("CC") or "cc"
    try:
        command = _split(text)
    except ValueError as err:  # unbalanced quotes
        raise NativeUnavailable(f"the environment variable CC ({text!r}) cannot be read as a command: {err}") from None
    if not command:
        raise NativeUnavailable("the environment variable CC names no C compiler")
    return command


@functools.lru_cache(maxsize=None)
def _split(command: str) -> tuple:
    return tuple(shlex.split(command))


def _version(compiler: tuple) -> str:
    """The compiler's --version text (part of the cache key: an upgraded compiler builds anew), asked once."""
    if compiler not in _versions:
        result = _run([*compiler, "--version"])
        if result.returncode != 0:
            raise NativeUnavailable(f"the C compiler '{shlex.join(compiler)}' does not run (--version exited with "
                                    f"status {result.returncode}){_excerpt(result)}")
        _versions[compiler] = result.stdout
    return _versions[compiler]


def _load(compiler: tuple, unit: str, path: Path) -> ctypes.CDLL:
    """The cached library, built first if it is not there, or built again if it does not load (a file cut short,
    e.g. by a full disk)."""
    if path.is_file():
        try:
            return ctypes.CDLL(str(path))
        except OSError:
            pass
    _build(compiler, unit, path)
    try:
        return ctypes.CDLL(str(path))
    except OSError as err:
        raise NativeUnavailable(f"the native library {path} does not load: {err}") from None


def _build(compiler: tuple, unit: str, path: Path):
    global builds
    folder = path.parent
    source = path.with_suffix(".c")  # kept beside the library: the compiler's messages point into it
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(source, unit)
        fd, partial = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".so.tmp", dir=folder)
        os.close(fd)
    except (OSError, HodecError) as err:  # a cache folder that cannot be written: no native solving, no crash
        raise NativeUnavailable(f"cannot write the native cache folder {folder} (set HODEC_CACHE to another): "
                                f"{getattr(err, 'strerror', None) or err}") from None
    try:
        builds += 1
        result = _run([*compiler, *FLAGS, "-o", partial, str(source), *LIBRARIES])
        if result.returncode != 0:
            raise NativeUnavailable(f"the C compiler '{shlex.join(compiler)}' failed (exit status "
                                    f"{result.returncode}) on {source}{_excerpt(result)}")
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)


def _run(command: list) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as err:  # not found, not executable
        raise NativeUnavailable(f"no C compiler: cannot run '{command[0]}' ({err.strerror or err}); install one "
                                f"(cc, gcc or clang) or set CC") from None


def _excerpt(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()[:ERROR_LINES]
    return ":\n" + "\n".join(lines) if lines else ""


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """The exported functions' C signatures, so that ctypes converts the arguments."""
    double, pointer, long = ctypes.c_double, ctypes.c_void_p, ctypes.c_long
    lib.hodec_eval.argtypes = [double] + [pointer] * 7
    lib.hodec_eval.restype = None
    lib.hodec_solve.argtypes = [ctypes.c_int, long, long, pointer, long, long, pointer, pointer, long, pointer,
                                pointer, pointer, double, pointer, long, long, pointer, pointer, pointer, pointer]
    lib.hodec_solve.restype = ctypes.c_int
    lib.model_dims = tuple((ctypes.c_long * 4).in_dll(lib, "hodec_dims"))  # read once: solves read it each call
    return lib


def dims(lib: ctypes.CDLL) -> tuple:
    """(HODEC_N, HODEC_P + HODEC_W, HODEC_U, HODEC_AUTONOMOUS) of the library's model: P counts a member's row of
    params, the neural slots' weights included."""
    return lib.model_dims
