/*
 * float16 and bfloat16 bits to and from T, exactly and branch-free.
 * Part of one instantiation (see xent_instantiate.h).
 */

/*
 * out[i] = h[i] widened exactly to T, where h holds IEEE float16 (bfloat == 0) or bfloat16
 * (bfloat == 1) bits. bfloat16 is the top half of a float. float16's normals are its bits
 * moved to a float's places with the exponent rebiased by 127 - 15 (an integer add); its
 * subnormals, m 2^-24 with m < 2^10, are the integer m converted and scaled (both exact, and
 * no operand is a subnormal float: arithmetic on those takes a microcode assist on x86, 16x
 * slower for a whole row of them, and float16 gradients are often subnormal); inf and NaN
 * (payload kept) get the all-ones exponent. Branch-free, so it vectorises with or without
 * F16C (whose conversion quiets a signalling NaN: its payload would not be kept).
 */
#if defined(__AVX512F__) && defined(__GNUC__)
#include <immintrin.h>   /* widen_half's float16 conversion */
#endif

static void F(widen_half)(const uint16_t *h, ptrdiff_t n, int bfloat, T *out)
{
    if (bfloat) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)h[i] << 16;
            float f;
            memcpy(&f, &b, sizeof f);
            out[i] = (T)f;
        }
        return;
    }
    ptrdiff_t i = 0;
#if defined(__AVX512F__) && defined(__GNUC__)
    /* AVX-512's conversion (vcvtph2ps: exact, subnormals too), a NaN's bits then put back
     * as the rule below gives them (the conversion sets a signalling NaN's quiet bit): 4
     * vector instructions where the rule below takes about 12, in a forward whose float16
     * rows took 1.8x the time of bfloat16's */
    for (; i + 16 <= n; i += 16) {
        __m256i hv = _mm256_loadu_si256((const __m256i *)(h + i));
        __m512 f = _mm512_cvtph_ps(hv);
        __m512i w = _mm512_cvtepu16_epi32(hv);
        __m512i magnitude = _mm512_and_si512(w, _mm512_set1_epi32(0x7fff));
        __mmask16 nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7c00));
        if (nan) {
            __m512i sign = _mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0x8000)), 16);
            __m512i bits = _mm512_or_si512(_mm512_slli_epi32(magnitude, 13),
                                           _mm512_set1_epi32(0x7f800000));
            f = _mm512_mask_mov_ps(f, nan, _mm512_castsi512_ps(_mm512_or_si512(bits, sign)));
        }
#if XENT_F32
        _mm512_storeu_ps((float *)(out + i), f);
#else
        _mm512_storeu_pd((double *)(out + i), _mm512_cvtps_pd(_mm512_castps512_ps256(f)));
        _mm512_storeu_pd((double *)(out + i + 8),
                         _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(
                             _mm512_castps_pd(f), 1))));
#endif
    }
#endif
    const ptrdiff_t done = i;
#pragma omp simd
    for (i = done; i < n; i++) {
        uint32_t v = h[i], magnitude = v & 0x7fffu, bits;
        uint32_t normal = (magnitude << 13) + ((uint32_t)(127 - 15) << 23);
        float sub = (float)(int32_t)magnitude * 0x1p-24f;
        memcpy(&bits, &sub, sizeof bits);
        bits = magnitude < 0x400u ? bits : normal;
        bits = magnitude >= 0x7c00u ? (magnitude << 13) | 0x7f800000u : bits;
        bits |= (v & 0x8000u) << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        out[i] = (T)f;
    }
}

/*
 * out[i] = h[i] (float16 bits) widened to T as widen_half does, except that a signalling NaN
 * may come out quiet: AVX-512's conversion alone, without widen_half's NaN fix-up (3 of its 5
 * vector instructions). For passes whose result is NaN wherever a NaN is read (row_lse_half
 * redoes such a row with widen_half).
 */
static void F(widen_f16_quieting)(const uint16_t *h, ptrdiff_t n, T *out)
{
    ptrdiff_t i = 0;
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps((float *)(out + i),
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
#endif
    F(widen_half)(h + i, n - i, 0, out + i);
}

/*
 * out[i] = x[i] (a float value) rounded to the nearest float16 (bfloat == 0) or bfloat16 bits,
 * ties to even, as numpy and ml_dtypes round: beyond the largest finite value inf, subnormals
 * kept, NaN a NaN of the same sign (float16 keeps the payload's top bits, as numpy does;
 * bfloat16 gives the quiet NaN ml_dtypes gives). Branch-free, for numpy's conversion of
 * subnormal float16 results is slower by two orders of magnitude (small gradients are).
 */
static void F(narrow_half)(const T *x, ptrdiff_t n, int bfloat, uint16_t *out)
{
    if (bfloat) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            float f = (float)x[i];
            uint32_t u;
            memcpy(&u, &f, sizeof u);
            uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
            uint32_t nan = (u >> 16 & 0x8000u) | 0x7fc0u;
            out[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
        }
        return;
    }
    ptrdiff_t i = 0;
#if XENT_F32 && defined(__AVX512F__) && defined(__GNUC__)
    /* AVX-512's conversion (vcvtps2ph, to nearest even: numpy's rounding, subnormals and
     * overflow to inf included), a NaN's bits then taken from the rule below (the conversion
     * sets a signalling NaN's quiet bit) */
    for (; i + 16 <= n; i += 16) {
        __m512 f = _mm512_loadu_ps((const float *)(x + i));
        __m256i h = _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512i u = _mm512_castps_si512(f);
        __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
        __mmask16 nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000));
        if (nan) {
            __m512i bits = _mm512_add_epi32(
                _mm512_set1_epi32(0x7c00),
                _mm512_srli_epi32(_mm512_and_si512(a, _mm512_set1_epi32(0x7fffff)), 13));
            __mmask16 empty = _mm512_cmpeq_epi32_mask(bits, _mm512_set1_epi32(0x7c00));
            bits = _mm512_mask_mov_epi32(bits, empty, _mm512_set1_epi32(0x7c01));
            bits = _mm512_or_si512(
                bits, _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000)));
            h = _mm256_mask_mov_epi16(h, nan, _mm512_cvtepi32_epi16(bits));
        }
        _mm256_storeu_si256((__m256i *)(out + i), h);
    }
#endif
    const ptrdiff_t done = i;
#pragma omp simd
    for (i = done; i < n; i++) {
        float f = (float)x[i], magnitude, tiny;
        uint32_t u, a, tiny_bits;
        memcpy(&u, &f, sizeof u);
        a = u & 0x7fffffffu;
        memcpy(&magnitude, &a, sizeof magnitude);
        /* below 2^-14: adding 0.5 lines the value up with the subnormal spacing 2^-24, and the
         * hardware rounds it to even; its low bits are then the float16's */
        tiny = magnitude + 0.5f;
        memcpy(&tiny_bits, &tiny, sizeof tiny_bits);
        uint32_t sub = tiny_bits - 0x3f000000u;
        uint32_t normal = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;   /* rebias */
        uint32_t nan = 0x7c00u + ((a & 0x7fffffu) >> 13);
        nan = nan == 0x7c00u ? 0x7c01u : nan;
        uint32_t h = a < 0x38800000u ? sub : normal;
        h = a >= 0x47800000u ? 0x7c00u : h;          /* 65520 and up round to inf */
        h = a > 0x7f800000u ? nan : h;
        out[i] = (uint16_t)(h | ((u >> 16) & 0x8000u));
    }
}
