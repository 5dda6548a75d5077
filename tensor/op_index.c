// Indexing by i64 index tensors: embedding, index_select, gather, and their
// adjoints scatter_add and index_add (out-of-place). Every index is checked
// against its range before anything is written; a bad one fails naming its
// value and position. Negative indices are out of range, as in torch.gather.
// Dims: V vocabulary rows, C channels; [outer, size, inner] is x viewed around dim.
#include <string.h>

#include "tensor/index.h"
#include "tensor/op_params.h"

// --- helpers shared with op_index_more.c, op_join.c and op_loss.c ---

nsc_tensor *nsci_cpu_contiguous(nsc_tensor *x) {
    return nsci_is_contiguous(x) ? nsc_retain(x) : nsci_cpu_convert(x, (nsc_dtype)x->dtype);
}

char *nsci_position_str(char *buf, size_t buf_bytes, int ndim, const int64_t *shape, int64_t i) {
    int64_t coord[NSC_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        coord[d] = shape[d] > 0 ? i % shape[d] : 0;
        i = shape[d] > 0 ? i / shape[d] : 0;
    }
    return nsci_shape_str(buf, buf_bytes, ndim, coord);
}

nsc_tensor *nsci_zeros_on(nsc_tensor *like, int ndim, const int64_t *shape) {
    nsc_tensor *t = nsc_zeros((nsc_dtype)like->dtype, (nsc_device)like->device, ndim, shape);
    if (t) {
        t->target_device = like->target_device;
    }
    return t;
}

// First index outside [0, size) in a contiguous i64 tensor, or -1.
static int64_t find_bad_index(const nsc_tensor *index, int64_t size) {
    const int64_t *idx = (const int64_t *)nsci_data_ptr(index);
    int64_t n = nsci_numel(index->ndim, index->shape);
    for (int64_t i = 0; i < n; i++) {
        if ((uint64_t)idx[i] >= (uint64_t)size) { // negatives wrap to huge values
            return i;
        }
    }
    return -1;
}

nsc_status nsci_check_index(nsci_call *c, const nsc_tensor *index, int64_t size, const char *what) {
    int64_t bad = find_bad_index(index, size);
    if (bad < 0) {
        return NSC_OK;
    }
    char pos[160];
    nsci_position_str(pos, sizeof pos, index->ndim, index->shape, bad);
    const int64_t *idx = (const int64_t *)nsci_data_ptr(index);
    return nsci_call_fail(c, NSC_ERR_ARG, "%s %lld at position %s is out of range [0, %lld)", what,
                          (long long)idx[bad], pos, (long long)size);
}

nsc_status nsci_check_index_dtype(nsci_call *c, const nsc_tensor *index, const char *what) {
    if (index->dtype != NSC_I64) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "%s dtype %s: expected i64", what,
                              nsc_dtype_name((nsc_dtype)index->dtype));
    }
    return NSC_OK;
}

// Normalizes dim for x (a 0-dim tensor accepts dim 0 and -1, as torch).
static nsc_status wrap_dim(nsci_call *c, int dim, int ndim, int *out) {
    *out = nsci_wrap_dim(dim, ndim > 0 ? ndim : 1);
    if (*out < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", dim, ndim);
    }
    return NSC_OK;
}

static void split_at(const nsc_tensor *x, int dim, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d < dim) {
            *outer *= x->shape[d];
        } else if (d > dim) {
            *inner *= x->shape[d];
        }
    }
}

static int64_t size_at(const nsc_tensor *x, int dim) {
    return x->ndim > 0 ? x->shape[dim] : 1;
}

static int64_t grain_for(int64_t work_per_item) {
    return NSCI_MAX(1, NSCI_GRAIN / NSCI_MAX(work_per_item, 1));
}

static const nsci_param_desc dim_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(dim_params, dim), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// --- row copies: out[o, j, :] = x[o, idx[j], :] (embedding, index_select) ---

typedef struct take_job {
    char *out;
    const char *x;
    const int64_t *idx;
    int64_t n_idx, size, row_bytes;
} take_job;

// Items are (o, j) pairs: one memcpy of row_bytes each.
static void take_rows(void *ctx, int64_t begin, int64_t end) {
    const take_job *job = ctx;
    for (int64_t item = begin; item < end; item++) {
        int64_t o = item / job->n_idx, j = item % job->n_idx;
        const char *src = job->x + (o * job->size + job->idx[j]) * job->row_bytes;
        memcpy(job->out + item * job->row_bytes, src, (size_t)job->row_bytes);
    }
}

static void take(nsc_tensor *out, const nsc_tensor *x, const nsc_tensor *index, int64_t outer,
                 int64_t size, int64_t inner) {
    take_job job = { nsci_data_ptr(out),
                     nsci_data_ptr(x),
                     (const int64_t *)nsci_data_ptr(index),
                     nsci_numel(index->ndim, index->shape),
                     size,
                     inner * (int64_t)nsc_dtype_size((nsc_dtype)x->dtype) };
    if (job.row_bytes == 0) {
        return; // empty rows: nothing to copy (and no data pointers to use)
    }
    nsci_parallel_for(outer * job.n_idx, grain_for(inner), take_rows, &job);
}

// --- embedding ---
// out[..., :] = weight[ids[...], :]. weight: [V, C]; ids: any shape, i64; out: [*ids, C].
// https://pytorch.org/docs/stable/generated/torch.nn.functional.embedding.html
// Saves ids: the weight's gradient is index_add of the output gradient's rows into zeros.

static nsc_status embedding_infer(nsci_call *c) {
    const nsc_tensor *weight = c->in[0], *ids = c->in[1];
    if (weight->ndim != 2) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "weight has rank %d: expected [V, C]",
                              weight->ndim);
    }
    if (nsci_check_index_dtype(c, ids, "ids") != NSC_OK) {
        return nsc_last_status();
    }
    if (ids->ndim + 1 > NSC_MAX_DIMS) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "ids have rank %d: the result would exceed %d",
                              ids->ndim, NSC_MAX_DIMS);
    }
    nsci_meta *m = &c->meta[0];
    m->dtype = (nsc_dtype)weight->dtype;
    m->ndim = ids->ndim + 1;
    memcpy(m->shape, ids->shape, (size_t)ids->ndim * sizeof *ids->shape);
    m->shape[ids->ndim] = weight->shape[1];
    return NSC_OK;
}

static nsc_status embedding_cpu(nsci_call *c) {
    nsc_tensor *weight = nsci_cpu_contiguous(c->in[0]);
    nsc_tensor *ids = nsci_cpu_contiguous(c->in[1]);
    nsc_status status = (weight && ids) ? NSC_OK : nsc_last_status();
    if (status == NSC_OK) {
        status = nsci_check_index(c, ids, weight->shape[0], "id");
    }
    if (status == NSC_OK) {
        take(c->out[0], weight, ids, 1, weight->shape[0], weight->shape[1]);
    }
    nsc_free(weight);
    nsc_free(ids);
    return status;
}

static nsc_status embedding_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                     nsc_tensor **grad_in) {
    if (!g->needs_grad[0]) {
        return NSC_OK;
    }
    const nsci_meta *w = &g->in_meta[0];
    // One zero expanded to [V, C]: index_add's copy of it is a single write
    // pass (a [V, C] zeros tensor cost a fill, then a read and a write).
    nsc_tensor *zero = nsci_zeros_on(grad_out[0], 0, NULL);
    nsc_tensor *zeros = nsc_expand(zero, 2, w->shape);
    nsc_tensor *flat_ids = nsc_reshape(g->in[1], NSC_SHAPE(-1));
    nsc_tensor *rows = nsc_reshape(grad_out[0], NSC_SHAPE(-1, w->shape[1]));
    grad_in[0] = nsc_index_add(zeros, 0, flat_ids, rows);
    nsc_free(zero);
    nsc_free(zeros);
    nsc_free(flat_ids);
    nsc_free(rows);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_embedding = {
    .name = "embedding",
    .arity = 2,
    .n_outputs = 1,
    .infer = embedding_infer,
    .cpu = embedding_cpu,
    .backward = embedding_backward,
    .save_inputs = 1u << 1,
    .exempt = { [NSCI_CASE_BROADCAST] = "no broadcasting: ids pick rows of weight" },
};

nsc_tensor *nsc_embedding(nsc_tensor *weight, nsc_tensor *ids) {
    nsc_tensor *in[2] = { weight, ids };
    return nsci_run(NSC_OP_embedding, 2, in, NULL);
}

// --- index_select ---
// out = x with dim restricted to index (1-D or 0-D, i64): out[.., j, ..] = x[.., index[j], ..].
// https://pytorch.org/docs/stable/generated/torch.index_select.html
// Saves index: the gradient is index_add of the output gradient into zeros.

static nsc_status index_select_infer(nsci_call *c) {
    const dim_params *p = c->params;
    const nsc_tensor *x = c->in[0], *index = c->in[1];
    int dim;
    if (wrap_dim(c, p->dim, x->ndim, &dim) != NSC_OK ||
        nsci_check_index_dtype(c, index, "index") != NSC_OK) {
        return nsc_last_status();
    }
    int64_t n = nsci_numel(index->ndim, index->shape);
    if (index->ndim > 1 || (x->ndim == 0 && n != 1)) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "index must be 1-D (one element for a 0-dim "
                              "input)");
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    if (x->ndim > 0) {
        c->meta[0].shape[dim] = n;
    }
    return NSC_OK;
}

static nsc_status index_select_cpu(nsci_call *c) {
    const dim_params *p = c->params;
    int dim = nsci_wrap_dim(p->dim, NSCI_MAX(c->in[0]->ndim, 1));
    nsc_tensor *x = nsci_cpu_contiguous(c->in[0]);
    nsc_tensor *index = nsci_cpu_contiguous(c->in[1]);
    nsc_status status = (x && index) ? NSC_OK : nsc_last_status();
    if (status == NSC_OK) {
        status = nsci_check_index(c, index, size_at(x, dim), "index");
    }
    if (status == NSC_OK) {
        int64_t outer, inner;
        split_at(x, dim, &outer, &inner);
        take(c->out[0], x, index, outer, size_at(x, dim), inner);
    }
    nsc_free(x);
    nsc_free(index);
    return status;
}

static nsc_status index_select_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                        nsc_tensor **grad_in) {
    if (!g->needs_grad[0]) {
        return NSC_OK;
    }
    const dim_params *p = g->params;
    const nsci_meta *x = &g->in_meta[0];
    nsc_tensor *zeros = nsci_zeros_on(grad_out[0], x->ndim, x->shape);
    grad_in[0] = nsc_index_add(zeros, p->dim, g->in[1], grad_out[0]);
    nsc_free(zeros);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_index_select = {
    .name = "index_select",
    .arity = 2,
    .n_outputs = 1,
    .params_size = sizeof(dim_params),
    .params = dim_desc,
    .infer = index_select_infer,
    .cpu = index_select_cpu,
    .backward = index_select_backward,
    .save_inputs = 1u << 1,
    .exempt = { [NSCI_CASE_BROADCAST] = "no broadcasting: index picks slices of x" },
};

nsc_tensor *nsc_index_select(nsc_tensor *x, int dim, nsc_tensor *index) {
    nsc_tensor *in[2] = { x, index };
    dim_params p = { dim };
    return nsci_run(NSC_OP_index_select, 2, in, &p);
}

// --- index_add ---
// out = x, then out[.., index[j], ..] += src[.., j, ..]. index: 1-D (or 0-D) i64;
// src: x's shape except numel(index) at dim; same dtype as x.
// https://pytorch.org/docs/stable/generated/torch.index_add.html
// Saves index: x's gradient is the output's; src's is index_select of it.

static nsc_status index_add_infer(nsci_call *c) {
    const dim_params *p = c->params;
    const nsc_tensor *x = c->in[0], *index = c->in[1], *src = c->in[2];
    int dim;
    if (wrap_dim(c, p->dim, x->ndim, &dim) != NSC_OK ||
        nsci_check_index_dtype(c, index, "index") != NSC_OK) {
        return nsc_last_status();
    }
    if (src->dtype != x->dtype) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "x is %s and src %s: expected one dtype",
                              nsc_dtype_name((nsc_dtype)x->dtype),
                              nsc_dtype_name((nsc_dtype)src->dtype));
    }
    int64_t n = nsci_numel(index->ndim, index->shape);
    bool ok = index->ndim <= 1 && src->ndim == x->ndim && (x->ndim > 0 || n == 1);
    for (int d = 0; ok && d < x->ndim; d++) {
        ok = src->shape[d] == (d == dim ? n : x->shape[d]);
    }
    if (!ok) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "expected a 1-D index and src of x's shape "
                              "with numel(index) = %lld at dim %d",
                              (long long)n, dim);
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    return NSC_OK;
}

typedef struct add_job {
    char *out;
    const char *src;
    const int64_t *idx;
    int64_t n_idx, size, inner, n_chunks;
    nsc_dtype dtype;
} add_job;

enum {
    ADD_CHUNK = 1024
}; // inner elements per task: rows are split so threads never collide

#define ADD_ROW(NAME, T, ADD)                                                                      \
    static void NAME(T *restrict o, const T *restrict s, int64_t n) {                              \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T v = s[i];                                                                            \
            o[i] = ADD;                                                                            \
        }                                                                                          \
    }

// Integers wrap as PyTorch's do (unsigned arithmetic avoids C's UB); bool adds as "or".
ADD_ROW(add_row_f32, float, o[i] + v)
ADD_ROW(add_row_f64, double, o[i] + v)
ADD_ROW(add_row_i64, int64_t, (int64_t)((uint64_t)o[i] + (uint64_t)v))
ADD_ROW(add_row_bool, uint8_t, (uint8_t)(o[i] | v))

// Items are (o, chunk of inner) pairs; each walks every j, so the output
// rows it touches belong to it alone.
static void add_rows(void *ctx, int64_t begin, int64_t end) {
    const add_job *job = ctx;
    size_t elem = nsc_dtype_size(job->dtype);
    for (int64_t item = begin; item < end; item++) {
        int64_t o = item / job->n_chunks, lo = (item % job->n_chunks) * ADD_CHUNK;
        int64_t n = NSCI_MIN(ADD_CHUNK, job->inner - lo);
        for (int64_t j = 0; j < job->n_idx; j++) {
            char *dst = job->out + (size_t)((o * job->size + job->idx[j]) * job->inner + lo) * elem;
            const char *s = job->src + (size_t)((o * job->n_idx + j) * job->inner + lo) * elem;
            switch (job->dtype) {
                case NSC_F32:
                    add_row_f32((float *)dst, (const float *)s, n);
                    break;
                case NSC_F64:
                    add_row_f64((double *)dst, (const double *)s, n);
                    break;
                case NSC_I64:
                    add_row_i64((int64_t *)dst, (const int64_t *)s, n);
                    break;
                default:
                    add_row_bool((uint8_t *)dst, (const uint8_t *)s, n);
                    break;
            }
        }
    }
}

static nsc_status index_add_cpu(nsci_call *c) {
    const dim_params *p = c->params;
    int dim = nsci_wrap_dim(p->dim, NSCI_MAX(c->in[0]->ndim, 1));
    nsc_tensor *index = nsci_cpu_contiguous(c->in[1]);
    nsc_tensor *src = nsci_cpu_contiguous(c->in[2]);
    nsc_status status = (index && src) ? NSC_OK : nsc_last_status();
    if (status == NSC_OK) {
        status = nsci_check_index(c, index, size_at(c->in[0], dim), "index");
    }
    if (status == NSC_OK) {
        status = nsci_copy_into(c->out[0], c->in[0]);
    }
    if (status == NSC_OK) {
        add_job job = { .out = nsci_data_ptr(c->out[0]),
                        .src = nsci_data_ptr(src),
                        .idx = (const int64_t *)nsci_data_ptr(index),
                        .n_idx = nsci_numel(index->ndim, index->shape),
                        .size = size_at(c->in[0], dim) };
        int64_t outer;
        split_at(c->in[0], dim, &outer, &job.inner);
        job.n_chunks = (job.inner + ADD_CHUNK - 1) / ADD_CHUNK;
        job.dtype = (nsc_dtype)src->dtype;
        int64_t per_item = job.n_idx * NSCI_MIN(job.inner, ADD_CHUNK);
        nsci_parallel_for(outer * job.n_chunks, grain_for(per_item), add_rows, &job);
    }
    nsc_free(index);
    nsc_free(src);
    return status;
}

static nsc_status index_add_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                     nsc_tensor **grad_in) {
    const dim_params *p = g->params;
    if (g->needs_grad[0]) {
        grad_in[0] = nsc_retain(grad_out[0]);
    }
    if (g->needs_grad[2] && !(grad_in[2] = nsc_index_select(grad_out[0], p->dim, g->in[1]))) {
        return nsc_last_status();
    }
    return NSC_OK;
}

const nsci_op_def nsci_op_index_add = {
    .name = "index_add",
    .arity = 3,
    .n_outputs = 1,
    .params_size = sizeof(dim_params),
    .params = dim_desc,
    .infer = index_add_infer,
    .cpu = index_add_cpu,
    .backward = index_add_backward,
    .save_inputs = 1u << 1,
    .exempt = { [NSCI_CASE_BROADCAST] = "no broadcasting: src's shape follows x and index" },
};

nsc_tensor *nsc_index_add(nsc_tensor *x, int dim, nsc_tensor *index, nsc_tensor *src) {
    nsc_tensor *in[3] = { x, index, src };
    dim_params p = { dim };
    return nsci_run(NSC_OP_index_add, 3, in, &p);
}
