/*
 * A Cython extension's reference to the one kernel table, which xent._table owns: each
 * extension that calls kernels gets its own copy of this pointer and sets it once, at import,
 * from xent._table.kernel_table() (before any driver can run). Switching the instruction set
 * refills the table in place, so every extension sees the switch with no re-sync.
 */
#ifndef XENT_TABLE_REF_H
#define XENT_TABLE_REF_H
#include "xent_kernels.h"

static const xent_kernel_table *xent_k;

static inline void xent_bind_table(const xent_kernel_table *table) { xent_k = table; }
#endif
