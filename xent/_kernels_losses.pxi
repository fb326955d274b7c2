# Part of xent/_kernels.pyx (included there): cross-entropy with class indices or probabilities,
# and its gradients.
# The shared helpers (_row, _block_rows, _Partials, kern, ...) are defined in _kernels.pyx.

cdef inline Py_ssize_t _group_loss(const floating *row0, Py_ssize_t stride, Py_ssize_t nrows,
                                   Py_ssize_t c, const intp_t *target, intp_t ignore_index,
                                   const double *weight, double keep, xent_lse_state *st,
                                   double *log_sum, double *loss, double *wt,
                                   floating *row_loss, Py_ssize_t *bad,
                                   xent_exact_sum *loss_sum, xent_exact_batch *loss_batch,
                                   xent_exact_sum *weight_sum,
                                   xent_exact_batch *weight_batch) noexcept nogil:
    """Losses of nrows (<= SMALL_GROUP) short rows from row0 on, by rows_index_loss_small.

    stride: from one row to the next, in elements. The arrays hold nrows entries; row_loss
    (or NULL) points at the first row's; st and log_sum may be NULL (not wanted), and so may
    the exact sums (the losses and weights not added). Returns the number of rows not
    skipped; *bad: the first out-of-range label's row (from row0), else -1.
    """
    cdef Py_ssize_t kept, bad2
    # float lanes hold all 16 rows; double lanes 8: then two calls
    cdef Py_ssize_t lanes = 8 if floating is double else SMALL_GROUP
    kept = kern.rows_index_loss_small(row0, stride, min(nrows, lanes), c,
                                      <const Py_ssize_t *>target, ignore_index, weight, keep,
                                      st, log_sum, loss, wt, row_loss, bad, loss_sum,
                                      loss_batch, weight_sum, weight_batch)
    if nrows > lanes:
        kept += kern.rows_index_loss_small(row0 + 8 * stride, stride, nrows - 8, c,
                                           <const Py_ssize_t *>(target + 8), ignore_index,
                                           weight, keep, st + 8 if st != NULL else NULL,
                                           log_sum + 8 if log_sum != NULL else NULL, loss + 8,
                                           wt + 8, row_loss + 8 if row_loss != NULL else NULL,
                                           &bad2, loss_sum, loss_batch, weight_sum,
                                           weight_batch)
        if bad[0] < 0 and bad2 >= 0:
            bad[0] = bad2 + 8
    return kept


cdef void _index_block(const floating *x0, Py_ssize_t stride, Py_ssize_t c, Py_ssize_t first,
                       bint small, const intp_t[::1] target, const double *weight,
                       intp_t ignore_index, double smoothing, bint log_probs,
                       const xent_lse_state *states, floating *row_loss, Py_ssize_t r0,
                       Py_ssize_t r1, xent_exact_sum *loss_out, xent_exact_sum *weight_out,
                       Py_ssize_t *bad_out) noexcept nogil:
    """Losses of rows r0 .. r1 - 1; row i of c entries lies (i - first) * stride bytes after x0.

    small: the states of rows come from rows_lse_small (stride a whole number of elements).
    """
    cdef Py_ssize_t i, g0, k, nrows, bad, kept_group
    cdef bint plain
    cdef intp_t t
    cdef const floating *row
    cdef xent_lse_state st
    cdef xent_lse_state group[SMALL_GROUP]
    cdef double log_sums[SMALL_GROUP]
    cdef double wt, loss
    # the group's losses and weights, added exactly a group at a time (xent_exact_batch_add)
    cdef double losses[SMALL_GROUP]
    cdef double weights[SMALL_GROUP]
    cdef xent_exact_batch loss_batch, weight_batch
    # without class weights the weight sum is a count: added once, exactly, at the end
    cdef Py_ssize_t kept = 0
    bad_out[0] = -1
    xent_exact_init(loss_out)
    xent_exact_init(weight_out)
    xent_exact_batch_init(&loss_batch)
    xent_exact_batch_init(&weight_batch)
    g0 = r0
    if small and not log_probs and states == NULL:
        # short rows: a group's losses in one kernel call (a skipped row adds a 0 loss and a
        # 0 weight: the exact sums are those of the rows kept)
        # without smoothing the kernel adds the losses (and weights) into the exact sums
        plain = smoothing == 0
        while g0 < r1:
            nrows = min(SMALL_GROUP, r1 - g0)
            kept_group = _group_loss(
                <const floating *>(<const char *>x0 + (g0 - first) * stride),
                stride // <Py_ssize_t>sizeof(floating), nrows, c, &target[g0], ignore_index,
                weight, 1.0 - smoothing, NULL if plain else group,
                NULL if plain else log_sums, losses, weights,
                row_loss + g0 if row_loss != NULL and plain else NULL, &bad,
                loss_out if plain else NULL, &loss_batch,
                weight_out if plain and weight != NULL else NULL, &weight_batch)
            if bad >= 0 and bad_out[0] < 0:
                bad_out[0] = g0 + bad
            if not plain:
                _add_smoothing(x0, stride, first, c, target, weight, ignore_index, smoothing,
                               group, log_sums, losses, row_loss, g0, nrows)
                xent_exact_batch_add(loss_out, &loss_batch, losses, <int>nrows)
                if weight != NULL:
                    xent_exact_batch_add(weight_out, &weight_batch, weights, <int>nrows)
            if weight == NULL:
                kept += kept_group
            g0 += SMALL_GROUP
        xent_exact_batch_flush(loss_out, &loss_batch)
        xent_exact_batch_flush(weight_out, &weight_batch)
        xent_exact_add(weight_out, <double>kept)
        return
    while g0 < r1:
        if small:   # short rows: their states a group at a time, several rows per vector
            _group_lse(<const floating *>(<const char *>x0 + (g0 - first) * stride),
                       stride // <Py_ssize_t>sizeof(floating), min(SMALL_GROUP, r1 - g0), c,
                       group)
        k = 0
        for i in range(g0, min(g0 + SMALL_GROUP, r1)):
            t = target[i]
            if t == ignore_index:
                if row_loss != NULL:
                    row_loss[i] = 0
                continue
            if t < 0 or t >= c:
                if bad_out[0] < 0:
                    bad_out[0] = i
                continue
            row = <const floating *>(<const char *>x0 + (i - first) * stride)
            wt = weight[t] if weight != NULL else 1.0
            if log_probs:
                loss = -wt * <double>row[t]
            else:
                if states != NULL:
                    st = states[i]
                elif small:
                    st = group[i - g0]
                else:
                    st = _row_lse(row, c)
                # PyTorch: (1 - eps) * w_t * nll_t + eps / C * sum_j w_j * nll_j with
                # nll = -log_softmax; a term whose factor is exactly 0 is left out
                # (0 * inf = NaN).
                loss = 0
                if smoothing != 1:
                    loss = (1.0 - smoothing) * wt * ((st.shift - <double>row[t]) + xent_lse_log_sum(&st))
                if smoothing != 0:
                    loss += smoothing / c * _row_nll_sum(row, c, weight, st)
            if row_loss != NULL:
                row_loss[i] = <floating>loss
            losses[k] = loss
            weights[k] = wt
            k += 1
        xent_exact_batch_add(loss_out, &loss_batch, losses, <int>k)
        if weight != NULL:
            xent_exact_batch_add(weight_out, &weight_batch, weights, <int>k)
        else:
            kept += k
        g0 += SMALL_GROUP
    xent_exact_batch_flush(loss_out, &loss_batch)
    xent_exact_batch_flush(weight_out, &weight_batch)
    xent_exact_add(weight_out, <double>kept)


cdef inline void _add_smoothing(const floating *x0, Py_ssize_t stride, Py_ssize_t first,
                                Py_ssize_t c, const intp_t[::1] target, const double *weight,
                                intp_t ignore_index, double smoothing,
                                const xent_lse_state *group, const double *log_sums,
                                double *losses, floating *row_loss, Py_ssize_t g0,
                                Py_ssize_t nrows) noexcept nogil:
    """Label smoothing's term, eps / C * sum_j w_j nll_j, added to the losses of a group
    (_group_loss's, rows g0 .. g0 + nrows - 1), and the row losses written."""
    cdef Py_ssize_t k
    cdef intp_t t
    cdef const floating *row
    for k in range(nrows):
        t = target[g0 + k]
        if t == ignore_index:
            if row_loss != NULL:
                row_loss[g0 + k] = 0
            continue
        if t < 0 or t >= c:
            continue
        row = <const floating *>(<const char *>x0 + (g0 + k - first) * stride)
        losses[k] += smoothing / c * kern.row_nll_sum(row, c, weight, group[k].shift,
                                                       log_sums[k])
        if row_loss != NULL:
            row_loss[g0 + k] = <floating>losses[k]


def index_loss(const floating[:, :] x, const intp_t[::1] target, const double[::1] weight,
               intp_t ignore_index, double smoothing, bint log_probs, floating[::1] row_loss,
               int nthreads, bint parts=False):
    """Cross-entropy of logits (or, with log_probs, NLL of log-probabilities) and class indices.

    Returns (sum of row losses, sum of the weights of the non-ignored rows, first row whose
    label is out of range or -1). Fills row_loss (ignored rows 0) unless it is None.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    # An NLL row costs one load: count its blocks in rows, not in logits.
    cdef Py_ssize_t rows = BLOCK_ELEMENTS if log_probs else _block_rows(c)
    cdef Py_ssize_t nblocks = (n + rows - 1) // rows
    cdef _Partials part = _Partials(nblocks, True)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef floating *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    cdef xent_lse_state *states = NULL
    cdef bint small
    if n == 0:
        return 0.0, 0.0, -1
    if not log_probs and _split_rows(c):
        states = _split_lse(x, nthreads)
    small = not log_probs and states == NULL and _small_rows(x)
    try:
        with nogil:
            for b in prange(nblocks, schedule="dynamic",
                            num_threads=_threads_for(nthreads, nblocks)):
                _index_block(_row(x, 0), x.strides[0], c, 0, small, target, w, ignore_index,
                             smoothing, log_probs, states, out, b * rows,
                             min(n, (b + 1) * rows), &part.exact_loss[b],
                             &part.exact_weight[b], &part.bad[b])
    finally:
        free(states)
    return part.combine_parts() if parts else part.combine()




cdef void _ce_prob_block(const floating[:, :] x, const floating[:, :] p, const double *weight,
                         double smoothing, floating *row_loss, Py_ssize_t r0, Py_ssize_t r1,
                         xent_exact_sum *loss_out) noexcept nogil:
    cdef Py_ssize_t i, c = x.shape[1]
    cdef const floating *row
    cdef xent_lse_state st
    cdef double loss, mass
    cdef double losses[SMALL_GROUP]
    cdef int k = 0
    cdef xent_exact_batch batch
    xent_exact_init(loss_out)
    xent_exact_batch_init(&batch)
    for i in range(r0, r1):
        row = _row(x, i)
        st = _row_lse(row, c)
        loss = _row_nll_dot(row, _row(p, i), c, weight, 1.0 - smoothing, smoothing / c, st,
                            &mass)
        if row_loss != NULL:
            row_loss[i] = <floating>loss
        losses[k] = loss
        k += 1
        if k == SMALL_GROUP:
            xent_exact_batch_add(loss_out, &batch, losses, k)
            k = 0
    xent_exact_batch_add(loss_out, &batch, losses, k)
    xent_exact_batch_flush(loss_out, &batch)


def probability_loss(const floating[:, :] x, const floating[:, :] p,
                       const double[::1] weight, double smoothing, floating[::1] row_loss,
                       int nthreads, bint parts=False):
    """Cross-entropy with probability targets; returns the sum of the row losses."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef _Partials part = _Partials(nblocks, True)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef floating *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    if n == 0:
        return 0.0
    with nogil:
        for b in prange(nblocks, schedule="dynamic",
                        num_threads=_threads_for(nthreads, nblocks)):
            _ce_prob_block(x, p, w, smoothing, out, b * rows, min(n, (b + 1) * rows),
                           &part.exact_loss[b])
    return part.combine_parts()[0] if parts else part.combine()[0]


# ---- gradients of the cross-entropy ----------------------------------------------------------

def index_weight_total(const intp_t[::1] target, const double[::1] weight, intp_t ignore_index,
                       Py_ssize_t n_classes):
    """(sum of w[t] over the non-ignored rows, first out-of-range row or -1).

    The mean's denominator, needed before a gradient pass can scale its rows: summed exactly
    and rounded once, the same bits as the denominator the loss pass returns.
    """
    cdef Py_ssize_t i, k = 0, kept = 0, bad = -1
    cdef intp_t t
    cdef xent_exact_sum total
    cdef xent_exact_batch batch
    cdef double w[16]
    cdef bint weighted = weight is not None
    xent_exact_init(&total)
    xent_exact_batch_init(&batch)
    with nogil:
        # without weights the total is a count, added once; weights go 16 at a time through
        # the batch adder (one exact addition a row was 6% of a gradient of rows of 10)
        for i in range(target.shape[0]):
            t = target[i]
            if t == ignore_index:
                continue
            if t < 0 or t >= n_classes:
                bad = i
                break
            if not weighted:
                kept += 1
                continue
            w[k] = weight[t]
            k += 1
            if k == 16:
                xent_exact_batch_add(&total, &batch, w, 16)
                k = 0
        xent_exact_batch_add(&total, &batch, w, <int>k)
        xent_exact_batch_flush(&total, &batch)
        xent_exact_add(&total, <double>kept)
    return xent_exact_round(&total), bad


cdef inline double _row_g(const double[::1] grad_rows, Py_ssize_t i) noexcept nogil:
    return grad_rows[i] if grad_rows is not None else 1.0


cdef double _weight_total(const double[::1] weight, Py_ssize_t c):
    """W = sum of the class weights (C without them), for the label smoothing's gradient."""
    cdef double total = 0
    cdef Py_ssize_t k
    if weight is None:
        return c
    for k in range(c):
        total += weight[k]
    return total


cdef inline double _target_grad(double g, double wt, double smoothing, Py_ssize_t c,
                               double weight_total, double x_t, double shift,
                               double log_sum) noexcept nogil:
    """The gradient's entry at the target, g ((1-eps) w_t (p_t - 1) + eps/C (W p_t - w_t)).

    In double: p_t - 1 cancels, so it is expm1 of the log-softmax z (for the max's entry,
    -rest / (1 + rest) to the last bits). Below z = -0.7 (p_t < 0.5) nothing cancels and
    exp(z) - 1 is within 2 ulp: libm's exp takes about half expm1's time, which was a quarter
    of a gradient of rows of 10.
    """
    cdef double z = (x_t - shift) - log_sum
    cdef double p_t_minus_1 = exp(z) - 1.0 if z < -0.7 else expm1(z)
    cdef double p_t = p_t_minus_1 + 1.0
    return g * ((1.0 - smoothing) * wt * p_t_minus_1 + smoothing / c * (weight_total * p_t - wt))


cdef bint _group_grad(const floating *x0, Py_ssize_t stride, Py_ssize_t c, Py_ssize_t first,
                      const intp_t[::1] target, intp_t ignore_index, double smoothing,
                      double weight_total, double scale, const double[::1] grad_rows,
                      const xent_lse_state *group, const double *log_sums, floating *grad0,
                      Py_ssize_t grad_stride, Py_ssize_t g0, Py_ssize_t nrows) noexcept nogil:
    """The gradients of the group of short rows g0 .. g0 + nrows - 1 (no class weights), their
    entries in vector lanes (rows_softmax_grad_small), then each target's entry and each
    skipped row's zeros: the bits of _index_grad_block's row-by-row loop. False, with nothing
    written, where the kernel declines (a float row whose log-sum-exp is too large)."""
    cdef Py_ssize_t k, i
    cdef intp_t t
    cdef double g
    cdef double shifts[SMALL_GROUP]
    cdef double exponents[SMALL_GROUP]
    cdef double a[SMALL_GROUP]
    cdef double b[SMALL_GROUP]
    cdef double x_t[SMALL_GROUP]
    # float lanes hold all 16 rows; double lanes 8: then two calls (as _group_loss)
    cdef Py_ssize_t lanes = 8 if floating is double else SMALL_GROUP
    cdef Py_ssize_t xs = stride // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t gs = grad_stride // <Py_ssize_t>sizeof(floating)
    cdef const floating *x1 = <const floating *>(<const char *>x0 + (g0 - first) * stride)
    cdef floating *out1 = <floating *>(<char *>grad0 + (g0 - first) * grad_stride)
    if floating is double:   # the entries' exponent to below their ulp, in vector lanes
        kern.xent_k.rows_softmax_exponent_f64(group, log_sums, nrows, shifts, exponents)
    for k in range(nrows):
        i = g0 + k
        t = target[i]
        if floating is not double:
            shifts[k] = group[k].shift
            exponents[k] = log_sums[k]
        a[k] = 0
        b[k] = 0
        x_t[k] = 0
        if t == ignore_index or t < 0 or t >= c:
            continue
        # read before the gradient may overwrite the row (grad is x)
        x_t[k] = (<const floating *>(<const char *>x0 + (i - first) * stride))[t]
        g = scale * _row_g(grad_rows, i)
        a[k] = g * ((1.0 - smoothing) + smoothing / c * weight_total)
        b[k] = g * smoothing / c
    if not kern.rows_softmax_grad_small(x1, xs, min(nrows, lanes), c, shifts, exponents, a, b,
                                        out1, gs):
        return False   # float: the whole group is this one call, nothing written
    if nrows > lanes:   # double, whose kernel never declines
        kern.rows_softmax_grad_small(x1 + lanes * xs, xs, nrows - lanes, c, shifts + lanes,
                                     exponents + lanes, a + lanes, b + lanes, out1 + lanes * gs,
                                     gs)
    _group_grad_targets(c, first, target, ignore_index, smoothing, weight_total, scale,
                        grad_rows, group, log_sums, grad0, grad_stride, g0, nrows, x_t)
    return True


cdef void _group_grad_targets(Py_ssize_t c, Py_ssize_t first, const intp_t[::1] target,
                              intp_t ignore_index, double smoothing, double weight_total,
                              double scale, const double[::1] grad_rows,
                              const xent_lse_state *group, const double *log_sums,
                              floating *grad0, Py_ssize_t grad_stride, Py_ssize_t g0,
                              Py_ssize_t nrows, const double *x_t) noexcept nogil:
    """_group_grad's second half: each target's entry and each skipped row's zeros."""
    cdef Py_ssize_t k, j, i
    cdef intp_t t
    cdef double g
    cdef floating *grow
    for k in range(nrows):
        i = g0 + k
        t = target[i]
        grow = <floating *>(<char *>grad0 + (i - first) * grad_stride)
        if t == ignore_index or t < 0 or t >= c:
            for j in range(c):
                grow[j] = 0
            continue
        g = scale * _row_g(grad_rows, i)
        grow[t] = <floating>_target_grad(g, 1.0, smoothing, c, weight_total, x_t[k],
                                         group[k].shift, log_sums[k])


cdef void _index_grad_block(const floating *x0, Py_ssize_t stride, Py_ssize_t c,
                            Py_ssize_t first, const intp_t[::1] target, const double *weight,
                            double weight_total, intp_t ignore_index, double smoothing,
                            double scale, const double[::1] grad_rows,
                            const xent_lse_state *states, floating *row_loss, floating *grad0,
                            Py_ssize_t grad_stride, Py_ssize_t r0, Py_ssize_t r1,
                            xent_exact_sum *loss_out, xent_exact_sum *weight_out,
                            bint stream=False) noexcept nogil:
    """Losses and gradients of rows r0 .. r1 - 1.

    Row i of c logits lies (i - first) * stride bytes after x0, its gradient (i - first) *
    grad_stride bytes after grad0 (which may be x0, with the same stride: in place).
    stream: write the gradient with non-temporal stores (grad0 apart from x0, not read soon).
    """
    cdef Py_ssize_t i, k, g0, nrows, bad, kept_group
    cdef bint plain
    cdef intp_t t
    cdef const floating *row
    cdef floating *grow
    cdef xent_lse_state st
    cdef xent_lse_state group[SMALL_GROUP]
    cdef double log_sums[SMALL_GROUP]
    cdef double losses[SMALL_GROUP]
    cdef double weights[SMALL_GROUP]
    cdef xent_exact_batch loss_batch, weight_batch
    # as _index_block does, so that the losses are the same, bit for bit
    cdef bint small = (states == NULL and c <= XENT_SMALL_ROW
                       and stride % <Py_ssize_t>sizeof(floating) == 0)
    cdef double wt, x_t, g, loss, log_sum, e_shift, e_sum
    cdef double e_shifts[SMALL_GROUP]
    cdef double e_sums[SMALL_GROUP]
    cdef Py_ssize_t kept = 0   # as _index_block
    # a group's gradient entries in vector lanes (_group_grad): rows of up to 16 (longer ones
    # fill the per-row kernel's vectors, and the lanes would add two transposes: 1.06-1.2x
    # its time at 64, 0.80-0.83x at 10, 0.92-0.95x at 2), without class weights (the per-row
    # kernel's form differs with them). Also where the gradient would stream (over
    # STREAM_BYTES, apart from x): rows this short are rarely 64-byte aligned, so the
    # streaming kernel wrote most of them plainly anyway, a call a row (1M x 10 float64:
    # 0.3 s, 0.07-0.11 s in lanes)
    cdef bint lanes = (small and c <= 16 and weight == NULL
                       and grad_stride % <Py_ssize_t>sizeof(floating) == 0)
    xent_exact_init(loss_out)
    xent_exact_init(weight_out)
    xent_exact_batch_init(&loss_batch)
    xent_exact_batch_init(&weight_batch)
    g0 = r0
    while g0 < r1:
        nrows = min(SMALL_GROUP, r1 - g0)
        if small:
            # the group's losses by the kernel _index_block uses (the same bits), read whole
            # before any of its rows' gradients may overwrite them (grad is x)
            plain = smoothing == 0
            kept_group = _group_loss(
                <const floating *>(<const char *>x0 + (g0 - first) * stride),
                stride // <Py_ssize_t>sizeof(floating), nrows, c, &target[g0], ignore_index,
                weight, 1.0 - smoothing, group, log_sums, losses, weights,
                row_loss + g0 if row_loss != NULL and plain else NULL, &bad,
                loss_out if plain else NULL, &loss_batch,
                weight_out if plain and weight != NULL else NULL, &weight_batch)
            if not plain:
                _add_smoothing(x0, stride, first, c, target, weight, ignore_index, smoothing,
                               group, log_sums, losses, row_loss, g0, nrows)
                xent_exact_batch_add(loss_out, &loss_batch, losses, <int>nrows)
                if weight != NULL:
                    xent_exact_batch_add(weight_out, &weight_batch, weights, <int>nrows)
            if weight == NULL:
                kept += kept_group
        if lanes and _group_grad(x0, stride, c, first, target, ignore_index, smoothing,
                                 weight_total, scale, grad_rows, group, log_sums, grad0,
                                 grad_stride, g0, nrows):
            g0 += SMALL_GROUP
            continue
        if floating is double and small:
            kern.xent_k.rows_softmax_exponent_f64(group, log_sums, nrows, e_shifts, e_sums)
        for i in range(g0, g0 + nrows):
            t = target[i]
            grow = <floating *>(<char *>grad0 + (i - first) * grad_stride)
            if t == ignore_index or t < 0 or t >= c:   # out of range: raised by the caller
                for k in range(c):
                    grow[k] = 0
                if row_loss != NULL:
                    row_loss[i] = 0
                continue
            row = <const floating *>(<const char *>x0 + (i - first) * stride)
            wt = weight[t] if weight != NULL else 1.0
            x_t = row[t]   # read before the gradient may overwrite the row (grad is x)
            if small:
                st = group[i - g0]
                log_sum = log_sums[i - g0]
            else:
                st = states[i] if states != NULL else _row_lse(row, c)
                log_sum = xent_lse_log_sum(&st)
                loss = 0
                if smoothing != 1:
                    loss = (1.0 - smoothing) * wt * ((st.shift - x_t) + log_sum)
                if smoothing != 0:
                    loss += smoothing / c * _row_nll_sum(row, c, weight, st)
                if row_loss != NULL:
                    row_loss[i] = <floating>loss
                xent_exact_add(loss_out, loss)
                if weight != NULL:
                    xent_exact_add(weight_out, wt)
                else:
                    kept += 1
            # d loss / d x_k = g ((1-eps) w_t (p_k - [k = t]) + eps/C (W p_k - w_k))
            g = scale * _row_g(grad_rows, i)
            e_shift, e_sum = st.shift, log_sum
            if floating is double:   # the entries' exponent to below their ulp
                if small:   # the group's, in vector lanes (computed below)
                    e_shift, e_sum = e_shifts[i - g0], e_sums[i - g0]
                else:
                    xent_lse_softmax_exponent(&st, log_sum, &e_shift, &e_sum)
            if stream:
                kern.row_softmax_grad_stream(
                    row, c, e_shift, e_sum,
                    g * ((1.0 - smoothing) * wt + smoothing / c * weight_total), weight,
                    g * smoothing / c, grow)
            else:
                kern.row_softmax_grad(
                    row, c, e_shift, e_sum,
                    g * ((1.0 - smoothing) * wt + smoothing / c * weight_total), weight,
                    g * smoothing / c, grow)
            grow[t] = <floating>_target_grad(g, wt, smoothing, c, weight_total, x_t, st.shift,
                                             log_sum)
        g0 += SMALL_GROUP
    xent_exact_batch_flush(loss_out, &loss_batch)
    xent_exact_batch_flush(weight_out, &weight_batch)
    xent_exact_add(weight_out, <double>kept)


def index_loss_grad(const floating[:, :] x, const intp_t[::1] target, const double[::1] weight,
                    intp_t ignore_index, double smoothing, double scale,
                    const double[::1] grad_rows, floating[::1] row_loss, floating[:, :] grad,
                    int nthreads, bint stream=False):
    """Cross-entropy with class indices and its gradient with respect to the logits.

    grad (N, C) may be x itself. Row i's gradient is scaled by scale * grad_rows[i]
    (grad_rows None: 1). Labels must have been checked (index_weight_total). Returns
    (sum of row losses, sum of the weights of the non-ignored rows). stream: write grad with
    non-temporal stores (only where grad is apart from x and will not be read soon).
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef _Partials part = _Partials(nblocks, True)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef floating *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    cdef double weight_total = _weight_total(weight, c)
    if n == 0:
        return 0.0, 0.0
    cdef xent_lse_state *states = _split_lse(x, nthreads) if _split_rows(c) else NULL
    try:
        with nogil:
            for b in prange(nblocks, schedule="dynamic",
                            num_threads=_threads_for(nthreads, nblocks)):
                _index_grad_block(_row(x, 0), x.strides[0], c, 0, target, w, weight_total,
                                  ignore_index, smoothing, scale, grad_rows, states, out,
                                  _out_row(grad, 0), grad.strides[0], b * rows,
                                  min(n, (b + 1) * rows), &part.exact_loss[b],
                                  &part.exact_weight[b], stream)
    finally:
        free(states)
    loss, weight_sum, _ = part.combine()
    return loss, weight_sum


cdef void _prob_grad_block(const floating[:, :] x, const floating[:, :] p, const double *weight,
                           double smoothing, double scale, const double[::1] grad_rows,
                           floating *row_loss, floating[:, :] grad, Py_ssize_t r0,
                           Py_ssize_t r1, xent_exact_sum *loss_out) noexcept nogil:
    cdef Py_ssize_t i, c = x.shape[1]
    cdef const floating *row
    cdef const floating *prow
    cdef xent_lse_state st
    cdef double loss, mass, g, e_shift, e_sum
    xent_exact_init(loss_out)
    for i in range(r0, r1):
        row = _row(x, i)
        prow = _row(p, i)
        st = _row_lse(row, c)
        loss = _row_nll_dot(row, prow, c, weight, 1.0 - smoothing, smoothing / c, st, &mass)
        if row_loss != NULL:
            row_loss[i] = <floating>loss
        xent_exact_add(loss_out, loss)
        # d loss / d x_k = g (sum_j w_j q_j p_k - w_k q_k)
        g = scale * _row_g(grad_rows, i)
        e_shift, e_sum = st.shift, xent_lse_log_sum(&st)
        if floating is double:   # the entries' exponent to below their ulp
            xent_lse_softmax_exponent(&st, e_sum, &e_shift, &e_sum)
        kern.row_softmax_grad_prob(row, prow, c, e_shift, e_sum, g * mass,
                                   g, 1.0 - smoothing, smoothing / c, weight,
                                   _out_row(grad, i))


def probability_loss_grad(const floating[:, :] x, const floating[:, :] p,
                          const double[::1] weight, double smoothing, double scale,
                          const double[::1] grad_rows, floating[::1] row_loss,
                          floating[:, :] grad, int nthreads):
    """Cross-entropy with probability targets and its gradient; grad may be x (never p)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], b
    cdef Py_ssize_t rows = _block_rows(c), nblocks = (n + rows - 1) // rows
    cdef _Partials part = _Partials(nblocks, True)
    cdef const double *w = &weight[0] if weight is not None else NULL
    cdef floating *out = &row_loss[0] if row_loss is not None and n > 0 else NULL
    if n == 0:
        return 0.0
    with nogil:
        for b in prange(nblocks, schedule="dynamic",
                        num_threads=_threads_for(nthreads, nblocks)):
            _prob_grad_block(x, p, w, smoothing, scale, grad_rows, out, grad, b * rows,
                             min(n, (b + 1) * rows), &part.exact_loss[b])
    return part.combine()[0]


def exact_sum(const double[::1] values, bint parts=False, bint batched=False):
    """The exact sum of values rounded once to a double, by the kernels' superaccumulator
    (xent/src/xent_exactsum.h): what the reductions of the losses use. With parts, the
    unrounded sum as an array of the few doubles whose exact sum it is (xent_exact_parts).
    batched: through xent_exact_batch_add, 16 values at a time, as the row kernels add."""
    cdef xent_exact_sum acc
    cdef xent_exact_batch batch
    cdef Py_ssize_t i, n = values.shape[0]
    xent_exact_init(&acc)
    if batched:
        xent_exact_batch_init(&batch)
        for i in range(0, n, 16):
            xent_exact_batch_add(&acc, &batch, &values[i], <int>min(16, n - i))
        xent_exact_batch_flush(&acc, &batch)
    else:
        for i in range(n):
            xent_exact_add(&acc, values[i])
    return _parts(&acc) if parts else xent_exact_round(&acc)


def log_lanes_array(const double[::1] x, bint plus_one, double[::1] out):
    """out = log(x) (plus_one: log1p(x)) by the vectorised double log the short rows' losses
    use (xent_log_lanes in xent/src/xent_math.h), for its accuracy test."""
    if x.shape[0]:
        with nogil:
            kern.xent_k.log_lanes_array_f64(&x[0], x.shape[0], plus_one, &out[0])
