// Shared machinery of the reduction families (op_reduce*.c, op_softmax.c,
// op_norm.c): the dims-list params, their validation and output shape, and
// the CPU plan that turns any layout into one strided run per output.
#ifndef NSC_TENSOR_REDUCE_H
#define NSC_TENSOR_REDUCE_H

#include <string.h>

#include "tensor/tensor_impl.h"

// --- params and shape rules ---

// Params of the ops that reduce over a dims list (sum, mean, var, std, all,
// any, logsumexp) and of those over one dim (max_dim, argmax, ...: dims[0]).
typedef struct nsci_reduce_params {
    int ndims; // 0: every dim; -1: the caller's list was malformed (infer reports it)
    int dims[NSC_MAX_DIMS];
    bool keepdim;
    bool unbiased; // var, std: divide by n - 1
    bool all;      // argmax, argmin: over the flattened input (dims ignored)
} nsci_reduce_params;

extern const nsci_param_desc nsci_reduce_desc[];

// Params of norm (op_reduce_norm.c): torch.linalg.vector_norm's ord and
// dtype (the output's: the input's or a wider float) over a dims list.
typedef struct nsci_norm_params {
    int ndims; // as nsci_reduce_params
    int dims[NSC_MAX_DIMS];
    bool keepdim;
    double ord;
    nsc_dtype dtype;
} nsci_norm_params;

// The dims list of p as the reduction helpers take it.
static inline nsci_reduce_params nsci_norm_reduce(const nsci_norm_params *p) {
    nsci_reduce_params r = { .ndims = p->ndims, .keepdim = p->keepdim };
    memcpy(r.dims, p->dims, sizeof r.dims);
    return r;
}


// Packs a caller's dims list; a bad count or a NULL list becomes ndims = -1.
nsci_reduce_params nsci_reduce_pack(int ndims, const int *dims, bool keepdim);

// Validates p's dims against input 0 of c (range, repeats) and returns the
// mask of reduced dims in *mask (bit d: dim d is reduced; 0 for a 0-dim input).
nsc_status nsci_reduce_check(nsci_call *c, const nsci_reduce_params *p, uint32_t *mask);

// The mask of an already validated params struct for a rank-ndim input.
uint32_t nsci_reduce_mask(const nsci_reduce_params *p, int ndim);

// m = x's shape without the reduced dims (size 1 when keepdim), with dtype.
void nsci_reduce_meta(nsci_meta *m, const nsc_tensor *x, uint32_t mask, bool keepdim,
                      nsc_dtype dtype);

// Number of elements reduced into each output.
int64_t nsci_reduce_count(int ndim, const int64_t *shape, uint32_t mask);

// --- helpers for backward rules (public ops only) ---

// g (shaped like the reduction's output) reshaped to the keepdim shape of
// in_meta reduced over mask: a new reference.
nsc_tensor *nsci_reduce_unsqueeze(nsc_tensor *g, const nsci_meta *in_meta, uint32_t mask,
                                  bool keepdim);

// g broadcast back to in_meta's shape (a view): the gradient of a sum.
nsc_tensor *nsci_reduce_expand_back(nsc_tensor *g, const nsci_meta *in_meta, uint32_t mask,
                                    bool keepdim);

// --- the CPU plan ---

// x reduced over mask as n_out runs (one per output, in the output's
// row-major order) of n_red elements each, red_stride elements apart.
typedef struct nsci_reduce_geom {
    const char *data; // element 0 of the input (or of the plan's copy)
    int n_outer;      // kept dims after dropping size 1 and merging
    int64_t outer_shape[NSC_MAX_DIMS];
    int64_t outer_stride[NSC_MAX_DIMS]; // elements
    int64_t n_out;
    int64_t n_red;
    int64_t red_stride; // elements
} nsci_reduce_geom;

// Plans the reduction of x over mask in dtype. When x has another dtype, or
// its reduced dims do not merge into one run, *copy receives a contiguous
// copy in dtype with the reduced dims innermost (caller frees; g points into
// it). any_order lets reduced dims be visited in stride order (sums), which
// avoids copies of transposed inputs; ops that report positions keep the
// row-major order, so a run's element i is the i-th in the flattened dims.
nsc_status nsci_reduce_plan(nsc_tensor *x, uint32_t mask, nsc_dtype dtype, bool any_order,
                            nsci_reduce_geom *g, nsc_tensor **copy);

// Walks the outputs' run offsets: seek to output o, then step to o + 1.
typedef struct nsci_reduce_cursor {
    int64_t coord[NSC_MAX_DIMS];
    int64_t offset; // elements from g->data
} nsci_reduce_cursor;

void nsci_reduce_seek(const nsci_reduce_geom *g, int64_t o, nsci_reduce_cursor *cur);
static inline void nsci_reduce_next(const nsci_reduce_geom *g, nsci_reduce_cursor *cur) {
    for (int d = g->n_outer - 1; d >= 0; d--) {
        cur->offset += g->outer_stride[d];
        if (++cur->coord[d] < g->outer_shape[d]) {
            return;
        }
        cur->offset -= g->outer_stride[d] * g->outer_shape[d];
        cur->coord[d] = 0;
    }
}

// Runs fn(ctx, begin, end) over the outputs, each task reducing at least
// NSCI_GRAIN elements.
void nsci_reduce_parallel(const nsci_reduce_geom *g, nsci_range_fn fn, void *ctx);

// A single output over a long run is split into chunks of this many
// elements, reduced in parallel and combined in order (the result does not
// depend on the thread count).
enum {
    NSCI_REDUCE_CHUNK = 32768
};

// Chunks for g's one output (1 when g has several outputs or a short run).
int64_t nsci_reduce_n_chunks(const nsci_reduce_geom *g);

// --- softmax-family jobs and f32 vector kernels (tensor/op_reduce_vec.c) ---

// Rows [rows, K] (inner == 1) or column tiles of [outer, K, inner].
typedef struct nsci_softmax_job {
    const char *a, *b; // inputs (b: the forward's output, for the gradients)
    char *out;
    int64_t k, inner, n_tiles;
    bool log_form;
} nsci_softmax_job;

// softmax / log_softmax of rows [begin, end) of an f32 job.
void nsci_softmax_rows_f32(void *job, int64_t begin, int64_t end);
// softmax_backward / log_softmax_backward of rows [begin, end) (a = grad_y, b = y).
void nsci_softmax_grad_rows_f32(void *job, int64_t begin, int64_t end);

// The largest of x[0..n), n >= 1 (a NaN may be missed: it turns any sum of
// exponentials over the row into NaN anyway).
float nsci_row_max_f32(const float *x, int64_t n);
// sum(exp(x[i] - shift)) over x[0..n), in f32 (within 1 ulp per term).
float nsci_exp_sum_f32(const float *x, int64_t n, float shift);

#endif
