"""What a solve can fail on, each a HodecError whose message says where: time, batch member and state."""
from __future__ import annotations

from ..errors import HodecError


class SolverError(HodecError):
    """A solve that cannot go on."""


class StiffnessDetected(SolverError):
    """An explicit method kept its step at its stability limit: the problem is stiff."""


class StepSizeUnderflow(SolverError):
    """The step size fell below what the time's floating-point resolution allows."""


class TooManySteps(SolverError):
    """More steps than max_steps were attempted."""
