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
// Scalar loops run in blocks of 8 with 8 partial results, a shape GCC
// vectorizes at -O2 without reassociating floating point on its own.

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

SOFTMAX_ROWS(f64, double, exp, log)
SOFTMAX_GRAD_ROWS(f64, double, exp)
ROW_MAX(row_max_f32, float)

// --- f32 rows on 4-lane vectors ---
// glibc's expf does not vectorize, and exp dominates softmax: f32 rows use
// GCC vector extensions (SSE2 on x86-64, NEON on arm64) and this exp:
// Cody-Waite reduction x = n ln2 + r, Cephes' degree-6 polynomial for e^r,
// and 2^n built in the exponent bits in two halves, so results underflow
// gradually to 0 below -87.3 and overflow to inf above 88.72. Within 1 ulp
// of exp in double over [-103, 88.7] (torch's Sleef expf: 1 ulp); NaN passes.

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));

static inline v4f splat(float v) {
    return (v4f){ v, v, v, v };
}

// v, with lanes where mask is set replaced by c.
static inline v4f select_const(v4f v, v4i mask, float c) {
    return (v4f)(((v4i)v & ~mask) | ((v4i)splat(c) & mask));
}

static inline v4f vexp(v4f x) {
    const v4f magic = splat(12582912.0f);         // 1.5 * 2^23: adding it rounds to an integer
    x = select_const(x, x > splat(89.0f), 89.0f); // NaN fails both tests and stays
    x = select_const(x, x < splat(-104.0f), -104.0f);
    v4f t = x * splat(1.44269504088896341f) + magic;
    v4f n = t - magic;
    v4f r = (x - n * splat(0.693359375f)) - n * splat(-2.12194440e-4f);
    v4f p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    v4f y = p * r * r + r + splat(1.0f);
    v4i ni = (v4i)t - (v4i)magic; // n as an integer, from t's mantissa bits
    v4i n1 = ni >> 1, n2 = ni - n1;
    v4u s1 = (v4u)(n1 + 127) << 23, s2 = (v4u)(n2 + 127) << 23;
    return y * (v4f)s1 * (v4f)s2;
}

// Lanes [0, n) of p (n <= 4), the others fill.
static inline v4f load4(const float *p, int64_t n, float fill) {
    v4f v = splat(fill);
    if (n == 4) {
        memcpy(&v, p, sizeof v);
        return v;
    }
    for (int64_t k = 0; k < n; k++) {
        v[k] = p[k];
    }
    return v;
}

static inline void store4(float *p, v4f v, int64_t n) {
    if (n == 4) {
        memcpy(p, &v, sizeof v);
        return;
    }
    for (int64_t k = 0; k < n; k++) {
        p[k] = v[k];
    }
}

static inline float lane_sum(v4f v) {
    return (v[0] + v[2]) + (v[1] + v[3]);
}

// Sum of exp(x[i] - max), the exponentials stored in y unless y is NULL.
// Padding lanes hold -inf, whose exponential is 0.
static float exp_sum_f32(const float *x, float *y, int64_t n, float max) {
    v4f acc = splat(0.0f), m = splat(max);
    for (int64_t i = 0; i < n; i += 4) {
        int64_t w = NSCI_MIN(4, n - i);
        v4f e = vexp(load4(x + i, w, -INFINITY) - m);
        if (y) {
            store4(y + i, e, w);
        }
        acc += e;
    }
    return lane_sum(acc);
}

float nsci_row_max_f32(const float *x, int64_t n) {
    return row_max_f32(x, n);
}

float nsci_exp_sum_f32(const float *x, int64_t n, float shift) {
    return exp_sum_f32(x, NULL, n, shift);
}

static void softmax_rows_f32(void *ctx, int64_t begin, int64_t end) {
    const row_job *j = ctx;
    int64_t n = j->k;
    for (int64_t r = begin; r < end; r++) {
        const float *x = (const float *)j->a + r * n;
        float *y = (float *)j->out + r * n;
        float max = row_max_f32(x, n);
        if (j->log_form) { // (x - max) - log(sum)
            v4f m = splat(max), lse = splat(logf(exp_sum_f32(x, NULL, n, max)));
            for (int64_t i = 0; i < n; i += 4) {
                int64_t w = NSCI_MIN(4, n - i);
                store4(y + i, (load4(x + i, w, 0.0f) - m) - lse, w);
            }
        } else { // exp(x - max) / sum
            v4f inv = splat(1.0f / exp_sum_f32(x, y, n, max));
            for (int64_t i = 0; i < n; i += 4) {
                int64_t w = NSCI_MIN(4, n - i);
                store4(y + i, load4(y + i, w, 0.0f) * inv, w);
            }
        }
    }
}

// softmax: gx = y * (g - sum(g * y)); log_softmax: gx = g - exp(y) * sum(g).
static void softmax_grad_rows_f32(void *ctx, int64_t begin, int64_t end) {
    const row_job *j = ctx;
    int64_t n = j->k;
    for (int64_t r = begin; r < end; r++) {
        const float *g = (const float *)j->a + r * n, *y = (const float *)j->b + r * n;
        float *gx = (float *)j->out + r * n;
        v4f acc = splat(0.0f);
        for (int64_t i = 0; i < n; i += 4) {
            int64_t w = NSCI_MIN(4, n - i);
            v4f gv = load4(g + i, w, 0.0f);
            acc += j->log_form ? gv : gv * load4(y + i, w, 0.0f);
        }
        v4f s = splat(lane_sum(acc));
        for (int64_t i = 0; i < n; i += 4) {
            int64_t w = NSCI_MIN(4, n - i);
            v4f gv = load4(g + i, w, 0.0f), yv = load4(y + i, w, 0.0f);
            store4(gx + i, j->log_form ? gv - vexp(yv) * s : yv * (gv - s), w);
        }
    }
}

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
static nsc_status run_rows(nsc_tensor *out, int n_in, nsc_tensor *const *in, int dim, bool log_form,
                           nsci_range_fn rows_fn) {
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
    row_job j = { .a = nsci_data_ptr(rows[0]),
                  .b = n_in > 1 ? nsci_data_ptr(rows[1]) : NULL,
                  .out = nsci_data_ptr(result),
                  .log_form = log_form };
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
