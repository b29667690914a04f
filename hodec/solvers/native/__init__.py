"""Native solving: hodec's solver loops in C, compiled with a model's C source into one shared library (build.py)
and called through ctypes (solve.py), for solves that need no gradient."""
from .build import NativeUnavailable, library
from .solve import NAMES, solve_native

__all__ = ["library", "NativeUnavailable", "solve_native", "NAMES"]
