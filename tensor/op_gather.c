// gather and its adjoint scatter_add (out-of-place), both walking the index
// tensor line by line along dim. Separate from op_index.c, whose ops take
// whole slices; these address single elements. Index checks as there.
#include <string.h>

#include "tensor/index.h"
#include "tensor/op_params.h"

static const nsci_param_desc dim_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(dim_params, dim), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// Normalizes dim for x (a 0-dim tensor accepts dim 0 and -1, as torch).
static nsc_status wrap_dim(nsci_call *c, int dim, int ndim, int *out) {
    *out = nsci_wrap_dim(dim, ndim > 0 ? ndim : 1);
    if (*out < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", dim, ndim);
    }
    return NSC_OK;
}

static int64_t size_at(const nsc_tensor *x, int dim) {
    return x->ndim > 0 ? x->shape[dim] : 1;
}

// --- lines along dim ---
// The index tensor (contiguous, shape I) is cut into lines along dim; a line
// fixes every other coordinate, so lines of scatter_add never write the same
// output element and can run on different threads.

typedef struct line_job {
    const nsc_tensor *index; // contiguous i64
    int dim;
    const nsc_tensor *a, *b;   // gather: a = out (contiguous), b = x; scatter: a = out, b = src
    int64_t n_lines, line_len; // I[dim]
    nsc_dtype dtype;
} line_job;

// Element offsets of line l's start in index, a and b.
static void line_start(const line_job *job, int64_t l, int64_t *oi, int64_t *oa, int64_t *ob) {
    const nsc_tensor *index = job->index;
    *oi = *oa = *ob = 0;
    int64_t istride = 1;
    for (int d = index->ndim - 1; d >= 0; d--) {
        if (d != job->dim) {
            int64_t coord = l % index->shape[d];
            l /= index->shape[d];
            *oi += coord * istride;
            *oa += coord * job->a->stride[d];
            *ob += coord * job->b->stride[d];
        }
        istride *= index->shape[d];
    }
}

#define GATHER_LINES(NAME, T)                                                                      \
    static void NAME(void *ctx, int64_t begin, int64_t end) {                                      \
        const line_job *job = ctx;                                                                 \
        int dim = job->dim, nd = job->index->ndim;                                                 \
        int64_t si = nd ? job->index->stride[dim] : 0, so = nd ? job->a->stride[dim] : 0;          \
        int64_t sx = nd ? job->b->stride[dim] : 0;                                                 \
        const int64_t *idx = (const int64_t *)nsci_data_ptr(job->index);                           \
        T *out = (T *)nsci_data_ptr(job->a);                                                       \
        const T *x = (const T *)nsci_data_ptr(job->b);                                             \
        for (int64_t l = begin; l < end; l++) {                                                    \
            int64_t oi, oo, ox;                                                                    \
            line_start(job, l, &oi, &oo, &ox);                                                     \
            for (int64_t k = 0; k < job->line_len; k++) {                                          \
                out[oo + k * so] = x[ox + idx[oi + k * si] * sx];                                  \
            }                                                                                      \
        }                                                                                          \
    }

GATHER_LINES(gather_lines_1, uint8_t)
GATHER_LINES(gather_lines_4, uint32_t)
GATHER_LINES(gather_lines_8, uint64_t)

// out[.. idx ..] += src[.. k ..] along each line; the add is per dtype.
#define SCATTER_LINES(NAME, T, ADD)                                                                \
    static void NAME(void *ctx, int64_t begin, int64_t end) {                                      \
        const line_job *job = ctx;                                                                 \
        int dim = job->dim, nd = job->index->ndim;                                                 \
        int64_t si = nd ? job->index->stride[dim] : 0, so = nd ? job->a->stride[dim] : 0;          \
        int64_t ss = nd ? job->b->stride[dim] : 0;                                                 \
        const int64_t *idx = (const int64_t *)nsci_data_ptr(job->index);                           \
        T *out = (T *)nsci_data_ptr(job->a);                                                       \
        const T *src = (const T *)nsci_data_ptr(job->b);                                           \
        for (int64_t l = begin; l < end; l++) {                                                    \
            int64_t oi, oo, os;                                                                    \
            line_start(job, l, &oi, &oo, &os);                                                     \
            for (int64_t k = 0; k < job->line_len; k++) {                                          \
                T *dst = &out[oo + idx[oi + k * si] * so];                                         \
                T v = src[os + k * ss];                                                            \
                *dst = ADD;                                                                        \
            }                                                                                      \
        }                                                                                          \
    }

// Integers wrap as PyTorch's do (unsigned arithmetic avoids C's UB); bool adds as "or".
SCATTER_LINES(scatter_lines_f32, float, *dst + v)
SCATTER_LINES(scatter_lines_f64, double, *dst + v)
SCATTER_LINES(scatter_lines_i64, int64_t, (int64_t)((uint64_t)*dst + (uint64_t)v))
SCATTER_LINES(scatter_lines_bool, uint8_t, (uint8_t)(*dst | v))

static void run_lines(line_job *job, nsci_range_fn fn) {
    const nsc_tensor *index = job->index;
    int64_t n = nsci_numel(index->ndim, index->shape);
    job->line_len = size_at(index, job->dim);
    job->n_lines = job->line_len > 0 ? n / job->line_len : 0;
    int64_t grain = NSCI_MAX(1, NSCI_GRAIN / NSCI_MAX(job->line_len, 1));
    nsci_parallel_for(job->n_lines, grain, fn, job);
}

// --- gather ---
// out[i][j] = x[index[i][j]][j] for dim 0 (and so on). x, index: same rank, index's
// sizes <= x's except at dim; out: index's shape, x's dtype.
// https://pytorch.org/docs/stable/generated/torch.gather.html
// Saves index: the gradient is scatter_add of the output gradient into zeros.

static nsc_status same_rank(nsci_call *c, const nsc_tensor *a, const nsc_tensor *b,
                            const char *what) {
    if (a->ndim != b->ndim) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "%s has rank %d and x rank %d: expected equal "
                              "ranks",
                              what, b->ndim, a->ndim);
    }
    return NSC_OK;
}

// index.size(d) <= x.size(d) for every d != skip (skip -1: every d).
static nsc_status index_fits(nsci_call *c, const nsc_tensor *index, const nsc_tensor *x, int skip,
                             const char *what) {
    for (int d = 0; d < index->ndim; d++) {
        if (d != skip && index->shape[d] > x->shape[d]) {
            return nsci_call_fail(c, NSC_ERR_SHAPE,
                                  "index size %lld at dim %d exceeds %s's size %lld",
                                  (long long)index->shape[d], d, what, (long long)x->shape[d]);
        }
    }
    return NSC_OK;
}

static nsc_status gather_infer(nsci_call *c) {
    const dim_params *p = c->params;
    const nsc_tensor *x = c->in[0], *index = c->in[1];
    int dim;
    if (wrap_dim(c, p->dim, x->ndim, &dim) != NSC_OK ||
        nsci_check_index_dtype(c, index, "index") != NSC_OK ||
        same_rank(c, x, index, "index") != NSC_OK || index_fits(c, index, x, dim, "x") != NSC_OK) {
        return nsc_last_status();
    }
    nsci_meta_same_shape(&c->meta[0], index, (nsc_dtype)x->dtype);
    return NSC_OK;
}

static nsc_status gather_cpu(nsci_call *c) {
    const dim_params *p = c->params;
    nsc_tensor *x = c->in[0];
    int dim = nsci_wrap_dim(p->dim, NSCI_MAX(x->ndim, 1));
    nsc_tensor *index = nsci_cpu_contiguous(c->in[1]);
    if (!index) {
        return nsc_last_status();
    }
    nsc_status status = nsci_check_index(c, index, size_at(x, dim), "index");
    if (status == NSC_OK) {
        line_job job = { .index = index, .dim = dim, .a = c->out[0], .b = x };
        size_t elem = nsc_dtype_size((nsc_dtype)x->dtype);
        run_lines(&job, elem == 1 ? gather_lines_1 : elem == 4 ? gather_lines_4 : gather_lines_8);
    }
    nsc_free(index);
    return status;
}

static nsc_status gather_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                  nsc_tensor **grad_in) {
    if (!g->needs_grad[0]) {
        return NSC_OK;
    }
    const dim_params *p = g->params;
    const nsci_meta *x = &g->in_meta[0];
    nsc_tensor *zeros = nsci_zeros_on(grad_out[0], x->ndim, x->shape);
    grad_in[0] = nsc_scatter_add(zeros, p->dim, g->in[1], grad_out[0]);
    nsc_free(zeros);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_gather = {
    .name = "gather",
    .arity = 2,
    .n_outputs = 1,
    .params_size = sizeof(dim_params),
    .params = dim_desc,
    .infer = gather_infer,
    .cpu = gather_cpu,
    .backward = gather_backward,
    .save_inputs = 1u << 1,
    .exempt = { [NSCI_CASE_BROADCAST] = "no broadcasting: index addresses x" },
};

nsc_tensor *nsc_gather(nsc_tensor *x, int dim, nsc_tensor *index) {
    nsc_tensor *in[2] = { x, index };
    dim_params p = { dim };
    return nsci_run(NSC_OP_gather, 2, in, &p);
}

// --- scatter_add ---
// out = x, then out[index[i][j]][j] += src[i][j] for dim 0 (and so on). x, index,
// src: same rank; index's sizes <= src's, and <= x's except at dim; src: x's dtype.
// https://pytorch.org/docs/stable/generated/torch.scatter_add.html
// Saves index: x's gradient is the output's; src's is gather of it (zero where
// src reaches beyond index).

static nsc_status scatter_add_infer(nsci_call *c) {
    const dim_params *p = c->params;
    const nsc_tensor *x = c->in[0], *index = c->in[1], *src = c->in[2];
    int dim;
    if (wrap_dim(c, p->dim, x->ndim, &dim) != NSC_OK ||
        nsci_check_index_dtype(c, index, "index") != NSC_OK ||
        same_rank(c, x, index, "index") != NSC_OK || same_rank(c, x, src, "src") != NSC_OK ||
        index_fits(c, index, src, -1, "src") != NSC_OK ||
        index_fits(c, index, x, dim, "x") != NSC_OK) {
        return nsc_last_status();
    }
    if (src->dtype != x->dtype) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "x is %s and src %s: expected one dtype",
                              nsc_dtype_name((nsc_dtype)x->dtype),
                              nsc_dtype_name((nsc_dtype)src->dtype));
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    return NSC_OK;
}

static nsc_status scatter_add_cpu(nsci_call *c) {
    const dim_params *p = c->params;
    nsc_tensor *x = c->in[0];
    int dim = nsci_wrap_dim(p->dim, NSCI_MAX(x->ndim, 1));
    nsc_tensor *index = nsci_cpu_contiguous(c->in[1]);
    if (!index) {
        return nsc_last_status();
    }
    nsc_status status = nsci_check_index(c, index, size_at(x, dim), "index");
    if (status == NSC_OK) {
        status = nsci_copy_into(c->out[0], x);
    }
    if (status == NSC_OK) {
        static const nsci_range_fn fns[NSC_N_DTYPES] = {
            [NSC_F32] = scatter_lines_f32,
            [NSC_F64] = scatter_lines_f64,
            [NSC_I64] = scatter_lines_i64,
            [NSC_BOOL] = scatter_lines_bool,
        };
        line_job job = { .index = index, .dim = dim, .a = c->out[0], .b = c->in[2] };
        run_lines(&job, fns[x->dtype]);
    }
    nsc_free(index);
    return status;
}

// grad (index's shape) placed at the start of zeros of src's shape.
static nsc_tensor *pad_to(nsc_tensor *grad, const nsci_meta *index, const nsci_meta *src) {
    if (memcmp(index->shape, src->shape, (size_t)src->ndim * sizeof *src->shape) == 0) {
        return nsc_retain(grad);
    }
    nsc_tensor *zeros = nsci_zeros_on(grad, src->ndim, src->shape);
    nsc_tensor *view = nsc_retain(zeros);
    for (int d = 0; d < src->ndim && view; d++) {
        nsc_tensor *narrowed = nsc_narrow(view, d, 0, index->shape[d]);
        nsc_free(view);
        view = narrowed;
    }
    nsc_status status = view ? nsc_copy_(view, grad) : nsc_last_status();
    nsc_free(view);
    if (status != NSC_OK) {
        nsc_free(zeros);
        return NULL;
    }
    return zeros;
}

static nsc_status scatter_add_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                       nsc_tensor **grad_in) {
    const dim_params *p = g->params;
    if (g->needs_grad[0]) {
        grad_in[0] = nsc_retain(grad_out[0]);
    }
    if (g->needs_grad[2]) {
        nsc_tensor *picked = nsc_gather(grad_out[0], p->dim, g->in[1]);
        grad_in[2] = picked ? pad_to(picked, &g->in_meta[1], &g->in_meta[2]) : NULL;
        nsc_free(picked);
        if (!grad_in[2]) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

const nsci_op_def nsci_op_scatter_add = {
    .name = "scatter_add",
    .arity = 3,
    .n_outputs = 1,
    .params_size = sizeof(dim_params),
    .params = dim_desc,
    .infer = scatter_add_infer,
    .cpu = scatter_add_cpu,
    .backward = scatter_add_backward,
    .save_inputs = 1u << 1,
    .exempt = { [NSCI_CASE_BROADCAST] = "no broadcasting: index addresses x and src" },
};

nsc_tensor *nsc_scatter_add(nsc_tensor *x, int dim, nsc_tensor *index, nsc_tensor *src) {
    nsc_tensor *in[3] = { x, index, src };
    dim_params p = { dim };
    return nsci_run(NSC_OP_scatter_add, 3, in, &p);
}
