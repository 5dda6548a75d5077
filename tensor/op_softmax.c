// softmax and log_softmax along a dim, and their fused gradients. Fused row
// kernels (max, exp-sum, scale: two passes over each row), parallel over
// rows. Shapes: x [..., K, ...] along dim; rows = numel / K. A dim that is
// not innermost (or a non-contiguous x) is first copied to rows [rows, K]
// and the result copied back: attention and logits use the last dim.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.softmax.html
#include <math.h>
#include <string.h>

#include "tensor/reduce.h"

typedef struct softmax_params {
    int dim;
} softmax_params;

static const nsci_param_desc softmax_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(softmax_params, dim), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// --- row kernels ---
// Loops run in blocks of 8 with 8 partial results, a shape GCC vectorizes
// at -O2 without reassociating floating point on its own.

typedef struct row_job {
    const char *a, *b; // inputs as [rows, K] (b: the saved output of the backward rows)
    char *out;
    int64_t k;
    bool log_form;
} row_job;

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
        const row_job *j = ctx;                                                                    \
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
        const row_job *j = ctx;                                                                    \
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

SOFTMAX_ROWS(f32, float, expf, logf)
SOFTMAX_ROWS(f64, double, exp, log)
SOFTMAX_GRAD_ROWS(f32, float, expf)
SOFTMAX_GRAD_ROWS(f64, double, exp)

// --- layout: any x as rows [rows, K] and back ---

// Shape and strides of t with dim moved last.
static void dim_last(const nsc_tensor *t, int dim, int64_t *shape, int64_t *stride) {
    int k = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (d != dim) {
            shape[k] = t->shape[d];
            stride[k] = t->stride[d];
            k++;
        }
    }
    shape[k] = t->shape[dim];
    stride[k] = t->stride[dim];
}

// Elements after dim: 1 when dim is (effectively) innermost.
static int64_t inner_size(const nsc_tensor *t, int dim) {
    int64_t n = 1;
    for (int d = dim + 1; d < t->ndim; d++) {
        n *= t->shape[d];
    }
    return n;
}

// x itself (retained) when it is already contiguous rows along dim, else a
// contiguous copy with dim moved last.
static nsc_tensor *as_rows(nsc_tensor *x, int dim) {
    if (x->ndim == 0 || (nsci_is_contiguous(x) && inner_size(x, dim) == 1)) {
        return nsc_retain(x);
    }
    int64_t shape[NSC_MAX_DIMS], stride[NSC_MAX_DIMS];
    dim_last(x, dim, shape, stride);
    nsc_tensor *view = nsci_tensor_view(x, x->ndim, shape, stride, x->offset);
    nsc_tensor *rows = view ? nsci_cpu_convert(view, (nsc_dtype)x->dtype) : NULL;
    nsc_free(view);
    return rows;
}

// Where the kernel writes: out itself (fresh, contiguous) when dim is
// innermost, else a scratch [rows, K] tensor copied back afterwards.
static nsc_tensor *rows_buffer(nsc_tensor *out, int dim) {
    if (out->ndim == 0 || inner_size(out, dim) == 1) {
        return nsc_retain(out);
    }
    int64_t shape[NSC_MAX_DIMS], stride[NSC_MAX_DIMS];
    dim_last(out, dim, shape, stride);
    nsc_tensor *t = nsci_tensor_header((nsc_dtype)out->dtype, NSC_CPU, out->ndim, shape);
    if (t && nsci_tensor_alloc_data(t) != NSC_OK) {
        nsc_free(t);
        return NULL;
    }
    return t;
}

// Runs rows_fn over n_in inputs laid out as rows along dim, into out.
static nsc_status run_rows(nsc_tensor *out, int n_in, nsc_tensor *const *in, int dim,
                           bool log_form, nsci_range_fn rows_fn) {
    int64_t numel = nsci_numel(out->ndim, out->shape);
    if (numel == 0) {
        return NSC_OK;
    }
    nsc_tensor *rows[2] = { NULL, NULL };
    nsc_tensor *result = rows_buffer(out, dim);
    for (int i = 0; i < n_in; i++) {
        rows[i] = as_rows(in[i], dim);
    }
    nsc_status status = NSC_OK;
    if (!result || !rows[0] || (n_in > 1 && !rows[1])) {
        status = nsc_last_status();
        goto done;
    }
    row_job j = { .a = nsci_data_ptr(rows[0]), .b = n_in > 1 ? nsci_data_ptr(rows[1]) : NULL,
                  .out = nsci_data_ptr(result), .log_form = log_form };
    j.k = out->ndim ? out->shape[dim] : 1;
    nsci_parallel_for(numel / j.k, NSCI_MAX(1, NSCI_GRAIN / j.k), rows_fn, &j);
    if (result != out) { // write the rows back through out's dim-last view
        int64_t shape[NSC_MAX_DIMS], stride[NSC_MAX_DIMS];
        dim_last(out, dim, shape, stride);
        nsc_tensor *view = nsci_tensor_view(out, out->ndim, shape, stride, out->offset);
        status = view ? nsci_copy_into(view, result) : nsc_last_status();
        nsc_free(view);
    }
done:
    nsc_free(result);
    nsc_free(rows[0]);
    nsc_free(rows[1]);
    return status;
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
    return run_rows(c->out[0], 1, c->in, dim, c->op == NSC_OP_log_softmax,
                    f32 ? softmax_rows_f32 : softmax_rows_f64);
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
    return run_rows(c->out[0], 2, c->in, dim, c->op == NSC_OP_log_softmax_backward,
                    f32 ? softmax_grad_rows_f32 : softmax_grad_rows_f64);
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
        .no_grad = "a gradient kernel: double backward is not supported",                         \
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
