// CUDA kernels of matmul, linear and attention, as nsci_call entries: each
// product is described as a batched GEMM over the operands as they lie
// (transposed and broadcast operands need no copies; cuBLAS reads them
// through its transpose flags and batch strides), linear's bias is written
// first and accumulated (beta = 1). Letters: A [M, K] @ B [K, N] = C [M, N].
#ifdef NSC_HAVE_CUDA
#include <string.h>

#include "cuda/cuda_impl.h"
#include "tensor/op_params.h"

typedef struct operand {
    int ndim;
    int64_t shape[NSC_MAX_DIMS], stride[NSC_MAX_DIMS];
    const char *data;
} operand;

// t's geometry; linear's weight is read transposed ([in, out]).
static operand operand_of(const nsc_tensor *t, bool transpose_2d) {
    operand o = { .ndim = t->ndim, .data = nsci_data_ptr(t) };
    memcpy(o.shape, t->shape, sizeof o.shape);
    memcpy(o.stride, t->stride, sizeof o.stride);
    if (transpose_2d) {
        o.shape[0] = t->shape[1];
        o.shape[1] = t->shape[0];
        o.stride[0] = t->stride[1];
        o.stride[1] = t->stride[0];
    }
    return o;
}

// Stride of x along output batch dim d of nb (0 where x is broadcast).
static int64_t batch_stride(const operand *x, int d, int nb) {
    int k = d - (nb - NSCI_MAX(x->ndim - 2, 0));
    return (k < 0 || x->shape[k] == 1) ? 0 : x->stride[k];
}

// out = a @ b with torch.matmul's rules (tensor/op_matmul.c); out contiguous.
static void describe(nsci_cuda_gemm *g, const operand *a, const operand *b, nsc_tensor *out) {
    memset(g, 0, sizeof *g);
    int an = a->ndim, bn = b->ndim;
    g->dtype = (nsc_dtype)out->dtype;
    g->k = a->shape[an - 1];
    g->m = an >= 2 ? a->shape[an - 2] : 1;
    g->n = bn >= 2 ? b->shape[bn - 1] : 1;
    g->a_cs = a->stride[an - 1];
    g->a_rs = an >= 2 ? a->stride[an - 2] : g->k;
    g->b_rs = b->stride[bn >= 2 ? bn - 2 : 0];
    g->b_cs = bn >= 2 ? b->stride[bn - 1] : 1;
    g->c_rs = g->n;
    g->a = a->data;
    g->b = b->data;
    g->c = nsci_data_ptr(out);
    int nb = out->ndim - (an >= 2) - (bn >= 2);
    g->n_batch_dims = nb;
    g->n_batch = 1;
    int64_t c_stride = g->m * g->n;
    for (int d = nb - 1; d >= 0; d--) {
        g->batch_shape[d] = out->shape[d];
        g->a_bstride[d] = batch_stride(a, d, nb);
        g->b_bstride[d] = batch_stride(b, d, nb);
        g->c_bstride[d] = c_stride;
        c_stride *= out->shape[d];
        g->n_batch *= out->shape[d];
    }
}

// Folds trailing batch dims into M where B is shared and A's rows continue
// at one stride: [B, T, K] @ [K, N] becomes one [B*T, K] @ [K, N] product.
static void fold_batches(nsci_cuda_gemm *g) {
    if (g->n_batch == 0) {
        return;
    }
    int d = g->n_batch_dims - 1;
    for (; d >= 0; d--) {
        int64_t s = g->batch_shape[d];
        if (s == 1) {
            continue;
        }
        if (g->b_bstride[d] != 0 || g->a_bstride[d] == 0) {
            break;
        }
        if (g->m != 1 && g->a_bstride[d] != g->a_rs * g->m) {
            break;
        }
        if (g->m == 1) {
            g->a_rs = g->a_bstride[d];
        }
        g->m *= s;
        g->n_batch /= s;
    }
    g->n_batch_dims = d + 1;
}

static nsc_status product_cuda(nsci_call *c, bool linear) {
    nsc_tensor *out = c->out[0];
    operand a = operand_of(c->in[0], false), b = operand_of(c->in[1], linear);
    nsci_cuda_gemm g;
    describe(&g, &a, &b, out);
    fold_batches(&g);
    if (linear && c->n_in > 2 && g.n > 0) { // C = bias (broadcast), then C += A·B
        if (nsci_cuda_copy_into(out, c->in[2]) != NSC_OK) {
            return nsc_last_status();
        }
        g.beta = 1.0;
    }
    return nsci_cuda_gemm_run(&g);
}

static nsc_status matmul_cuda(nsci_call *c) {
    return product_cuda(c, false);
}

static nsc_status linear_cuda(nsci_call *c) {
    return product_cuda(c, true);
}

// --- attention ---

static void strides4(const nsc_tensor *t, int64_t *s) {
    memcpy(s, t->stride, 4 * sizeof *s);
}

static nsc_status attention_cuda(nsci_call *c) {
    const attention_params *p = c->params;
    nsc_tensor *q = c->in[0], *k = c->in[1], *v = c->in[2], *out = c->out[0];
    nsci_cuda_attention a = { .dtype = (nsc_dtype)q->dtype,
                              .q = nsci_data_ptr(q),
                              .k = nsci_data_ptr(k),
                              .v = nsci_data_ptr(v),
                              .out = nsci_data_ptr(out),
                              .b = q->shape[0],
                              .h = q->shape[1],
                              .t = q->shape[2],
                              .s = k->shape[2],
                              .d = q->shape[3],
                              .dv = v->shape[3],
                              .scale = p->scale,
                              .causal = p->causal };
    strides4(q, a.q_stride);
    strides4(k, a.k_stride);
    strides4(v, a.v_stride);
    strides4(out, a.out_stride);
    nsc_tensor *keep = NULL;
    if (c->n_in > 3) { // keep[b, j] = mask[b, j] != 0 as contiguous bytes
        nsc_tensor *mask = c->in[3];
        keep = nsci_cuda_empty(NSC_BOOL, mask->ndim, mask->shape);
        nsci_cuda_ew e;
        if (!keep) {
            return nsc_last_status();
        }
        nsci_cuda_ew_make(&e, keep, 1, &mask);
        if (nsci_cuda_ew_run(NSCI_EW_COPY, NSC_BOOL, &e, 0, 0) != NSC_OK) {
            nsc_free(keep);
            return nsc_last_status();
        }
        a.keep = (const uint8_t *)nsci_data_ptr(keep);
    }
    nsc_status s = nsci_cuda_attention_run(&a);
    nsc_free(keep);
    return s;
}

void nsci_cuda_fill_products(nsci_kernel_fn *t) {
    t[NSC_OP_matmul] = matmul_cuda;
    t[NSC_OP_linear] = linear_cuda;
    t[NSC_OP_attention] = attention_cuda;
}
#endif
