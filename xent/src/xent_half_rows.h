/*
 * Row kernels that read float16 or bfloat16 bits directly: a row is widened one chunk at a
 * time into a float buffer on the stack, which stays in L1 while the float kernels read it,
 * so a row is read from memory once, at half the bytes, and no block of widened rows goes
 * through L2. The arithmetic is that of the float kernels on the same chunks: the results
 * have the bits of the float path on the row widened first.
 * Part of one instantiation (see xent_instantiate.h); after xent_lse.h and xent_losses.h.
 */

/* Half entries widened per chunk: the chunk row_lse folds at a time (XENT_CHUNK entries of
 * T), so that folding the widened chunks is folding the widened row's chunks. */
#define XENT_HALF_CHUNK XENT_CHUNK

/*
 * Ask for the next chunk of half bits (up to XENT_HALF_CHUNK of the n left) while the float
 * kernels work on the widened one. lse_chunk's own prefetch reaches past its buffer on the
 * stack, not into the row: without this, widen_half waited on memory for every chunk (58% of
 * its samples on its first load, perf at 2048 x 32000 float16). A hint: never faults.
 */
static inline void F(prefetch_half)(const uint16_t *next, ptrdiff_t n)
{
    ptrdiff_t bytes = (n < XENT_HALF_CHUNK ? n : XENT_HALF_CHUNK) * (ptrdiff_t)sizeof(uint16_t);
    for (ptrdiff_t offset = 0; offset < bytes; offset += 64)
        __builtin_prefetch((const char *)next + offset, 0, 3);
}

/* Log-sum-exp state of one row of half bits, folded into st, with widen (widen_half, or for
 * float16 widen_f16_quieting): row_lse's result on the row widened to T, its rest computed
 * again exactly where row_lse's would be (the chunks widened a second time: the half row is
 * usually still in cache). */
static void F(row_lse_half_with)(const uint16_t *h, ptrdiff_t n, int bfloat, int quieting,
                                 xent_lse_state *st)
{
    T buf[XENT_HALF_CHUNK];
    double bound = 0;
    for (ptrdiff_t start = 0; start < n; start += XENT_HALF_CHUNK) {
        ptrdiff_t len = xent_chunk_len(n, start, XENT_HALF_CHUNK);
        if (quieting)
            F(widen_f16_quieting)(h + start, len, buf);
        else
            F(widen_half)(h + start, len, bfloat, buf);
        F(prefetch_half)(h + start + len, n - start - len);
        F(lse_chunk_bound)(buf, len, st, &bound);
    }
    if (F(rest_needs_rescue)(st, bound)) {
        double ties = 0;
        F(rescue_start)(st);
        for (ptrdiff_t start = 0; start < n; start += XENT_HALF_CHUNK) {
            ptrdiff_t len = xent_chunk_len(n, start, XENT_HALF_CHUNK);
            if (quieting)
                F(widen_f16_quieting)(h + start, len, buf);
            else
                F(widen_half)(h + start, len, bfloat, buf);
            F(prefetch_half)(h + start + len, n - start - len);
            F(rescue_rest_chunk)(buf, len, (T)st->shift, &ties, st);
        }
        F(rescue_finish)(st, ties);
    }
}

/* Log-sum-exp state of one row of half bits (start from xent_lse_init): row_lse's result on
 * the row widened to T. float16 rows are widened by the conversion alone (bfloat16's widening
 * is already two instructions): 8192 x 32000 float16 took 52-57 ms with widen_half and
 * 48.5-51 ms so, on two threads (93-94 and 81-87 ms on one; medians of interleaved
 * processes, Intel Xeon). A NaN among them makes the state NaN (row_lse keeps NaN so that it
 * spreads), and only then may a signalling NaN's quieting matter: such a row is done again
 * with widen_half, for the bits of the float path on the row widened first. */
static void F(row_lse_half)(const uint16_t *h, ptrdiff_t n, int bfloat, xent_lse_state *st)
{
    if (bfloat) {
        F(row_lse_half_with)(h, n, 1, 0, st);
        return;
    }
    const xent_lse_state start = *st;
    F(row_lse_half_with)(h, n, 0, 1, st);
    if (st->sum != st->sum || st->shift != st->shift) {
        *st = start;
        F(row_lse_half_with)(h, n, 0, 0, st);
    }
}

/*
 * out = row_softmax_grad of the row of half bits h, rounded to half bits: each chunk is
 * widened, its gradient computed in place in L1 and narrowed into out. out may be h (each
 * chunk is read whole before it is written). The caller fixes the target's entry. shift and
 * log_sum are the row's own (row_lse_half): NaN where the row holds a NaN.
 */
static void F(row_softmax_grad_half)(const uint16_t *h, ptrdiff_t n, int bfloat, double shift,
                                     double log_sum, double a, const double *w, double b,
                                     uint16_t *out)
{
    T buf[XENT_HALF_CHUNK];
    /* the row's log-sum-exp is NaN where the row holds a NaN (row_lse_half): elsewhere the
     * conversion alone widens exactly */
    const int quieting = !bfloat && shift == shift && log_sum == log_sum;
    for (ptrdiff_t start = 0; start < n; start += XENT_HALF_CHUNK) {
        ptrdiff_t len = xent_chunk_len(n, start, XENT_HALF_CHUNK);
        if (quieting)
            F(widen_f16_quieting)(h + start, len, buf);
        else
            F(widen_half)(h + start, len, bfloat, buf);
        F(prefetch_half)(h + start + len, n - start - len);
        F(row_softmax_grad)(buf, len, shift, log_sum, a, w ? w + start : NULL, b, buf);
        F(narrow_half)(buf, len, bfloat, out + start);
    }
}

/*
 * out = log_softmax (softmax != 0: softmax) of the row of half bits h, rounded to half bits:
 * row_log_softmax's (row_softmax's) values on the widened row, a chunk at a time, without a
 * float copy of the row or of the result. out may be h (the row's log-sum-exp is known before
 * the first chunk is written, and each chunk is widened before it is overwritten).
 */
static void F(row_transform_half)(const uint16_t *h, ptrdiff_t n, int bfloat, int softmax,
                                  uint16_t *out)
{
    T buf[XENT_HALF_CHUNK];
    xent_lse_state st = xent_lse_init();
    F(row_lse_half)(h, n, bfloat, &st);
    double shift = st.shift, log_sum = xent_lse_log_sum(&st);
    T s0, vh, vl;
    int fast = F(softmax_split)(shift, log_sum, &s0, &vh, &vl);
    const int quieting = !bfloat && shift == shift && log_sum == log_sum;   /* as above */
    for (ptrdiff_t start = 0; start < n; start += XENT_HALF_CHUNK) {
        ptrdiff_t len = xent_chunk_len(n, start, XENT_HALF_CHUNK);
        if (quieting)
            F(widen_f16_quieting)(h + start, len, buf);
        else
            F(widen_half)(h + start, len, bfloat, buf);
        F(prefetch_half)(h + start + len, n - start - len);
        if (softmax && fast) {
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
            F(grad_fast_array)(buf, len, vh, vl, 1, 0, buf);
#else
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) buf[j] = F(exp_shifted_fast)(buf[j], vh, vl);
#endif
        } else if (softmax) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) buf[j] = F(exp_shifted)(buf[j], s0, vh, vl);
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) buf[j] = (T)(((double)buf[j] - shift) - log_sum);
        }
        F(narrow_half)(buf, len, bfloat, out + start);
    }
}

#undef XENT_HALF_CHUNK
