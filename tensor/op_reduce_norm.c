// Vector norms over a dims list (torch.linalg.vector_norm, Tensor.norm):
// ord 2 sqrt(sum x^2), 1 sum |x|, inf max |x|, -inf min |x|, 0 the count of
// nonzero elements, any other p (sum |x|^p)^(1/p). Float inputs only; the
// result has the params' dtype (the input's, or a wider one: torch's dtype=
// argument). Every ord accumulates in double, where torch accumulates f32
// in f32: an f32 norm whose squares overflow f32 (|x| > 1.8e19) is finite
// here and inf in torch. Over one element the norm is |x| itself (1 or 0
// for ord 0), as torch 2 returns it, with no rounding through |x|^p. NaN
// propagates (a NaN counts as nonzero for ord 0). Over no elements: 0 for
// ord >= 0; ord < 0 and +-inf have no identity and are refused, as torch
// refuses them.
// https://pytorch.org/docs/stable/generated/torch.linalg.vector_norm.html
#include <math.h>

#include "tensor/norm_terms.h"
#include "tensor/reduce.h"

// --- kernels ---

static inline bool is_max(double ord) {
    return ord == HUGE_VAL;
}

static inline bool is_min(double ord) {
    return ord == -HUGE_VAL;
}

// The accumulator of no elements: 0 for sums and max |x|, +inf for min |x|.
static inline double identity(double ord) {
    return is_min(ord) ? HUGE_VAL : 0.0;
}

static inline double combine(double a, double b, double ord) {
    return isinf(ord) ? nsci_norm_pick_abs(a, b, is_max(ord)) : a + b;
}

// n elements at p, step s: the accumulator (sum of terms, or max / min of
// |x|). Unit-stride sums of squares and absolute values keep four partial
// sums, added in a fixed order.
#define NORM_RUN(NAME, T)                                                                          \
    static double NAME(const T *p, int64_t n, int64_t s, double ord) {                             \
        if (isinf(ord)) {                                                                          \
            double acc = identity(ord);                                                            \
            for (int64_t i = 0; i < n; i++) {                                                      \
                acc = nsci_norm_pick_abs(acc, fabs((double)p[i * s]), is_max(ord));                \
            }                                                                                      \
            return acc;                                                                            \
        }                                                                                          \
        double part[4] = { 0 };                                                                    \
        int64_t i = 0;                                                                             \
        if (s == 1 && ord == 2.0) {                                                                \
            for (; i + 4 <= n; i += 4) {                                                           \
                for (int k = 0; k < 4; k++) {                                                      \
                    double v = (double)p[i + k];                                                   \
                    part[k] += v * v;                                                              \
                }                                                                                  \
            }                                                                                      \
        } else if (s == 1 && ord == 1.0) {                                                         \
            for (; i + 4 <= n; i += 4) {                                                           \
                for (int k = 0; k < 4; k++) {                                                      \
                    part[k] += fabs((double)p[i + k]);                                             \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; i < n; i++) {                                                                       \
            part[0] += nsci_norm_term((double)p[i * s], ord);                                      \
        }                                                                                          \
        return (part[0] + part[2]) + (part[1] + part[3]);                                          \
    }

NORM_RUN(norm_run_f32, float)
NORM_RUN(norm_run_f64, double)

typedef struct norm_job {
    nsci_reduce_geom g;
    char *out;
    bool in_f32, out_f32;
    double ord;
    double *partial; // split path: one accumulator per chunk
} norm_job;

static double norm_part(const norm_job *j, const char *p, int64_t n) {
    int64_t s = j->g.red_stride;
    return j->in_f32 ? norm_run_f32((const float *)p, n, s, j->ord)
                     : norm_run_f64((const double *)p, n, s, j->ord);
}

static void norm_store(const norm_job *j, int64_t o, double acc) {
    double v = nsci_norm_finish(acc, j->ord);
    if (j->out_f32) {
        ((float *)j->out)[o] = (float)v;
    } else {
        ((double *)j->out)[o] = v;
    }
}

static size_t in_elem(const norm_job *j) {
    return j->in_f32 ? sizeof(float) : sizeof(double);
}

static void norm_rows(void *ctx, int64_t begin, int64_t end) {
    const norm_job *j = ctx;
    nsci_reduce_cursor cur;
    nsci_reduce_seek(&j->g, begin, &cur);
    for (int64_t o = begin; o < end; o++) {
        const char *p = j->g.data + cur.offset * (int64_t)in_elem(j);
        if (j->g.n_red == 1) {
            double v = j->in_f32 ? (double)*(const float *)p : *(const double *)p;
            double single = nsci_norm_single(v, j->ord);
            if (j->out_f32) {
                ((float *)j->out)[o] = (float)single;
            } else {
                ((double *)j->out)[o] = single;
            }
        } else {
            norm_store(j, o, norm_part(j, p, j->g.n_red));
        }
        nsci_reduce_next(&j->g, &cur);
    }
}

static void norm_chunks(void *ctx, int64_t begin, int64_t end) {
    const norm_job *j = ctx;
    for (int64_t c = begin; c < end; c++) {
        int64_t start = c * NSCI_REDUCE_CHUNK;
        int64_t n = NSCI_MIN((int64_t)NSCI_REDUCE_CHUNK, j->g.n_red - start);
        j->partial[c] = norm_part(j, j->g.data + start * j->g.red_stride * (int64_t)in_elem(j), n);
    }
}

static nsc_status norm_run(norm_job *j) {
    int64_t n_chunks = nsci_reduce_n_chunks(&j->g);
    if (n_chunks == 1) {
        nsci_reduce_parallel(&j->g, norm_rows, j);
        return NSC_OK;
    }
    j->partial = nsci_malloc((size_t)n_chunks * sizeof *j->partial);
    if (!j->partial) {
        return nsc_last_status();
    }
    nsci_parallel_for(n_chunks, 1, norm_chunks, j);
    double acc = j->partial[0];
    for (int64_t c = 1; c < n_chunks; c++) {
        acc = combine(acc, j->partial[c], j->ord);
    }
    norm_store(j, 0, acc);
    nsci_free(j->partial);
    return NSC_OK;
}

static nsc_status norm_cpu(nsci_call *c) {
    const nsci_norm_params *p = c->params;
    nsc_tensor *x = c->in[0], *out = c->out[0];
    norm_job j = { .out = nsci_data_ptr(out),
                   .in_f32 = x->dtype == NSC_F32,
                   .out_f32 = out->dtype == NSC_F32,
                   .ord = p->ord };
    nsc_tensor *copy;
    nsci_reduce_params r = nsci_norm_reduce(p);
    if (nsci_reduce_plan(x, nsci_reduce_mask(&r, x->ndim), (nsc_dtype)x->dtype, true, &j.g,
                         &copy) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_status status = j.g.n_out ? norm_run(&j) : NSC_OK;
    nsc_free(copy);
    return status;
}

// --- shape rule ---

static nsc_status norm_infer(nsci_call *c) {
    const nsci_norm_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    nsc_dtype in = (nsc_dtype)x->dtype, dt = p->dtype;
    uint32_t mask;
    nsci_reduce_params r = nsci_norm_reduce(p);
    if (nsci_reduce_check(c, &r, &mask) != NSC_OK) {
        return nsc_last_status();
    }
    if (!nsci_is_float(in)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE,
                              "input dtype %s: expected f32 or f64 (convert with to_dtype)",
                              nsc_dtype_name(in));
    }
    if (!nsci_is_float(dt) || (in == NSC_F64 && dt == NSC_F32)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE,
                              "dtype %s: expected f32 or f64, no narrower than the input's %s",
                              nsc_dtype_name(dt), nsc_dtype_name(in));
    }
    if (isnan(p->ord)) {
        return nsci_call_fail(c, NSC_ERR_ARG, "ord nan: expected a number, inf or -inf");
    }
    if ((p->ord < 0 || isinf(p->ord)) && nsci_reduce_count(x->ndim, x->shape, mask) == 0) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "ord %g over a size-0 dim: this norm has no value for no elements "
                              "(ord >= 0 gives 0)",
                              p->ord);
    }
    nsci_reduce_meta(&c->meta[0], x, mask, p->keepdim, dt);
    return NSC_OK;
}

// --- backward (public ops only, so it runs on every device) ---
// With n the norm and g its gradient, computed in the output's dtype:
//   ord 2:       (x / n) * g                (0 where n is 0; x / n first, so
//                                            a tiny n does not overflow g / n)
//   ord 1:       sgn(x) * g
//   ord +-inf:   sgn(x) * g / k where |x| == n or x is NaN, k the number
//                of such elements
//   ord 0:       0
//   other p:     sgn(x) |x|^(p-1) * g / n^(p-1)   (0 where x or n is 0)
// as torch's norm_backward: a tie of the max shares its gradient evenly,
// and sgn(NaN) is 0 (a NaN input gives 0 for ord 1 and +-inf, NaN for the
// others through n).

// sgn(x) as torch's: (x > 0) - (x < 0), so 0 for 0 and NaN.
static nsc_tensor *sgn(nsc_tensor *x) {
    nsc_dtype dt = nsc_tensor_dtype(x);
    nsc_tensor *gt = nsc_gt_scalar(x, 0.0), *lt = nsc_lt_scalar(x, 0.0);
    nsc_tensor *pos = nsc_to_dtype(gt, dt), *neg = nsc_to_dtype(lt, dt);
    nsc_tensor *s = nsc_sub(pos, neg);
    nsc_free(gt);
    nsc_free(lt);
    nsc_free(pos);
    nsc_free(neg);
    return s;
}

// The gradient with respect to x (in the output's dtype) for ord p.
static nsc_tensor *norm_grad(nsc_tensor *x, nsc_tensor *n, nsc_tensor *g, double ord,
                             const nsci_meta *in, uint32_t mask) {
    enum {
        MAX_TEMPS = 14
    };
    nsc_tensor *t[MAX_TEMPS] = { 0 }, *result = NULL;
    int k = 0;
    if (ord == 2.0) {
        nsc_tensor *q = t[k++] = nsc_div(x, n);
        nsc_tensor *zero = t[k++] = nsc_eq_scalar(n, 0.0);
        nsc_tensor *unit = t[k++] = nsc_masked_fill(q, zero, 0.0);
        result = nsc_mul(unit, g);
    } else if (ord == 1.0) {
        nsc_tensor *s = t[k++] = sgn(x);
        result = nsc_mul(s, g);
    } else if (isinf(ord)) {
        nsc_tensor *a = t[k++] = nsc_abs(x);
        nsc_tensor *at_n = t[k++] = nsc_eq(a, n);
        nsc_tensor *nan = t[k++] = nsc_ne(x, x);
        nsc_tensor *hit = t[k++] = nsc_logical_or(at_n, nan);
        nsc_tensor *w = t[k++] = nsc_to_dtype(hit, nsc_tensor_dtype(x));
        int dims[NSC_MAX_DIMS], nd = 0;
        for (int d = 0; d < in->ndim; d++) {
            if (mask & (1u << d)) {
                dims[nd++] = d;
            }
        }
        nsc_tensor *count = t[k++] = nsc_sum(w, nd, dims, true);
        nsc_tensor *s = t[k++] = sgn(x);
        nsc_tensor *sw = t[k++] = nsc_mul(s, w);
        nsc_tensor *share = t[k++] = nsc_div(g, count);
        result = nsc_mul(sw, share);
    } else {
        nsc_tensor *a = t[k++] = nsc_abs(x);
        nsc_tensor *pw = t[k++] = nsc_pow_scalar(a, ord - 1.0);
        nsc_tensor *x0 = t[k++] = nsc_eq_scalar(x, 0.0);
        nsc_tensor *safe = t[k++] = nsc_masked_fill(pw, x0, 0.0);
        nsc_tensor *s = t[k++] = sgn(x);
        nsc_tensor *scaled = t[k++] = nsc_mul(s, safe);
        nsc_tensor *np = t[k++] = nsc_pow_scalar(n, ord - 1.0);
        nsc_tensor *q = t[k++] = nsc_div(g, np);
        nsc_tensor *zero = t[k++] = nsc_eq_scalar(n, 0.0);
        nsc_tensor *scale = t[k++] = nsc_masked_fill(q, zero, 0.0);
        result = nsc_mul(scaled, scale);
    }
    for (int i = 0; i < k; i++) {
        nsc_free(t[i]);
    }
    return result;
}

static nsc_status norm_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                nsc_tensor **grad_in) {
    const nsci_norm_params *p = g->params;
    const nsci_meta *in = &g->in_meta[0];
    nsc_tensor *x = g->in[0];
    if (p->ord == 0.0) {
        grad_in[0] = nsc_zeros((nsc_dtype)in->dtype, nsc_tensor_device(x), in->ndim, in->shape);
        return grad_in[0] ? NSC_OK : nsc_last_status();
    }
    nsci_reduce_params r = nsci_norm_reduce(p);
    uint32_t mask = nsci_reduce_mask(&r, in->ndim);
    nsc_dtype in_dt = (nsc_dtype)in->dtype;
    bool widen = p->dtype != in_dt;
    nsc_tensor *xw = widen ? nsc_to_dtype(x, p->dtype) : nsc_retain(x);
    nsc_tensor *n = nsci_reduce_unsqueeze(g->out[0], in, mask, p->keepdim);
    nsc_tensor *gk = nsci_reduce_unsqueeze(grad_out[0], in, mask, p->keepdim);
    nsc_tensor *grad = xw && n && gk ? norm_grad(xw, n, gk, p->ord, in, mask) : NULL;
    grad_in[0] = widen && grad ? nsc_to_dtype(grad, in_dt) : nsc_retain(grad);
    nsc_free(xw);
    nsc_free(n);
    nsc_free(gk);
    nsc_free(grad);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

static const nsci_param_desc norm_desc[] = {
    { "dims", NSCI_PARAM_INT_ARRAY, offsetof(nsci_norm_params, dims),
      offsetof(nsci_norm_params, ndims) },
    { "keepdim", NSCI_PARAM_BOOL, offsetof(nsci_norm_params, keepdim), 0 },
    { "ord", NSCI_PARAM_F64, offsetof(nsci_norm_params, ord), 0 },
    { "dtype", NSCI_PARAM_DTYPE, offsetof(nsci_norm_params, dtype), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

const nsci_op_def nsci_op_norm = {
    .name = "norm",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(nsci_norm_params),
    .params = norm_desc,
    .infer = norm_infer,
    .cpu = norm_cpu,
    .backward = norm_backward,
    .save_inputs = 1,
    .save_outputs = 1,
};

nsc_tensor *nsc_vector_norm(nsc_tensor *x, double ord, int ndims, const int *dims, bool keepdim,
                            nsc_dtype dtype) {
    nsci_reduce_params r = nsci_reduce_pack(ndims, dims, keepdim);
    nsci_norm_params p = { .ndims = r.ndims, .keepdim = keepdim, .ord = ord, .dtype = dtype };
    memcpy(p.dims, r.dims, sizeof p.dims);
    return nsci_run(NSC_OP_norm, 1, &x, &p);
}

nsc_tensor *nsc_norm(nsc_tensor *x, double ord, int ndims, const int *dims, bool keepdim) {
    // A NULL x is reported by the op itself; its dtype does not matter then.
    nsc_dtype dtype = x ? nsc_tensor_dtype(x) : NSC_F32;
    return nsc_vector_norm(x, ord, ndims, dims, keepdim, dtype);
}
