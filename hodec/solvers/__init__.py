"""hodec's own ODE solvers: batched, each member its own step-size control, explicit and stiff methods.

A generic numerical library (torch only): runtime's CompiledModel.simulate calls it; see solve.py.
"""
from .adjoint import solve_adjoint
from .errors import SolverError, StepSizeUnderflow, StiffnessDetected, TooManySteps
from .events import Events
from .solve import METHODS, NAMES, solve
from .steady import SteadyStateError, steady_state

__all__ = ["solve", "solve_adjoint", "Events", "METHODS", "NAMES", "SolverError", "StepSizeUnderflow",
           "StiffnessDetected", "TooManySteps", "steady_state", "SteadyStateError"]
