"""hodec: a compiler for hybrid neural ODE models."""

from .version import __version__
from .compiler import Compilation, compile, compile_file, compile_source, load
from .errors import HodecError


def fit(model, data, config=None, **options):
    """Train a compiled model on data (homotopy, vanilla or multiple shooting): see hodec.training.fit.fit."""
    from .training.fit import fit as _fit

    return _fit(model, data, config, **options)


__all__ = ["Compilation", "HodecError", "compile", "compile_file", "compile_source", "fit", "load", "__version__"]
