// Statistics over a dims list: var, std, logsumexp, and the logical
// reductions all and any. Float statistics accumulate in double (two passes
// per run; chunks of one long run combine with Chan's formula), so f32
// results are the correctly rounded double ones. Shapes: x [...] reduced
// over dims; N = elements per output.
// https://pytorch.org/docs/stable/generated/torch.var.html
#include <math.h>

#include "tensor/reduce.h"

// --- kernels ---

typedef struct moments {
    double n, mean, m2; // count, mean, sum of squared deviations
} moments;

typedef struct lse_acc {
    double max, sum; // sum of exp(x - shift(max))
} lse_acc;

// The shift logsumexp subtracts: the max, or 0 when it is infinite (so a row
// of -inf gives log(0) = -inf and a +inf gives +inf, never inf - inf), as torch.
static inline double lse_shift(double max) {
    return isinf(max) ? 0.0 : max;
}

#define MOMENTS_ROW(NAME, T)                                                                       \
    static moments NAME(const T *p, int64_t n, int64_t s) {                                        \
        double part[4] = { 0 }, sq[4] = { 0 };                                                     \
        int64_t i = 0;                                                                             \
        for (; s == 1 && i + 4 <= n; i += 4) {                                                     \
            for (int k = 0; k < 4; k++) {                                                          \
                part[k] += (double)p[i + k];                                                       \
            }                                                                                      \
        }                                                                                          \
        for (; i < n; i++) {                                                                       \
            part[0] += (double)p[i * s];                                                           \
        }                                                                                          \
        double mean = n ? ((part[0] + part[2]) + (part[1] + part[3])) / (double)n : 0.0;           \
        for (i = 0; s == 1 && i + 4 <= n; i += 4) {                                                \
            for (int k = 0; k < 4; k++) {                                                          \
                double d = (double)p[i + k] - mean;                                                \
                sq[k] += d * d;                                                                    \
            }                                                                                      \
        }                                                                                          \
        for (; i < n; i++) {                                                                       \
            double d = (double)p[i * s] - mean;                                                    \
            sq[0] += d * d;                                                                        \
        }                                                                                          \
        return (moments){ (double)n, mean, (sq[0] + sq[2]) + (sq[1] + sq[3]) };                    \
    }

#define LSE_ROW(NAME, T)                                                                           \
    static lse_acc NAME(const T *p, int64_t n, int64_t s) {                                        \
        double max = -INFINITY;                                                                    \
        for (int64_t i = 0; i < n; i++) {                                                          \
            double v = (double)p[i * s];                                                           \
            if (isnan(v)) {                                                                        \
                max = v;                                                                           \
                break;                                                                             \
            }                                                                                      \
            max = v > max ? v : max;                                                               \
        }                                                                                          \
        double shift = lse_shift(max), sum = 0.0;                                                  \
        for (int64_t i = 0; i < n; i++) {                                                          \
            sum += exp((double)p[i * s] - shift);                                                  \
        }                                                                                          \
        return (lse_acc){ max, sum };                                                              \
    }

MOMENTS_ROW(moments_f32, float)
MOMENTS_ROW(moments_f64, double)
LSE_ROW(lse_f32_strided, float)
LSE_ROW(lse_f64, double)

// Contiguous f32 runs (logsumexp over C of [B, T, C]) use softmax's
// vectorized exp, summing in f32 as torch does.
static lse_acc lse_f32(const float *p, int64_t n, int64_t s) {
    if (s != 1 || n == 0) {
        return lse_f32_strided(p, n, s);
    }
    float max = nsci_row_max_f32(p, n);
    return (lse_acc){ max, nsci_exp_sum_f32(p, n, (float)lse_shift(max)) };
}

static moments moments_combine(moments a, moments b) {
    double n = a.n + b.n;
    if (n == 0) {
        return a;
    }
    double delta = b.mean - a.mean;
    return (moments){ n, a.mean + delta * (b.n / n),
                      a.m2 + b.m2 + delta * delta * (a.n * b.n / n) };
}

static lse_acc lse_combine(lse_acc a, lse_acc b) {
    double max = (isnan(a.max) || a.max >= b.max) ? a.max : b.max;
    if (isnan(b.max)) {
        max = b.max;
    }
    double shift = lse_shift(max);
    // A side of only -inf has sum 0 and adds nothing: 0 * exp(0 - shift) is
    // NaN when the other side's max is below about -709.
    double sa = a.sum == 0 ? 0.0 : a.sum * exp(lse_shift(a.max) - shift);
    double sb = b.sum == 0 ? 0.0 : b.sum * exp(lse_shift(b.max) - shift);
    return (lse_acc){ max, sa + sb };
}

typedef enum stat_kind {
    STAT_VAR,
    STAT_STD,
    STAT_LSE
} stat_kind;

typedef struct stat_job {
    nsci_reduce_geom g;
    char *out;
    stat_kind kind;
    bool f32;
    double correction; // 1 for unbiased var/std
    void *partial;     // split path: moments or lse_acc per chunk
} stat_job;

// Reduces n elements at p (step s) into *m or *l, by the job's kind and dtype.
static void stat_part(const stat_job *j, const char *p, int64_t n, moments *m, lse_acc *l) {
    int64_t s = j->g.red_stride;
    if (j->kind == STAT_LSE) {
        *l = j->f32 ? lse_f32((const float *)p, n, s) : lse_f64((const double *)p, n, s);
    } else {
        *m = j->f32 ? moments_f32((const float *)p, n, s) : moments_f64((const double *)p, n, s);
    }
}

static void stat_store(const stat_job *j, int64_t o, moments m, lse_acc l) {
    double v;
    if (j->kind == STAT_LSE) {
        v = log(l.sum) + lse_shift(l.max);
    } else {
        double divisor = m.n - j->correction; // n <= correction: NaN, as torch
        v = divisor > 0 ? m.m2 / divisor : (double)NAN;
        v = j->kind == STAT_STD ? sqrt(v) : v;
    }
    if (j->f32) {
        ((float *)j->out)[o] = (float)v;
    } else {
        ((double *)j->out)[o] = v;
    }
}

static void stat_rows(void *ctx, int64_t begin, int64_t end) {
    const stat_job *j = ctx;
    size_t elem = j->f32 ? sizeof(float) : sizeof(double);
    nsci_reduce_cursor cur;
    nsci_reduce_seek(&j->g, begin, &cur);
    for (int64_t o = begin; o < end; o++) {
        moments m = { 0 };
        lse_acc l = { 0 };
        stat_part(j, j->g.data + cur.offset * (int64_t)elem, j->g.n_red, &m, &l);
        stat_store(j, o, m, l);
        nsci_reduce_next(&j->g, &cur);
    }
}

static void stat_chunks(void *ctx, int64_t begin, int64_t end) {
    const stat_job *j = ctx;
    size_t elem = j->f32 ? sizeof(float) : sizeof(double);
    for (int64_t c = begin; c < end; c++) {
        int64_t start = c * NSCI_REDUCE_CHUNK;
        int64_t n = NSCI_MIN((int64_t)NSCI_REDUCE_CHUNK, j->g.n_red - start);
        const char *p = j->g.data + start * j->g.red_stride * (int64_t)elem;
        stat_part(j, p, n, (moments *)j->partial + c, (lse_acc *)j->partial + c);
    }
}

static nsc_status stat_run(stat_job *j) {
    int64_t n_chunks = nsci_reduce_n_chunks(&j->g);
    if (n_chunks == 1) {
        nsci_reduce_parallel(&j->g, stat_rows, j);
        return NSC_OK;
    }
    j->partial = nsci_malloc((size_t)n_chunks * sizeof(moments));
    if (!j->partial) {
        return nsc_last_status();
    }
    nsci_parallel_for(n_chunks, 1, stat_chunks, j);
    moments m = { 0 };
    lse_acc l = { 0 };
    if (j->kind == STAT_LSE) {
        l = ((lse_acc *)j->partial)[0];
        for (int64_t c = 1; c < n_chunks; c++) {
            l = lse_combine(l, ((lse_acc *)j->partial)[c]);
        }
    } else {
        m = ((moments *)j->partial)[0];
        for (int64_t c = 1; c < n_chunks; c++) {
            m = moments_combine(m, ((moments *)j->partial)[c]);
        }
    }
    stat_store(j, 0, m, l);
    nsci_free(j->partial);
    return NSC_OK;
}

static nsc_status stat_cpu(nsci_call *c) {
    const nsci_reduce_params *p = c->params;
    nsc_tensor *x = c->in[0], *out = c->out[0];
    stat_job j = { .out = nsci_data_ptr(out), .f32 = out->dtype == NSC_F32 };
    j.kind = c->op == NSC_OP_logsumexp ? STAT_LSE : c->op == NSC_OP_std ? STAT_STD : STAT_VAR;
    j.correction = p->unbiased ? 1.0 : 0.0;
    nsc_tensor *copy;
    // logsumexp of integers computes in f32, as torch promotes them.
    if (nsci_reduce_plan(x, nsci_reduce_mask(p, x->ndim), (nsc_dtype)out->dtype, true, &j.g,
                         &copy) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_status status = j.g.n_out ? stat_run(&j) : NSC_OK;
    nsc_free(copy);
    return status;
}

// --- var, std, logsumexp ---
// var = sum((x - mean)^2) / (N - unbiased) (NaN when N <= unbiased, as
// torch); std = sqrt(var); float inputs only. logsumexp = log(sum(exp(x -
// m))) + m with m the max (0 when infinite); integer inputs give f32.
// Backward: var: g * 2 (x - mean) / (N - unbiased); std: g (x - mean) /
// ((N - unbiased) std), 0 where std is 0; logsumexp: g * exp(x - out).
// Saves x (and the output for std and logsumexp).
// https://pytorch.org/docs/stable/generated/torch.logsumexp.html

static nsc_status stat_infer(nsci_call *c) {
    const nsci_reduce_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    uint32_t mask;
    if (nsci_reduce_check(c, p, &mask) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_dtype dt = (nsc_dtype)x->dtype;
    if (c->op != NSC_OP_logsumexp && !nsci_is_float(dt)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE,
                              "input dtype %s: expected f32 or f64 (convert with to_dtype)",
                              nsc_dtype_name(dt));
    }
    nsci_reduce_meta(&c->meta[0], x, mask, p->keepdim, nsci_is_float(dt) ? dt : NSC_F32);
    return NSC_OK;
}

// g * (x - mean(x)) * scale, with g unsqueezed to the keepdim shape.
static nsc_tensor *centered_times(const nsci_grad_ctx *g, nsc_tensor *grad, double scale) {
    const nsci_reduce_params *p = g->params;
    uint32_t mask = nsci_reduce_mask(p, g->in_meta[0].ndim);
    nsc_tensor *mean = nsc_mean(g->in[0], p->ndims, p->dims, true);
    nsc_tensor *centered = nsc_sub(g->in[0], mean);
    nsc_tensor *gk = nsci_reduce_unsqueeze(grad, &g->in_meta[0], mask, p->keepdim);
    nsc_tensor *scaled = nsc_mul_scalar(gk, scale);
    nsc_tensor *result = nsc_mul(scaled, centered);
    nsc_free(mean);
    nsc_free(centered);
    nsc_free(gk);
    nsc_free(scaled);
    return result;
}

static double dof(const nsci_grad_ctx *g) {
    const nsci_reduce_params *p = g->params;
    const nsci_meta *in = &g->in_meta[0];
    int64_t n = nsci_reduce_count(in->ndim, in->shape, nsci_reduce_mask(p, in->ndim));
    return (double)n - (p->unbiased ? 1.0 : 0.0);
}

static nsc_status var_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    grad_in[0] = centered_times(g, grad_out[0], 2.0 / dof(g));
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

static nsc_status std_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    nsc_tensor *q = nsc_div(grad_out[0], g->out[0]);
    nsc_tensor *zero_std = nsc_eq_scalar(g->out[0], 0.0);
    nsc_tensor *safe = nsc_masked_fill(q, zero_std, 0.0);
    grad_in[0] = centered_times(g, safe, 1.0 / dof(g));
    nsc_free(q);
    nsc_free(zero_std);
    nsc_free(safe);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

static nsc_status logsumexp_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                     nsc_tensor **grad_in) {
    const nsci_reduce_params *p = g->params;
    const nsci_meta *in = &g->in_meta[0];
    uint32_t mask = nsci_reduce_mask(p, in->ndim);
    nsc_tensor *out = nsci_reduce_unsqueeze(g->out[0], in, mask, p->keepdim);
    nsc_tensor *gk = nsci_reduce_unsqueeze(grad_out[0], in, mask, p->keepdim);
    nsc_tensor *diff = nsc_sub(g->in[0], out);
    nsc_tensor *weight = nsc_exp(diff);
    grad_in[0] = nsc_mul(gk, weight);
    nsc_free(out);
    nsc_free(gk);
    nsc_free(diff);
    nsc_free(weight);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

#define STAT_ROW(NAME, BACKWARD, SAVES_OUT)                                                        \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = sizeof(nsci_reduce_params),                                                 \
        .params = nsci_reduce_desc,                                                                \
        .infer = stat_infer,                                                                       \
        .cpu = stat_cpu,                                                                           \
        .backward = BACKWARD,                                                                      \
        .save_inputs = 1,                                                                          \
        .save_outputs = SAVES_OUT,                                                                 \
    };

STAT_ROW(var, var_backward, 0)
STAT_ROW(std, std_backward, 1)
STAT_ROW(logsumexp, logsumexp_backward, 1)

nsc_tensor *nsc_var(nsc_tensor *x, int ndims, const int *dims, bool unbiased, bool keepdim) {
    nsci_reduce_params p = nsci_reduce_pack(ndims, dims, keepdim);
    p.unbiased = unbiased;
    return nsci_run(NSC_OP_var, 1, &x, &p);
}

nsc_tensor *nsc_std(nsc_tensor *x, int ndims, const int *dims, bool unbiased, bool keepdim) {
    nsci_reduce_params p = nsci_reduce_pack(ndims, dims, keepdim);
    p.unbiased = unbiased;
    return nsci_run(NSC_OP_std, 1, &x, &p);
}

nsc_tensor *nsc_logsumexp(nsc_tensor *x, int ndims, const int *dims, bool keepdim) {
    nsci_reduce_params p = nsci_reduce_pack(ndims, dims, keepdim);
    return nsci_run(NSC_OP_logsumexp, 1, &x, &p);
}

// --- all, any ---
// True where every (any) element over dims is nonzero (NaN counts as
// nonzero); bool output for every input dtype; all of nothing is true, any
// of nothing false. Runs stop at the first deciding element.
// https://pytorch.org/docs/stable/generated/torch.all.html

typedef struct logic_job {
    nsci_reduce_geom g;
    uint8_t *out;
    bool any;
} logic_job;

#define LOGIC_RANGE(NAME, T)                                                                       \
    static void NAME(void *ctx, int64_t begin, int64_t end) {                                      \
        const logic_job *j = ctx;                                                                  \
        const T *base = (const T *)j->g.data;                                                      \
        int64_t n = j->g.n_red, s = j->g.red_stride;                                               \
        nsci_reduce_cursor cur;                                                                    \
        nsci_reduce_seek(&j->g, begin, &cur);                                                      \
        for (int64_t o = begin; o < end; o++) {                                                    \
            const T *p = base + cur.offset;                                                        \
            int64_t i = 0;                                                                         \
            while (i < n && ((p[i * s] != 0) != j->any)) {                                         \
                i++;                                                                               \
            }                                                                                      \
            j->out[o] = (uint8_t)((i < n) == j->any);                                              \
            nsci_reduce_next(&j->g, &cur);                                                         \
        }                                                                                          \
    }

LOGIC_RANGE(logic_f32, float)
LOGIC_RANGE(logic_f64, double)
LOGIC_RANGE(logic_i64, int64_t)
LOGIC_RANGE(logic_bool, uint8_t)

static nsc_status logic_infer(nsci_call *c) {
    const nsci_reduce_params *p = c->params;
    uint32_t mask;
    if (nsci_reduce_check(c, p, &mask) != NSC_OK) {
        return nsc_last_status();
    }
    nsci_reduce_meta(&c->meta[0], c->in[0], mask, p->keepdim, NSC_BOOL);
    return NSC_OK;
}

static nsc_status logic_cpu(nsci_call *c) {
    static const nsci_range_fn loops[NSC_N_DTYPES] = { logic_f32, logic_f64, logic_i64,
                                                       logic_bool };
    nsc_tensor *x = c->in[0];
    logic_job j = { .out = (uint8_t *)nsci_data_ptr(c->out[0]), .any = c->op == NSC_OP_any };
    nsc_tensor *copy;
    uint32_t mask = nsci_reduce_mask(c->params, x->ndim);
    if (nsci_reduce_plan(x, mask, (nsc_dtype)x->dtype, true, &j.g, &copy) != NSC_OK) {
        return nsc_last_status();
    }
    nsci_reduce_parallel(&j.g, loops[x->dtype], &j);
    nsc_free(copy);
    return NSC_OK;
}

#define LOGIC_ROW(NAME)                                                                            \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = sizeof(nsci_reduce_params),                                                 \
        .params = nsci_reduce_desc,                                                                \
        .infer = logic_infer,                                                                      \
        .cpu = logic_cpu,                                                                          \
        .no_grad = "bool output: not differentiable",                                              \
    };                                                                                             \
    nsc_tensor *nsc_##NAME(nsc_tensor *x, int ndims, const int *dims, bool keepdim) {              \
        nsci_reduce_params p = nsci_reduce_pack(ndims, dims, keepdim);                             \
        return nsci_run(NSC_OP_##NAME, 1, &x, &p);                                                 \
    }

LOGIC_ROW(all)
LOGIC_ROW(any)
