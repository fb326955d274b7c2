/* The AVX-512 copy of every kernel (x86-64 only; chosen at run time if the CPU has it). */
#include "xent_kernels.h"

#if XENT_HAVE_X86_VARIANTS
/* The target applies to the kernels only: the shared headers above are compiled as usual. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
/* gcc otherwise keeps to 256-bit vectors on some tunings; the kernels want all 512 bits. */
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,prefer-vector-width=512")
#endif

#define XENT_ISA avx512
/* gcc's generic tuning never gathers; on AVX-512 cores a gather of a group's column is about
 * twice as fast as copying its elements one by one (transpose_rows in xent_lse.h) */
#if defined(__GNUC__) && !defined(__clang__)
#define XENT_GATHER_TUNE __attribute__((target("tune=skylake-avx512")))
#endif
#include "xent_instantiate.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
typedef int xent_isa_avx512_unused; /* ISO C wants a translation unit to declare something */
#endif
