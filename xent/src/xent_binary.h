/*
 * Elementwise functions: surprisal, binary entropy, binary cross-entropy (on probabilities
 * and on logits) with their gradients.
 * Part of one instantiation (see xent_instantiate.h).
 */

/* Entries outside [0, 1] (NaN included) among x[0..n): the Python layer names the first. */
static inline ptrdiff_t F(count_outside_unit)(const T *x, ptrdiff_t n)
{
    ptrdiff_t bad = 0;
#pragma omp simd reduction(+ : bad)
    for (ptrdiff_t i = 0; i < n; i++) bad += !(x[i] >= 0 && x[i] <= 1);
    return bad;
}

/* out = -scale log p (scale = 1 / log(base)); returns the count of p outside [0, 1]. */
static ptrdiff_t F(self_information_array)(const T *p, ptrdiff_t n, double scale, T *out)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) out[i] = (T)(-scale * (double)F(log)(p[i]));
    return F(count_outside_unit)(p, n);
}

/* out = scale (-p log p - (1 - p) log(1 - p)), 0 log 0 = 0; returns the count outside [0, 1]. */
static ptrdiff_t F(binary_entropy_array)(const T *p, ptrdiff_t n, double scale, T *out)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) {
        double a = (double)p[i] * (double)F(log)(p[i]);
        double b = (1.0 - (double)p[i]) * (double)F(log1p)(-p[i]);
        a = p[i] == 0 ? 0.0 : a;
        b = p[i] == 1 ? 0.0 : b;
        out[i] = (T)(-scale * (a + b) + 0.0);   /* + 0.0: 0 log 0 gives +0, not -0 */
    }
    return F(count_outside_unit)(p, n);
}

/*
 * Binary cross-entropy of probabilities x against targets y with elementwise weights w, as
 * PyTorch: -w (y max(log x, -100) + (1 - y) max(log1p(-x), -100)). Writes loss (unless NULL)
 * and, unless grad is NULL, grad = g w (x - y) / max(x (1 - x), eps) with g = scale * gout.
 * eps is PyTorch's: 1e-12 rounded to float, 9.999999960041972e-13, for any input dtype.
 * Returns the sum of the losses; *bad counts x or y outside [0, 1]. grad may be x.
 */
static double F(row_bce)(const T *x, const T *y, const T *w, ptrdiff_t n, T *loss, T *grad,
                         double scale, const T *gout, ptrdiff_t *bad)
{
    double total = 0;
    *bad = F(count_outside_unit)(x, n) + F(count_outside_unit)(y, n);
#pragma omp simd reduction(+ : total)
    for (ptrdiff_t i = 0; i < n; i++) {
        T log_x = F(log)(x[i]), log_1mx = F(log1p)(-x[i]);
        log_x = log_x < -100 ? (T)-100 : log_x;   /* also maps -inf to -100 */
        log_1mx = log_1mx < -100 ? (T)-100 : log_1mx;
        double l = -(double)w[i] * ((double)y[i] * log_x + (1.0 - (double)y[i]) * log_1mx);
        total += l;
        if (loss) loss[i] = (T)l;
    }
    if (grad) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            double xi = (double)x[i], d = xi * (1.0 - xi);
            d = d < XENT_BCE_EPSILON ? XENT_BCE_EPSILON : d;
            grad[i] = (T)(scale * (double)gout[i] * (double)w[i] * (xi - (double)y[i]) / d);
        }
    }
    return total;
}

/*
 * Binary cross-entropy of logits x, stable at any |x|: with L = 1 + (pw - 1) y,
 * w ((1 - y) x + L softplus(-x)). softplus(-x) = log1p(exp(-|x|)) + max(-x, 0), and the
 * linear parts are gathered first, (1 - y) x + L max(-x, 0) = x >= 0 ? (1 - y) x : -pw y x,
 * which never cancel: the loss is w (L log1p(exp(-|x|)) + that), so a confident logit's
 * small loss keeps its digits (x = -15, y = 0: 3.06e-7 in float, where adding
 * log1p(exp(-15)) to 15 first gave 0). x = -inf gives NaN, as PyTorch's form does. Writes loss (unless NULL) and, unless grad is NULL,
 * grad = g w (L sigmoid(x) - pw y) = g w ((1 - y) sigmoid(x) - pw y sigmoid(-x)), with
 * sigmoid(x) and sigmoid(-x) both from e = exp(-|x|) (1 / (1 + e) and e / (1 + e)), so
 * sigmoid(x) - 1 near x = 20 is -2.06e-9, not 1 - 1 = 0. Returns the sum; *bad counts y
 * outside [0, 1]. grad may be x.
 */
static double F(row_bce_logits)(const T *x, const T *y, const T *w, const T *pw, ptrdiff_t n,
                                T *loss, T *grad, double scale, const T *gout, ptrdiff_t *bad)
{
    double total = 0;
    *bad = F(count_outside_unit)(y, n);
#pragma omp simd reduction(+ : total)
    for (ptrdiff_t i = 0; i < n; i++) {
        T ax = x[i] < 0 ? -x[i] : x[i];
        double log_term = (double)F(log1p)(F(exp)(-ax));   /* log1p(exp(-|x|)) */
        double xi = (double)x[i], yi = (double)y[i], pwi = (double)pw[i];
        double big_l = 1.0 + (pwi - 1.0) * yi;
        double linear = xi >= 0 ? (1.0 - yi) * xi : -pwi * yi * xi;
        linear = xi == -INFINITY ? NAN : linear;   /* PyTorch's -inf + inf, whatever y */
        double l = (double)w[i] * (big_l * log_term + linear);
        total += l;
        if (loss) loss[i] = (T)l;
    }
    if (grad) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            T ax = x[i] < 0 ? -x[i] : x[i];
            T e = F(exp)(-ax);
            T sig_big = 1 / (1 + e), sig_small = e / (1 + e);   /* sigmoid(|x|), sigmoid(-|x|) */
            double sig = (double)(x[i] >= 0 ? sig_big : sig_small);
            double sig_neg = (double)(x[i] >= 0 ? sig_small : sig_big);   /* 1 - sig */
            double yi = (double)y[i];
            grad[i] = (T)(scale * (double)gout[i] * (double)w[i] *
                          ((1.0 - yi) * sig - (double)pw[i] * yi * sig_neg));
        }
    }
    return total;
}
