/*
 * The one kernel table and the run-time choice of instruction set. Compiled into xent._table
 * only; every other extension reaches the table through the pointer that module hands out.
 */
#include "xent_kernels.h"

xent_kernel_table xent_table;
static const char *xent_isa = "none";

#define XENT_NAME_OF(ret, name, S, params) #name "_" #S,
const char *const xent_kernel_names[] = {
    XENT_KERNELS(XENT_NAME_OF, float, f32)
    XENT_KERNELS(XENT_NAME_OF, double, f64)
};
#undef XENT_NAME_OF
const int xent_kernel_count = (int)(sizeof xent_kernel_names / sizeof xent_kernel_names[0]);

/* 1 if this CPU (and its OS) can run the named variant. */
int xent_isa_supported(const char *name)
{
    if (strcmp(name, "baseline") == 0) return 1;
#if XENT_HAVE_X86_VARIANTS
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 0;
}

/*
 * Point the kernel table at a variant: "avx512", "avx2", "baseline", or "auto" (the best this
 * CPU runs). Returns 0, or -1 for a name this build does not know or this CPU cannot run.
 * Not thread-safe: called at import (xent._dispatch), and by tests between calls.
 */
int xent_select_isa(const char *name)
{
    if (strcmp(name, "auto") == 0) {
        if (xent_isa_supported("avx512")) name = "avx512";
        else if (xent_isa_supported("avx2")) name = "avx2";
        else name = "baseline";
    }
    if (!xent_isa_supported(name)) return -1;
    if (strcmp(name, "baseline") == 0) {
        xent_fill_table_f32_baseline(&xent_table);
        xent_fill_table_f64_baseline(&xent_table);
        xent_isa = "baseline";
    }
#if XENT_HAVE_X86_VARIANTS
    else if (strcmp(name, "avx2") == 0) {
        xent_fill_table_f32_avx2(&xent_table);
        xent_fill_table_f64_avx2(&xent_table);
        xent_isa = "avx2";
    } else {
        xent_fill_table_f32_avx512(&xent_table);
        xent_fill_table_f64_avx512(&xent_table);
        xent_isa = "avx512";
    }
#endif
    return 0;
}

const char *xent_current_isa(void) { return xent_isa; }
