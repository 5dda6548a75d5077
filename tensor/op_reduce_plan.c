// What every reduction shares: the dims-list params and their checks, the
// output shape, backward helpers, and the CPU plan that turns any layout
// (transposed, stepped, expanded) into one strided run per output.
#include <string.h>

#include "tensor/reduce.h"

const nsci_param_desc nsci_reduce_desc[] = {
    { "dims", NSCI_PARAM_INT_ARRAY, offsetof(nsci_reduce_params, dims),
      offsetof(nsci_reduce_params, ndims) },
    { "keepdim", NSCI_PARAM_BOOL, offsetof(nsci_reduce_params, keepdim), 0 },
    { "unbiased", NSCI_PARAM_BOOL, offsetof(nsci_reduce_params, unbiased), 0 },
    { "all", NSCI_PARAM_BOOL, offsetof(nsci_reduce_params, all), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

nsci_reduce_params nsci_reduce_pack(int ndims, const int *dims, bool keepdim) {
    nsci_reduce_params p = { .ndims = ndims, .keepdim = keepdim };
    if (ndims < 0 || ndims > NSC_MAX_DIMS || (ndims > 0 && !dims)) {
        p.ndims = -1;
    } else if (ndims > 0) {
        memcpy(p.dims, dims, (size_t)ndims * sizeof *dims);
    }
    return p;
}

nsc_status nsci_reduce_check(nsci_call *c, const nsci_reduce_params *p, uint32_t *mask) {
    int ndim = c->in[0]->ndim;
    if (p->ndims < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "malformed dims list: expected 0..%d dims",
                              NSC_MAX_DIMS);
    }
    uint32_t seen = 0;
    for (int i = 0; i < p->ndims; i++) {
        int d = nsci_wrap_dim(p->dims[i], ndim);
        if (d < 0) {
            return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", p->dims[i],
                                  ndim);
        }
        if (seen & (1u << d)) {
            return nsci_call_fail(c, NSC_ERR_ARG, "dim %d appears more than once in the dims list",
                                  p->dims[i]);
        }
        seen |= 1u << d;
    }
    *mask = nsci_reduce_mask(p, ndim);
    return NSC_OK;
}

uint32_t nsci_reduce_mask(const nsci_reduce_params *p, int ndim) {
    if (ndim == 0) {
        return 0; // a 0-dim input reduces to itself
    }
    if (p->ndims == 0 || p->all) {
        return (1u << ndim) - 1;
    }
    uint32_t mask = 0;
    for (int i = 0; i < p->ndims; i++) {
        mask |= 1u << nsci_wrap_dim(p->dims[i], ndim);
    }
    return mask;
}

void nsci_reduce_meta(nsci_meta *m, const nsc_tensor *x, uint32_t mask, bool keepdim,
                      nsc_dtype dtype) {
    m->dtype = dtype;
    m->ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!(mask & (1u << d))) {
            m->shape[m->ndim++] = x->shape[d];
        } else if (keepdim) {
            m->shape[m->ndim++] = 1;
        }
    }
}

int64_t nsci_reduce_count(int ndim, const int64_t *shape, uint32_t mask) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (mask & (1u << d)) {
            n *= shape[d];
        }
    }
    return n;
}

// --- backward helpers ---

nsc_tensor *nsci_reduce_unsqueeze(nsc_tensor *g, const nsci_meta *in_meta, uint32_t mask,
                                  bool keepdim) {
    if (keepdim || mask == 0) {
        return nsc_retain(g);
    }
    int64_t shape[NSC_MAX_DIMS];
    for (int d = 0; d < in_meta->ndim; d++) {
        shape[d] = (mask & (1u << d)) ? 1 : in_meta->shape[d];
    }
    return nsc_reshape(g, in_meta->ndim, shape);
}

nsc_tensor *nsci_reduce_expand_back(nsc_tensor *g, const nsci_meta *in_meta, uint32_t mask,
                                    bool keepdim) {
    nsc_tensor *k = nsci_reduce_unsqueeze(g, in_meta, mask, keepdim);
    nsc_tensor *e = nsc_expand(k, in_meta->ndim, in_meta->shape);
    nsc_free(k);
    return e;
}

// --- the CPU plan ---

typedef struct dim_list {
    int n;
    int64_t shape[NSC_MAX_DIMS];
    int64_t stride[NSC_MAX_DIMS];
} dim_list;

// Kept and reduced dims of t, without size-1 dims (they address nothing).
static void split_dims(const nsc_tensor *t, uint32_t mask, dim_list *kept, dim_list *red) {
    kept->n = red->n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 1) {
            continue;
        }
        dim_list *l = (mask & (1u << d)) ? red : kept;
        l->shape[l->n] = t->shape[d];
        l->stride[l->n] = t->stride[d];
        l->n++;
    }
}

// Largest stride first (stable), so a transposed input's dims merge.
static void sort_by_stride(dim_list *l) {
    for (int i = 1; i < l->n; i++) {
        int64_t size = l->shape[i], stride = l->stride[i];
        int k = i;
        for (; k > 0 && l->stride[k - 1] < stride; k--) {
            l->shape[k] = l->shape[k - 1];
            l->stride[k] = l->stride[k - 1];
        }
        l->shape[k] = size;
        l->stride[k] = stride;
    }
}

// Merges neighbours that step as one dim (row-major order preserved).
static void merge_dims(dim_list *l) {
    int n = 0;
    for (int i = 0; i < l->n; i++) {
        if (n > 0 && l->stride[n - 1] == l->stride[i] * l->shape[i]) {
            l->shape[n - 1] *= l->shape[i];
            l->stride[n - 1] = l->stride[i];
            continue;
        }
        l->shape[n] = l->shape[i];
        l->stride[n] = l->stride[i];
        n++;
    }
    l->n = n;
}

static void fill_geom(nsci_reduce_geom *g, const nsc_tensor *t, const dim_list *kept,
                      const dim_list *red) {
    g->data = nsci_data_ptr(t);
    g->n_outer = kept->n;
    g->n_out = 1;
    for (int d = 0; d < kept->n; d++) {
        g->outer_shape[d] = kept->shape[d];
        g->outer_stride[d] = kept->stride[d];
        g->n_out *= kept->shape[d];
    }
    g->n_red = red->n ? red->shape[0] : 1;
    g->red_stride = red->n ? red->stride[0] : 1;
}

// A contiguous copy of x in dtype with the kept dims first, reduced dims last.
static nsc_tensor *copy_reduced_last(nsc_tensor *x, uint32_t mask, nsc_dtype dtype,
                                     uint32_t *new_mask) {
    int64_t shape[NSC_MAX_DIMS], stride[NSC_MAX_DIMS];
    int k = 0, n_red = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int d = 0; d < x->ndim; d++) {
            bool reduced = (mask & (1u << d)) != 0;
            if (reduced == (pass == 1)) {
                shape[k] = x->shape[d];
                stride[k] = x->stride[d];
                k++;
                n_red += reduced;
            }
        }
    }
    *new_mask = n_red ? ((1u << n_red) - 1) << (x->ndim - n_red) : 0;
    nsc_tensor *view = nsci_tensor_view(x, x->ndim, shape, stride, x->offset);
    nsc_tensor *t = view ? nsci_cpu_convert(view, dtype) : NULL;
    nsc_free(view);
    return t;
}

nsc_status nsci_reduce_plan(nsc_tensor *x, uint32_t mask, nsc_dtype dtype, bool any_order,
                            nsci_reduce_geom *g, nsc_tensor **copy) {
    *copy = NULL;
    dim_list kept, red;
    split_dims(x, mask, &kept, &red);
    if (any_order) {
        sort_by_stride(&red);
    }
    merge_dims(&kept);
    merge_dims(&red);
    int64_t n_all = nsci_numel(x->ndim, x->shape);
    if ((x->dtype == dtype && red.n <= 1) || n_all == 0) {
        fill_geom(g, x, &kept, &red);
        if (n_all == 0) { // nothing is read: only the counts matter
            g->n_red = nsci_reduce_count(x->ndim, x->shape, mask);
            g->red_stride = 1;
        }
        return NSC_OK;
    }
    uint32_t new_mask;
    nsc_tensor *t = copy_reduced_last(x, mask, dtype, &new_mask);
    if (!t) {
        return nsc_last_status();
    }
    split_dims(t, new_mask, &kept, &red);
    merge_dims(&kept);
    merge_dims(&red);
    NSCI_ASSERT(red.n <= 1);
    fill_geom(g, t, &kept, &red);
    *copy = t;
    return NSC_OK;
}

void nsci_reduce_seek(const nsci_reduce_geom *g, int64_t o, nsci_reduce_cursor *cur) {
    cur->offset = 0;
    for (int d = g->n_outer - 1; d >= 0; d--) {
        cur->coord[d] = o % g->outer_shape[d];
        o /= g->outer_shape[d];
        cur->offset += cur->coord[d] * g->outer_stride[d];
    }
}

void nsci_reduce_parallel(const nsci_reduce_geom *g, nsci_range_fn fn, void *ctx) {
    if (g->n_out == 0) {
        return;
    }
    int64_t grain = NSCI_MAX(1, NSCI_GRAIN / NSCI_MAX(1, g->n_red));
    nsci_parallel_for(g->n_out, grain, fn, ctx);
}

int64_t nsci_reduce_n_chunks(const nsci_reduce_geom *g) {
    if (g->n_out != 1 || g->n_red < 2 * (int64_t)NSCI_REDUCE_CHUNK) {
        return 1;
    }
    return (g->n_red + NSCI_REDUCE_CHUNK - 1) / NSCI_REDUCE_CHUNK;
}
