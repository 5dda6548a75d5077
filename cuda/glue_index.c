// CUDA kernels of the indexing, join, matrix-product and attention
// families, as nsci_call entries. Index checks fail with the CPU's messages
// (value and position of the first bad index) before anything is written.
// Kernels: cuda/op_index.cu, op_matmul.cu, op_attention.cu.
#ifdef NSC_HAVE_CUDA
#include <string.h>

#include "cuda/cuda_impl.h"
#include "tensor/index.h"
#include "tensor/op_params.h"

// Fails c naming the first index outside [0, size) (idx: contiguous CUDA i64).
static nsc_status check_index(nsci_call *c, nsc_tensor *idx, int64_t size, const char *what) {
    int64_t bad, value, kept;
    nsc_status s = nsci_cuda_index_check((const int64_t *)nsci_data_ptr(idx),
                                         nsci_numel(idx->ndim, idx->shape), size, false, 0, &bad,
                                         &value, &kept);
    if (s != NSC_OK || bad < 0) {
        return s;
    }
    char pos[160];
    nsci_position_str(pos, sizeof pos, idx->ndim, idx->shape, bad);
    return nsci_call_fail(c, NSC_ERR_ARG, "%s %lld at position %s is out of range [0, %lld)", what,
                          (long long)value, pos, (long long)size);
}

static int64_t size_at(const nsc_tensor *x, int dim) {
    return x->ndim > 0 ? x->shape[dim] : 1;
}

static void split_at(const nsc_tensor *x, int dim, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d < dim) {
            *outer *= x->shape[d];
        } else if (d > dim) {
            *inner *= x->shape[d];
        }
    }
}

// --- embedding, index_select, index_add ---

// out[o, j, :] = x[o, idx[j], :] around dim (embedding: dim 0 of [V, C]).
static nsc_status take_cuda(nsci_call *c) {
    bool emb = c->op == NSC_OP_embedding;
    int dim = emb ? 0 : nsci_wrap_dim(((const dim_params *)c->params)->dim,
                                       NSCI_MAX(c->in[0]->ndim, 1));
    nsc_tensor *x = nsci_cuda_contig(c->in[0], (nsc_dtype)c->in[0]->dtype);
    nsc_tensor *idx = x ? nsci_cuda_contig(c->in[1], NSC_I64) : NULL;
    nsc_status s = idx ? check_index(c, idx, size_at(x, dim), emb ? "id" : "index")
                       : nsc_last_status();
    if (s == NSC_OK) {
        int64_t outer, inner;
        split_at(x, dim, &outer, &inner);
        s = nsci_cuda_take(nsci_data_ptr(x), (const int64_t *)nsci_data_ptr(idx),
                           nsci_data_ptr(c->out[0]), outer, size_at(x, dim), inner,
                           nsci_numel(idx->ndim, idx->shape), nsc_dtype_size((nsc_dtype)x->dtype));
    }
    nsc_free(x);
    nsc_free(idx);
    return s;
}

static nsc_status index_add_cuda(nsci_call *c) {
    nsc_tensor *x = c->in[0], *out = c->out[0];
    int dim = nsci_wrap_dim(((const dim_params *)c->params)->dim, NSCI_MAX(x->ndim, 1));
    nsc_tensor *idx = nsci_cuda_contig(c->in[1], NSC_I64);
    nsc_tensor *src = idx ? nsci_cuda_contig(c->in[2], (nsc_dtype)x->dtype) : NULL;
    nsc_status s = src ? check_index(c, idx, size_at(x, dim), "index") : nsc_last_status();
    if (s == NSC_OK) {
        s = nsci_cuda_copy_into(out, x);
    }
    if (s == NSC_OK) {
        int64_t outer, inner;
        split_at(x, dim, &outer, &inner);
        s = nsci_cuda_index_add((nsc_dtype)x->dtype, nsci_data_ptr(out),
                                (const int64_t *)nsci_data_ptr(idx), nsci_data_ptr(src), outer,
                                size_at(x, dim), inner, nsci_numel(idx->ndim, idx->shape));
    }
    nsc_free(idx);
    nsc_free(src);
    return s;
}

// --- gather, scatter_add: over the index's positions ---

static nsc_status gather_cuda(nsci_call *c) {
    bool scatter = c->op == NSC_OP_scatter_add;
    nsc_tensor *x = c->in[0], *out = c->out[0];
    int dim = nsci_wrap_dim(((const dim_params *)c->params)->dim, NSCI_MAX(x->ndim, 1));
    nsc_tensor *idx = nsci_cuda_contig(c->in[1], NSC_I64);
    nsc_status s = idx ? check_index(c, idx, size_at(x, dim), "index") : nsc_last_status();
    if (s == NSC_OK && scatter) {
        s = nsci_cuda_copy_into(out, x);
    }
    if (s == NSC_OK) {
        nsc_tensor *a = scatter ? c->in[2] : out, *b = scatter ? out : x;
        nsci_cuda_ew e = { .ndim = idx->ndim, .n_operands = 2 };
        memcpy(e.shape, idx->shape, sizeof idx->shape);
        e.numel = nsci_numel(idx->ndim, idx->shape);
        e.data[0] = nsci_data_ptr(a);
        e.data[1] = nsci_data_ptr(b);
        memcpy(e.stride[0], a->stride, sizeof a->stride);
        memcpy(e.stride[1], b->stride, sizeof b->stride);
        s = nsci_cuda_gather(scatter, (nsc_dtype)x->dtype, &e,
                             (const int64_t *)nsci_data_ptr(idx), dim);
    }
    nsc_free(idx);
    return s;
}

// --- topk, nonzero, one_hot ---

static nsc_status topk_cuda(nsci_call *c) {
    const topk_params *p = c->params;
    nsc_tensor *x = nsci_cuda_contig(c->in[0], (nsc_dtype)c->in[0]->dtype);
    if (!x) {
        return nsc_last_status();
    }
    int dim = nsci_wrap_dim(p->dim, NSCI_MAX(x->ndim, 1));
    int64_t outer, inner;
    split_at(x, dim, &outer, &inner);
    // A 0-dim input has one element and one output element, even for k = 0 (as torch).
    int64_t k = x->ndim > 0 ? p->k : 1;
    nsc_status s = nsci_cuda_topk((nsc_dtype)x->dtype, nsci_data_ptr(x),
                                  nsci_data_ptr(c->out[0]), (int64_t *)nsci_data_ptr(c->out[1]),
                                  outer, size_at(x, dim), inner, k, p->largest);
    nsc_free(x);
    return s;
}

static nsc_status nonzero_cuda(nsci_call *c) {
    nsc_tensor *x = c->in[0], *out = c->out[0];
    if (x->ndim == 0 || out->shape[0] == 0) {
        return NSC_OK; // a 0-dim input gives [n, 0]: nothing to write
    }
    nsci_cuda_ew e;
    nsci_cuda_ew_make(&e, x, 0, NULL); // operand 0: x itself, read only
    return nsci_cuda_nonzero(&e, x->ndim, x->shape, (int64_t *)nsci_data_ptr(out));
}

static nsc_status one_hot_cuda(nsci_call *c) {
    nsc_tensor *out = c->out[0];
    int64_t classes = out->shape[out->ndim - 1];
    nsc_tensor *ids = nsci_cuda_contig(c->in[0], NSC_I64);
    nsc_status s = ids ? check_index(c, ids, classes, "id") : nsc_last_status();
    if (s == NSC_OK) {
        s = nsci_cuda_one_hot((const int64_t *)nsci_data_ptr(ids),
                              nsci_numel(ids->ndim, ids->shape), classes,
                              (int64_t *)nsci_data_ptr(out));
    }
    nsc_free(ids);
    return s;
}

// --- cat, stack: each input copied into its slice of the output ---

static nsc_status copy_to_slice(nsc_tensor *out, nsc_tensor *x, const int64_t *stride,
                                int64_t offset) {
    if (nsci_numel(x->ndim, x->shape) == 0) {
        return NSC_OK;
    }
    nsc_tensor *slice = nsci_tensor_view(out, x->ndim, x->shape, stride, out->offset + offset);
    if (!slice) {
        return nsc_last_status();
    }
    nsc_status s = nsci_cuda_copy_into(slice, x);
    nsc_free(slice);
    return s;
}

static nsc_status cat_cuda(nsci_call *c) {
    nsc_tensor *out = c->out[0];
    if (nsci_numel(out->ndim, out->shape) == 0) {
        return NSC_OK;
    }
    int dim = nsci_wrap_dim(((const join_params *)c->params)->dim, out->ndim);
    int64_t pos = 0;
    for (int i = 0; i < c->n_in; i++) {
        nsc_tensor *x = c->in[i];
        if (nsci_numel(x->ndim, x->shape) == 0) {
            continue; // adds nothing (a legacy [0] input, or a size-0 slice)
        }
        if (copy_to_slice(out, x, out->stride, pos * out->stride[dim]) != NSC_OK) {
            return nsc_last_status();
        }
        pos += x->shape[dim];
    }
    return NSC_OK;
}

static nsc_status stack_cuda(nsci_call *c) {
    nsc_tensor *out = c->out[0];
    int dim = nsci_wrap_dim(((const join_params *)c->params)->dim, out->ndim);
    int64_t stride[NSC_MAX_DIMS];
    for (int d = 0, k = 0; d < out->ndim; d++) {
        if (d != dim) {
            stride[k++] = out->stride[d];
        }
    }
    for (int i = 0; i < c->n_in; i++) {
        if (copy_to_slice(out, c->in[i], stride, i * out->stride[dim]) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

void nsci_cuda_fill_index(nsci_kernel_fn *t) {
    t[NSC_OP_embedding] = t[NSC_OP_index_select] = take_cuda;
    t[NSC_OP_index_add] = index_add_cuda;
    t[NSC_OP_gather] = t[NSC_OP_scatter_add] = gather_cuda;
    t[NSC_OP_topk] = topk_cuda;
    t[NSC_OP_nonzero] = nonzero_cuda;
    t[NSC_OP_one_hot] = one_hot_cuda;
    t[NSC_OP_cat] = cat_cuda;
    t[NSC_OP_stack] = stack_cuda;
    nsci_cuda_fill_products(t);
}
#endif
