// Extremes: max and min over every dim, max_dim and min_dim (values and
// indices along one dim), argmax and argmin. One kernel per dtype and
// direction finds value and index together. NaN wins (the first NaN's
// index), ties keep the first occurrence, as PyTorch on the CPU.
// Shapes: x [...]; N = elements compared per output.
// https://pytorch.org/docs/stable/generated/torch.max.html
#include <math.h>
#include <string.h>

#include "tensor/reduce.h"

// --- kernels ---

typedef struct ext_job {
    nsci_reduce_geom g;
    char *values;      // NULL when the op has no values output
    int64_t *indices;  // NULL when the op has no indices output
    char *part_values; // split path: per chunk
    int64_t *part_indices;
} ext_job;

#define GREATER(a, b) ((a) > (b))
#define LESS(a, b)    ((a) < (b))
#define FLOAT_NAN(v)  ((v) != (v))
#define NEVER_NAN(v)  0

// Index of the best of n >= 1 elements p[0], p[s], ... (its value in *best).
#define EXT_ROW(NAME, T, BETTER, IS_NAN)                                                           \
    static int64_t NAME(const T *p, int64_t n, int64_t s, T *best) {                               \
        T b = p[0];                                                                                \
        int64_t bi = 0;                                                                            \
        if (!IS_NAN(b)) {                                                                          \
            for (int64_t i = 1; i < n; i++) {                                                      \
                T v = p[i * s];                                                                    \
                if (IS_NAN(v)) {                                                                   \
                    b = v;                                                                         \
                    bi = i;                                                                        \
                    break;                                                                         \
                }                                                                                  \
                if (BETTER(v, b)) {                                                                \
                    b = v;                                                                         \
                    bi = i;                                                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        *best = b;                                                                                 \
        return bi;                                                                                 \
    }

// Per dtype and direction: rows (one per output), chunks of one long run,
// and the in-order combination of the chunks.
#define EXT_KERNELS(SFX, T, BETTER, IS_NAN)                                                        \
    EXT_ROW(ext_row_##SFX, T, BETTER, IS_NAN)                                                      \
    static void ext_rows_##SFX(void *ctx, int64_t begin, int64_t end) {                            \
        const ext_job *j = ctx;                                                                    \
        const T *base = (const T *)j->g.data;                                                      \
        nsci_reduce_cursor cur;                                                                    \
        nsci_reduce_seek(&j->g, begin, &cur);                                                      \
        for (int64_t o = begin; o < end; o++) {                                                    \
            T best;                                                                                \
            int64_t bi = ext_row_##SFX(base + cur.offset, j->g.n_red, j->g.red_stride, &best);     \
            if (j->values) {                                                                       \
                ((T *)j->values)[o] = best;                                                        \
            }                                                                                      \
            if (j->indices) {                                                                      \
                j->indices[o] = bi;                                                                \
            }                                                                                      \
            nsci_reduce_next(&j->g, &cur);                                                         \
        }                                                                                          \
    }                                                                                              \
    static void ext_chunks_##SFX(void *ctx, int64_t begin, int64_t end) {                          \
        const ext_job *j = ctx;                                                                    \
        const T *base = (const T *)j->g.data;                                                      \
        for (int64_t c = begin; c < end; c++) {                                                    \
            int64_t start = c * NSCI_REDUCE_CHUNK;                                                 \
            int64_t n = NSCI_MIN((int64_t)NSCI_REDUCE_CHUNK, j->g.n_red - start);                  \
            j->part_indices[c] = start + ext_row_##SFX(base + start * j->g.red_stride, n,          \
                                                       j->g.red_stride, (T *)j->part_values + c);  \
        }                                                                                          \
    }                                                                                              \
    static void ext_combine_##SFX(const ext_job *j, int64_t n_chunks) {                            \
        const T *v = (const T *)j->part_values;                                                    \
        int64_t best = 0;                                                                          \
        for (int64_t c = 1; c < n_chunks && !IS_NAN(v[best]); c++) {                               \
            if (IS_NAN(v[c]) || BETTER(v[c], v[best])) {                                           \
                best = c;                                                                          \
            }                                                                                      \
        }                                                                                          \
        if (j->values) {                                                                           \
            *(T *)j->values = v[best];                                                             \
        }                                                                                          \
        if (j->indices) {                                                                          \
            *j->indices = j->part_indices[best];                                                   \
        }                                                                                          \
    }

EXT_KERNELS(max_f32, float, GREATER, FLOAT_NAN)
EXT_KERNELS(max_f64, double, GREATER, FLOAT_NAN)
EXT_KERNELS(max_i64, int64_t, GREATER, NEVER_NAN)
EXT_KERNELS(max_bool, uint8_t, GREATER, NEVER_NAN)
EXT_KERNELS(min_f32, float, LESS, FLOAT_NAN)
EXT_KERNELS(min_f64, double, LESS, FLOAT_NAN)
EXT_KERNELS(min_i64, int64_t, LESS, NEVER_NAN)
EXT_KERNELS(min_bool, uint8_t, LESS, NEVER_NAN)

typedef struct ext_kernels {
    nsci_range_fn rows, chunks;
    void (*combine)(const ext_job *j, int64_t n_chunks);
} ext_kernels;

static const ext_kernels ext_table[2][NSC_N_DTYPES] = {
    { { ext_rows_max_f32, ext_chunks_max_f32, ext_combine_max_f32 },
      { ext_rows_max_f64, ext_chunks_max_f64, ext_combine_max_f64 },
      { ext_rows_max_i64, ext_chunks_max_i64, ext_combine_max_i64 },
      { ext_rows_max_bool, ext_chunks_max_bool, ext_combine_max_bool } },
    { { ext_rows_min_f32, ext_chunks_min_f32, ext_combine_min_f32 },
      { ext_rows_min_f64, ext_chunks_min_f64, ext_combine_min_f64 },
      { ext_rows_min_i64, ext_chunks_min_i64, ext_combine_min_i64 },
      { ext_rows_min_bool, ext_chunks_min_bool, ext_combine_min_bool } },
};

static bool is_max_op(nsc_op op) {
    return op == NSC_OP_max || op == NSC_OP_max_dim || op == NSC_OP_argmax;
}

// Writes the best value and/or index of x over mask into values / indices.
static nsc_status ext_run(nsc_op op, nsc_tensor *x, uint32_t mask, nsc_tensor *values,
                          nsc_tensor *indices) {
    ext_job j = { .values = values ? nsci_data_ptr(values) : NULL,
                  .indices = indices ? (int64_t *)nsci_data_ptr(indices) : NULL };
    nsc_tensor *copy;
    // Positions are row-major indices into the reduced dims: keep their order.
    if (nsci_reduce_plan(x, mask, (nsc_dtype)x->dtype, false, &j.g, &copy) != NSC_OK) {
        return nsc_last_status();
    }
    const ext_kernels *k = &ext_table[is_max_op(op) ? 0 : 1][x->dtype];
    int64_t n_chunks = nsci_reduce_n_chunks(&j.g);
    nsc_status status = NSC_OK;
    if (j.g.n_out == 0) {
        // nothing to write
    } else if (n_chunks > 1) {
        j.part_values = nsci_malloc((size_t)n_chunks * sizeof(double));
        j.part_indices = nsci_malloc((size_t)n_chunks * sizeof(int64_t));
        if (j.part_values && j.part_indices) {
            nsci_parallel_for(n_chunks, 1, k->chunks, &j);
            k->combine(&j, n_chunks);
        } else {
            status = nsc_last_status();
        }
        nsci_free(j.part_values);
        nsci_free(j.part_indices);
    } else {
        nsci_reduce_parallel(&j.g, k->rows, &j);
    }
    nsc_free(copy);
    return status;
}

// --- max, min over every dim ---
// out = the largest (smallest) element, a 0-dim tensor of x's dtype; an
// empty x is an error (no identity). Backward: the gradient is shared evenly
// among the elements equal to the result (torch's evenly_distribute_backward;
// NaN results select the NaN elements). Saves x and the result.

static nsc_status ext_all_infer(nsci_call *c) {
    const nsc_tensor *x = c->in[0];
    if (nsci_numel(x->ndim, x->shape) == 0) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "an empty input has no %s: give a dim (%s_dim)",
                              c->def->name, c->def->name);
    }
    c->meta[0].dtype = (nsc_dtype)x->dtype;
    c->meta[0].ndim = 0;
    return NSC_OK;
}

static nsc_status ext_all_cpu(nsci_call *c) {
    nsc_tensor *x = c->in[0];
    uint32_t mask = x->ndim ? (1u << x->ndim) - 1 : 0;
    return ext_run(c->op, x, mask, c->out[0], NULL);
}

static nsc_status ext_all_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                   nsc_tensor **grad_in) {
    nsc_tensor *x = g->in[0], *v = g->out[0];
    nsc_tensor *hit = nsc_eq(x, v);
    nsc_tensor *x_nan = nsc_ne(x, x);
    nsc_tensor *v_nan = nsc_ne(v, v);
    nsc_tensor *both_nan = nsc_logical_and(x_nan, v_nan);
    nsc_tensor *mask = nsc_logical_or(hit, both_nan);
    nsc_tensor *count = nsc_sum_all(mask);
    nsc_tensor *share = nsc_div(grad_out[0], count);
    nsc_tensor *zero = nsc_zeros_like(share);
    grad_in[0] = nsc_where(mask, share, zero);
    nsc_tensor *temps[] = { hit, x_nan, v_nan, both_nan, mask, count, share, zero };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

#define EXT_ALL_ROW(NAME)                                                                          \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .infer = ext_all_infer,                                                                    \
        .cpu = ext_all_cpu,                                                                        \
        .backward = ext_all_backward,                                                              \
        .save_inputs = 1,                                                                          \
        .save_outputs = 1,                                                                         \
        .exempt = { [NSCI_CASE_EMPTY] = "an empty input is an error (no identity), as in torch; "  \
                                        "tests/test_op_reduce.c checks it" },                      \
    };                                                                                             \
    nsc_tensor *nsc_##NAME(nsc_tensor *x) {                                                        \
        return nsci_run(NSC_OP_##NAME, 1, &x, NULL);                                               \
    }

EXT_ALL_ROW(max)
EXT_ALL_ROW(min)

// --- max_dim, min_dim, argmax, argmin ---
// Along dims[0] (keepdim or not): values (x's dtype) and i64 indices of the
// first best element; argmax/argmin give the indices only (not for bool, as
// torch), or with .all the index into the flattened x as a 0-dim tensor.
// Reducing a size-0 dim is an error. Backward of max_dim/min_dim: the
// gradient goes to the selected index only (torch's
// value_selecting_reduction_backward). Saves the indices.

static nsc_status ext_dim_infer(nsci_call *c) {
    const nsci_reduce_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    bool arg = c->op == NSC_OP_argmax || c->op == NSC_OP_argmin;
    if (arg && x->dtype == NSC_BOOL) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "bool input: expected f32, f64 or i64");
    }
    uint32_t mask;
    if (arg && p->all) {
        if (nsci_numel(x->ndim, x->shape) == 0) {
            return nsci_call_fail(c, NSC_ERR_SHAPE, "an empty input has no %s over all dims",
                                  c->def->name);
        }
        c->meta[0].dtype = NSC_I64;
        c->meta[0].ndim = 0;
        return NSC_OK;
    }
    if (p->ndims != 1) {
        return nsci_call_fail(c, NSC_ERR_ARG, "%d dims given: expected one", p->ndims);
    }
    if (nsci_reduce_check(c, p, &mask) != NSC_OK) {
        return nsc_last_status();
    }
    if (x->ndim > 0 && x->shape[nsci_wrap_dim(p->dims[0], x->ndim)] == 0) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "dim %d has size 0: %s has no identity", p->dims[0],
                              c->def->name);
    }
    nsci_reduce_meta(&c->meta[0], x, mask, p->keepdim, arg ? NSC_I64 : (nsc_dtype)x->dtype);
    if (!arg) {
        c->meta[1] = c->meta[0];
        c->meta[1].dtype = NSC_I64;
    }
    return NSC_OK;
}

static nsc_status ext_dim_cpu(nsci_call *c) {
    nsc_tensor *x = c->in[0];
    uint32_t mask = nsci_reduce_mask(c->params, x->ndim);
    if (c->op == NSC_OP_argmax || c->op == NSC_OP_argmin) {
        return ext_run(c->op, x, mask, NULL, c->out[0]);
    }
    return ext_run(c->op, x, mask, c->out[0], c->out[1]);
}

// 0 .. K-1 along dim d of a rank-ndim shape (size 1 elsewhere), on like's device.
static nsc_tensor *positions(int64_t k, int d, int ndim, const nsc_tensor *like) {
    int64_t shape[NSC_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        shape[i] = i == d ? k : 1;
    }
    nsc_tensor *range = nsc_arange(0.0, (double)k, 1.0, NSC_I64);
    nsc_tensor *pos = nsc_reshape(range, ndim, shape);
    nsc_free(range);
    nsc_device dev = nsc_tensor_target_device(like);
    if (pos && dev != NSC_CPU && dev != NSC_META) {
        nsc_tensor *moved = nsc_to(pos, dev);
        nsc_free(pos);
        pos = moved;
    }
    return pos;
}

static nsc_status ext_dim_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                   nsc_tensor **grad_in) {
    const nsci_reduce_params *p = g->params;
    const nsci_meta *in = &g->in_meta[0];
    if (in->ndim == 0) {
        grad_in[0] = nsc_retain(grad_out[0]);
        return NSC_OK;
    }
    int d = nsci_wrap_dim(p->dims[0], in->ndim);
    uint32_t mask = 1u << d;
    nsc_tensor *index = nsci_reduce_unsqueeze(g->out[1], in, mask, p->keepdim);
    nsc_tensor *grad = nsci_reduce_unsqueeze(grad_out[0], in, mask, p->keepdim);
    nsc_tensor *pos = index ? positions(in->shape[d], d, in->ndim, index) : NULL;
    nsc_tensor *miss = nsc_ne(pos, index);
    nsc_tensor *spread = nsc_expand(grad, in->ndim, in->shape);
    grad_in[0] = nsc_masked_fill(spread, miss, 0.0);
    nsc_tensor *temps[] = { index, grad, pos, miss, spread };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

#define EXT_DIM_ROW(NAME)                                                                          \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 1,                                                                                \
        .n_outputs = 2,                                                                            \
        .params_size = sizeof(nsci_reduce_params),                                                 \
        .params = nsci_reduce_desc,                                                                \
        .infer = ext_dim_infer,                                                                    \
        .cpu = ext_dim_cpu,                                                                        \
        .backward = ext_dim_backward,                                                              \
        .save_outputs = 2,                                                                         \
    };

EXT_DIM_ROW(max_dim)
EXT_DIM_ROW(min_dim)

#define ARG_ROW(NAME)                                                                              \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = sizeof(nsci_reduce_params),                                                 \
        .params = nsci_reduce_desc,                                                                \
        .infer = ext_dim_infer,                                                                    \
        .cpu = ext_dim_cpu,                                                                        \
        .no_grad = "integer indices: not differentiable",                                          \
    };

ARG_ROW(argmax)
ARG_ROW(argmin)

static nsc_status run_dim(nsc_op op, nsc_tensor *x, int dim, bool keepdim, nsc_tensor **values,
                          nsc_tensor **indices) {
    nsci_reduce_params p = nsci_reduce_pack(1, &dim, keepdim);
    nsc_tensor *out[2] = { NULL, NULL };
    if (!values || !indices) {
        return nsci_fail(NSC_ERR_ARG, "%s: values and indices must not be NULL",
                         nsci_op_defs[op]->name);
    }
    nsc_status status = nsci_run_multi(op, 1, &x, &p, out);
    *values = out[0];
    *indices = out[1];
    return status;
}

nsc_status nsc_max_dim(nsc_tensor *x, int dim, bool keepdim, nsc_tensor **values,
                       nsc_tensor **indices) {
    return run_dim(NSC_OP_max_dim, x, dim, keepdim, values, indices);
}

nsc_status nsc_min_dim(nsc_tensor *x, int dim, bool keepdim, nsc_tensor **values,
                       nsc_tensor **indices) {
    return run_dim(NSC_OP_min_dim, x, dim, keepdim, values, indices);
}

nsc_tensor *nsc_argmax(nsc_tensor *x, int dim, bool keepdim) {
    nsci_reduce_params p = nsci_reduce_pack(1, &dim, keepdim);
    return nsci_run(NSC_OP_argmax, 1, &x, &p);
}

nsc_tensor *nsc_argmin(nsc_tensor *x, int dim, bool keepdim) {
    nsci_reduce_params p = nsci_reduce_pack(1, &dim, keepdim);
    return nsci_run(NSC_OP_argmin, 1, &x, &p);
}

nsc_tensor *nsc_argmax_all(nsc_tensor *x) {
    nsci_reduce_params p = { .all = true };
    return nsci_run(NSC_OP_argmax, 1, &x, &p);
}

nsc_tensor *nsc_argmin_all(nsc_tensor *x) {
    nsci_reduce_params p = { .all = true };
    return nsci_run(NSC_OP_argmin, 1, &x, &p);
}
