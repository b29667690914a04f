"""Tableaus of the Rosenbrock methods (rodas5p, rodas4, ros34pw2), in the transformed form Hairer's RODAS uses.

Stage i solves (I/(hγ) − J) k_i = f(t + c_i h, y + Σ_j a_ij k_j) + Σ_j (C_ij / h) k_j + d_i h ∂f/∂t, with one matrix
for all stages (Hairer & Wanner II, IV.7, eq. (7.25)); y1 = y + Σ b_i k_i; the error estimate is Σ e_i k_i; the dense
output is y(θ) = (1 − θ) y + θ (y1 + (1 − θ)(D_1 + θ (D_2 + θ D_3 ...))) with D_m = Σ_i H_mi k_i.

Rodas4 and Rodas5P are stiffly accurate: their last stages are at t + h, each adds its k to the previous stage's
input (a row = the previous row plus 1 at the previous stage), y1 is the last stage's input plus its k, and the
error estimate is that last k (the embedded solution is the last stage's input). ROS34PW2 is published in the
standard form (α, Γ, b, b̂ and a dense output y + Σ B_i(θ) k_i) and transformed here once, in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RosenbrockTableau:
    name: str
    gamma: float  # the diagonal γ of the method: the matrix is I/(hγ) − J
    a: tuple  # rows of stages 2..s (row i has i entries): the stage input is y + Σ a_ij k_j
    C: tuple  # rows of stages 2..s, same shape: Σ (C_ij / h) k_j is added to the stage's f
    c: tuple  # nodes of stages 2..s (stage 1 is at t)
    d: tuple  # per stage: the coefficient of h ∂f/∂t (γ_i, the row sums of the untransformed Γ)
    b: tuple  # weights of the solution
    e: tuple  # weights of the error estimate (b minus the embedded weights)
    H: tuple  # dense output: rows of D_m = Σ_i H_mi k_i
    order: int  # order of the embedded (error) solution's step: the controller exponent is 1/(order + 1)


def _stiffly_accurate(last_inner_row: tuple, n_final: int) -> tuple:
    """Rows a of the final stages at t + h and the weights b: each final stage adds the previous stage's k."""
    rows = [last_inner_row]
    for _ in range(n_final):
        rows.append(rows[-1] + (1.0,))
    return tuple(rows[1:]), rows[-1] + (1.0,)


# Rodas5P: G. Steinebach, "Construction of Rosenbrock–Wanner method Rodas5P and numerical benchmarks within the
# Julia Differential Equations package", BIT Numer. Math. 63 (2023) 27; order 5 with an embedded order-4 solution,
# L-stable, stiffly accurate, a dense output of order 4 (coefficients as in OrdinaryDiffEq.jl).
_RODAS5P_A6 = (-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
               0.030198172008377946)
_RODAS5P_FINAL, _RODAS5P_B = _stiffly_accurate(_RODAS5P_A6, 2)

RODAS5P = RosenbrockTableau(
    name="rodas5p",
    gamma=0.21193756319429014,
    a=(
        (3.0,),
        (2.849394379747939, 0.45842242204463923),
        (-6.954028509809101, 2.489845061869568, -10.358996098473584),
        (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
        _RODAS5P_A6,
    ) + _RODAS5P_FINAL,
    C=(
        (-14.155112264123755,),
        (-17.97296035885952, -2.859693295451294),
        (147.12150275711716, -1.41221402718213, 71.68940251302358),
        (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
        (24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125, -0.6610691825249471),
        (30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783, -19.097331116725623,
         -28.087943162872662),
        (37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047, -40.06618937091002,
         -54.66780262877968, -9.48861652309627),
    ),
    c=(0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664, 1.0, 1.0, 1.0),
    d=(0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734, 2.325825639765069,
       0.0, 0.0, 0.0),
    b=_RODAS5P_B,
    e=(0.0,) * 7 + (1.0,),
    H=(
        (25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204, 0.524948541321073,
         1.1241088310450404, 0.4272876194431874, -0.17202221070155493),
        (-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796, 20.176138334709044,
         15.98066361424651, -6.789040303419874, -6.710236069923372),
        (11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643, -52.072871366152654,
         -59.78993625266729, -0.15582684282751913, 4.883087185713722),
    ),
    order=4,
)


# Rodas4: Hairer & Wanner II, IV.7 (Table 7.3 and the code RODAS); order 4 with an embedded order-3 solution,
# L-stable, stiffly accurate, a dense output of order 3.
_RODAS4_A5 = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)
_RODAS4_FINAL, _RODAS4_B = _stiffly_accurate(_RODAS4_A5, 1)

RODAS4 = RosenbrockTableau(
    name="rodas4",
    gamma=0.25,
    a=(
        (1.544,),
        (0.9466785280815826, 0.2557011698983284),
        (3.314825187068521, 2.896124015972201, 0.9986419139977817),
        _RODAS4_A5,
    ) + _RODAS4_FINAL,
    C=(
        (-5.6688,),
        (-2.430093356833875, -0.2063599157091915),
        (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
        (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
        (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054),
    ),
    c=(0.386, 0.21, 0.63, 1.0, 1.0),
    d=(0.25, -0.1043, 0.1035, -0.03620000000000023, 0.0, 0.0),
    b=_RODAS4_B,
    e=(0.0,) * 5 + (1.0,),
    H=(
        (10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823, 1.025137723295662, 0.0),
        (-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386, -6.594389125716872, 0.0),
    ),
    order=3,
)


def _from_standard_form(name: str, alpha, Gamma, b, b_hat, dense, order: int) -> RosenbrockTableau:
    """The transformed tableau of a method given as (I − hγJ) k_i = h f(y + Σ α_ij k_j) + hJ Σ γ_ij k_j + γ_i h² ∂f/∂t,
    y1 = y + Σ b_i k_i, dense output y + Σ_i B_i(θ) k_i with B_i(θ) = Σ_m dense[i][m] θ^(m+1) (Hairer & Wanner II,
    (7.25)-(7.26): the transformed stages are u = Γ k, so a = α Γ⁻¹, C = diag(1/γ) − Γ⁻¹, weights w Γ⁻¹). The dense
    output goes over to the form above: B_i(θ) − θ b_i = θ (1 − θ)(p_i + q_i θ) for a cubic B_i."""
    alpha, Gamma, b, b_hat, dense = (np.asarray(x, dtype=float) for x in (alpha, Gamma, b, b_hat, dense))
    assert dense.shape[1] == 3  # cubic: p = β1 − b, q = −β3 (then β2 = q − p holds as Σ β = b)
    inverse = np.linalg.inv(Gamma)
    gamma = float(Gamma[0, 0])
    a, C = alpha @ inverse, np.diag(np.diag(Gamma) ** -1.0) - inverse
    rows = lambda m: tuple(tuple(float(x) for x in m[i, :i]) for i in range(1, len(m)))  # noqa: E731
    H = np.stack([(dense[:, 0] - b) @ inverse, -dense[:, 2] @ inverse])
    return RosenbrockTableau(
        name=name, gamma=gamma, a=rows(a), C=rows(C), c=tuple(float(x) for x in alpha.sum(1)[1:]),
        d=tuple(float(x) for x in Gamma.sum(1)), b=tuple(float(x) for x in b @ inverse),
        e=tuple(float(x) for x in (b - b_hat) @ inverse), H=tuple(tuple(float(x) for x in row) for row in H),
        order=order)


# ROS34PW2: J. Rang and L. Angermann, "New Rosenbrock W-methods of order 3 for partial differential algebraic
# equations of index 1", BIT Numer. Math. 45 (2005) 761-787; order 3 with an embedded order-2 solution, L-stable,
# stiffly accurate, and a W-method: it keeps order 3 with any matrix in place of the Jacobian (an approximate or
# partial one, e.g. only the stiff coupling's), where rodas5p and rodas4 drop to order 1 or 2. Coefficients and
# the cubic dense output as in PETSc's TSROSWRA34PW2.
_G = 4.3586652150845900e-01
ROS34PW2 = _from_standard_form(
    "ros34pw2",
    alpha=((0, 0, 0, 0),
           (8.7173304301691801e-01, 0, 0, 0),
           (8.4457060015369423e-01, -1.1299064236484185e-01, 0, 0),
           (0, 0, 1.0, 0)),
    Gamma=((_G, 0, 0, 0),
           (-8.7173304301691801e-01, _G, 0, 0),
           (-9.0338057013044082e-01, 5.4180672388095326e-02, _G, 0),
           (2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01, _G)),
    b=(2.4212380706095346e-01, -1.2232505839045147e+00, 1.5452602553351020e+00, _G),
    b_hat=(3.7810903145819369e-01, -9.6042292212423178e-02, 5.0000000000000000e-01, 2.1793326075422950e-01),
    dense=((1.0564298455794094, -1.3864882699759573, 0.5721822314575016),
           (2.296429974281067, -8.262611700275677, 4.742931142090097),
           (-1.307599564525376, 7.250979895056055, -4.398120075195578),
           (-1.045260255335102, 2.398120075195581, -0.9169932983520199)),
    order=2)
