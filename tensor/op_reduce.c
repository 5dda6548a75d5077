// Sums: sum, mean and sum_to_size (the inverse of expand, which autograd
// uses for every broadcast gradient). Shapes: x [...] reduced over a dims
// list; N = elements per output, R x C = rows and columns of a column sum
// ([N, C] -> [C], the bias-gradient case).
// https://pytorch.org/docs/stable/generated/torch.sum.html
#include <math.h>
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/reduce.h"

// The column path sums tiles of columns with double accumulators kept in
// L1: a whole row when it has at most COL_MAX columns (the rows then stream
// through memory), else tiles of COL_TILE. Rows are split into chunks until
// there are about COL_TASKS tasks, so [N, C] -> [C] also runs in parallel.
enum {
    COL_MAX = 1024,
    COL_TILE = 256,
    COL_TASKS = 16
};

// --- kernels ---

// Sum of n elements p[0], p[s], ...: eight partial sums, so the contiguous
// loop vectorizes and rounding error grows with n / 8 rather than n. Floats
// accumulate in double; int64 in uint64, wrapping as PyTorch's int64 does.
#define SUM_ROW(NAME, T, ACC)                                                                      \
    static ACC NAME(const T *p, int64_t n, int64_t s) {                                            \
        ACC part[8] = { 0 };                                                                       \
        int64_t i = 0;                                                                             \
        if (s == 1) {                                                                              \
            for (; i + 8 <= n; i += 8) {                                                           \
                for (int k = 0; k < 8; k++) {                                                      \
                    part[k] += (ACC)p[i + k];                                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        ACC tail = 0;                                                                              \
        for (; i < n; i++) {                                                                       \
            tail += (ACC)p[i * s];                                                                 \
        }                                                                                          \
        return ((part[0] + part[4]) + (part[1] + part[5])) +                                       \
               ((part[2] + part[6]) + (part[3] + part[7])) + tail;                                 \
    }

// sums[j] = sum over r < n_rows of p[r * rs + j], for j < n_cols: each row's
// columns are contiguous, and blocks of 8 vectorize.
#define SUM_COLS(NAME, T, ACC)                                                                     \
    static void NAME(const T *restrict p, int64_t n_rows, int64_t rs, int64_t n_cols,              \
                     ACC *restrict sums) {                                                         \
        for (int64_t j = 0; j < n_cols; j++) {                                                     \
            sums[j] = 0;                                                                           \
        }                                                                                          \
        for (int64_t r = 0; r < n_rows; r++) {                                                     \
            const T *restrict row = p + r * rs;                                                    \
            int64_t j = 0;                                                                         \
            for (; j + 8 <= n_cols; j += 8) {                                                      \
                for (int k = 0; k < 8; k++) {                                                      \
                    sums[j + k] += (ACC)row[j + k];                                                \
                }                                                                                  \
            }                                                                                      \
            for (; j < n_cols; j++) {                                                              \
                sums[j] += (ACC)row[j];                                                            \
            }                                                                                      \
        }                                                                                          \
    }

typedef struct sum_job {
    nsci_reduce_geom g;
    char *out;
    double scale; // mean: 1 / N; sum: 1 (floats only)
    // Column path: tiles of `block` columns along the contiguous kept dim (n_blocks
    // per group of the other kept dims), each split into n_chunks row chunks.
    int64_t block, n_blocks, n_chunks, rows_per_chunk;
    void *partial; // per chunk accumulators (split and chunked column paths)
} sum_job;

// Where tile t of the column path starts in the output, and its width.
static int64_t tile_first(const sum_job *j, int64_t tile, int64_t *n_cols) {
    int64_t width = j->g.outer_shape[j->g.n_outer - 1];
    int64_t col0 = (tile % j->n_blocks) * j->block;
    *n_cols = NSCI_MIN(j->block, width - col0);
    return (tile / j->n_blocks) * width + col0;
}

// Per dtype: rows (one run per output), columns, chunks of one long run, and
// the combination of the chunks. FIN turns the accumulator `acc` into T.
#define SUM_KERNELS(SFX, T, ACC, FIN)                                                              \
    SUM_ROW(sum_row_##SFX, T, ACC)                                                                 \
    SUM_COLS(sum_cols_##SFX, T, ACC)                                                               \
    static void sum_rows_range_##SFX(void *ctx, int64_t begin, int64_t end) {                      \
        const sum_job *j = ctx;                                                                    \
        const T *base = (const T *)j->g.data;                                                      \
        T *out = (T *)j->out;                                                                      \
        nsci_reduce_cursor cur;                                                                    \
        nsci_reduce_seek(&j->g, begin, &cur);                                                      \
        for (int64_t o = begin; o < end; o++) {                                                    \
            ACC acc = sum_row_##SFX(base + cur.offset, j->g.n_red, j->g.red_stride);               \
            out[o] = FIN;                                                                          \
            nsci_reduce_next(&j->g, &cur);                                                         \
        }                                                                                          \
    }                                                                                              \
    static void sum_cols_range_##SFX(void *ctx, int64_t begin, int64_t end) {                      \
        const sum_job *j = ctx;                                                                    \
        const nsci_reduce_geom *g = &j->g;                                                         \
        ACC local[COL_MAX];                                                                        \
        for (int64_t t = begin; t < end; t++) {                                                    \
            int64_t n_cols, first = tile_first(j, t / j->n_chunks, &n_cols);                       \
            int64_t r0 = (t % j->n_chunks) * j->rows_per_chunk;                                    \
            nsci_reduce_cursor cur;                                                                \
            nsci_reduce_seek(g, first, &cur);                                                      \
            ACC *sums = j->n_chunks > 1 ? (ACC *)j->partial + t * j->block : local;                \
            sum_cols_##SFX((const T *)g->data + cur.offset + r0 * g->red_stride,                   \
                           NSCI_MIN(j->rows_per_chunk, g->n_red - r0), g->red_stride, n_cols,      \
                           sums);                                                                  \
            for (int64_t k = 0; j->n_chunks == 1 && k < n_cols; k++) {                             \
                ACC acc = sums[k];                                                                 \
                ((T *)j->out)[first + k] = FIN;                                                    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void sum_cols_combine_##SFX(const sum_job *j, int64_t n_tiles) {                        \
        for (int64_t tile = 0; tile < n_tiles; tile++) {                                           \
            int64_t n_cols, first = tile_first(j, tile, &n_cols);                                  \
            const ACC *part = (const ACC *)j->partial + tile * j->n_chunks * j->block;             \
            for (int64_t k = 0; k < n_cols; k++) {                                                 \
                ACC acc = 0;                                                                       \
                for (int64_t c = 0; c < j->n_chunks; c++) {                                        \
                    acc += part[c * j->block + k];                                                 \
                }                                                                                  \
                ((T *)j->out)[first + k] = FIN;                                                    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void sum_chunks_range_##SFX(void *ctx, int64_t begin, int64_t end) {                    \
        const sum_job *j = ctx;                                                                    \
        const T *base = (const T *)j->g.data;                                                      \
        for (int64_t c = begin; c < end; c++) {                                                    \
            int64_t start = c * NSCI_REDUCE_CHUNK;                                                 \
            int64_t n = NSCI_MIN((int64_t)NSCI_REDUCE_CHUNK, j->g.n_red - start);                  \
            ((ACC *)j->partial)[c] =                                                               \
                sum_row_##SFX(base + start * j->g.red_stride, n, j->g.red_stride);                 \
        }                                                                                          \
    }                                                                                              \
    static void sum_combine_##SFX(const sum_job *j, int64_t n_chunks) {                            \
        ACC acc = 0;                                                                               \
        for (int64_t c = 0; c < n_chunks; c++) {                                                   \
            acc += ((const ACC *)j->partial)[c];                                                   \
        }                                                                                          \
        *(T *)j->out = FIN;                                                                        \
    }

SUM_KERNELS(f32, float, double, (float)(acc * j->scale))
SUM_KERNELS(f64, double, double, acc * j->scale)
SUM_KERNELS(i64, int64_t, uint64_t, (int64_t)acc)

typedef struct sum_kernels {
    nsci_range_fn rows, cols, chunks;
    void (*combine)(const sum_job *j, int64_t n_chunks);
    void (*cols_combine)(const sum_job *j, int64_t n_tiles);
} sum_kernels;

#define SUM_TABLE_ROW(SFX)                                                                         \
    {                                                                                              \
        sum_rows_range_##SFX, sum_cols_range_##SFX, sum_chunks_range_##SFX, sum_combine_##SFX,     \
            sum_cols_combine_##SFX                                                                 \
    }

static const sum_kernels sum_table[] = {
    [NSC_F32] = SUM_TABLE_ROW(f32),
    [NSC_F64] = SUM_TABLE_ROW(f64),
    [NSC_I64] = SUM_TABLE_ROW(i64),
};

// One long run (a single output): chunks reduced in parallel, combined in order.
static nsc_status sum_split(sum_job *j, const sum_kernels *k, int64_t n_chunks) {
    j->partial = nsci_malloc((size_t)n_chunks * sizeof(double)); // ACC is 8 bytes
    if (!j->partial) {
        return nsc_last_status();
    }
    nsci_parallel_for(n_chunks, 1, k->chunks, j);
    k->combine(j, n_chunks);
    nsci_free(j->partial);
    return NSC_OK;
}

// Runs whose elements are rows of contiguous output columns: tiles of
// columns, and row chunks (summed per chunk, then in order) when the tiles
// alone would leave threads idle. The split depends on the shape only.
static nsc_status sum_columns(sum_job *j, const sum_kernels *k) {
    const nsci_reduce_geom *g = &j->g;
    int64_t width = g->outer_shape[g->n_outer - 1];
    j->block = width <= COL_MAX ? width : COL_TILE;
    j->n_blocks = (width + j->block - 1) / j->block;
    int64_t n_tiles = g->n_out / width * j->n_blocks;
    j->n_chunks = 1;
    if (n_tiles < COL_TASKS && g->n_red * width >= 2 * (int64_t)NSCI_GRAIN) {
        j->n_chunks = NSCI_MIN((COL_TASKS + n_tiles - 1) / n_tiles, (g->n_red + 63) / 64);
    }
    j->rows_per_chunk = (g->n_red + j->n_chunks - 1) / j->n_chunks;
    j->n_chunks = (g->n_red + j->rows_per_chunk - 1) / j->rows_per_chunk;
    if (j->n_chunks > 1) {
        j->partial = nsci_malloc((size_t)(n_tiles * j->n_chunks * j->block) * sizeof(double));
        if (!j->partial) {
            return nsc_last_status();
        }
    }
    int64_t per_task = j->rows_per_chunk * j->block;
    nsci_parallel_for(n_tiles * j->n_chunks, NSCI_MAX(1, NSCI_GRAIN / per_task), k->cols, j);
    if (j->n_chunks > 1) {
        k->cols_combine(j, n_tiles);
        nsci_free(j->partial);
    }
    return NSC_OK;
}

static nsc_status sum_run(sum_job *j, const sum_kernels *k) {
    const nsci_reduce_geom *g = &j->g;
    int64_t n_chunks = nsci_reduce_n_chunks(g);
    if (n_chunks > 1) {
        return sum_split(j, k, n_chunks);
    }
    bool columns = g->n_outer > 0 && g->outer_stride[g->n_outer - 1] == 1 && g->red_stride != 1 &&
                   g->n_red > 1;
    if (columns) {
        return sum_columns(j, k);
    }
    nsci_reduce_parallel(g, k->rows, j);
    return NSC_OK;
}

// out = sum (or mean) of x over mask; out is contiguous in the kept dims' order.
static nsc_status sum_into(nsc_tensor *out, nsc_tensor *x, uint32_t mask, bool mean) {
    nsc_dtype dt = (nsc_dtype)out->dtype;
    sum_job j = { .out = nsci_data_ptr(out), .scale = 1.0 };
    nsc_tensor *copy;
    if (nsci_reduce_plan(x, mask, dt, true, &j.g, &copy) != NSC_OK) {
        return nsc_last_status();
    }
    if (mean) {
        j.scale = j.g.n_red ? 1.0 / (double)j.g.n_red : (double)NAN; // mean of nothing: NaN
    }
    nsc_status status = j.g.n_out ? sum_run(&j, &sum_table[dt]) : NSC_OK;
    nsc_free(copy);
    return status;
}

// --- sum, mean ---
// sum: out = sum of x over dims (bool, i64 -> i64). mean: sum / N, float
// inputs only. Backward: the gradient broadcast back over the reduced dims
// (divided by N for mean). Saves nothing.
// https://pytorch.org/docs/stable/generated/torch.mean.html

static nsc_status sum_infer(nsci_call *c) {
    const nsci_reduce_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    uint32_t mask;
    if (nsci_reduce_check(c, p, &mask) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_dtype dt = (nsc_dtype)x->dtype;
    if (c->op == NSC_OP_mean && !nsci_is_float(dt)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE,
                              "input dtype %s: expected f32 or f64 (convert with to_dtype)",
                              nsc_dtype_name(dt));
    }
    nsci_reduce_meta(&c->meta[0], x, mask, p->keepdim, nsci_is_float(dt) ? dt : NSC_I64);
    return NSC_OK;
}

static nsc_status sum_cpu(nsci_call *c) {
    const nsci_reduce_params *p = c->params;
    uint32_t mask = nsci_reduce_mask(p, c->in[0]->ndim);
    return sum_into(c->out[0], c->in[0], mask, c->op == NSC_OP_mean);
}

static nsc_status sum_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    const nsci_reduce_params *p = g->params;
    uint32_t mask = nsci_reduce_mask(p, g->in_meta[0].ndim);
    grad_in[0] = nsci_reduce_expand_back(grad_out[0], &g->in_meta[0], mask, p->keepdim);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

static nsc_status mean_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                nsc_tensor **grad_in) {
    const nsci_reduce_params *p = g->params;
    const nsci_meta *in = &g->in_meta[0];
    uint32_t mask = nsci_reduce_mask(p, in->ndim);
    nsc_tensor *scaled =
        nsc_div_scalar(grad_out[0], (double)nsci_reduce_count(in->ndim, in->shape, mask));
    grad_in[0] = nsci_reduce_expand_back(scaled, in, mask, p->keepdim);
    nsc_free(scaled);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_sum = {
    .name = "sum",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(nsci_reduce_params),
    .params = nsci_reduce_desc,
    .infer = sum_infer,
    .cpu = sum_cpu,
    .backward = sum_backward,
};

const nsci_op_def nsci_op_mean = {
    .name = "mean",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(nsci_reduce_params),
    .params = nsci_reduce_desc,
    .infer = sum_infer,
    .cpu = sum_cpu,
    .backward = mean_backward,
};

nsc_tensor *nsc_sum(nsc_tensor *x, int ndims, const int *dims, bool keepdim) {
    nsci_reduce_params p = nsci_reduce_pack(ndims, dims, keepdim);
    return nsci_run(NSC_OP_sum, 1, &x, &p);
}

nsc_tensor *nsc_sum_all(nsc_tensor *x) {
    return nsc_sum(x, 0, NULL, false);
}

nsc_tensor *nsc_mean(nsc_tensor *x, int ndims, const int *dims, bool keepdim) {
    nsci_reduce_params p = nsci_reduce_pack(ndims, dims, keepdim);
    return nsci_run(NSC_OP_mean, 1, &x, &p);
}

// --- sum_to_size ---
// x [..., S] summed down to shape (which broadcasts to x's shape): leading
// dims are summed away, dims where shape has 1 are summed with keepdim. An
// equal shape gives a view of x (no copy), as torch returns self. Dtype as
// sum's when something is summed. Backward: expand back to x's shape.
// https://pytorch.org/docs/stable/generated/torch.Tensor.sum_to_size.html

static const nsci_param_desc sum_to_size_desc[] = {
    { "shape", NSCI_PARAM_I64_ARRAY, offsetof(sum_to_size_params, shape),
      offsetof(sum_to_size_params, ndim) },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// The dims of x that are summed to reach p's shape.
static uint32_t sum_to_size_mask(const sum_to_size_params *p, int ndim, const int64_t *shape) {
    int lead = ndim - p->ndim;
    uint32_t mask = lead > 0 ? (1u << lead) - 1 : 0;
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] == 1 && shape[lead + d] != 1) {
            mask |= 1u << (lead + d);
        }
    }
    return mask;
}

static nsc_status sum_to_size_infer(nsci_call *c) {
    const sum_to_size_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    if (p->ndim < 0 || p->ndim > x->ndim) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "a rank-%d size is not reachable by summing",
                              p->ndim);
    }
    int lead = x->ndim - p->ndim;
    for (int d = 0; d < p->ndim; d++) {
        int64_t want = p->shape[d], have = x->shape[lead + d];
        if (want != have && want != 1) {
            char buf[160];
            return nsci_call_fail(c, NSC_ERR_SHAPE,
                                  "size %s does not broadcast to the input: %lld "
                                  "at dim %d against %lld",
                                  nsci_shape_str(buf, sizeof buf, p->ndim, p->shape),
                                  (long long)want, d, (long long)have);
        }
    }
    nsci_meta *m = &c->meta[0];
    m->ndim = p->ndim;
    memcpy(m->shape, p->shape, sizeof p->shape);
    if (p->ndim == x->ndim && sum_to_size_mask(p, x->ndim, x->shape) == 0) {
        m->dtype = (nsc_dtype)x->dtype; // nothing to sum: a view of x
        memcpy(m->stride, x->stride, sizeof x->stride);
        m->offset = x->offset;
        m->is_view = true;
        return NSC_OK;
    }
    m->dtype = nsci_is_float((nsc_dtype)x->dtype) ? (nsc_dtype)x->dtype : NSC_I64;
    return NSC_OK;
}

static nsc_status sum_to_size_cpu(nsci_call *c) {
    nsc_tensor *x = c->in[0];
    return sum_into(c->out[0], x, sum_to_size_mask(c->params, x->ndim, x->shape), false);
}

static nsc_status sum_to_size_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                       nsc_tensor **grad_in) {
    grad_in[0] = nsc_expand(grad_out[0], g->in_meta[0].ndim, g->in_meta[0].shape);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_sum_to_size = {
    .name = "sum_to_size",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(sum_to_size_params),
    .params = sum_to_size_desc,
    .infer = sum_to_size_infer,
    .cpu = sum_to_size_cpu,
    .backward = sum_to_size_backward,
    .flags = NSCI_OP_VIEW,
};

nsc_tensor *nsc_sum_to_size(nsc_tensor *x, int ndim, const int64_t *shape) {
    sum_to_size_params p = { .ndim = ndim };
    if (ndim > 0 && ndim <= NSC_MAX_DIMS && shape) {
        memcpy(p.shape, shape, (size_t)ndim * sizeof *shape);
    } else if (ndim != 0) {
        p.ndim = -1;
    }
    return nsci_run(NSC_OP_sum_to_size, 1, &x, &p);
}
