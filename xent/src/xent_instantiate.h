/*
 * One instruction set's copy of every row kernel, for float and for double.
 *
 * Each xent_isa_<name>.c file sets XENT_ISA (baseline, avx2, avx512) and the compiler's target
 * for that instruction set, then includes this file once. It includes the rooms of kernel
 * bodies (xent_math.h ... xent_binary.h) twice, once per element type, with
 *   T             the element type, float or double,
 *   XENT_F32      1 for float, 0 for double,
 *   F(n)          the name mangler n -> n_f32_<isa>,
 * and defines xent_fill_table_<f32|f64>_<isa>(), which points the table's fields at them.
 *
 * The loops are plain C with `#pragma omp simd`: the compiler vectorises them for whichever
 * instruction set the file targets (and for NEON on ARM). No -ffast-math: inf and NaN
 * behave as IEEE says, and the reductions are reordered only where a pragma says so, which
 * keeps every result a pure function of the row (the same bits on any number of threads).
 *
 * Kernels trust their arguments: the Python layer has validated shapes, dtypes and labels.
 */

#ifndef XENT_ISA
#error "define XENT_ISA (baseline, avx2, avx512) before including xent_instantiate.h"
#endif

#define XENT_PASTE3_(a, b, c) a##b##c
#define XENT_PASTE3(a, b, c) XENT_PASTE3_(a, b, c)

/* ---- float ---- */
#define XENT_F32 1
#define T float
#define XENT_SFX f32
#define F(n) XENT_PASTE3(n, _f32_, XENT_ISA)
#include "xent_rooms.h"
#define XENT_FILL(ret, name, S, params) tab->name##_##S = F(name);
void XENT_PASTE3(xent_fill_table, _f32_, XENT_ISA)(xent_kernel_table *tab)
{
    XENT_KERNELS(XENT_FILL, T, XENT_SFX)
}
#undef XENT_FILL
#include "xent_rooms_end.h"
#undef F
#undef XENT_SFX
#undef T
#undef XENT_F32

/* ---- double ---- */
#define XENT_F32 0
#define T double
#define XENT_SFX f64
#define F(n) XENT_PASTE3(n, _f64_, XENT_ISA)
#include "xent_rooms.h"
#define XENT_FILL(ret, name, S, params) tab->name##_##S = F(name);
void XENT_PASTE3(xent_fill_table, _f64_, XENT_ISA)(xent_kernel_table *tab)
{
    XENT_KERNELS(XENT_FILL, T, XENT_SFX)
}
#undef XENT_FILL
#include "xent_rooms_end.h"
#undef F
#undef XENT_SFX
#undef T
#undef XENT_F32
