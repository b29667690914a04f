"""Butcher tableaus of the explicit methods, with their dense output as polynomials in θ.

A dense output y(t + θh) = y + h Σ_i b_i(θ) k_i is stored as `dense[i][d]`, the coefficient of θ^(d+1) in b_i(θ)
(b_i(0) = 0); it is derived here once, in float64, from each method's published form.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial import polynomial as P


@dataclass(frozen=True)
class ExplicitTableau:
    name: str
    c: tuple  # nodes of stages 2..s
    a: tuple  # rows of stages 2..s (row i has i entries)
    b: tuple  # weights of the solution (the last row of a for first-same-as-last methods)
    e: tuple  # b minus the embedded weights: the error estimate is h Σ e_i k_i
    dense: tuple  # per stage: coefficients of θ, θ², ... in b_i(θ)
    order: int  # order of the embedded (error) solution's step: the controller exponent is 1/(order + 1)
    # h·|λ| beyond which accepted steps count as stability-bound. Below the real-axis stability boundary (tsit5
    # 3.51, dopri5 3.31): at tight tolerances the step controller settles a stiff mode near h·|λ| ≈ 1.7–2.0, not at
    # the boundary (y' = -1000 (y - cos t) at rtol 1e-8, measured), where Hairer's 3.25 never fires; a non-stiff
    # problem's accuracy-bound steps stay far below (0.3–0.4 at rtol 1e-10 with |λ| = 100).
    stiff_above: float

    @property
    def fsal(self) -> bool:
        return tuple(self.a[-1]) + (0.0,) == tuple(self.b)


def _power_basis(*factors) -> np.ndarray:
    """Coefficients (θ^0, θ^1, ...) of a product of polynomials given in the same form."""
    out = np.array([1.0])
    for f in factors:
        out = P.polymul(out, np.asarray(f, dtype=float))
    return out


def _dense(polys, degree: int) -> tuple:
    rows = []
    for poly in polys:
        coef = np.zeros(degree + 1)
        coef[:len(poly)] = poly
        assert abs(coef[0]) < 1e-15  # b_i(0) = 0
        rows.append(tuple(float(x) for x in coef[1:]))
    return tuple(rows)


# Tsitouras (2011), "Runge–Kutta pairs of order 5(4) satisfying only the first column simplifying assumption";
# the dense output is his order-4 interpolant.
_TSIT5_A = (
    (0.161,),
    (-0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943,
     0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569),
    (2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
     -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
     4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077),
    (5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
     -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
     7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
     -0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635),
    (5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
     -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
     8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
     -0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835,
     -0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206),
    (0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396,
     0.01,
     0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
     1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
     -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
     2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841),
)
_TSIT5_BHAT = (0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271,
               0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270,
               0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813,
               1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761,
               -2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702,
               1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089,
               1 / 66)
_TSIT5_B = _TSIT5_A[-1] + (0.0,)
_TSIT5_DENSE = (
    _power_basis([0, -1.0530884977290216], [-1.3299890189751412, 1], [0.7139816917074209, -1.4364028541716351, 1]),
    _power_basis([0, 0, 0.1017], [1.2949852507374631, -2.1966568338249754, 1]),
    _power_basis([0, 0, 2.490627285651252793], [1.57803468208092486, -2.38535645472061657, 1]),
    _power_basis([0, 0, -16.54810288924490272], [-1.21712927295533244, 1], [-0.61620406037800089, 1]),
    _power_basis([0, 0, 47.37952196281928122], [-1.203071208372362603, 1], [-0.658047292653547382, 1]),
    _power_basis([0, 0, -34.87065786149660974], [-1.2, 1], [-0.666666666666666667, 1]),
    _power_basis([0, 0, 2.5], [-1, 1], [-0.6, 1]),
)

TSIT5 = ExplicitTableau(
    name="tsit5", c=(0.161, 0.327, 0.9, 0.98002554090450968572981028628702459549421379795630247688547642932, 1.0, 1.0),
    a=_TSIT5_A, b=_TSIT5_B, e=tuple(b - bh for b, bh in zip(_TSIT5_B, _TSIT5_BHAT)),
    dense=_dense(_TSIT5_DENSE, 4), order=4, stiff_above=1.5)


# Dormand & Prince (1980); the dense output is Shampine's order-4 continuous extension as in Hairer's DOPRI5:
# y(θ) = y0 + θ r1 + θ(1-θ) r2 + θ²(1-θ) r3 + θ²(1-θ)² r4 with r1 = h Σ b k, r2 = h k1 - r1,
# r3 = 2 r1 - h k1 - h k7 and r4 = h Σ d k.
_DOPRI5_A = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DOPRI5_B = _DOPRI5_A[-1] + (0.0,)
_DOPRI5_BHAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_DOPRI5_D = (-12715105075 / 11282082432, 0.0, 87487479700 / 32700410799, -10690763975 / 1880347072,
             701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423)


def _dopri5_dense() -> tuple:
    polys = []
    for i, (b, d) in enumerate(zip(_DOPRI5_B, _DOPRI5_D)):
        first, last = float(i == 0), float(i == 6)
        poly = P.polyadd(P.polymul([0, 1], [b]), P.polymul(_power_basis([0, 1], [1, -1]), [first - b]))
        poly = P.polyadd(poly, P.polymul(_power_basis([0, 0, 1], [1, -1]), [2 * b - first - last]))
        poly = P.polyadd(poly, P.polymul(_power_basis([0, 0, 1], [1, -1], [1, -1]), [d]))
        polys.append(poly)
    return _dense(polys, 4)


DOPRI5 = ExplicitTableau(
    name="dopri5", c=(1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0), a=_DOPRI5_A, b=_DOPRI5_B,
    e=tuple(b - bh for b, bh in zip(_DOPRI5_B, _DOPRI5_BHAT)), dense=_dopri5_dense(), order=4,
    stiff_above=1.5)
