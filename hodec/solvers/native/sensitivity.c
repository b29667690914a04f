/* Forward sensitivities (hodec/solvers/native/sensitivity.py): compiled after a model's source whose functions were
 * renamed hodec_model_* by the lines before it, and before hodec's solver loops, which then integrate the augmented
 * state z = [y, S], S = dy/d(y0, p) row-major [n][n + P], with dS/dt = J S + [0 | df/dp]. An explicit Runge-Kutta
 * step of z is the step of y together with its exact derivative (the stages are linear in the stage derivatives),
 * and the error control reads y alone (HODEC_CONTROLLED), so the steps, and the values of y, are those of the solve
 * without sensitivities. The stiff methods would need the second derivatives in z's Jacobian: hodec_jac and
 * hodec_dfdt here give NaN, which no step accepts (solve.py runs the explicit methods only). */
#undef hodec_rhs
#undef hodec_jac
#undef hodec_dfdt

enum { hodec_model_n = HODEC_N, hodec_model_p = HODEC_P, hodec_columns = HODEC_N + HODEC_P };

#undef HODEC_N
#define HODEC_N (hodec_model_n * (1 + hodec_columns))
#define HODEC_CONTROLLED hodec_model_n

static void hodec_rhs(double t, const double *z, const double *p, const double *u, double *dz) {
    double J[hodec_model_n * hodec_model_n], D[hodec_model_n * (hodec_model_p > 0 ? hodec_model_p : 1)];
    const double *S = z + hodec_model_n;
    double *dS = dz + hodec_model_n;
    hodec_model_rhs(t, z, p, u, dz);
    hodec_model_jac(t, z, p, u, J);
    if (hodec_model_p > 0) hodec_dfdp(t, z, p, u, D);
    for (int i = 0; i < hodec_model_n; i++)
        for (int c = 0; c < hodec_columns; c++) {
            double acc = c < hodec_model_n ? 0.0 : D[i * hodec_model_p + c - hodec_model_n];
            for (int k = 0; k < hodec_model_n; k++) acc += J[i * hodec_model_n + k] * S[k * hodec_columns + c];
            dS[i * hodec_columns + c] = acc;
        }
}

static void hodec_jac(double t, const double *z, const double *p, const double *u, double *J) {
    (void)t, (void)z, (void)p, (void)u;
    for (long q = 0; q < (long)HODEC_N * HODEC_N; q++) J[q] = NAN;
}

static void hodec_dfdt(double t, const double *z, const double *p, const double *u, const double *du, double *df) {
    (void)t, (void)z, (void)p, (void)u, (void)du;
    for (long q = 0; q < HODEC_N; q++) df[q] = NAN;
}
