// CUDA kernels of the reduction families, as nsci_call entries: sum, mean,
// sum_to_size, max, min, max_dim, min_dim, argmax, argmin, var, std, all,
// any, logsumexp, norm (one generic launcher over kept and reduced dims), the
// softmax family, layer_norm and its gradient, and the class losses. The
// kernels are in cuda/op_reduce.cu.
#ifdef NSC_HAVE_CUDA
#include <math.h>
#include <string.h>

#include "cuda/cuda_impl.h"
#include "tensor/index.h"
#include "tensor/op_params.h"
#include "tensor/reduce.h"

// The launch of x reduced over mask (bit d: dim d reduced) into out (and index).
static void red_make(nsci_cuda_red *r, nsc_tensor *x, uint32_t mask, int kind) {
    memset(r, 0, sizeof *r);
    r->x = nsci_data_ptr(x);
    r->x_dtype = x->dtype;
    r->kind = kind;
    r->n_out = 1;
    r->n_red_elems = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (mask & (1u << d)) {
            r->red_shape[r->n_red] = x->shape[d];
            r->red_stride[r->n_red++] = x->stride[d];
            r->n_red_elems *= x->shape[d];
        } else {
            r->kept_shape[r->n_kept] = x->shape[d];
            r->kept_stride[r->n_kept++] = x->stride[d];
            r->n_out *= x->shape[d];
        }
    }
}

static nsc_status reduce_into(nsc_tensor *x, uint32_t mask, int kind, nsc_tensor *out,
                              nsc_tensor *index, double correction) {
    nsci_cuda_red r;
    red_make(&r, x, mask, kind);
    r.out = out ? nsci_data_ptr(out) : NULL;
    r.out_dtype = out ? out->dtype : NSC_I64;
    r.index = index ? (int64_t *)nsci_data_ptr(index) : NULL;
    r.correction = correction;
    return nsci_cuda_reduce(&r);
}

static nsc_status sum_cuda(nsci_call *c) {
    uint32_t mask = nsci_reduce_mask(c->params, c->in[0]->ndim);
    int kind = c->op == NSC_OP_mean ? NSCI_RED_MEAN : NSCI_RED_SUM;
    return reduce_into(c->in[0], mask, kind, c->out[0], NULL, 0);
}

// The dims summed to reach the output's shape (as tensor/op_reduce.c).
static nsc_status sum_to_size_cuda(nsci_call *c) {
    const sum_to_size_params *p = c->params;
    nsc_tensor *x = c->in[0];
    int lead = x->ndim - p->ndim;
    uint32_t mask = lead > 0 ? (1u << lead) - 1 : 0;
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] == 1 && x->shape[lead + d] != 1) {
            mask |= 1u << (lead + d);
        }
    }
    return reduce_into(x, mask, NSCI_RED_SUM, c->out[0], NULL, 0);
}

static nsc_status ext_all_cuda(nsci_call *c) {
    nsc_tensor *x = c->in[0];
    uint32_t mask = x->ndim ? (1u << x->ndim) - 1 : 0;
    int kind = c->op == NSC_OP_max ? NSCI_RED_MAX : NSCI_RED_MIN;
    return reduce_into(x, mask, kind, c->out[0], NULL, 0);
}

static nsc_status ext_dim_cuda(nsci_call *c) {
    const nsci_reduce_params *p = c->params;
    nsc_tensor *x = c->in[0];
    bool arg = c->op == NSC_OP_argmax || c->op == NSC_OP_argmin;
    bool max = c->op == NSC_OP_max_dim || c->op == NSC_OP_argmax;
    uint32_t mask = nsci_reduce_mask(p, x->ndim);
    return reduce_into(x, mask, max ? NSCI_RED_MAX : NSCI_RED_MIN, arg ? NULL : c->out[0],
                       arg ? c->out[0] : c->out[1], 0);
}

static nsc_status stat_cuda(nsci_call *c) {
    const nsci_reduce_params *p = c->params;
    int kind = c->op == NSC_OP_var         ? NSCI_RED_VAR
               : c->op == NSC_OP_std       ? NSCI_RED_STD
               : c->op == NSC_OP_logsumexp ? NSCI_RED_LSE
               : c->op == NSC_OP_all       ? NSCI_RED_ALL
                                           : NSCI_RED_ANY;
    uint32_t mask = nsci_reduce_mask(p, c->in[0]->ndim);
    return reduce_into(c->in[0], mask, kind, c->out[0], NULL, p->unbiased ? 1.0 : 0.0);
}

// norm: the sum of terms for a finite ord, max / min |x| for +-inf; the
// output's dtype may be wider than x's (loads convert).
static nsc_status norm_cuda(nsci_call *c) {
    const nsci_norm_params *p = c->params;
    nsc_tensor *x = c->in[0], *out = c->out[0];
    int kind = p->ord == HUGE_VAL ? NSCI_RED_AMAX : p->ord == -HUGE_VAL ? NSCI_RED_AMIN : NSCI_RED_NORM;
    nsci_cuda_red r;
    nsci_reduce_params dims = nsci_norm_reduce(p);
    red_make(&r, x, nsci_reduce_mask(&dims, x->ndim), kind);
    r.out = nsci_data_ptr(out);
    r.out_dtype = out->dtype;
    r.ord = p->ord;
    return nsci_cuda_reduce(&r);
}

// --- softmax family: [outer, K, inner] around dim, contiguous operands ---

static nsc_status softmax_cuda(nsci_call *c) {
    nsc_tensor *out = c->out[0];
    int64_t numel = nsci_numel(out->ndim, out->shape);
    if (numel == 0) {
        return NSC_OK;
    }
    int dim = out->ndim ? nsci_wrap_dim(((const softmax_params *)c->params)->dim, out->ndim) : 0;
    int64_t k = out->ndim ? out->shape[dim] : 1, inner = 1;
    for (int d = dim + 1; d < out->ndim; d++) {
        inner *= out->shape[d];
    }
    int kind = c->op == NSC_OP_softmax          ? NSCI_SOFTMAX
               : c->op == NSC_OP_log_softmax    ? NSCI_LOG_SOFTMAX
               : c->op == NSC_OP_softmax_backward ? NSCI_SOFTMAX_GRAD
                                                : NSCI_LOG_SOFTMAX_GRAD;
    nsc_dtype dt = (nsc_dtype)out->dtype;
    nsc_tensor *a = nsci_cuda_contig(c->in[0], dt);
    nsc_tensor *b = c->n_in > 1 && a ? nsci_cuda_contig(c->in[1], dt) : NULL;
    nsc_status s = a && (c->n_in < 2 || b) ? NSC_OK : nsc_last_status();
    if (s == NSC_OK) {
        s = nsci_cuda_softmax(kind, dt, nsci_data_ptr(a), b ? nsci_data_ptr(b) : NULL,
                              nsci_data_ptr(out), numel / (k * inner), k, inner);
    }
    nsc_free(a);
    nsc_free(b);
    return s;
}

// --- layer_norm ---

// Contiguous copies of the first n inputs (all or none).
static nsc_status contig_inputs(nsci_call *c, int n, nsc_tensor **out) {
    for (int i = 0; i < n; i++) {
        out[i] = nsci_cuda_contig(c->in[i], (nsc_dtype)c->in[i]->dtype);
        if (!out[i]) {
            for (int k = 0; k < i; k++) {
                nsc_free(out[k]);
                out[k] = NULL;
            }
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static void free_inputs(nsc_tensor **t, int n) {
    for (int i = 0; i < n; i++) {
        nsc_free(t[i]);
    }
}

static nsc_status layer_norm_cuda(nsci_call *c) {
    const layer_norm_params *p = c->params;
    nsc_tensor *in[3] = { NULL, NULL, NULL };
    if (contig_inputs(c, c->n_in, in) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_tensor *x = in[0];
    int64_t n = nsci_numel(p->n_normalized, x->shape + x->ndim - p->n_normalized);
    int64_t rows = nsci_numel(x->ndim - p->n_normalized, x->shape);
    const void *w = p->has_weight ? nsci_data_ptr(in[1]) : NULL;
    const void *b = p->has_bias ? nsci_data_ptr(in[1 + p->has_weight]) : NULL;
    nsc_status s = nsci_cuda_layer_norm((nsc_dtype)x->dtype, nsci_data_ptr(x), w, b,
                                        nsci_data_ptr(c->out[0]), nsci_data_ptr(c->out[1]),
                                        nsci_data_ptr(c->out[2]), rows, n, p->eps);
    free_inputs(in, c->n_in);
    return s;
}

static nsc_status layer_norm_grad_cuda(nsci_call *c) {
    const layer_norm_params *p = c->params;
    nsc_tensor *in[5] = { NULL, NULL, NULL, NULL, NULL };
    if (contig_inputs(c, c->n_in, in) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_tensor *x = in[1];
    int64_t n = nsci_numel(p->n_normalized, x->shape + x->ndim - p->n_normalized);
    int64_t rows = nsci_numel(x->ndim - p->n_normalized, x->shape);
    nsc_status s = nsci_cuda_layer_norm_grad(
        (nsc_dtype)x->dtype, nsci_data_ptr(in[0]), nsci_data_ptr(x), nsci_data_ptr(in[2]),
        nsci_data_ptr(in[3]), p->has_weight ? nsci_data_ptr(in[4]) : NULL,
        nsci_data_ptr(c->out[0]), nsci_data_ptr(c->out[1]), nsci_data_ptr(c->out[2]), rows, n);
    free_inputs(in, c->n_in);
    return s;
}

// --- class losses ---

// Contiguous scores and target with their target check (the CPU's message:
// the first target neither in [0, classes) nor ignore_index, and its position).
static nsc_status class_open(nsci_call *c, nsc_tensor *scores, nsc_tensor *target,
                             nsc_tensor **sc, nsc_tensor **tc, int64_t *kept) {
    const loss_params *p = c->params;
    *sc = nsci_cuda_contig(scores, (nsc_dtype)scores->dtype);
    *tc = *sc ? nsci_cuda_contig(target, NSC_I64) : NULL;
    if (!*tc) {
        return nsc_last_status();
    }
    int64_t n = nsci_numel(target->ndim, target->shape), bad, value;
    int64_t classes = scores->shape[scores->ndim - 1];
    nsc_status s = nsci_cuda_index_check((const int64_t *)nsci_data_ptr(*tc), n, classes, true,
                                         p->ignore_index, &bad, &value, kept);
    if (s == NSC_OK && bad >= 0) {
        char pos[160];
        nsci_position_str(pos, sizeof pos, target->ndim, target->shape, bad);
        s = nsci_call_fail(c, NSC_ERR_ARG,
                           "target %lld at position %s is out of range [0, %lld) and not "
                           "ignore_index %lld",
                           (long long)value, pos, (long long)classes, (long long)p->ignore_index);
    }
    return s;
}

static nsc_status class_loss_cuda(nsci_call *c) {
    const loss_params *p = c->params;
    nsc_tensor *sc = NULL, *tc = NULL, *out = c->out[0];
    int64_t kept = 0;
    nsc_status s = class_open(c, c->in[0], c->in[1], &sc, &tc, &kept);
    int64_t n = sc && sc->ndim == 2 ? sc->shape[0] : 1;
    double *rows = s == NSC_OK ? nsci_cuda_alloc((size_t)n * sizeof(double) + 8) : NULL;
    if (s == NSC_OK && !rows) {
        s = nsc_last_status();
    }
    if (s == NSC_OK) {
        s = nsci_cuda_class_loss(c->op == NSC_OP_cross_entropy, (nsc_dtype)sc->dtype,
                                 nsci_data_ptr(sc), (const int64_t *)nsci_data_ptr(tc), n,
                                 sc->shape[sc->ndim - 1], p->ignore_index, rows);
    }
    if (s == NSC_OK) {
        bool none = p->reduction == NSC_REDUCTION_NONE;
        double scale = p->reduction == NSC_REDUCTION_MEAN ? 1.0 / (double)kept : 1.0;
        s = nsci_cuda_rows_store(rows, n, scale, none, (nsc_dtype)out->dtype, nsci_data_ptr(out));
    }
    nsci_cuda_free(rows);
    nsc_free(sc);
    nsc_free(tc);
    return s;
}

static nsc_status ce_backward_cuda(nsci_call *c) {
    const loss_params *p = c->params;
    nsc_tensor *sc = NULL, *tc = NULL, *grad = NULL;
    int64_t kept = 0;
    nsc_status s = class_open(c, c->in[1], c->in[2], &sc, &tc, &kept);
    if (s == NSC_OK && !(grad = nsci_cuda_contig(c->in[0], (nsc_dtype)c->in[0]->dtype))) {
        s = nsc_last_status();
    }
    if (s == NSC_OK) {
        int64_t n = sc->ndim == 2 ? sc->shape[0] : 1;
        double divisor = p->reduction == NSC_REDUCTION_MEAN ? (double)kept : 1.0;
        s = nsci_cuda_cross_entropy_grad(
            (nsc_dtype)sc->dtype, nsci_data_ptr(grad), (nsc_dtype)grad->dtype,
            p->reduction == NSC_REDUCTION_NONE,
            divisor, nsci_data_ptr(sc), (const int64_t *)nsci_data_ptr(tc), n,
            sc->shape[sc->ndim - 1], p->ignore_index, nsci_data_ptr(c->out[0]));
    }
    nsc_free(grad);
    nsc_free(sc);
    nsc_free(tc);
    return s;
}

void nsci_cuda_fill_reduce(nsci_kernel_fn *t) {
    t[NSC_OP_sum] = t[NSC_OP_mean] = sum_cuda;
    t[NSC_OP_sum_to_size] = sum_to_size_cuda;
    t[NSC_OP_max] = t[NSC_OP_min] = ext_all_cuda;
    t[NSC_OP_max_dim] = t[NSC_OP_min_dim] = ext_dim_cuda;
    t[NSC_OP_argmax] = t[NSC_OP_argmin] = ext_dim_cuda;
    t[NSC_OP_var] = t[NSC_OP_std] = t[NSC_OP_logsumexp] = stat_cuda;
    t[NSC_OP_norm] = norm_cuda;
    t[NSC_OP_all] = t[NSC_OP_any] = stat_cuda;
    t[NSC_OP_softmax] = t[NSC_OP_log_softmax] = softmax_cuda;
    t[NSC_OP_softmax_backward] = t[NSC_OP_log_softmax_backward] = softmax_cuda;
    t[NSC_OP_layer_norm] = layer_norm_cuda;
    t[NSC_OP_layer_norm_backward] = layer_norm_grad_cuda;
    t[NSC_OP_cross_entropy] = t[NSC_OP_nll_loss] = class_loss_cuda;
    t[NSC_OP_cross_entropy_backward] = ce_backward_cuda;
}
#endif
