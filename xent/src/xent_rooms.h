/*
 * Every room of kernel bodies, in the order they build on each other, for one element type T
 * (included by xent_instantiate.h; no include guard: it is included once per type and ISA).
 * A new kernel's body goes into the room of its concern.
 */
#include "xent_math.h"      /* exp, log, log1p; the element type's constants */
#include "xent_half.h"      /* float16 / bfloat16 conversion */
#include "xent_lse.h"       /* log-sum-exp, log-softmax, softmax */
#include "xent_lse_exact.h" /* log-sum-exp in double-double, where max and log(sum) cancel */
#include "xent_losses.h"    /* cross-entropy of a row, its gradients */
#include "xent_info.h"      /* entropy, cross-entropy, KL of distributions */
#include "xent_evaluate.h"  /* loss, rank and entropy in one read */
#include "xent_compare.h"   /* two models' rows of one token: KL, JSD, argmaxes */
#include "xent_binary.h"    /* elementwise: surprisal, binary entropy, BCE */
#include "xent_divergence.h"  /* KL, JSD, total variation between two rows of logits */
#include "xent_half_rows.h"  /* rows of float16 / bfloat16 bits, widened a chunk at a time */
#include "xent_probe.h"     /* memory probes: read and read + write bandwidth */
