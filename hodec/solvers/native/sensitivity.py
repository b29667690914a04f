"""Forward sensitivities of a native solve: y and its derivatives with respect to the initial state and the params,
from one solve of the augmented system of sensitivity.c (the model's hodec_jac and hodec_dfdp give dS/dt).

    lib = library(sensitivity_source(model_source))
    ys, d_y0, d_p = solve_sensitivities(lib, y0, ts, params, inputs, "tsit5", 1e-7, 1e-9, max_steps=10_000)
    # ys [T, B, n]; d_y0 [T, B, n, n] = d y(t) / d y0; d_p [T, B, n, P] = d y(t) / d p (each member's own p)

Explicit methods only (tsit5, dopri5): a stiff method would need the model's second derivatives. The steps are
those of the solve without sensitivities (its error control reads y only), and the derivatives are exact for them:
the derivative of the computed solution with the step sizes held, as backpropagation through the torch solvers
gives it up to their step-size terms.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import HodecError
from .build import dims
from .solve import solve_native

METHODS = ("tsit5", "dopri5")
ADAPTER = Path(__file__).with_name("sensitivity.c")
# the model's functions renamed, so that the adapter's hodec_rhs can call them and take their names
RENAMES = "#define hodec_rhs hodec_model_rhs\n#define hodec_jac hodec_model_jac\n#define hodec_dfdt hodec_model_dfdt\n"


def sensitivity_source(model_source: str) -> str:
    return RENAMES + model_source + "\n" + ADAPTER.read_text(encoding="utf-8")


def augmented_size(n: int, P: int) -> int:
    """The states the augmented solve carries: y and its n x (n + P) derivatives."""
    return n * (1 + n + P)


def solve_sensitivities(lib, y0: torch.Tensor, ts, params: torch.Tensor, inputs, method: str, rtol: float, atol, *,
                        max_steps: int, state_names=None, stats=None) -> tuple:
    """(ys [T, B, n], d ys / d y0 [T, B, n, n], d ys / d params [T, B, n, P]), float64; params [P] or [B, P]."""
    if method not in METHODS:
        raise HodecError(f"native sensitivities need an explicit method ({', '.join(METHODS)}), not '{method}'")
    B, n = y0.shape
    P = params.shape[-1]
    N = augmented_size(n, P)
    if dims(lib)[0] != N:
        raise HodecError(f"the sensitivity library carries {dims(lib)[0]} states; {n} states and {P} params need {N}")
    unit = torch.cat([torch.eye(n, dtype=torch.float64), torch.zeros(n, P, dtype=torch.float64)], 1)
    z0 = torch.cat([y0.to(torch.float64), unit.reshape(1, -1).expand(B, -1)], 1)
    if torch.is_tensor(atol) and atol.dim() == 1:  # the derivatives are not error-controlled: any value reads
        atol = torch.cat([atol.to(torch.float64), torch.ones(N - n, dtype=torch.float64)])
    z = solve_native(lib, z0, ts, params, inputs, method, rtol, atol, max_steps=max_steps, state_names=state_names,
                     stats=stats)
    T = z.shape[0]
    S = z[..., n:].reshape(T, B, n, n + P)
    return z[..., :n], S[..., :n], S[..., n:]
