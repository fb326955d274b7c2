/* The portable copy of every kernel: whatever the compiler targets by default (SSE2 on x86-64). */
#include "xent_kernels.h"

#define XENT_ISA baseline
#include "xent_instantiate.h"
