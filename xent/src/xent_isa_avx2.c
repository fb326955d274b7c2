/* The AVX2 + FMA copy of every kernel (x86-64 only; chosen at run time if the CPU has them). */
#include "xent_kernels.h"

#if XENT_HAVE_X86_VARIANTS
/* The target applies to the kernels only: the shared headers above are compiled as usual. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#define XENT_ISA avx2
#include "xent_instantiate.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
typedef int xent_isa_avx2_unused; /* ISO C wants a translation unit to declare something */
#endif
