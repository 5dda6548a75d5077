// softmax and log_softmax along a dim, and their fused gradients: two passes
// (max and exp-sum, then scale) per row, parallel over rows; f32 rows are in
// op_reduce_vec.c. Shapes: x [outer, K, inner] around dim; a dim with
// inner > 1 runs on column tiles instead of rows; a non-contiguous x is
// copied first.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.softmax.html
#include <math.h>
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/reduce.h"

static const nsci_param_desc softmax_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(softmax_params, dim), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// --- f64 row kernels ---
// Loops run in blocks of 8 with 8 partial results, a shape GCC vectorizes
// at -O2 without reassociating floating point on its own.

// Largest of n >= 1 elements; a NaN need not win here: it turns the row's
// sum, and so every output, into NaN anyway.
#define ROW_MAX(NAME, T)                                                                           \
    static T NAME(const T *x, int64_t n) {                                                         \
        T part[8];                                                                                 \
        for (int k = 0; k < 8; k++) {                                                              \
            part[k] = x[0];                                                                        \
        }                                                                                          \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) {                                                               \
            for (int k = 0; k < 8; k++) {                                                          \
                part[k] = x[i + k] > part[k] ? x[i + k] : part[k];                                 \
            }                                                                                      \
        }                                                                                          \
        for (; i < n; i++) {                                                                       \
            part[0] = x[i] > part[0] ? x[i] : part[0];                                             \
        }                                                                                          \
        T m = part[0];                                                                             \
        for (int k = 1; k < 8; k++) {                                                              \
            m = part[k] > m ? part[k] : m;                                                         \
        }                                                                                          \
        return m;                                                                                  \
    }

// Sum of n elements in 8 partial sums (T accumulates, as torch's kernels).
#define ROW_SUM(NAME, T)                                                                           \
    static T NAME(const T *x, int64_t n) {                                                         \
        T part[8] = { 0 };                                                                         \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) {                                                               \
            for (int k = 0; k < 8; k++) {                                                          \
                part[k] += x[i + k];                                                               \
            }                                                                                      \
        }                                                                                          \
        T tail = 0;                                                                                \
        for (; i < n; i++) {                                                                       \
            tail += x[i];                                                                          \
        }                                                                                          \
        return ((part[0] + part[4]) + (part[1] + part[5])) +                                       \
               ((part[2] + part[6]) + (part[3] + part[7])) + tail;                                 \
    }

// softmax: y = exp(x - max) / sum; log_softmax: y = (x - max) - log(sum).
// The exponentials go through y, so each row is read twice and written once.
#define SOFTMAX_ROWS(SFX, T, EXP, LOG)                                                             \
    ROW_MAX(row_max_##SFX, T)                                                                      \
    ROW_SUM(row_sum_##SFX, T)                                                                      \
    static void softmax_rows_##SFX(void *ctx, int64_t begin, int64_t end) {                        \
        const nsci_softmax_job *j = ctx;                                                           \
        int64_t n = j->k;                                                                          \
        for (int64_t r = begin; r < end; r++) {                                                    \
            const T *x = (const T *)j->a + r * n;                                                  \
            T *y = (T *)j->out + r * n;                                                            \
            T max = row_max_##SFX(x, n);                                                           \
            for (int64_t i = 0; i < n; i++) {                                                      \
                y[i] = EXP(x[i] - max);                                                            \
            }                                                                                      \
            T sum = row_sum_##SFX(y, n);                                                           \
            if (j->log_form) {                                                                     \
                T lse = LOG(sum);                                                                  \
                for (int64_t i = 0; i < n; i++) {                                                  \
                    y[i] = (x[i] - max) - lse;                                                     \
                }                                                                                  \
            } else {                                                                               \
                T inv = (T)1 / sum;                                                                \
                for (int64_t i = 0; i < n; i++) {                                                  \
                    y[i] *= inv;                                                                   \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

// softmax_backward: gx = y * (g - sum(g * y)); log_softmax_backward:
// gx = g - exp(y) * sum(g). a = g, b = y.
#define SOFTMAX_GRAD_ROWS(SFX, T, EXP)                                                             \
    static void softmax_grad_rows_##SFX(void *ctx, int64_t begin, int64_t end) {                   \
        const nsci_softmax_job *j = ctx;                                                           \
        int64_t n = j->k;                                                                          \
        for (int64_t r = begin; r < end; r++) {                                                    \
            const T *g = (const T *)j->a + r * n, *y = (const T *)j->b + r * n;                    \
            T *gx = (T *)j->out + r * n;                                                           \
            if (j->log_form) {                                                                     \
                T sum = row_sum_##SFX(g, n);                                                       \
                for (int64_t i = 0; i < n; i++) {                                                  \
                    gx[i] = g[i] - EXP(y[i]) * sum;                                                \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            T part[8] = { 0 }, dot = 0;                                                            \
            int64_t i = 0;                                                                         \
            for (; i + 8 <= n; i += 8) {                                                           \
                for (int k = 0; k < 8; k++) {                                                      \
                    part[k] += g[i + k] * y[i + k];                                                \
                }                                                                                  \
            }                                                                                      \
            for (; i < n; i++) {                                                                   \
                dot += g[i] * y[i];                                                                \
            }                                                                                      \
            dot += ((part[0] + part[4]) + (part[1] + part[5])) +                                   \
                   ((part[2] + part[6]) + (part[3] + part[7]));                                    \
            for (i = 0; i < n; i++) {                                                              \
                gx[i] = y[i] * (g[i] - dot);                                                       \
            }                                                                                      \
        }                                                                                          \
    }

SOFTMAX_ROWS(f64, double, exp, log)
SOFTMAX_GRAD_ROWS(f64, double, exp)

// --- column kernels ---
// Along a dim with inner elements after it, on a contiguous [outer, K,
// inner] tensor: the same passes as the rows, over tiles of up to COLS
// columns, which are contiguous in memory (loops vectorize across them).

enum {
    COLS = 64
};

#define TILE_BEGIN(T, A, OUT)                                                                      \
    int64_t k = j->k, inner = j->inner;                                                            \
    int64_t c0 = (t % j->n_tiles) * COLS, w = NSCI_MIN((int64_t)COLS, inner - c0);                 \
    int64_t base = (t / j->n_tiles) * k * inner + c0;                                              \
    const T *x = (const T *)(A) + base;                                                            \
    T *y = (T *)(OUT) + base;

#define SOFTMAX_COLS(SFX, T, EXP, LOG)                                                             \
    static void softmax_cols_##SFX(void *ctx, int64_t begin, int64_t end) {                        \
        const nsci_softmax_job *j = ctx;                                                           \
        T max[COLS], sum[COLS];                                                                    \
        for (int64_t t = begin; t < end; t++) {                                                    \
            TILE_BEGIN(T, j->a, j->out)                                                            \
            for (int64_t c = 0; c < w; c++) {                                                      \
                max[c] = x[c];                                                                     \
                sum[c] = 0;                                                                        \
            }                                                                                      \
            for (int64_t r = 1; r < k; r++) {                                                      \
                for (int64_t c = 0; c < w; c++) {                                                  \
                    T v = x[r * inner + c];                                                        \
                    max[c] = v > max[c] ? v : max[c];                                              \
                }                                                                                  \
            }                                                                                      \
            for (int64_t r = 0; r < k; r++) {                                                      \
                for (int64_t c = 0; c < w; c++) {                                                  \
                    T e = EXP(x[r * inner + c] - max[c]);                                          \
                    sum[c] += e;                                                                   \
                    y[r * inner + c] = e;                                                          \
                }                                                                                  \
            }                                                                                      \
            for (int64_t c = 0; c < w; c++) {                                                      \
                sum[c] = j->log_form ? LOG(sum[c]) : (T)1 / sum[c];                                \
            }                                                                                      \
            for (int64_t r = 0; r < k; r++) {                                                      \
                for (int64_t c = 0; c < w; c++) {                                                  \
                    int64_t i = r * inner + c;                                                     \
                    y[i] = j->log_form ? (x[i] - max[c]) - sum[c] : y[i] * sum[c];                 \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

// a = g, b = y: softmax: gx = y * (g - sum(g * y)); log: gx = g - exp(y) * sum(g).
#define SOFTMAX_GRAD_COLS(SFX, T, EXP)                                                             \
    static void softmax_grad_cols_##SFX(void *ctx, int64_t begin, int64_t end) {                   \
        const nsci_softmax_job *j = ctx;                                                           \
        T sum[COLS];                                                                               \
        for (int64_t t = begin; t < end; t++) {                                                    \
            TILE_BEGIN(T, j->a, j->out)                                                            \
            const T *yv = (const T *)j->b + base;                                                  \
            for (int64_t c = 0; c < w; c++) {                                                      \
                sum[c] = 0;                                                                        \
            }                                                                                      \
            for (int64_t r = 0; r < k; r++) {                                                      \
                for (int64_t c = 0; c < w; c++) {                                                  \
                    int64_t i = r * inner + c;                                                     \
                    sum[c] += j->log_form ? x[i] : x[i] * yv[i];                                   \
                }                                                                                  \
            }                                                                                      \
            for (int64_t r = 0; r < k; r++) {                                                      \
                for (int64_t c = 0; c < w; c++) {                                                  \
                    int64_t i = r * inner + c;                                                     \
                    y[i] = j->log_form ? x[i] - EXP(yv[i]) * sum[c] : yv[i] * (x[i] - sum[c]);     \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

SOFTMAX_COLS(f32, float, expf, logf)
SOFTMAX_COLS(f64, double, exp, log)
SOFTMAX_GRAD_COLS(f32, float, expf)
SOFTMAX_GRAD_COLS(f64, double, exp)

// --- layout ---

typedef struct softmax_kernels {
    nsci_range_fn rows, cols;
} softmax_kernels;

static const softmax_kernels forward_kernels[2] = {
    { nsci_softmax_rows_f32, softmax_cols_f32 },
    { softmax_rows_f64, softmax_cols_f64 },
};
static const softmax_kernels grad_kernels[2] = {
    { nsci_softmax_grad_rows_f32, softmax_grad_cols_f32 },
    { softmax_grad_rows_f64, softmax_grad_cols_f64 },
};

// Runs k over n_in inputs (contiguous copies when they are not) into the
// fresh contiguous out: rows when dim is innermost, else column tiles.
static nsc_status run_softmax(nsc_tensor *out, int n_in, nsc_tensor *const *in, int dim,
                              bool log_form, const softmax_kernels *k) {
    int64_t numel = nsci_numel(out->ndim, out->shape);
    nsc_tensor *dense[2] = { NULL, NULL };
    for (int i = 0; i < n_in && numel > 0; i++) {
        dense[i] = nsci_is_contiguous(in[i]) ? nsc_retain(in[i])
                                             : nsci_cpu_convert(in[i], (nsc_dtype)in[i]->dtype);
        if (!dense[i]) {
            nsc_free(dense[0]);
            return nsc_last_status();
        }
    }
    if (numel == 0) {
        return NSC_OK;
    }
    nsci_softmax_job j = {
        .a = nsci_data_ptr(dense[0]), .out = nsci_data_ptr(out), .log_form = log_form, .inner = 1
    };
    j.b = n_in > 1 ? nsci_data_ptr(dense[1]) : NULL;
    j.k = out->ndim ? out->shape[dim] : 1;
    for (int d = dim + 1; d < out->ndim; d++) {
        j.inner *= out->shape[d];
    }
    if (j.inner == 1) {
        nsci_parallel_for(numel / j.k, NSCI_MAX(1, NSCI_GRAIN / j.k), k->rows, &j);
    } else {
        j.n_tiles = (j.inner + COLS - 1) / COLS;
        int64_t n_tasks = numel / (j.k * j.inner) * j.n_tiles;
        nsci_parallel_for(n_tasks, NSCI_MAX(1, NSCI_GRAIN / (j.k * COLS)), k->cols, &j);
    }
    nsc_free(dense[0]);
    nsc_free(dense[1]);
    return NSC_OK;
}

// --- softmax, log_softmax ---
// y = exp(x - max) / sum(exp(x - max)) along dim; log_softmax: (x - max) -
// log(sum). Float inputs only (as torch's kernels); a 0-dim x is one row of
// one. Backward: the fused rows below. Saves the output.

static nsc_status softmax_infer(nsci_call *c) {
    const softmax_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    if (!nsci_is_float((nsc_dtype)x->dtype)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE,
                              "input dtype %s: expected f32 or f64 (convert with to_dtype)",
                              nsc_dtype_name((nsc_dtype)x->dtype));
    }
    if (nsci_wrap_dim(p->dim, x->ndim) < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", p->dim,
                              x->ndim);
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    return NSC_OK;
}

static nsc_status softmax_cpu(nsci_call *c) {
    const softmax_params *p = c->params;
    nsc_tensor *x = c->in[0];
    bool f32 = x->dtype == NSC_F32;
    int dim = x->ndim ? nsci_wrap_dim(p->dim, x->ndim) : 0;
    return run_softmax(c->out[0], 1, c->in, dim, c->op == NSC_OP_log_softmax,
                       &forward_kernels[f32 ? 0 : 1]);
}

static nsc_status softmax_backward_rule(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                        nsc_tensor **grad_in) {
    int dim = ((const softmax_params *)g->params)->dim;
    grad_in[0] = g->def == &nsci_op_softmax
                     ? nsci_softmax_backward(grad_out[0], g->out[0], dim)
                     : nsci_log_softmax_backward(grad_out[0], g->out[0], dim);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

#define SOFTMAX_ROW(NAME)                                                                          \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = sizeof(softmax_params),                                                     \
        .params = softmax_desc,                                                                    \
        .infer = softmax_infer,                                                                    \
        .cpu = softmax_cpu,                                                                        \
        .backward = softmax_backward_rule,                                                         \
        .save_outputs = 1,                                                                         \
    };                                                                                             \
    nsc_tensor *nsc_##NAME(nsc_tensor *x, int dim) {                                               \
        softmax_params p = { dim };                                                                \
        return nsci_run(NSC_OP_##NAME, 1, &x, &p);                                                 \
    }

SOFTMAX_ROW(softmax)
SOFTMAX_ROW(log_softmax)

// --- softmax_backward, log_softmax_backward ---
// Inputs (grad_y, y) of one shape and float dtype, y the forward's output:
// softmax: gx = y * (grad_y - sum(grad_y * y, dim)); log_softmax:
// gx = grad_y - exp(y) * sum(grad_y, dim) (aten::_softmax_backward_data,
// _log_softmax_backward_data).

static nsc_status softmax_grad_infer(nsci_call *c) {
    const nsc_tensor *g = c->in[0], *y = c->in[1];
    if (g->ndim != y->ndim || memcmp(g->shape, y->shape, (size_t)g->ndim * sizeof(int64_t))) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "the gradient and the output differ in shape");
    }
    if (g->dtype != y->dtype) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "dtypes %s and %s: expected one float dtype",
                              nsc_dtype_name((nsc_dtype)g->dtype),
                              nsc_dtype_name((nsc_dtype)y->dtype));
    }
    return softmax_infer(c);
}

static nsc_status softmax_grad_cpu(nsci_call *c) {
    const softmax_params *p = c->params;
    bool f32 = c->in[0]->dtype == NSC_F32;
    int dim = c->in[0]->ndim ? nsci_wrap_dim(p->dim, c->in[0]->ndim) : 0;
    return run_softmax(c->out[0], 2, c->in, dim, c->op == NSC_OP_log_softmax_backward,
                       &grad_kernels[f32 ? 0 : 1]);
}

#define SOFTMAX_GRAD_ROW(NAME)                                                                     \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 2,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = sizeof(softmax_params),                                                     \
        .params = softmax_desc,                                                                    \
        .infer = softmax_grad_infer,                                                               \
        .cpu = softmax_grad_cpu,                                                                   \
        .no_grad = "a gradient kernel: double backward is not supported",                          \
    };

SOFTMAX_GRAD_ROW(softmax_backward)
SOFTMAX_GRAD_ROW(log_softmax_backward)

static nsc_tensor *run_grad(nsc_op op, nsc_tensor *grad_y, nsc_tensor *y, int dim) {
    nsc_tensor *in[2] = { grad_y, y };
    softmax_params p = { dim };
    return nsci_run(op, 2, in, &p);
}

nsc_tensor *nsci_softmax_backward(nsc_tensor *grad_y, nsc_tensor *y, int dim) {
    return run_grad(NSC_OP_softmax_backward, grad_y, y, dim);
}

nsc_tensor *nsci_log_softmax_backward(nsc_tensor *grad_y, nsc_tensor *y, int dim) {
    return run_grad(NSC_OP_log_softmax_backward, grad_y, y, dim);
}
