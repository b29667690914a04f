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


# The messages, shared by the torch loop (integrate.py) and the C one (native/solve.py): each says where.


def state_name(state_names, j: int) -> str:
    return state_names[j] if state_names else f"state {j}"


def bad_tolerances(rtol, atol) -> HodecError:
    return HodecError(f"solver tolerances must be finite with rtol > 1e-15 and atol >= 0; got rtol={rtol}, "
                      f"atol={atol}")


def start_failure(t: float, member: int, state: str, value: float, is_initial: bool) -> SolverError:
    what = (f"the initial value of {state} is {value}" if is_initial else
            f"the rate of {state} (f at the initial state) is {value}")
    return SolverError(f"the solve cannot start at t = {t:.9g} (batch member {member}): {what}")


def underflow_not_finite(t: float, member: int, h: float, state: str) -> StepSizeUnderflow:
    return StepSizeUnderflow(
        f"step size underflow at t = {t:.9g} (batch member {member}): every step tried from there, down to {h:.3g}, "
        f"gives a value of {state} that is not finite (nan or inf): the right-hand side is not finite just past "
        f"that time (a division by zero, a log or square root of a negative number, an overflow?)")


def underflow(t: float, member: int, h: float, state: str, value: float) -> StepSizeUnderflow:
    return StepSizeUnderflow(
        f"step size underflow at t = {t:.9g} (batch member {member}): the step fell to {h:.3g}; {state} "
        f"(= {value:.6g}) has the largest error estimate there: the model may blow up or be singular at that point "
        f"(check its params), or be too stiff for the method")


def too_many_steps(max_steps: int, t: float, member: int, unfinished: str, stiff_method: str) -> TooManySteps:
    return TooManySteps(f"the solver took more than {max_steps} steps (max_steps) and stopped at t = {t:.6g} "
                        f"(batch member {member}{unfinished}): the model may be stiff (method '{stiff_method}' or "
                        f"'auto'), or raise max_steps")


def stiffness(method: str, steps: int, t: float, member: int, stiff_method: str) -> StiffnessDetected:
    return StiffnessDetected(
        f"the problem is stiff: {method} held its step at its stability limit for {steps} steps by t = {t:.6g} "
        f"(batch member {member}); use a stiff method (method '{stiff_method}'), or 'auto', which switches to it by "
        f"itself")
