"""hodec: a compiler for hybrid neural ODE models."""

__version__ = "0.1.0"

from .compiler import compile_file, compile_source, load  # noqa: E402
from .errors import HodecError  # noqa: E402

__all__ = ["HodecError", "compile_file", "compile_source", "load", "__version__"]
