// layer_norm and its fused gradient. Shapes: x [..., N] with the last
// n_normalized dims flattened into N; rows = numel / N; weight, bias [N]
// (the normalized shape); mean, rstd [..., 1] (x's shape with the normalized
// dims set to 1, as torch.native_layer_norm). One fused two-pass kernel per
// row, parallel over rows; statistics accumulate in double.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.layer_norm.html
#include <math.h>
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/reduce.h"

static const nsci_param_desc layer_norm_desc[] = {
    { "n_normalized", NSCI_PARAM_INT, offsetof(layer_norm_params, n_normalized), 0 },
    { "eps", NSCI_PARAM_F64, offsetof(layer_norm_params, eps), 0 },
    { "has_weight", NSCI_PARAM_BOOL, offsetof(layer_norm_params, has_weight), 0 },
    { "has_bias", NSCI_PARAM_BOOL, offsetof(layer_norm_params, has_bias), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// --- shared checks ---

static bool same_shape(int ndim, const int64_t *shape, const nsc_tensor *t) {
    return t->ndim == ndim && (ndim == 0 || !memcmp(t->shape, shape, (size_t)ndim * 8));
}

// The statistics' shape: x's with the last n dims set to 1.
static void stats_shape(const nsc_tensor *x, int n, int64_t *shape) {
    for (int d = 0; d < x->ndim; d++) {
        shape[d] = d < x->ndim - n ? x->shape[d] : 1;
    }
}

// x is float and has the normalized dims; t (weight, bias, ...) has dtype
// and the given shape. what names t in the message.
static nsc_status check_x(nsci_call *c, const nsc_tensor *x, int n) {
    if (!nsci_is_float((nsc_dtype)x->dtype)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "input dtype %s: expected f32 or f64",
                              nsc_dtype_name((nsc_dtype)x->dtype));
    }
    if (n < 1 || n > x->ndim) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "%d normalized dims of a rank-%d input: "
                              "expected 1..%d",
                              n, x->ndim, x->ndim);
    }
    return NSC_OK;
}

static nsc_status check_like(nsci_call *c, const nsc_tensor *t, const char *what,
                             const nsc_tensor *x, int ndim, const int64_t *shape) {
    char want[160], have[160];
    if (!same_shape(ndim, shape, t)) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "%s has shape %s: expected %s", what,
                              nsci_shape_str(have, sizeof have, t->ndim, t->shape),
                              nsci_shape_str(want, sizeof want, ndim, shape));
    }
    if (t->dtype != x->dtype) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "%s has dtype %s: expected %s as the input", what,
                              nsc_dtype_name((nsc_dtype)t->dtype),
                              nsc_dtype_name((nsc_dtype)x->dtype));
    }
    return NSC_OK;
}

// Contiguous copies (or new references) of the first n inputs.
static nsc_status contiguous_inputs(nsci_call *c, int n, nsc_tensor **out) {
    for (int i = 0; i < n; i++) {
        nsc_tensor *t = c->in[i];
        out[i] = nsci_is_contiguous(t) ? nsc_retain(t) : nsci_cpu_convert(t, (nsc_dtype)t->dtype);
        if (!out[i]) {
            for (int k = 0; k < i; k++) {
                nsc_free(out[k]);
            }
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

// --- layer_norm ---
// mean = sum(x) / N, var = sum((x - mean)^2) / N (biased), rstd = 1 /
// sqrt(var + eps), y = (x - mean) * rstd * weight + bias. Outputs y, mean,
// rstd (mean and rstd are kept for the backward rule; nsc_layer_norm returns
// y). Backward: layer_norm_backward below. Saves x, weight, mean, rstd.

typedef struct norm_job {
    const char *x, *w, *b, *g; // g: grad_y (backward)
    char *y, *mean, *rstd;     // backward: y is grad_x, mean/rstd are inputs
    double eps;
    int64_t n, rows, rows_per_block;
    double *partial; // backward: per block, grad_weight then grad_bias sums [2, N]
} norm_job;

// y[q] = EXPR for q in [i, n): blocks of 8 so GCC vectorizes at -O2 (the
// pointers in EXPR are restrict).
#define MAP8(i, n, EXPR)                                                                           \
    for (; (i) + 8 <= (n); (i) += 8) {                                                             \
        for (int64_t q = (i); q < (i) + 8; q++) {                                                  \
            EXPR;                                                                                  \
        }                                                                                          \
    }                                                                                              \
    for (int64_t q = (i); q < (n); q++) {                                                          \
        EXPR;                                                                                      \
    }

static inline double sum8(const double *part) {
    return ((part[0] + part[4]) + (part[1] + part[5])) +
           ((part[2] + part[6]) + (part[3] + part[7]));
}

// Mean and sum of squared deviations of x[0..n), n > 0: two passes in
// double with 8 partial sums.
#define ROW_MOMENTS(NAME, T)                                                                       \
    static void NAME(const T *restrict x, int64_t n, double *mean, double *m2) {                   \
        double part[8] = { 0 }, sq[8] = { 0 };                                                     \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) {                                                               \
            for (int k = 0; k < 8; k++) {                                                          \
                part[k] += (double)x[i + k];                                                       \
            }                                                                                      \
        }                                                                                          \
        for (; i < n; i++) {                                                                       \
            part[0] += (double)x[i];                                                               \
        }                                                                                          \
        double mu = sum8(part) / (double)n;                                                        \
        for (i = 0; i + 8 <= n; i += 8) {                                                          \
            for (int k = 0; k < 8; k++) {                                                          \
                double d = (double)x[i + k] - mu;                                                  \
                sq[k] += d * d;                                                                    \
            }                                                                                      \
        }                                                                                          \
        for (; i < n; i++) {                                                                       \
            double d = (double)x[i] - mu;                                                          \
            sq[0] += d * d;                                                                        \
        }                                                                                          \
        *mean = mu;                                                                                \
        *m2 = sum8(sq);                                                                            \
    }

// y = (x - m) * rs * w + b (w, b may be NULL); GPT-2's case (both) is fused.
#define NORM_ROW(NAME, T)                                                                          \
    static void NAME(const T *restrict x, T *restrict y, const T *restrict w, const T *restrict b, \
                     int64_t n, T m, T rs) {                                                       \
        int64_t i = 0;                                                                             \
        if (w && b) {                                                                              \
            MAP8(i, n, y[q] = (x[q] - m) * rs * w[q] + b[q])                                       \
            return;                                                                                \
        }                                                                                          \
        MAP8(i, n, y[q] = (x[q] - m) * rs)                                                         \
        i = 0;                                                                                     \
        if (w) {                                                                                   \
            MAP8(i, n, y[q] *= w[q])                                                               \
        }                                                                                          \
        i = 0;                                                                                     \
        if (b) {                                                                                   \
            MAP8(i, n, y[q] += b[q])                                                               \
        }                                                                                          \
    }

#define LN_ROWS(SFX, T)                                                                            \
    ROW_MOMENTS(row_moments_##SFX, T)                                                              \
    NORM_ROW(norm_row_##SFX, T)                                                                    \
    static void ln_rows_##SFX(void *ctx, int64_t begin, int64_t end) {                             \
        const norm_job *j = ctx;                                                                   \
        int64_t n = j->n;                                                                          \
        for (int64_t r = begin; r < end; r++) {                                                    \
            const T *x = (const T *)j->x + r * n;                                                  \
            double mean = 0.0, m2 = NAN; /* torch: an empty row has mean 0, rstd NaN */            \
            if (n > 0) {                                                                           \
                row_moments_##SFX(x, n, &mean, &m2);                                               \
            }                                                                                      \
            double rstd = 1.0 / sqrt(m2 / (double)NSCI_MAX(n, 1) + j->eps);                        \
            ((T *)j->mean)[r] = (T)mean;                                                           \
            ((T *)j->rstd)[r] = (T)rstd;                                                           \
            norm_row_##SFX(x, (T *)j->y + r * n, (const T *)j->w, (const T *)j->b, n, (T)mean,     \
                           (T)rstd);                                                               \
        }                                                                                          \
    }

LN_ROWS(f32, float)
LN_ROWS(f64, double)

static nsc_status layer_norm_infer(nsci_call *c) {
    const layer_norm_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int n = p->n_normalized;
    if (c->n_in != 1 + p->has_weight + p->has_bias) {
        return nsci_call_fail(c, NSC_ERR_ARG, "%d inputs for has_weight %d, has_bias %d", c->n_in,
                              p->has_weight, p->has_bias);
    }
    if (check_x(c, x, n) != NSC_OK) {
        return nsc_last_status();
    }
    const int64_t *norm_shape = x->shape + x->ndim - n;
    for (int i = 1; i < c->n_in; i++) {
        const char *what = (i == 1 && p->has_weight) ? "weight" : "bias";
        if (check_like(c, c->in[i], what, x, n, norm_shape) != NSC_OK) {
            return nsc_last_status();
        }
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    for (int k = 1; k < 3; k++) {
        c->meta[k].dtype = (nsc_dtype)x->dtype;
        c->meta[k].ndim = x->ndim;
        stats_shape(x, n, c->meta[k].shape);
    }
    return NSC_OK;
}

static nsc_status layer_norm_cpu(nsci_call *c) {
    const layer_norm_params *p = c->params;
    nsc_tensor *in[3] = { NULL, NULL, NULL };
    if (contiguous_inputs(c, c->n_in, in) != NSC_OK) {
        return nsc_last_status();
    }
    const nsc_tensor *x = in[0];
    norm_job j = { .x = nsci_data_ptr(x), .eps = p->eps };
    j.w = p->has_weight ? nsci_data_ptr(in[1]) : NULL;
    j.b = p->has_bias ? nsci_data_ptr(in[1 + p->has_weight]) : NULL;
    j.y = nsci_data_ptr(c->out[0]);
    j.mean = nsci_data_ptr(c->out[1]);
    j.rstd = nsci_data_ptr(c->out[2]);
    j.n = nsci_numel(p->n_normalized, x->shape + x->ndim - p->n_normalized);
    j.rows = nsci_numel(x->ndim - p->n_normalized, x->shape);
    nsci_parallel_for(j.rows, NSCI_MAX(1, NSCI_GRAIN / NSCI_MAX(j.n, 1)),
                      x->dtype == NSC_F32 ? ln_rows_f32 : ln_rows_f64, &j);
    for (int i = 0; i < c->n_in; i++) {
        nsc_free(in[i]);
    }
    return NSC_OK;
}

static nsc_status layer_norm_backward_rule(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                           nsc_tensor **grad_in) {
    const layer_norm_params *p = g->params;
    nsc_tensor *w = p->has_weight ? g->in[1] : NULL;
    nsc_tensor *grads[3] = { NULL, NULL, NULL };
    // mean and rstd are internal outputs: gradients flowing into them are ignored.
    if (nsci_layer_norm_backward(grad_out[0], g->in[0], g->out[1], g->out[2], w, p->n_normalized,
                                 grads) != NSC_OK) {
        return nsc_last_status();
    }
    int slot[3] = { 0, p->has_weight ? 1 : -1, p->has_bias ? 1 + p->has_weight : -1 };
    for (int k = 0; k < 3; k++) {
        if (slot[k] >= 0 && g->needs_grad[slot[k]]) {
            grad_in[slot[k]] = grads[k];
        } else {
            nsc_free(grads[k]);
        }
    }
    return NSC_OK;
}

const nsci_op_def nsci_op_layer_norm = {
    .name = "layer_norm",
    .arity = -1,
    .n_outputs = 3,
    .params_size = sizeof(layer_norm_params),
    .params = layer_norm_desc,
    .infer = layer_norm_infer,
    .cpu = layer_norm_cpu,
    .backward = layer_norm_backward_rule,
    .save_inputs = 3,
    .save_outputs = 6,
    .nondiff_outputs = 6,
    .exempt = { [NSCI_CASE_RANK0] = "normalizes at least one dim: a 0-dim input is an error "
                                    "(tests/test_op_reduce.c)" },
};

// Packs x, weight and bias (either may be NULL: absent) and runs the row.
static nsc_status run_layer_norm(nsc_tensor *x, int n_normalized, nsc_tensor *weight,
                                 nsc_tensor *bias, double eps, nsc_tensor **out) {
    layer_norm_params p = { .n_normalized = n_normalized,
                            .eps = eps,
                            .has_weight = weight != NULL,
                            .has_bias = bias != NULL };
    nsc_tensor *in[3] = { x, NULL, NULL };
    int n_in = 1;
    if (weight) {
        in[n_in++] = weight;
    }
    if (bias) {
        in[n_in++] = bias;
    }
    return nsci_run_multi(NSC_OP_layer_norm, n_in, in, &p, out);
}

nsc_status nsci_layer_norm_full(nsc_tensor *x, int n_normalized, nsc_tensor *weight,
                                nsc_tensor *bias, double eps, nsc_tensor **out) {
    return run_layer_norm(x, n_normalized, weight, bias, eps, out);
}

nsc_tensor *nsc_layer_norm(nsc_tensor *x, int n_normalized, nsc_tensor *weight, nsc_tensor *bias,
                           double eps) {
    nsc_tensor *out[3] = { NULL, NULL, NULL };
    if (run_layer_norm(x, n_normalized, weight, bias, eps, out) != NSC_OK) {
        return NULL;
    }
    nsc_free(out[1]);
    nsc_free(out[2]);
    return out[0];
}

// --- layer_norm_backward ---
// Inputs grad_y, x, mean, rstd (the forward's), and weight if present.
// With dyw = grad_y * weight, ds = sum(dyw * x), db = sum(dyw) per row:
// grad_x = rstd * dyw + b * x + c with b = (db * mean - ds) * rstd^3 / N and
// c = -b * mean - db * rstd / N (the standard formula written in x, so it
// needs no xhat buffer); grad_weight = sum over rows of grad_y * (x - mean) *
// rstd; grad_bias = sum over rows of grad_y (aten::native_layer_norm_backward).
// Rows go in fixed blocks whose partial column sums are added in block order:
// the result does not depend on the thread count.

enum {
    MAX_BLOCKS = 64
};

// One row: dx, and the row's terms added to the column sums gw, gb.
#define LN_GRAD_ROW(NAME, T)                                                                       \
    static void NAME(const T *restrict x, const T *restrict dy, const T *restrict w,               \
                     T *restrict dx, double *restrict gw, double *restrict gb, int64_t n,          \
                     double mean, double rstd) {                                                   \
        double ps[8] = { 0 }, pb[8] = { 0 };                                                       \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) {                                                               \
            for (int k = 0; k < 8; k++) {                                                          \
                int64_t q = i + k;                                                                 \
                double g = (double)dy[q], dyw = g * (double)w[q];                                  \
                ps[k] += dyw * (double)x[q];                                                       \
                pb[k] += dyw;                                                                      \
                gw[q] += g * (((double)x[q] - mean) * rstd);                                       \
                gb[q] += g;                                                                        \
            }                                                                                      \
        }                                                                                          \
        for (int64_t q = i; q < n; q++) {                                                          \
            double g = (double)dy[q], dyw = g * (double)w[q];                                      \
            ps[0] += dyw * (double)x[q];                                                           \
            pb[0] += dyw;                                                                          \
            gw[q] += g * (((double)x[q] - mean) * rstd);                                           \
            gb[q] += g;                                                                            \
        }                                                                                          \
        double ds = sum8(ps), db = sum8(pb);                                                       \
        double cb = (db * mean - ds) * rstd * rstd * rstd / (double)n;                             \
        double cc = -cb * mean - db * rstd / (double)n;                                            \
        T a = (T)rstd, tb = (T)cb, tc = (T)cc;                                                     \
        i = 0;                                                                                     \
        MAP8(i, n, dx[q] = a * dy[q] * w[q] + tb * x[q] + tc)                                      \
    }

#define LN_GRAD_ROWS(SFX, T)                                                                       \
    LN_GRAD_ROW(ln_grad_row_##SFX, T)                                                              \
    static void ln_grad_blocks_##SFX(void *ctx, int64_t begin, int64_t end) {                      \
        const norm_job *j = ctx;                                                                   \
        int64_t n = j->n;                                                                          \
        for (int64_t blk = begin; blk < end; blk++) {                                              \
            double *gw = j->partial + blk * 2 * n, *gb = gw + n;                                   \
            memset(gw, 0, (size_t)(2 * n) * sizeof(double));                                       \
            int64_t last = NSCI_MIN(j->rows, (blk + 1) * j->rows_per_block);                       \
            for (int64_t r = blk * j->rows_per_block; r < last; r++) {                             \
                ln_grad_row_##SFX((const T *)j->x + r * n, (const T *)j->g + r * n,                \
                                  (const T *)j->w, (T *)j->y + r * n, gw, gb, n,                   \
                                  (double)((const T *)j->mean)[r],                                 \
                                  (double)((const T *)j->rstd)[r]);                                \
            }                                                                                      \
        }                                                                                          \
    }

LN_GRAD_ROWS(f32, float)
LN_GRAD_ROWS(f64, double)

static nsc_status layer_norm_grad_infer(nsci_call *c) {
    const layer_norm_params *p = c->params;
    const nsc_tensor *x = c->in[1];
    int n = p->n_normalized;
    if (c->n_in != 4 + p->has_weight) {
        return nsci_call_fail(c, NSC_ERR_ARG, "%d inputs for has_weight %d", c->n_in,
                              p->has_weight);
    }
    if (check_x(c, x, n) != NSC_OK ||
        check_like(c, c->in[0], "grad_y", x, x->ndim, x->shape) != NSC_OK) {
        return nsc_last_status();
    }
    int64_t stats[NSC_MAX_DIMS];
    stats_shape(x, n, stats);
    const int64_t *norm_shape = x->shape + x->ndim - n;
    if (check_like(c, c->in[2], "mean", x, x->ndim, stats) != NSC_OK ||
        check_like(c, c->in[3], "rstd", x, x->ndim, stats) != NSC_OK ||
        (p->has_weight && check_like(c, c->in[4], "weight", x, n, norm_shape) != NSC_OK)) {
        return nsc_last_status();
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    for (int k = 1; k < 3; k++) {
        c->meta[k].dtype = (nsc_dtype)x->dtype;
        c->meta[k].ndim = n;
        memcpy(c->meta[k].shape, norm_shape, (size_t)n * sizeof(int64_t));
    }
    return NSC_OK;
}

// Adds the blocks' column sums in block order into grad_weight, grad_bias.
static void store_column_sums(const norm_job *j, int64_t n_blocks, nsc_tensor *gw, nsc_tensor *gb) {
    bool f32 = gw->dtype == NSC_F32;
    for (int k = 0; k < 2; k++) {
        char *dst = nsci_data_ptr(k == 0 ? gw : gb);
        for (int64_t i = 0; i < j->n; i++) {
            double s = 0.0;
            for (int64_t blk = 0; blk < n_blocks; blk++) {
                s += j->partial[blk * 2 * j->n + k * j->n + i];
            }
            if (f32) {
                ((float *)dst)[i] = (float)s;
            } else {
                ((double *)dst)[i] = s;
            }
        }
    }
}

// n ones of dtype, standing in for an absent weight (so the rows need no branch).
static void *ones_buffer(nsc_dtype dtype, int64_t n) {
    size_t elem = nsc_dtype_size(dtype);
    char *ones = nsci_malloc((size_t)NSCI_MAX(n, 1) * elem);
    for (int64_t i = 0; ones && i < n; i++) {
        nsci_store(ones + (size_t)i * elem, dtype, 1.0);
    }
    return ones;
}

static nsc_status layer_norm_grad_cpu(nsci_call *c) {
    const layer_norm_params *p = c->params;
    nsc_tensor *in[5] = { NULL, NULL, NULL, NULL, NULL };
    if (contiguous_inputs(c, c->n_in, in) != NSC_OK) {
        return nsc_last_status();
    }
    const nsc_tensor *x = in[1];
    norm_job j = { .g = nsci_data_ptr(in[0]), .x = nsci_data_ptr(x) };
    j.mean = nsci_data_ptr(in[2]);
    j.rstd = nsci_data_ptr(in[3]);
    j.y = nsci_data_ptr(c->out[0]);
    j.n = nsci_numel(p->n_normalized, x->shape + x->ndim - p->n_normalized);
    j.rows = nsci_numel(x->ndim - p->n_normalized, x->shape);
    j.rows_per_block =
        NSCI_MAX((j.rows + MAX_BLOCKS - 1) / MAX_BLOCKS, NSCI_GRAIN / NSCI_MAX(j.n, 1));
    j.rows_per_block = NSCI_MAX(j.rows_per_block, 1);
    int64_t n_blocks = (j.rows + j.rows_per_block - 1) / j.rows_per_block;
    void *ones = p->has_weight ? NULL : ones_buffer((nsc_dtype)x->dtype, j.n);
    j.w = p->has_weight ? nsci_data_ptr(in[4]) : ones;
    j.partial = nsci_malloc((size_t)NSCI_MAX(n_blocks * 2 * j.n, 1) * sizeof(double));
    nsc_status status = (j.partial && j.w) ? NSC_OK : nsc_last_status();
    if (status == NSC_OK) {
        nsci_parallel_for(n_blocks, 1,
                          x->dtype == NSC_F32 ? ln_grad_blocks_f32 : ln_grad_blocks_f64, &j);
        store_column_sums(&j, n_blocks, c->out[1], c->out[2]);
    }
    nsci_free(j.partial);
    nsci_free(ones);
    for (int i = 0; i < c->n_in; i++) {
        nsc_free(in[i]);
    }
    return status;
}

const nsci_op_def nsci_op_layer_norm_backward = {
    .name = "layer_norm_backward",
    .arity = -1,
    .n_outputs = 3,
    .params_size = sizeof(layer_norm_params),
    .params = layer_norm_desc,
    .infer = layer_norm_grad_infer,
    .cpu = layer_norm_grad_cpu,
    .no_grad = "a gradient kernel: double backward is not supported",
    .exempt = { [NSCI_CASE_RANK0] = "normalizes at least one dim: a 0-dim input is an error" },
};

nsc_status nsci_layer_norm_backward(nsc_tensor *grad_y, nsc_tensor *x, nsc_tensor *mean,
                                    nsc_tensor *rstd, nsc_tensor *weight, int n_normalized,
                                    nsc_tensor **out) {
    layer_norm_params p = { .n_normalized = n_normalized, .has_weight = weight != NULL };
    nsc_tensor *in[5] = { grad_y, x, mean, rstd, weight };
    return nsci_run_multi(NSC_OP_layer_norm_backward, weight ? 5 : 4, in, &p, out);
}
