// Selections whose result is made of indices or masks: topk, nonzero,
// one_hot, tril and triu. Separate from op_index.c, which gathers by given
// indices; these compute them. [outer, n, inner] is x viewed around dim.
#include <math.h>
#include <string.h>

#include "tensor/index.h"
#include "tensor/op_params.h"

// --- topk ---
// The k largest (or smallest) entries along dim, sorted, with their i64 indices.
// x: [outer, n, inner]; values, indices: [outer, k, inner].
// https://pytorch.org/docs/stable/generated/torch.topk.html
// NaN counts as larger than every number (as torch). Among equal values the
// lower index comes first; torch leaves that order unspecified.
// Saves indices: the gradient is the values' gradient scattered into zeros.

static const nsci_param_desc topk_desc[] = {
    { "k", NSCI_PARAM_I64, offsetof(topk_params, k), 0 },
    { "dim", NSCI_PARAM_INT, offsetof(topk_params, dim), 0 },
    { "largest", NSCI_PARAM_BOOL, offsetof(topk_params, largest), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status topk_infer(nsci_call *c) {
    const topk_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int dim = nsci_wrap_dim(p->dim, NSCI_MAX(x->ndim, 1));
    if (dim < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", p->dim,
                              x->ndim);
    }
    if (x->dtype == NSC_BOOL) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "dtype bool: expected f32, f64 or i64");
    }
    int64_t n = x->ndim > 0 ? x->shape[dim] : 1;
    if (p->k < 0 || p->k > n) {
        return nsci_call_fail(c, NSC_ERR_ARG, "k %lld is out of range [0, %lld] for dim %d",
                              (long long)p->k, (long long)n, dim);
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    if (x->ndim > 0) {
        c->meta[0].shape[dim] = p->k;
    }
    nsci_meta_same_shape(&c->meta[1], x, NSC_I64);
    memcpy(c->meta[1].shape, c->meta[0].shape, sizeof c->meta[0].shape);
    return NSC_OK;
}

typedef struct topk_job {
    const char *x;
    char *values;
    int64_t *indices;
    int64_t n, k, inner;
    bool largest;
    atomic_bool failed; // a worker could not get scratch memory
} topk_job;

// Per dtype: a heap of k (value, index) pairs whose root is the kept pair that
// ranks last; each element of the line that ranks before the root replaces
// it. O(n log k) whatever the input order, then a heapsort of the k.
// BEFORE(a, b): a ranks first (value, then the lower index). GREATER puts NaN
// above every number.
#define TOPK_IMPL(SUFFIX, T, GREATER)                                                              \
    typedef struct pair_##SUFFIX {                                                                 \
        T v;                                                                                       \
        int64_t i;                                                                                 \
    } pair_##SUFFIX;                                                                               \
    static inline bool before_##SUFFIX(pair_##SUFFIX a, pair_##SUFFIX b, bool largest) {           \
        bool a_gt = GREATER(a.v, b.v), b_gt = GREATER(b.v, a.v);                                   \
        return largest ? (a_gt || (!b_gt && a.i < b.i)) : (b_gt || (!a_gt && a.i < b.i));          \
    }                                                                                              \
    /* Restores the heap below i: every parent ranks after its children. */                        \
    static void sift_##SUFFIX(pair_##SUFFIX *h, int64_t n, int64_t i, bool largest) {              \
        for (;;) {                                                                                 \
            int64_t last = i, l = 2 * i + 1;                                                       \
            if (l < n && before_##SUFFIX(h[last], h[l], largest)) {                                \
                last = l;                                                                          \
            }                                                                                      \
            if (l + 1 < n && before_##SUFFIX(h[last], h[l + 1], largest)) {                        \
                last = l + 1;                                                                      \
            }                                                                                      \
            if (last == i) {                                                                       \
                return;                                                                            \
            }                                                                                      \
            pair_##SUFFIX t = h[i];                                                                \
            h[i] = h[last];                                                                        \
            h[last] = t;                                                                           \
            i = last;                                                                              \
        }                                                                                          \
    }                                                                                              \
    /* The first k of x[0..n) (stride s) in rank order into top[0..k), 0 < k <= n. */              \
    static void select_##SUFFIX(const T *x, int64_t n, int64_t s, int64_t k, bool largest,         \
                                pair_##SUFFIX *top) {                                              \
        for (int64_t i = 0; i < k; i++) {                                                          \
            top[i] = (pair_##SUFFIX){ x[i * s], i };                                               \
        }                                                                                          \
        for (int64_t i = k / 2 - 1; i >= 0; i--) {                                                 \
            sift_##SUFFIX(top, k, i, largest);                                                     \
        }                                                                                          \
        for (int64_t i = k; i < n; i++) {                                                          \
            pair_##SUFFIX e = { x[i * s], i };                                                     \
            if (before_##SUFFIX(e, top[0], largest)) {                                             \
                top[0] = e;                                                                        \
                sift_##SUFFIX(top, k, 0, largest);                                                 \
            }                                                                                      \
        }                                                                                          \
        for (int64_t end = k - 1; end > 0; end--) { /* the last-ranked go to the back */           \
            pair_##SUFFIX t = top[0];                                                              \
            top[0] = top[end];                                                                     \
            top[end] = t;                                                                          \
            sift_##SUFFIX(top, end, 0, largest);                                                   \
        }                                                                                          \
    }                                                                                              \
    static void topk_lines_##SUFFIX(void *ctx, int64_t begin, int64_t end) {                       \
        topk_job *job = ctx;                                                                       \
        int64_t n = job->n, k = job->k, inner = job->inner;                                        \
        pair_##SUFFIX *top = nsci_malloc((size_t)k * sizeof *top);                                 \
        if (!top) {                                                                                \
            atomic_store(&job->failed, true);                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t l = begin; l < end; l++) {                                                    \
            int64_t o = l / inner, in = l % inner;                                                 \
            select_##SUFFIX((const T *)job->x + o * n * inner + in, n, inner, k, job->largest,     \
                            top);                                                                  \
            T *v = (T *)job->values + o * k * inner + in;                                          \
            int64_t *ix = job->indices + o * k * inner + in;                                       \
            for (int64_t j = 0; j < k; j++) {                                                      \
                v[j * inner] = top[j].v;                                                           \
                ix[j * inner] = top[j].i;                                                          \
            }                                                                                      \
        }                                                                                          \
        nsci_free(top);                                                                            \
    }

#define GREATER_FLOAT(a, b) ((isnan(a) && !isnan(b)) || (a) > (b))
#define GREATER_INT(a, b)   ((a) > (b))
TOPK_IMPL(f32, float, GREATER_FLOAT)
TOPK_IMPL(f64, double, GREATER_FLOAT)
TOPK_IMPL(i64, int64_t, GREATER_INT)

static nsc_status topk_cpu(nsci_call *c) {
    const topk_params *p = c->params;
    nsc_tensor *x = nsci_cpu_contiguous(c->in[0]);
    if (!x) {
        return nsc_last_status();
    }
    int dim = nsci_wrap_dim(p->dim, NSCI_MAX(x->ndim, 1));
    topk_job job = { .x = nsci_data_ptr(x),
                     .values = nsci_data_ptr(c->out[0]),
                     .indices = (int64_t *)nsci_data_ptr(c->out[1]),
                     .largest = p->largest };
    int64_t outer = 1;
    job.inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d != dim) {
            *(d < dim ? &outer : &job.inner) *= x->shape[d];
        }
    }
    job.n = x->ndim > 0 ? x->shape[dim] : 1;
    // A 0-dim input has one element and one output element, even for k = 0 (as torch).
    job.k = x->ndim > 0 ? p->k : 1;
    atomic_init(&job.failed, false);
    nsci_range_fn fn = x->dtype == NSC_F32   ? topk_lines_f32
                       : x->dtype == NSC_F64 ? topk_lines_f64
                                             : topk_lines_i64;
    if (job.k > 0) {
        int64_t grain = NSCI_MAX(1, NSCI_GRAIN / NSCI_MAX(job.n, 1));
        nsci_parallel_for(outer * job.inner, grain, fn, &job);
    }
    nsc_free(x);
    if (atomic_load(&job.failed)) {
        return nsci_call_fail(c, NSC_ERR_OOM, "no memory for the sort buffers");
    }
    return NSC_OK;
}

static nsc_status topk_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                nsc_tensor **grad_in) {
    const topk_params *p = g->params;
    const nsci_meta *x = &g->in_meta[0];
    nsc_tensor *zeros = nsci_zeros_on(grad_out[0], x->ndim, x->shape);
    grad_in[0] = nsc_scatter_add(zeros, p->dim, g->out[1], grad_out[0]);
    nsc_free(zeros);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_topk = {
    .name = "topk",
    .arity = 1,
    .n_outputs = 2,
    .params_size = sizeof(topk_params),
    .params = topk_desc,
    .infer = topk_infer,
    .cpu = topk_cpu,
    .backward = topk_backward,
    .save_outputs = 1u << 1,
};

nsc_status nsc_topk(nsc_tensor *x, int64_t k, int dim, bool largest, nsc_tensor **values,
                    nsc_tensor **indices) {
    if (!values || !indices) {
        return nsci_fail(NSC_ERR_ARG, "topk: values and indices must not be NULL");
    }
    topk_params p = { .k = k, .dim = dim, .largest = largest };
    nsc_tensor *out[2] = { NULL, NULL };
    nsc_status status = nsci_run_multi(NSC_OP_topk, 1, &x, &p, out);
    if (status == NSC_OK) {
        *values = out[0];
        *indices = out[1];
    }
    return status;
}

// --- nonzero ---
// Coordinates of the nonzero elements (NaN counts), row-major: [n_nonzero, ndim] i64.
// https://pytorch.org/docs/stable/generated/torch.nonzero.html
// The output's shape depends on the values, so on META it fails (there is no data to count).

// x's values as 0/1 bytes (any device with data); NULL on failure.
static uint8_t *nonzero_flags(const nsci_call *c, int64_t *n) {
    nsc_tensor *x = c->in[0];
    *n = nsci_numel(x->ndim, x->shape);
    uint8_t *flags = nsci_malloc((size_t)*n + 1);
    if (flags && nsc_tensor_copy_to(x, NSC_BOOL, flags, (size_t)*n) != NSC_OK) {
        nsci_free(flags);
        flags = NULL;
    }
    return flags;
}

static nsc_status nonzero_infer(nsci_call *c) {
    const nsc_tensor *x = c->in[0];
    if (x->device == NSC_META) {
        return nsci_call_fail(c, NSC_ERR_UNSUPPORTED,
                              "data-dependent shape: the number of rows "
                              "is the number of nonzero values, which "
                              "META tensors do not have");
    }
    int64_t n, count = 0;
    uint8_t *flags = nonzero_flags(c, &n);
    if (!flags) {
        return nsc_last_status();
    }
    for (int64_t i = 0; i < n; i++) {
        count += flags[i];
    }
    nsci_free(flags);
    nsci_meta *m = &c->meta[0];
    m->dtype = NSC_I64;
    m->ndim = 2;
    m->shape[0] = count;
    m->shape[1] = x->ndim;
    return NSC_OK;
}

static nsc_status nonzero_cpu(nsci_call *c) {
    const nsc_tensor *x = c->in[0];
    int64_t n;
    uint8_t *flags = nonzero_flags(c, &n);
    if (!flags) {
        return nsc_last_status();
    }
    int64_t *out = (int64_t *)nsci_data_ptr(c->out[0]);
    int64_t coord[NSC_MAX_DIMS] = { 0 };
    for (int64_t i = 0; i < n; i++) {
        if (flags[i] && x->ndim > 0) { // a 0-dim input gives [n, 0]: nothing to write
            memcpy(out, coord, (size_t)x->ndim * sizeof *coord);
            out += x->ndim;
        }
        for (int d = x->ndim - 1; d >= 0 && ++coord[d] == x->shape[d]; d--) {
            coord[d] = 0;
        }
    }
    nsci_free(flags);
    return NSC_OK;
}

const nsci_op_def nsci_op_nonzero = {
    .name = "nonzero",
    .arity = 1,
    .n_outputs = 1,
    .infer = nonzero_infer,
    .cpu = nonzero_cpu,
    .no_grad = "its output is integer coordinates",
    .data_dependent_shape = "the number of rows is the number of nonzero values",
};

nsc_tensor *nsc_nonzero(nsc_tensor *x) {
    return nsci_run(NSC_OP_nonzero, 1, &x, NULL);
}

// --- one_hot ---
// out[..., j] = (ids[...] == j). ids: any shape, i64; out: [*ids, num_classes] i64.
// num_classes -1 takes max(ids) + 1 (as torch), which needs the values: it fails on META.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.one_hot.html

static const nsci_param_desc one_hot_desc[] = {
    { "num_classes", NSCI_PARAM_I64, offsetof(one_hot_params, num_classes), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// max(ids) + 1 for num_classes -1; -1 with an error when it cannot be known.
static int64_t infer_classes(nsci_call *c) {
    nsc_tensor *ids = c->in[0];
    int64_t n = nsci_numel(ids->ndim, ids->shape);
    if (ids->device == NSC_META || n == 0) {
        nsci_call_fail(c, NSC_ERR_UNSUPPORTED, "num_classes -1 needs the ids' values (%s)",
                       n == 0 ? "there are none" : "data-dependent shape on META");
        return -1;
    }
    int64_t *values = nsci_malloc((size_t)n * sizeof *values);
    if (!values || nsc_tensor_copy_to(ids, NSC_I64, values, (size_t)n * sizeof *values) != NSC_OK) {
        nsci_free(values);
        return -1;
    }
    int64_t max = values[0];
    for (int64_t i = 1; i < n; i++) {
        max = NSCI_MAX(max, values[i]);
    }
    nsci_free(values);
    // A negative max is reported by the kernel's range check, naming the id.
    return max < INT64_MAX ? NSCI_MAX(max, 0) + 1 : max;
}

static nsc_status one_hot_infer(nsci_call *c) {
    const one_hot_params *p = c->params;
    const nsc_tensor *ids = c->in[0];
    if (nsci_check_index_dtype(c, ids, "ids") != NSC_OK) {
        return nsc_last_status();
    }
    if (ids->ndim + 1 > NSC_MAX_DIMS || p->num_classes < -1) {
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "num_classes %lld: expected >= 0, or -1 to use "
                              "max(ids) + 1 (and a rank below %d)",
                              (long long)p->num_classes, NSC_MAX_DIMS);
    }
    int64_t classes = p->num_classes >= 0 ? p->num_classes : infer_classes(c);
    if (classes < 0) {
        return nsc_last_status();
    }
    nsci_meta *m = &c->meta[0];
    nsci_meta_same_shape(m, ids, NSC_I64);
    m->ndim = ids->ndim + 1;
    m->shape[ids->ndim] = classes;
    if (nsci_check_shape(c->def->name, m->ndim, m->shape) != NSC_OK) {
        return nsc_last_status();
    }
    return NSC_OK;
}

static nsc_status one_hot_cpu(nsci_call *c) {
    nsc_tensor *out = c->out[0];
    int64_t classes = out->shape[out->ndim - 1];
    nsc_tensor *ids = nsci_cpu_contiguous(c->in[0]);
    nsc_status status = ids ? nsci_check_index(c, ids, classes, "id") : nsc_last_status();
    int64_t n = ids ? nsci_numel(ids->ndim, ids->shape) : 0;
    if (status == NSC_OK && n * classes > 0) {
        const int64_t *id = (const int64_t *)nsci_data_ptr(ids);
        int64_t *o = (int64_t *)nsci_data_ptr(out);
        memset(o, 0, (size_t)(n * classes) * sizeof *o);
        for (int64_t i = 0; i < n; i++) {
            o[i * classes + id[i]] = 1;
        }
    }
    nsc_free(ids);
    return status;
}

const nsci_op_def nsci_op_one_hot = {
    .name = "one_hot",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(one_hot_params),
    .params = one_hot_desc,
    .infer = one_hot_infer,
    .cpu = one_hot_cpu,
    .no_grad = "its output is integer (0/1 rows of class ids)",
};

nsc_tensor *nsc_one_hot(nsc_tensor *ids, int64_t num_classes) {
    one_hot_params p = { num_classes };
    return nsci_run(NSC_OP_one_hot, 1, &ids, &p);
}

// --- tril / triu ---
// Keeps x[..., i, j] where j - i <= diagonal (tril) or >= diagonal (triu); zeros
// elsewhere. x: [..., R, C], rank >= 2.
// https://pytorch.org/docs/stable/generated/torch.tril.html
// Saves nothing: the gradient is tril/triu of the output's gradient.

static const nsci_param_desc tri_desc[] = {
    { "diagonal", NSCI_PARAM_I64, offsetof(tri_params, diagonal), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status tri_infer(nsci_call *c) {
    const nsc_tensor *x = c->in[0];
    if (x->ndim < 2) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "rank %d: expected at least 2 dims", x->ndim);
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    return NSC_OK;
}

typedef struct tri_job {
    char *data;
    int64_t rows, cols, diagonal;
    size_t elem;
    bool lower;
} tri_job;

// Rows of every matrix: zero the columns outside the kept band.
static void tri_rows(void *ctx, int64_t begin, int64_t end) {
    const tri_job *job = ctx;
    for (int64_t r = begin; r < end; r++) {
        int64_t i = r % job->rows, edge = i + job->diagonal; // |diagonal| is clamped: no overflow
        int64_t lo = job->lower ? NSCI_MAX(edge + 1, 0) : 0;
        int64_t hi = job->lower ? job->cols : NSCI_MIN(edge, job->cols);
        if (lo < hi) {
            memset(job->data + (size_t)(r * job->cols + lo) * job->elem, 0,
                   (size_t)(hi - lo) * job->elem);
        }
    }
}

static nsc_status tri_cpu(nsci_call *c) {
    const tri_params *p = c->params;
    nsc_tensor *out = c->out[0];
    if (nsci_copy_into(out, c->in[0]) != NSC_OK) {
        return nsc_last_status();
    }
    tri_job job = { .data = nsci_data_ptr(out),
                    .rows = out->shape[out->ndim - 2],
                    .cols = out->shape[out->ndim - 1],
                    .elem = nsc_dtype_size((nsc_dtype)out->dtype),
                    .lower = c->op == NSC_OP_tril };
    job.diagonal = NSCI_MAX(NSCI_MIN(p->diagonal, job.cols + 1), -job.rows - 1);
    int64_t n_rows = job.cols > 0 ? nsci_numel(out->ndim, out->shape) / job.cols : 0;
    nsci_parallel_for(n_rows, NSCI_MAX(1, NSCI_GRAIN / NSCI_MAX(job.cols, 1)), tri_rows, &job);
    return NSC_OK;
}

static nsc_status tri_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    const tri_params *p = g->params;
    bool lower = g->def == &nsci_op_tril;
    grad_in[0] = lower ? nsc_tril(grad_out[0], p->diagonal) : nsc_triu(grad_out[0], p->diagonal);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

#define TRI_ROW(NAME)                                                                              \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = sizeof(tri_params),                                                         \
        .params = tri_desc,                                                                        \
        .infer = tri_infer,                                                                        \
        .cpu = tri_cpu,                                                                            \
        .backward = tri_backward,                                                                  \
        .exempt = { [NSCI_CASE_RANK0] = "needs at least 2 dims (as torch." #NAME ")" },            \
    };                                                                                             \
    nsc_tensor *nsc_##NAME(nsc_tensor *x, int64_t diagonal) {                                      \
        tri_params p = { diagonal };                                                               \
        return nsci_run(NSC_OP_##NAME, 1, &x, &p);                                                 \
    }

TRI_ROW(tril)
TRI_ROW(triu)
