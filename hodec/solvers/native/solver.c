/* hodec's solver loops in C (see hodec/solvers/native/build.py): compiled after a model's source (HODEC_N, HODEC_P,
 * HODEC_U, HODEC_AUTONOMOUS, hodec_rhs, hodec_jac, hodec_dfdt) and the generated header of method coefficients
 * and constants (coefficients.py), as one translation unit.
 *
 * The same methods and step control as the torch solvers (hodec/solvers: integrate.py, controller.py,
 * explicit.py, rosenbrock.py), each batch member solved on its own, one after another: its own time, step size,
 * acceptance and, with method `auto`, its own switch from tsit5 to rodas5p when it turns out stiff. Work arrays
 * are allocated once per call; the step loop allocates nothing. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HODEC_UU (HODEC_U > 0 ? HODEC_U : 1) /* a C array cannot be empty */

#ifndef HODEC_CONTROLLED
#define HODEC_CONTROLLED HODEC_N /* the leading states the error control reads (sensitivity.c: y, not dy/dp) */
#endif
#ifndef HODEC_W
#define HODEC_W 0 /* the neural slots' weights, after the params in p (a model without slots has none) */
#endif

/* P here is the length of a member's row of p: the params and the weights */
const long hodec_dims[4] = {HODEC_N, HODEC_P + HODEC_W, HODEC_U, HODEC_AUTONOMOUS};

/* One call of each model function (for tests); a NULL output skips its function. */
void hodec_eval(double t, const double *y, const double *p, const double *u, const double *du, double *dy,
                double *J, double *df) {
    if (dy) hodec_rhs(t, y, p, u, dy);
    if (J) hodec_jac(t, y, p, u, J);
    if (df) hodec_dfdt(t, y, p, u, du, df);
}

/* An input's samples, read as hodec.runtime.signals.Signal reads them: 'linear' interpolation or 'previous'
 * (the last sample at or before t), the end values held outside the samples. */
typedef struct {
    const double *times;
    const double *values; /* [K, columns]: one column shared by all members, or one per member */
    long K, columns;
    int previous;
} hodec_table;

/* What one member's solve reads and counts. */
typedef struct {
    const double *p;
    const hodec_table *tables;
    long member;
    double u[HODEC_UU], du[HODEC_UU];
    long n_f, n_jac;
} hodec_ctx;

static double hodec_sample(const hodec_table *tab, long k, long member) {
    return tab->values[k * tab->columns + (tab->columns > 1 ? member : 0)];
}

/* u and du/dt at t: du is the linear segment's slope (zero for 'previous' and where an end value is held). */
static void hodec_inputs(hodec_ctx *ctx, double t) {
    for (int k = 0; k < HODEC_U; k++) {
        const hodec_table *tab = &ctx->tables[k];
        const double *x = tab->times;
        long K = tab->K, lo = 0, hi = K;
        ctx->du[k] = 0.0;
        if (K == 1) {
            ctx->u[k] = hodec_sample(tab, 0, ctx->member);
            continue;
        }
        while (lo < hi) { /* the first sample after t (searchsorted right), kept within 1..K-1 */
            long mid = lo + (hi - lo) / 2;
            if (x[mid] <= t) lo = mid + 1;
            else hi = mid;
        }
        long right = lo < 1 ? 1 : (lo > K - 1 ? K - 1 : lo), left = right - 1;
        if (tab->previous) {
            ctx->u[k] = hodec_sample(tab, t >= x[right] ? right : left, ctx->member);
            continue;
        }
        double vl = hodec_sample(tab, left, ctx->member), vr = hodec_sample(tab, right, ctx->member);
        double w = (t - x[left]) / (x[right] - x[left]);
        w = w < 0.0 ? 0.0 : (w > 1.0 ? 1.0 : w);
        ctx->u[k] = vl + w * (vr - vl);
        if (t >= x[0] && t <= x[K - 1]) ctx->du[k] = (vr - vl) / (x[right] - x[left]);
    }
}

static void hodec_f(hodec_ctx *ctx, double t, const double *y, double *dy) {
    if (HODEC_U > 0) hodec_inputs(ctx, t);
    hodec_rhs(t, y, ctx->p, ctx->u, dy);
    ctx->n_f++;
}

/* J = df/dy and, unless the model is autonomous, df/dt at fixed y (ft), both at (t, y). */
static void hodec_jacobian(hodec_ctx *ctx, double t, const double *y, double *J, double *ft) {
    if (HODEC_U > 0) hodec_inputs(ctx, t);
    hodec_jac(t, y, ctx->p, ctx->u, J);
    if (!HODEC_AUTONOMOUS) hodec_dfdt(t, y, ctx->p, ctx->u, ctx->du, ft);
    ctx->n_jac++;
}

/* ---- step-size control (controller.py) ---- */

typedef struct {
    double rtol;
    const double *atol; /* [HODEC_N] */
} hodec_control;

static double hodec_scale(const hodec_control *ctl, int j, double y0, double y1) {
    return ctl->atol[j] + ctl->rtol * fmax(fabs(y0), fabs(y1));
}

/* The RMS of error / (atol + rtol max(|y0|, |y1|)); +inf where anything is not finite. */
static double hodec_norm(const hodec_control *ctl, const double *err, const double *y0, const double *y1) {
    double sum = 0.0;
    for (int j = 0; j < HODEC_CONTROLLED; j++) {
        if (!isfinite(y1[j])) return INFINITY;
        double r = err[j] / hodec_scale(ctl, j, y0[j], y1[j]);
        sum += r * r;
    }
    double value = sqrt(sum / HODEC_CONTROLLED);
    return isfinite(value) ? value : INFINITY;
}

static double hodec_next_step(double h, double err, int accepted, int rejected_before, int order) {
    double factor = HODEC_SAFETY * pow(fmax(err, 1e-10), -1.0 / (order + 1));
    factor = fmin(fmax(factor, HODEC_SHRINK), HODEC_GROW);
    if (!(accepted && !rejected_before)) factor = fmin(factor, 1.0); /* no growth after a rejection */
    return h * factor;
}

static double hodec_rms_scaled(const hodec_control *ctl, const double *x, const double *y0) {
    double sum = 0.0;
    for (int j = 0; j < HODEC_CONTROLLED; j++) {
        double r = x[j] / (ctl->atol[j] + ctl->rtol * fabs(y0[j]));
        sum += r * r;
    }
    return sqrt(sum / HODEC_CONTROLLED);
}

/* Hairer's starting step (I, II.4), capped by the span; work: two [HODEC_N] arrays. */
static double hodec_first_step(hodec_ctx *ctx, const hodec_control *ctl, double t0, const double *y0,
                               const double *f0, double span, int order, double *work) {
    double *y1 = work, *f1 = work + HODEC_N;
    double d0 = hodec_rms_scaled(ctl, y0, y0), d1 = hodec_rms_scaled(ctl, f0, y0);
    double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / (d1 > 0 ? d1 : 1.0);
    h0 = fmin(h0, span);
    for (int j = 0; j < HODEC_N; j++) y1[j] = y0[j] + h0 * f0[j];
    hodec_f(ctx, t0 + h0, y1, f1);
    for (int j = 0; j < HODEC_N; j++) f1[j] -= f0[j];
    double d2 = hodec_rms_scaled(ctl, f1, y0) / h0, big = fmax(d1, d2);
    double h1 = big <= 1e-15 ? fmax(1e-6, h0 * 1e-3) : pow(0.01 / (big > 0 ? big : 1.0), 1.0 / (order + 1));
    double h = fmin(100 * h0, h1);
    if (!(isfinite(h) && h > 0)) h = 1e-6;
    return fmin(h, span);
}

/* ---- the methods: one attempted step from (t, y) of size h gives y1 and the error estimate ---- */

typedef struct {
    double *k;  /* [s][N] stages; k[0] = f(t, y) on entry (explicit: first same as last) */
    double *Y;  /* [s][N] stage inputs (explicit) */
    double *fy, *ft, *J, *M; /* Rosenbrock: f(t, y), df/dt, J, the factorised matrix */
    long *pivot;
    double *rhs;
    int have_f, have_J; /* fy / J and ft hold the values at the current (t, y) */
} hodec_work;

/* Explicit first-same-as-last Runge-Kutta: y1 is the last stage's input, k[s-1] = f(t + h, y1). Returns Hairer's
 * stiffness estimate h |k_s - k_(s-1)| / |y_s - y_(s-1)| (the last two stages are both at t + h). */
static double hodec_explicit_step(hodec_ctx *ctx, const hodec_method *m, double t, const double *y, double h,
                                  hodec_work *w, double *y1, double *err) {
    int s = m->s;
    for (int i = 1; i < s; i++) {
        double *yi = i == s - 1 ? y1 : w->Y + (long)i * HODEC_N;
        for (int j = 0; j < HODEC_N; j++) {
            double acc = 0.0;
            for (int l = 0; l < i; l++) acc += m->a[i * s + l] * w->k[(long)l * HODEC_N + j];
            yi[j] = y[j] + h * acc;
        }
        hodec_f(ctx, t + m->c[i] * h, yi, w->k + (long)i * HODEC_N);
    }
    const double *k_last = w->k + (long)(s - 1) * HODEC_N, *k_prev = w->k + (long)(s - 2) * HODEC_N;
    const double *y_prev = w->Y + (long)(s - 2) * HODEC_N;
    double dk = 0.0, dy = 0.0;
    for (int j = 0; j < HODEC_N; j++) {
        double acc = 0.0;
        for (int l = 0; l < s; l++) acc += m->e[l] * w->k[(long)l * HODEC_N + j];
        err[j] = h * acc;
        if (j >= HODEC_CONTROLLED) continue;
        dk += (k_last[j] - k_prev[j]) * (k_last[j] - k_prev[j]);
        dy += (y1[j] - y_prev[j]) * (y1[j] - y_prev[j]);
    }
    dk = sqrt(dk), dy = sqrt(dy);
    return h * dk / (dy > 0 ? dy : 1.0);
}

/* The dense output y(t + theta h) = y + h sum_i b_i(theta) k_i of an explicit step. */
static void hodec_interpolate(const hodec_method *m, const double *y, double h, const double *k, double theta,
                              double *out) {
    double weight[HODEC_MAX_STAGES];
    for (int i = 0; i < m->s; i++) {
        double acc = 0.0, power = 1.0;
        for (int d = 0; d < m->degree; d++) {
            power *= theta;
            acc += m->dense[i * m->degree + d] * power;
        }
        weight[i] = acc;
    }
    for (int j = 0; j < HODEC_N; j++) {
        double acc = 0.0;
        for (int i = 0; i < m->s; i++) acc += weight[i] * k[(long)i * HODEC_N + j];
        out[j] = y[j] + h * acc;
    }
}

/* LU factorisation with partial pivoting of the row-major n x n matrix M, in place. A zero pivot is left to give
 * non-finite stages, which the controller rejects (as the torch solvers do with a singular matrix). */
static void hodec_lu(double *M, long *pivot) {
    const int n = HODEC_N;
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(M[r * n + c]) > fabs(M[p * n + c])) p = r;
        pivot[c] = p;
        if (p != c)
            for (int j = 0; j < n; j++) {
                double tmp = M[c * n + j];
                M[c * n + j] = M[p * n + j];
                M[p * n + j] = tmp;
            }
        double inv = 1.0 / M[c * n + c];
        for (int r = c + 1; r < n; r++) {
            double l = M[r * n + c] * inv;
            M[r * n + c] = l;
            if (l != 0.0)
                for (int j = c + 1; j < n; j++) M[r * n + j] -= l * M[c * n + j];
        }
    }
}

/* x = M^-1 x with hodec_lu's factors. */
static void hodec_lu_solve(const double *M, const long *pivot, double *x) {
    const int n = HODEC_N;
    for (int c = 0; c < n; c++) {
        if (pivot[c] != c) {
            double tmp = x[c];
            x[c] = x[pivot[c]];
            x[pivot[c]] = tmp;
        }
        for (int r = c + 1; r < n; r++) x[r] -= M[r * n + c] * x[c];
    }
    for (int r = n - 1; r >= 0; r--) {
        double acc = x[r];
        for (int j = r + 1; j < n; j++) acc -= M[r * n + j] * x[j];
        x[r] = acc / M[r * n + r];
    }
}

/* Rosenbrock (rosenbrock.py): one LU of I/(h gamma) - J, then stage i solves that matrix against
 * f(t + c_i h, y + sum a_ij k_j) + sum (C_ij / h) k_j + d_i h df/dt. J, df/dt and f(t, y) are kept while the
 * member stays at (t, y) (a rejected step is retried from the same point). */
static void hodec_rosenbrock_step(hodec_ctx *ctx, const hodec_method *m, double t, const double *y, double h,
                                  hodec_work *w, double *y1, double *err) {
    int s = m->s;
    long nn = (long)HODEC_N * HODEC_N;
    if (!w->have_f) hodec_f(ctx, t, y, w->fy);
    if (!w->have_J) hodec_jacobian(ctx, t, y, w->J, w->ft);
    w->have_f = w->have_J = 1;
    double diagonal = 1.0 / (m->gamma * h), inv_h = 1.0 / h;
    for (long q = 0; q < nn; q++) w->M[q] = -w->J[q];
    for (int j = 0; j < HODEC_N; j++) w->M[(long)j * HODEC_N + j] += diagonal;
    hodec_lu(w->M, w->pivot);
    for (int i = 0; i < s; i++) {
        double *ki = w->k + (long)i * HODEC_N;
        if (i == 0) {
            memcpy(ki, w->fy, sizeof(double) * HODEC_N);
        } else {
            for (int j = 0; j < HODEC_N; j++) {
                double acc = 0.0;
                for (int l = 0; l < i; l++) acc += m->a[i * s + l] * w->k[(long)l * HODEC_N + j];
                w->rhs[j] = y[j] + acc;
            }
            hodec_f(ctx, t + m->c[i] * h, w->rhs, ki);
            for (int j = 0; j < HODEC_N; j++) {
                double acc = 0.0;
                for (int l = 0; l < i; l++) acc += m->C[i * s + l] * w->k[(long)l * HODEC_N + j];
                ki[j] += inv_h * acc;
            }
        }
        if (!HODEC_AUTONOMOUS && m->d[i] != 0.0)
            for (int j = 0; j < HODEC_N; j++) ki[j] += (m->d[i] * h) * w->ft[j];
        hodec_lu_solve(w->M, w->pivot, ki);
    }
    for (int j = 0; j < HODEC_N; j++) {
        double acc = 0.0, e = 0.0;
        for (int l = 0; l < s; l++) {
            acc += m->b[l] * w->k[(long)l * HODEC_N + j];
            e += m->e[l] * w->k[(long)l * HODEC_N + j];
        }
        y1[j] = y[j] + acc;
        err[j] = e;
    }
}

/* ---- one member's solve (integrate.py's loop) ---- */

typedef struct {
    int status;
    double t, h, value;
    long state;
    int method;
} hodec_failure;

typedef struct {
    const double *ts; /* the member's grid: ts[k * stride] */
    long T, stride;
} hodec_grid;

static double hodec_at(const hodec_grid *g, long k) { return g->ts[k * g->stride]; }

/* The first output index whose time is beyond t (searchsorted right), from k on. */
static long hodec_passed(const hodec_grid *g, long k, double t) {
    while (k < g->T && hodec_at(g, k) <= t) k++;
    return k;
}

/* A step-size underflow at t located as integrate.py locates it: the first state whose proposed value or error
 * estimate is not finite, else the state with the largest weighted error. */
static hodec_failure hodec_underflow(const hodec_control *ctl, double t, double h, const double *y,
                                     const double *y1, const double *err) {
    for (int j = 0; j < HODEC_CONTROLLED; j++)
        if (!isfinite(y1[j]) || !isfinite(err[j]))
            return (hodec_failure){HODEC_FAIL_UNDERFLOW_NONFINITE, t, h, y[j], j, 0};
    double worst = -1.0;
    int at = 0;
    for (int j = 0; j < HODEC_CONTROLLED; j++) {
        double r = fabs(err[j] / hodec_scale(ctl, j, y[j], y1[j]));
        if (!isfinite(r)) r = INFINITY;
        if (r > worst) worst = r, at = j;
    }
    return (hodec_failure){HODEC_FAIL_UNDERFLOW, t, h, y[at], at, 0};
}

/* Writes the member's outputs out[k][n] (k-th row at out + k * out_stride); returns a status (0: solved). */
static int hodec_member(hodec_ctx *ctx, int method, const hodec_control *ctl, const hodec_grid *g,
                        const double *y0, long max_steps, double *out, long out_stride, hodec_work *w,
                        double *buffer, long *counts, hodec_failure *fail) {
    const int n = HODEC_N;
    double *y = buffer, *y1 = buffer + n, *err = buffer + 2 * n, *tmp = buffer + 3 * n; /* tmp: 2n */
    const hodec_method *m = hodec_methods[method == HODEC_AUTO ? HODEC_AUTO_FIRST : method];
    double t = hodec_at(g, 0), t_last = hodec_at(g, g->T - 1);
    memcpy(y, y0, sizeof(double) * n);
    long nxt = hodec_passed(g, 0, t);
    for (long k = 0; k < nxt; k++) memcpy(out + k * out_stride, y, sizeof(double) * n);
    if (nxt >= g->T) return 0;
    hodec_f(ctx, t, y, w->k);
    for (int j = 0; j < n; j++) {
        if (!isfinite(y[j]) || !isfinite(w->k[j])) {
            int bad_value = !isfinite(y[j]);
            *fail = (hodec_failure){bad_value ? HODEC_FAIL_START_VALUE : HODEC_FAIL_START_RATE, t, 0.0,
                                    bad_value ? y[j] : w->k[j], j, 0};
            return fail->status;
        }
    }
    memcpy(w->fy, w->k, sizeof(double) * n);
    w->have_f = 1, w->have_J = 0;
    double h = hodec_first_step(ctx, ctl, t, y, w->k, t_last - t, m->order, tmp);
    long steps = 0, stiff = 0, calm = 0;
    int rejected = 0;
    while (nxt < g->T) {
        if (++steps > max_steps) {
            *fail = (hodec_failure){HODEC_FAIL_TOO_MANY_STEPS, t, h, 0.0, 0, 0};
            counts[0] += steps - 1;
            return fail->status;
        }
        /* A stiff method's step ends at every output time: its dense output is not error-controlled. */
        double t_end = m->stiff ? hodec_at(g, nxt) : t_last, remaining = t_end - t;
        int last = h >= remaining;
        double hh = last ? remaining : h, stiffness = 0.0;
        if (m->stiff) hodec_rosenbrock_step(ctx, m, t, y, hh, w, y1, err);
        else stiffness = hodec_explicit_step(ctx, m, t, y, hh, w, y1, err);
        double e = hodec_norm(ctl, err, y, y1);
        int ok = e <= 1.0;
        double t_new = ok ? (last ? t_end : t + hh) : t;
        long reached = ok ? hodec_passed(g, nxt, t_new) : nxt;
        for (long k = nxt; k < reached; k++) {
            double t_out = hodec_at(g, k), *row = out + k * out_stride;
            if (t_out == t_new || m->stiff) memcpy(row, y1, sizeof(double) * n);
            else hodec_interpolate(m, y, hh, w->k, fmin(fmax((t_out - t) / hh, 0.0), 1.0), row);
        }
        double h_next = hodec_next_step(hh, e, ok, rejected, m->order);
        if (m->stiff && ok && last) h_next = fmax(h_next, h); /* a step cut short at an output: no shrinking */
        if (!m->stiff && ok) { /* Hairer's stiffness test (integrate.py) */
            int beyond = stiffness > m->stiff_above && t_last - t_new > HODEC_STIFF_REMAINING * hh;
            stiff = beyond ? stiff + 1 : (calm + 1 >= HODEC_NONSTIFF_STEPS ? 0 : stiff);
            calm = beyond ? 0 : calm + 1;
        }
        counts[1] += !ok;
        if (reached < g->T && !(h_next > 4 * DBL_EPSILON * fabs(t_new))) { /* t + h == t from here on */
            *fail = hodec_underflow(ctl, t, h_next, y, y1, err);
            counts[0] += steps;
            return fail->status;
        }
        if (ok) {
            t = t_new;
            memcpy(y, y1, sizeof(double) * n);
            if (m->stiff) w->have_f = w->have_J = 0;
            else memcpy(w->k, w->k + (long)(m->s - 1) * n, sizeof(double) * n); /* first same as last */
            nxt = reached;
        }
        rejected = !ok;
        h = h_next;
        if (stiff >= HODEC_STIFF_STEPS) {
            if (method != HODEC_AUTO) {
                *fail = (hodec_failure){HODEC_FAIL_STIFF, t, h, 0.0, 0, method};
                counts[0] += steps;
                return fail->status;
            }
            m = hodec_methods[HODEC_AUTO_STIFF];
            w->have_f = w->have_J = stiff = calm = 0;
            counts[2]++;
        }
    }
    counts[0] += steps;
    return 0;
}

/* The arguments' values (their shapes are solve.py's to check): every member's output times finite and
 * non-decreasing, atol finite and >= 0, each input's times finite and strictly increasing. Returns 0 or a
 * HODEC_FAIL_BAD_ status with fail_at = (member or input, time index or state). */
static int hodec_check(long B, long T, const double *ts, long ts_time, long ts_member, const hodec_table *tables,
                       const double *atol, long *fail_at) {
    for (long b = 0; b < B; b++)
        for (long k = 0; k < T; k++) {
            double t = ts[k * ts_time + b * ts_member];
            if (!isfinite(t) || (k > 0 && !(t >= ts[(k - 1) * ts_time + b * ts_member]))) {
                fail_at[0] = b, fail_at[1] = k;
                return HODEC_FAIL_BAD_GRID;
            }
        }
    for (int j = 0; j < HODEC_N; j++)
        if (!(isfinite(atol[j]) && atol[j] >= 0)) {
            fail_at[0] = 0, fail_at[1] = j;
            return HODEC_FAIL_BAD_ATOL;
        }
    for (int u = 0; u < HODEC_U; u++)
        for (long k = 0; k < tables[u].K; k++) {
            double t = tables[u].times[k];
            if (!isfinite(t) || (k > 0 && !(t > tables[u].times[k - 1]))) {
                fail_at[0] = u, fail_at[1] = k;
                return HODEC_FAIL_BAD_TABLE;
            }
        }
    return 0;
}

/* Solves every member: method (a hodec_methods index, or HODEC_AUTO); ts[k * ts_time + b * ts_member] the output
 * times; y0 [B][N]; params p + b * p_stride; inputs: in_info[5 k ...] = (offset of its times in in_times, K,
 * offset of its values in in_values, columns 1 or B, 1 for 'previous'); atol[j * atol_stride] (stride 0: one
 * for all states); out [T][B][N]; stats += (steps, rejected, switched to the stiff method, f evaluations,
 * Jacobians); on failure, fail = (t, h, value) and fail_at = (member, state, method). Returns 0 or the first
 * failing member's HODEC_FAIL_ status (later members are not solved). */
int hodec_solve(int method, long B, long T, const double *ts, long ts_time, long ts_member, const double *y0,
                const double *p, long p_stride, const double *in_times, const double *in_values, const long *in_info,
                double rtol, const double *atol, long atol_stride, long max_steps, double *out, long *stats,
                double *fail, long *fail_at) {
    const long n = HODEC_N, s = HODEC_MAX_STAGES;
    hodec_table tables[HODEC_UU];
    for (int k = 0; k < HODEC_U; k++) {
        const long *info = in_info + 5 * k;
        tables[k] = (hodec_table){in_times + info[0], in_values + info[2], info[1], info[3], (int)info[4]};
    }
    double tolerance[HODEC_N];
    for (int j = 0; j < HODEC_N; j++) tolerance[j] = atol[j * atol_stride];
    int bad = hodec_check(B, T, ts, ts_time, ts_member, tables, tolerance, fail_at);
    if (bad) return bad;
    double *memory = malloc(sizeof(double) * (2 * s * n + 3 * n + 2 * n * n + 5 * n));
    long *pivot = malloc(sizeof(long) * n);
    if (!memory || !pivot) {
        free(memory);
        free(pivot);
        return HODEC_FAIL_NO_MEMORY;
    }
    hodec_work w = {memory, memory + s * n, memory + 2 * s * n, memory + 2 * s * n + n,
                    memory + 2 * s * n + 2 * n, memory + 2 * s * n + 2 * n + n * n, pivot,
                    memory + 2 * s * n + 2 * n + 2 * n * n, 0, 0};
    double *buffer = w.rhs + n; /* 5n */
    hodec_control ctl = {rtol, tolerance};
    hodec_failure failure = {0, 0.0, 0.0, 0.0, 0, 0};
    long counts[3] = {0, 0, 0};
    int status = 0;
    long b;
    for (b = 0; b < B && !status; b++) {
        hodec_ctx ctx = {p + b * p_stride, tables, b, {0.0}, {0.0}, 0, 0};
        hodec_grid g = {ts + b * ts_member, T, ts_time};
        status = hodec_member(&ctx, method, &ctl, &g, y0 + b * n, max_steps, out + b * n, B * n, &w, buffer,
                              counts, &failure);
        stats[3] += ctx.n_f;
        stats[4] += ctx.n_jac;
    }
    stats[0] += counts[0], stats[1] += counts[1], stats[2] += counts[2];
    if (status) {
        fail[0] = failure.t, fail[1] = failure.h, fail[2] = failure.value;
        fail_at[0] = b - 1, fail_at[1] = failure.state, fail_at[2] = failure.method;
    }
    free(memory);
    free(pivot);
    return status;
}
