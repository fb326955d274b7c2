/*
 * Probes of the machine's memory limits, for `xent bench`'s roofline: how fast a plain read
 * (sum) and a read + write (copy) of an array go, on the very array a kernel reads, so that a
 * kernel's time can be put beside the time the memory alone takes. They compute nothing
 * clever on purpose: the loop is as light as a loop over the array can be, so its speed is the
 * memory's (DRAM, or the cache where the array fits).
 * Part of one instantiation (see xent_instantiate.h): T, F and XENT_F32 are set.
 */

/* Independent partial sums per stretch: XENT_PROBE_WIDTH lanes is four AVX-512 vectors, so
 * the additions of one vector need not wait for the previous one's (an add's latency is
 * four cycles) and the loop issues loads as fast as the core can take them. */
#define XENT_PROBE_WIDTH (256 / (int)sizeof(T))

/* The sum of x[0..n), in lanes of T (float for float32: as fast as the loads; a probe's sum
 * is a check that every element was read, not an accurate total), added up in double at the
 * end. Data whose partial sums are exact in T (small integers) give the exact sum. */
static double F(read_sum)(const T *x, ptrdiff_t n)
{
    T acc[XENT_PROBE_WIDTH];
    ptrdiff_t i = 0;
    for (int j = 0; j < XENT_PROBE_WIDTH; j++) acc[j] = 0;
    for (; i + XENT_PROBE_WIDTH <= n; i += XENT_PROBE_WIDTH) {
#pragma omp simd
        for (int j = 0; j < XENT_PROBE_WIDTH; j++) acc[j] += x[i + j];
    }
    double total = 0.0;
    for (int j = 0; j < XENT_PROBE_WIDTH; j++) total += (double)acc[j];
    for (; i < n; i++) total += (double)x[i];
    return total;
}

/* out[0..n) = x[0..n), element by element (out == x allowed: an in-place read and write,
 * the memory traffic of an in-place gradient). Returns the sum as read_sum does, so that a
 * caller can check every element went through. No memcpy: a library copy may switch to
 * non-temporal stores or skip an in-place copy, and this probe must do what a kernel does. */
static double F(copy_array)(const T *x, ptrdiff_t n, T *out)
{
    T acc[XENT_PROBE_WIDTH];
    ptrdiff_t i = 0;
    for (int j = 0; j < XENT_PROBE_WIDTH; j++) acc[j] = 0;
    for (; i + XENT_PROBE_WIDTH <= n; i += XENT_PROBE_WIDTH) {
#pragma omp simd
        for (int j = 0; j < XENT_PROBE_WIDTH; j++) {
            T v = x[i + j];
            acc[j] += v;
            out[i + j] = v;
        }
    }
    double total = 0.0;
    for (int j = 0; j < XENT_PROBE_WIDTH; j++) total += (double)acc[j];
    for (; i < n; i++) {
        T v = x[i];
        total += (double)v;
        out[i] = v;
    }
    return total;
}

#undef XENT_PROBE_WIDTH
