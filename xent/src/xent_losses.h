/*
 * Cross-entropy of a row against a class or a distribution, from its log-sum-exp, and the
 * gradients of those losses with respect to the logits.
 * Part of one instantiation (see xent_instantiate.h).
 */

#if defined(__AVX512F__) && defined(__GNUC__)
#include <immintrin.h>   /* the non-temporal stores of row_softmax_grad_stream */
#endif

/*
 * The kernels below take a row's log-sum-exp as its two parts, shift and log_sum, and form
 * -log_softmax(x)[j] = (shift - x[j]) + log_sum in double: the small differences between
 * huge logits survive, which they would not in (shift + log_sum) - x[j].
 */

/* sum_j w[j] * -log_softmax(x)[j] (w == NULL: all ones): the label-smoothing term. */
static double F(row_nll_sum)(const T *x, ptrdiff_t n, const double *w, double shift,
                             double log_sum)
{
    double acc = 0;
    if (w) {
#pragma omp simd reduction(+ : acc)
        for (ptrdiff_t j = 0; j < n; j++) acc += w[j] * ((shift - (double)x[j]) + log_sum);
    } else {
#pragma omp simd reduction(+ : acc)
        for (ptrdiff_t j = 0; j < n; j++) acc += (shift - (double)x[j]) + log_sum;
    }
    return acc;
}

/*
 * Cross-entropy of one probability row: sum_j w[j] q[j] * -log_softmax(x)[j] with
 * q[j] = a p[j] + b (label smoothing). Terms with q[j] == 0 are left out, so a zero
 * probability on a -inf logit adds 0, not NaN. *mass = sum_j w[j] q[j]. w == NULL: all ones.
 */
static double F(row_nll_dot)(const T *x, const T *p, ptrdiff_t n, const double *w, double a,
                             double b, double shift, double log_sum, double *mass)
{
    double acc = 0, total = 0;
    if (w) {
#pragma omp simd reduction(+ : acc, total)
        for (ptrdiff_t j = 0; j < n; j++) {
            double q = a * (double)p[j] + b;
            double term = w[j] * q * ((shift - (double)x[j]) + log_sum);
            acc += q != 0 ? term : 0.0;   /* term computed always: a select vectorises */
            total += w[j] * q;
        }
    } else {
#pragma omp simd reduction(+ : acc, total)
        for (ptrdiff_t j = 0; j < n; j++) {
            double q = a * (double)p[j] + b;
            double term = q * ((shift - (double)x[j]) + log_sum);
            acc += q != 0 ? term : 0.0;
            total += q;
        }
    }
    *mass = total;
    return acc;
}

/*
 * out[k] = a * softmax(x)[k] - b * w[k] (w == NULL: all ones), the gradient of a row's
 * cross-entropy before its target term. out may be x: each entry is read before written.
 */
static void F(row_softmax_grad)(const T *x, ptrdiff_t n, double shift, double log_sum, double a,
                                const double *w, double b, T *out)
{
    /* In T: the gradient needs no more than T's precision (the target's entry, where p - 1
     * cancels, is recomputed in double by the caller), and float lanes are twice as many.
     * exp_shifted puts the differences' roundings back (a float entry within 1e-6). */
    const T ta = (T)a, tb = (T)b;
    T s0, vh, vl;
    int fast = F(softmax_split)(shift, log_sum, &s0, &vh, &vl);
    if (w) {
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++)
            out[k] = ta * F(exp_shifted)(x[k], s0, vh, vl) - tb * (T)w[k];
    } else if (fast) {
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
        F(grad_fast_array)(x, n, vh, vl, ta, tb, out);
#else
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++) out[k] = ta * F(exp_shifted_fast)(x[k], vh, vl) - tb;
#endif
    } else {
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++) out[k] = ta * F(exp_shifted)(x[k], s0, vh, vl) - tb;
    }
}

/*
 * Gradient of a probability-target row: out[k] = mass * softmax(x)[k] - g w[k] q[k] with
 * q = qa p + qb and mass = g sum_j w[j] q[j]. out may be x (not p).
 */
static void F(row_softmax_grad_prob)(const T *x, const T *p, ptrdiff_t n, double shift,
                                     double log_sum, double mass, double g, double qa,
                                     double qb, const double *w, T *out)
{
    T s0, vh, vl;
    F(softmax_split)(shift, log_sum, &s0, &vh, &vl);
    if (w) {
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++) {
            T s = F(exp_shifted)(x[k], s0, vh, vl);
            out[k] = (T)(mass * (double)s - g * w[k] * (qa * (double)p[k] + qb));
        }
    } else {
#pragma omp simd
        for (ptrdiff_t k = 0; k < n; k++) {
            T s = F(exp_shifted)(x[k], s0, vh, vl);
            out[k] = (T)(mass * (double)s - g * (qa * (double)p[k] + qb));
        }
    }
}

/*
 * row_softmax_grad with non-temporal stores, for an out that is not x and will not be read
 * soon (a gradient larger than the cache): the stores go to memory without reading out's
 * lines first, a third of the traffic of a read-modify-write. The same values, bit for bit.
 * Vector stores only where the instruction set has them (AVX-512 here); elsewhere the plain
 * kernel. Ends with a store fence, so the row is visible to other threads in order.
 */
static void F(row_softmax_grad_stream)(const T *x, ptrdiff_t n, double shift, double log_sum,
                                       double a, const double *w, double b, T *out)
{
#if defined(__AVX512F__) && defined(__GNUC__)
    const T ta = (T)a, tb = (T)b;
    T s0, vh, vl;
    int fast = F(softmax_split)(shift, log_sum, &s0, &vh, &vl);
    ptrdiff_t head = (ptrdiff_t)((64 - ((uintptr_t)out & 63)) & 63);
    if (head % sizeof(T) != 0 || head / (ptrdiff_t)sizeof(T) > n) {
        F(row_softmax_grad)(x, n, shift, log_sum, a, w, b, out);   /* unaligned T: plain */
        return;
    }
    head /= (ptrdiff_t)sizeof(T);
    F(row_softmax_grad)(x, head, shift, log_sum, a, w, b, out);
    ptrdiff_t k = head;
    for (; k + XENT_LANES <= n; k += XENT_LANES) {
        T v[XENT_LANES];
        if (w) {
#pragma omp simd
            for (ptrdiff_t l = 0; l < XENT_LANES; l++)
                v[l] = ta * F(exp_shifted)(x[k + l], s0, vh, vl) - tb * (T)w[k + l];
        } else if (fast) {
#if XENT_F32
            F(grad_fast_array)(x + k, XENT_LANES, vh, vl, ta, tb, v);
#else
#pragma omp simd
            for (ptrdiff_t l = 0; l < XENT_LANES; l++)
                v[l] = ta * F(exp_shifted_fast)(x[k + l], vh, vl) - tb;
#endif
        } else {
#pragma omp simd
            for (ptrdiff_t l = 0; l < XENT_LANES; l++)
                v[l] = ta * F(exp_shifted)(x[k + l], s0, vh, vl) - tb;
        }
#if XENT_F32
        _mm512_stream_ps((float *)(out + k), _mm512_loadu_ps((const float *)v));
#else
        _mm512_stream_pd((double *)(out + k), _mm512_loadu_pd((const double *)v));
#endif
    }
    F(row_softmax_grad)(x + k, n - k, shift, log_sum, a, w ? w + k : NULL, b, out + k);
    _mm_sfence();
#else
    F(row_softmax_grad)(x, n, shift, log_sum, a, w, b, out);
#endif
}

/*
 * out row r (out_stride elements apart; rows r < nrows) = a[r] softmax(x row r) - b[r], for
 * up to XENT_LANES short rows (n <= XENT_SMALL_ROW, stride in elements) at once, one row per
 * vector lane: row_softmax_grad's entries without class weights, the same bits, without a
 * call, a padded tail group and a setup per row (rows of 10: a third of their gradient's
 * time). shift[r], log_sum[r]: the row's log-sum-exp parts. The
 * group is read whole before any of it is written, so out may be x. Returns 0, writing
 * nothing, where a float row's log-sum-exp is too large for exp_shifted_fast (|shift +
 * log_sum| >= 4096): the caller goes row by row.
 */
static int F(rows_softmax_grad_small)(const T *x, ptrdiff_t stride, ptrdiff_t nrows,
                                      ptrdiff_t n, const double *shift, const double *log_sum,
                                      const double *a, const double *b, T *out,
                                      ptrdiff_t out_stride)
{
    T s0[XENT_LANES], vh[XENT_LANES], vl[XENT_LANES], ta[XENT_LANES], tb[XENT_LANES];
    T buf[XENT_SMALL_ROW][XENT_LANES];
    int fast = 1;
    for (ptrdiff_t r = 0; r < XENT_LANES; r++) {
        ptrdiff_t row = r < nrows ? r : nrows - 1;
        fast &= F(softmax_split)(shift[row], log_sum[row], &s0[r], &vh[r], &vl[r]);
        ta[r] = (T)a[row];
        tb[r] = (T)b[row];
    }
#if XENT_F32
    if (!fast) return 0;
#endif
    F(transpose_rows)(x, stride, nrows, n, buf);
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
    const __m512 h = _mm512_loadu_ps(vh), lo = _mm512_loadu_ps(vl);
    const __m512 va = _mm512_loadu_ps(ta), vb = _mm512_loadu_ps(tb);
    for (ptrdiff_t j = 0; j < n; j++)
        _mm512_storeu_ps(buf[j], F(grad_fast_vec)(_mm512_loadu_ps(buf[j]), h, lo, va, vb));
    (void)s0;
#else
    for (ptrdiff_t j = 0; j < n; j++) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++)
#if XENT_F32
            buf[j][l] = ta[l] * F(exp_shifted_fast)(buf[j][l], vh[l], vl[l]) - tb[l];
#else
            buf[j][l] = ta[l] * F(exp_shifted)(buf[j][l], s0[l], vh[l], vl[l]) - tb[l];
#endif
    }
#endif
#if defined(__AVX512F__) && defined(__GNUC__)
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XENT_LANES)
        F(untranspose_block)(buf, j0, n - j0, nrows, out, out_stride);
#else
    for (ptrdiff_t r = 0; r < nrows; r++) {
        T *o = out + r * out_stride;
        for (ptrdiff_t j = 0; j < n; j++) o[j] = buf[j][r];
    }
#endif
    return 1;
}

/*
 * Cross-entropy of up to XENT_LANES short rows against class indices, a group at a time, so
 * that a row of 10 logits costs no call, no scalar log and no per-row bookkeeping of its own.
 * The rows' log-sum-exps are those of rows_lse_small (the same bits), and the log of each
 * row's sum is taken across rows in vector lanes, in xent_lse_log_sum's accurate form:
 * log(ties) + log1p(rest / ties), log(sum) where no entry is a tie (an all -inf, +inf or NaN
 * row); with ties = 1 this is log1p(rest) exactly, since log(1) = 0, so log(ties) is only
 * computed when a lane needs it (a tie of two maxima is rare in real logits).
 *
 * For row r: target[r] is its class; ignore_index or a label outside [0, n) make it skipped
 * (loss and weight 0, row_loss 0 for ignore_index, and the first out-of-range row's index in
 * *bad, else -1). Otherwise wt[r] = weight[target] (1 without weights) and
 *     loss[r] = keep * wt[r] * ((shift - x_t) + log_sum[r])   (0 where keep = 0),
 * keep = 1 - label smoothing, the smoothing's own term left to the caller; row_loss[r] (unless
 * NULL) gets loss[r] rounded to T. st[r] and log_sum[r] are the row's state and log(sum), for
 * the gradient and the smoothing term (NULL: not wanted). Unless NULL, the group's losses are
 * added exactly into loss_sum (through loss_batch), its weights into weight_sum: here, where
 * the batch sum is compiled for the instruction set, not in the driver. A skipped row adds 0,
 * which leaves an exact sum as it is. Returns the number of rows not skipped.
 */
static ptrdiff_t F(rows_index_loss_small)(const T *x, ptrdiff_t stride, ptrdiff_t nrows,
                                          ptrdiff_t n, const ptrdiff_t *target,
                                          ptrdiff_t ignore_index, const double *weight,
                                          double keep, xent_lse_state *st, double *log_sum,
                                          double *loss, double *wt, T *row_loss,
                                          ptrdiff_t *bad, xent_exact_sum *loss_sum,
                                          xent_exact_batch *loss_batch,
                                          xent_exact_sum *weight_sum,
                                          xent_exact_batch *weight_batch)
{
    T m[XENT_LANES], shift[XENT_LANES], c[XENT_LANES], buf[XENT_SMALL_ROW][XENT_LANES];
    double s[XENT_LANES], x_t[XENT_LANES], w[XENT_LANES], shift_d[XENT_LANES];
    double out[XENT_LANES], logs[XENT_LANES], log_ties[XENT_LANES], rest_part[XENT_LANES];
    ptrdiff_t t_of[XENT_LANES];
    int use[XENT_LANES], skip_bad[XENT_LANES];
    int kept = 0, any_bad = 0, any_tie = 0;
    uint32_t redo = F(group_lse_lanes)(x, stride, nrows, n, m, shift, c, s, buf);
#if XENT_F32
    /* float rows that could miss 1e-6: their rest corrected (see group_inexact_lanes) */
    if (redo) F(group_rescue_lanes)(buf, n, shift, s, redo);
#else
    (void)redo;
#endif
    /* the targets, branch-free so that it vectorises (a label out of place, an ignored row
     * and a spare lane read nothing: their results are masked); the target logits from the
     * transposed group in buf, in L1 and with 32-bit offsets, not from the rows (64-bit
     * offsets times the stride: a fifth of a group of rows of 2) */
    int32_t at[XENT_LANES];
    for (ptrdiff_t r = 0; r < XENT_LANES; r++) t_of[r] = target[r < nrows ? r : nrows - 1];
#pragma omp simd reduction(+ : kept) reduction(| : any_bad)
    for (ptrdiff_t r = 0; r < XENT_LANES; r++) {
        ptrdiff_t t = t_of[r];
        int in_group = r < nrows, ignored = t == ignore_index;
        int ok = in_group & !ignored & (t >= 0) & (t < n);
        use[r] = ok;
        skip_bad[r] = in_group & !ignored & !ok;
        any_bad |= skip_bad[r];
        kept += ok;
        at[r] = ok ? (int32_t)t : 0;
    }
    for (ptrdiff_t r = 0; r < XENT_LANES; r++) x_t[r] = use[r] ? (double)buf[at[r]][r] : 0.0;
    if (weight)
        for (ptrdiff_t r = 0; r < XENT_LANES; r++) w[r] = use[r] ? weight[at[r]] : 0.0;
    else
        for (ptrdiff_t r = 0; r < XENT_LANES; r++) w[r] = use[r] ? 1.0 : 0.0;
    *bad = -1;
    if (any_bad)
        for (ptrdiff_t r = 0; r < nrows; r++)
            if (skip_bad[r]) {
                *bad = r;
                break;
            }
#pragma omp simd reduction(| : any_tie)
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) any_tie |= c[l] != 1;
    /* log(ties) and rest / ties: with every ties = 1 they are 0 and rest exactly, and the
     * division (a slow vector instruction) and the log are left out */
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        log_ties[l] = 0;
        rest_part[l] = s[l];
    }
    if (any_tie) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
            double ties = (double)c[l];
            /* no tie: log(sum) = log(rest) + log1p(0) */
            log_ties[l] = xent_log_lanes(ties > 0 ? ties : s[l]);
            rest_part[l] = ties > 0 ? s[l] / ties : 0.0;
        }
    }
#pragma omp simd
    for (ptrdiff_t l = 0; l < XENT_LANES; l++) {
        double ls = log_ties[l] + xent_log1p_lanes(rest_part[l]);
        shift_d[l] = m[l] == -(T)INFINITY ? -INFINITY : (double)shift[l];
        logs[l] = ls;
        double v = keep * w[l] * ((shift_d[l] - x_t[l]) + ls);
        out[l] = keep != 0 && use[l] ? v : 0.0;
    }
    if (st)
        for (ptrdiff_t r = 0; r < nrows; r++) {
            st[r].shift = shift_d[r];
            st[r].ties = (double)c[r];
            st[r].rest = s[r];
            st[r].rest_err = 0;
            st[r].sum = (double)c[r] + s[r];
            log_sum[r] = logs[r];
        }
    for (ptrdiff_t r = 0; r < nrows; r++) {
        loss[r] = out[r];
        wt[r] = w[r];
    }
    if (row_loss)
        for (ptrdiff_t r = 0; r < nrows; r++)
            if (use[r] || t_of[r] == ignore_index) row_loss[r] = (T)out[r];
    if (loss_sum) xent_exact_batch_add(loss_sum, loss_batch, out, (int)nrows);
    if (weight_sum) xent_exact_batch_add(weight_sum, weight_batch, w, (int)nrows);
    return kept;
}
