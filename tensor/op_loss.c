// Class losses: cross_entropy (fused log-softmax + NLL), its fused gradient
// cross_entropy_backward, and nll_loss. Dims: N rows, C classes.
// logits / log_probs: [N, C] or [C]; target: i64 [N] or []; the loss: [N] / []
// for reduction none, else 0-dim. Targets equal to ignore_index count for
// nothing, also not in the mean's denominator; any other target outside
// [0, C) fails naming its value and position before anything is computed.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html
#include <math.h>
#include <string.h>

#include "tensor/index.h"
#include "tensor/op_params.h"
#include "tensor/pointwise.h"
#include "tensor/reduce.h"

static const nsci_param_desc loss_desc[] = {
    { "reduction", NSCI_PARAM_INT, offsetof(loss_params, reduction), 0 },
    { "ignore_index", NSCI_PARAM_I64, offsetof(loss_params, ignore_index), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// Checks (scores, target) and writes the loss's shape into m.
static nsc_status class_loss_meta(nsci_call *c, const nsc_tensor *scores, const nsc_tensor *target,
                                  nsci_meta *m) {
    const loss_params *p = c->params;
    if (!nsci_is_float((nsc_dtype)scores->dtype)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "scores are %s: expected f32 or f64",
                              nsc_dtype_name((nsc_dtype)scores->dtype));
    }
    if (nsci_check_index_dtype(c, target, "target") != NSC_OK) {
        return nsc_last_status();
    }
    bool batched = scores->ndim == 2;
    if ((scores->ndim != 1 && !batched) || target->ndim != scores->ndim - 1 ||
        (batched && target->shape[0] != scores->shape[0])) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "expected scores [N, C] with target [N], or "
                              "scores [C] with a 0-dim target");
    }
    if ((unsigned)p->reduction > NSC_REDUCTION_NONE) {
        return nsci_call_fail(c, NSC_ERR_ARG, "unknown reduction %d", p->reduction);
    }
    m->dtype = (nsc_dtype)scores->dtype;
    m->ndim = p->reduction == NSC_REDUCTION_NONE ? target->ndim : 0;
    memcpy(m->shape, target->shape, sizeof target->shape);
    return NSC_OK;
}

static nsc_status class_loss_infer(nsci_call *c) {
    return class_loss_meta(c, c->in[0], c->in[1], &c->meta[0]);
}

// Fails naming the first target that is neither in [0, classes) nor ignored;
// counts the others into *kept.
static nsc_status check_targets(nsci_call *c, const nsc_tensor *target, int64_t classes,
                                int64_t *kept) {
    const loss_params *p = c->params;
    const int64_t *t = (const int64_t *)nsci_data_ptr(target);
    int64_t n = nsci_numel(target->ndim, target->shape);
    *kept = 0;
    for (int64_t i = 0; i < n; i++) {
        if (t[i] == p->ignore_index) {
            continue;
        }
        if (t[i] < 0 || t[i] >= classes) {
            char pos[160];
            nsci_position_str(pos, sizeof pos, target->ndim, target->shape, i);
            return nsci_call_fail(c, NSC_ERR_ARG,
                                  "target %lld at position %s is out of range "
                                  "[0, %lld) and not ignore_index %lld",
                                  (long long)t[i], pos, (long long)classes,
                                  (long long)p->ignore_index);
        }
        (*kept)++;
    }
    return NSC_OK;
}

// Writes the reduced loss from per-row losses (ignored rows hold 0).
static void reduce_rows(nsc_tensor *out, const double *rows, int64_t n, int64_t kept, int mode) {
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        total += rows[i];
    }
    // MEAN over no kept row is 0/0: NaN, as torch.
    double v = mode == NSC_REDUCTION_MEAN ? total / (double)kept : total;
    nsci_store(nsci_data_ptr(out), (nsc_dtype)out->dtype, v);
}

// The inputs of a class-loss kernel, contiguous, with rows and classes.
typedef struct class_rows {
    nsc_tensor *scores, *target;
    int64_t n, classes, kept;
} class_rows;

static nsc_status class_rows_open(nsci_call *c, nsc_tensor *scores, nsc_tensor *target,
                                  class_rows *r) {
    r->scores = nsci_cpu_contiguous(scores);
    r->target = nsci_cpu_contiguous(target);
    if (!r->scores || !r->target) {
        return nsc_last_status();
    }
    r->classes = scores->shape[scores->ndim - 1];
    r->n = scores->ndim == 2 ? scores->shape[0] : 1;
    return check_targets(c, r->target, r->classes, &r->kept);
}

static void class_rows_close(class_rows *r) {
    nsc_free(r->scores);
    nsc_free(r->target);
}

// --- cross_entropy ---
// loss[i] = logsumexp(logits[i, :]) - logits[i, target[i]], with the row's max
// subtracted before exp so that large logits do not overflow.
// Saves logits and target: the fused backward recomputes the softmax (cheaper
// than keeping an [N, C] probability tensor alive).

typedef struct ce_job {
    const void *logits;
    const int64_t *target;
    int64_t classes, ignore_index;
    double *rows;       // loss per row
    const double *grad; // backward: the per-row factor (0 on ignored rows)
    void *grad_out;     // backward: [N, C]
} ce_job;

// Per dtype: the row's logsumexp (max, then the sum of exp in double) and
// out[j] = g * exp(x[j] - lse). f32 runs both on vectors (tensor/
// op_reduce_vec.c's max, op_unary_vec.c's exp): glibc's expf over 50257
// classes per row was most of the loss.
static double lse_f64(const double *x, int64_t n) {
    double m = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        m = x[j] > m ? x[j] : m;
    }
    double s = 0.0;
    for (int64_t j = 0; j < n; j++) {
        s += exp(x[j] - m);
    }
    return m + log(s);
}

static void exp_row_f64(double *o, const double *x, int64_t n, double lse, double g) {
    for (int64_t j = 0; j < n; j++) {
        o[j] = g * exp(x[j] - lse);
    }
}

static double lse_f32(const float *x, int64_t n) {
    float m = n > 0 ? nsci_row_max_f32(x, n) : -INFINITY;
    return (double)m + log(nsci_exp_sum_f32_f64(x, n, m));
}

static void exp_row_f32(float *o, const float *x, int64_t n, float lse, float g) {
    nsci_exp_scaled_f32(o, x, n, lse, g);
}

// The forward writes lse - x[t], the backward g * (softmax - onehot).
#define CE_ROWS(SUFFIX, T)                                                                         \
    static void ce_forward_##SUFFIX(void *ctx, int64_t begin, int64_t end) {                       \
        const ce_job *job = ctx;                                                                   \
        for (int64_t i = begin; i < end; i++) {                                                    \
            const T *x = (const T *)job->logits + i * job->classes;                                \
            int64_t t = job->target[i];                                                            \
            job->rows[i] =                                                                         \
                t == job->ignore_index ? 0.0 : lse_##SUFFIX(x, job->classes) - (double)x[t];       \
        }                                                                                          \
    }                                                                                              \
    static void ce_backward_##SUFFIX(void *ctx, int64_t begin, int64_t end) {                      \
        const ce_job *job = ctx;                                                                   \
        int64_t n = job->classes;                                                                  \
        for (int64_t i = begin; i < end; i++) {                                                    \
            const T *x = (const T *)job->logits + i * n;                                           \
            T *o = (T *)job->grad_out + i * n;                                                     \
            int64_t t = job->target[i];                                                            \
            if (t == job->ignore_index) {                                                          \
                for (int64_t j = 0; j < n; j++) {                                                  \
                    o[j] = 0;                                                                      \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            T lse = (T)lse_##SUFFIX(x, n), g = (T)job->grad[i];                                    \
            exp_row_##SUFFIX(o, x, n, lse, g);                                                     \
            o[t] -= g;                                                                             \
        }                                                                                          \
    }

CE_ROWS(f32, float)
CE_ROWS(f64, double)

static nsc_status ce_cpu(nsci_call *c) {
    const loss_params *p = c->params;
    class_rows r;
    nsc_status status = class_rows_open(c, c->in[0], c->in[1], &r);
    double *rows = status == NSC_OK ? nsci_malloc((size_t)r.n * sizeof *rows + 1) : NULL;
    if (status == NSC_OK && !rows) {
        status = nsc_last_status();
    }
    if (status == NSC_OK) {
        ce_job job = { nsci_data_ptr(r.scores),
                       (const int64_t *)nsci_data_ptr(r.target),
                       r.classes,
                       p->ignore_index,
                       rows,
                       NULL,
                       NULL };
        bool f64 = r.scores->dtype == NSC_F64;
        int64_t grain = NSCI_MAX(1, NSCI_GRAIN / NSCI_MAX(r.classes, 1));
        // No classes: every row was ignored (others failed the check) and costs 0.
        nsci_parallel_for(r.classes > 0 ? r.n : 0, grain, f64 ? ce_forward_f64 : ce_forward_f32,
                          &job);
        if (r.classes == 0 && r.n > 0) {
            memset(rows, 0, (size_t)r.n * sizeof *rows);
        }
        nsc_tensor *out = c->out[0];
        if (p->reduction == NSC_REDUCTION_NONE) {
            char *o = nsci_data_ptr(out);
            for (int64_t i = 0; i < r.n; i++) {
                nsci_store(o + (size_t)i * nsc_dtype_size((nsc_dtype)out->dtype),
                           (nsc_dtype)out->dtype, rows[i]);
            }
        } else {
            reduce_rows(out, rows, r.n, r.kept, p->reduction);
        }
    }
    nsci_free(rows);
    class_rows_close(&r);
    return status;
}

static nsc_status ce_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                              nsc_tensor **grad_in) {
    if (!g->needs_grad[0]) {
        return NSC_OK;
    }
    const loss_params *p = g->params;
    grad_in[0] = nsci_cross_entropy_backward(grad_out[0], g->in[0], g->in[1],
                                             (nsc_reduction)p->reduction, p->ignore_index);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_cross_entropy = {
    .name = "cross_entropy",
    .arity = 2,
    .n_outputs = 1,
    .params_size = sizeof(loss_params),
    .params = loss_desc,
    .infer = class_loss_infer,
    .cpu = ce_cpu,
    .backward = ce_backward,
    .save_inputs = 3,
};

nsc_tensor *nsc_cross_entropy(nsc_tensor *logits, nsc_tensor *target, nsc_reduction reduction,
                              int64_t ignore_index) {
    nsc_tensor *in[2] = { logits, target };
    loss_params p = { (int)reduction, ignore_index };
    return nsci_run(NSC_OP_cross_entropy, 2, in, &p);
}

// --- cross_entropy_backward ---
// grad_logits[i, j] = g_i * (softmax(logits[i])[j] - (j == target[i])), with
// g_i = grad[i] (none), grad (sum) or grad / kept (mean); 0 on ignored rows.
// Inputs: grad (the loss's shape), logits, target.

static nsc_status ce_backward_infer(nsci_call *c) {
    const nsc_tensor *grad = c->in[0], *logits = c->in[1];
    nsci_meta loss;
    if (class_loss_meta(c, logits, c->in[2], &loss) != NSC_OK) {
        return nsc_last_status();
    }
    if (grad->ndim != loss.ndim || memcmp(grad->shape, loss.shape, (size_t)grad->ndim * 8) != 0 ||
        !nsci_is_float((nsc_dtype)grad->dtype)) {
        char buf[160];
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "grad must be a float tensor of the loss's shape "
                              "%s",
                              nsci_shape_str(buf, sizeof buf, loss.ndim, loss.shape));
    }
    nsci_meta_same_shape(&c->meta[0], logits, (nsc_dtype)logits->dtype);
    return NSC_OK;
}

// Per-row factors g_i in double: 0 on ignored rows.
static double *ce_row_factors(nsci_call *c, const class_rows *r) {
    const loss_params *p = c->params;
    nsc_tensor *grad = c->in[0];
    int64_t n_grad = nsci_numel(grad->ndim, grad->shape);
    double *g = nsci_malloc((size_t)(r->n + n_grad) * sizeof *g + 1);
    if (!g || nsc_tensor_copy_to(grad, NSC_F64, g + r->n, (size_t)n_grad * sizeof *g) != NSC_OK) {
        nsci_free(g);
        return NULL;
    }
    const int64_t *t = (const int64_t *)nsci_data_ptr(r->target);
    for (int64_t i = 0; i < r->n; i++) {
        double v = g[r->n + (p->reduction == NSC_REDUCTION_NONE ? i : 0)];
        v = p->reduction == NSC_REDUCTION_MEAN ? v / (double)r->kept : v;
        g[i] = t[i] == p->ignore_index ? 0.0 : v;
    }
    return g;
}

static nsc_status ce_backward_cpu(nsci_call *c) {
    const loss_params *p = c->params;
    class_rows r;
    nsc_status status = class_rows_open(c, c->in[1], c->in[2], &r);
    double *factors = status == NSC_OK ? ce_row_factors(c, &r) : NULL;
    if (status == NSC_OK && !factors) {
        status = nsc_last_status();
    }
    if (status == NSC_OK) {
        ce_job job = { nsci_data_ptr(r.scores),
                       (const int64_t *)nsci_data_ptr(r.target),
                       r.classes,
                       p->ignore_index,
                       NULL,
                       factors,
                       nsci_data_ptr(c->out[0]) };
        bool f64 = r.scores->dtype == NSC_F64;
        int64_t grain = NSCI_MAX(1, NSCI_GRAIN / NSCI_MAX(r.classes, 1));
        nsci_parallel_for(r.classes > 0 ? r.n : 0, grain, f64 ? ce_backward_f64 : ce_backward_f32,
                          &job);
    }
    nsci_free(factors);
    class_rows_close(&r);
    return status;
}

const nsci_op_def nsci_op_cross_entropy_backward = {
    .name = "cross_entropy_backward",
    .arity = 3,
    .n_outputs = 1,
    .params_size = sizeof(loss_params),
    .params = loss_desc,
    .infer = ce_backward_infer,
    .cpu = ce_backward_cpu,
    .no_grad = "second derivatives of cross_entropy are not supported",
};

nsc_tensor *nsci_cross_entropy_backward(nsc_tensor *grad, nsc_tensor *logits, nsc_tensor *target,
                                        nsc_reduction reduction, int64_t ignore_index) {
    nsc_tensor *in[3] = { grad, logits, target };
    loss_params p = { (int)reduction, ignore_index };
    return nsci_run(NSC_OP_cross_entropy_backward, 3, in, &p);
}

// --- nll_loss ---
// loss[i] = -log_probs[i, target[i]] (0 on ignored rows), then reduced.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.nll_loss.html
// Saves target: the gradient is -g_i at (i, target[i]) and 0 elsewhere, built
// with scatter_add so that it runs on every device.

static nsc_status nll_cpu(nsci_call *c) {
    const loss_params *p = c->params;
    class_rows r;
    nsc_status status = class_rows_open(c, c->in[0], c->in[1], &r);
    double *rows = status == NSC_OK ? nsci_malloc((size_t)r.n * sizeof *rows + 1) : NULL;
    if (status == NSC_OK && !rows) {
        status = nsc_last_status();
    }
    if (status == NSC_OK) {
        const char *lp = nsci_data_ptr(r.scores);
        const int64_t *t = (const int64_t *)nsci_data_ptr(r.target);
        nsc_dtype dtype = (nsc_dtype)r.scores->dtype;
        size_t elem = nsc_dtype_size(dtype);
        for (int64_t i = 0; i < r.n; i++) {
            bool ignored = t[i] == p->ignore_index;
            rows[i] = ignored ? 0.0 : -nsci_load(lp + (size_t)(i * r.classes + t[i]) * elem, dtype);
        }
        nsc_tensor *out = c->out[0];
        if (p->reduction == NSC_REDUCTION_NONE) {
            for (int64_t i = 0; i < r.n; i++) {
                nsci_store(nsci_data_ptr(out) + (size_t)i * elem, dtype, rows[i]);
            }
        } else {
            reduce_rows(out, rows, r.n, r.kept, p->reduction);
        }
    }
    nsci_free(rows);
    class_rows_close(&r);
    return status;
}

// The per-row gradient of the loss: -g_i (divided by the kept count for MEAN),
// 0 on ignored rows; target's shape. dropped: bool, true on ignored rows.
static nsc_tensor *nll_row_grad(nsc_tensor *grad, nsc_tensor *target, nsc_tensor *dropped,
                                int reduction) {
    nsc_tensor *scaled = nsc_retain(grad), *kept = NULL, *count = NULL;
    if (reduction == NSC_REDUCTION_MEAN) {
        kept = nsc_logical_not(dropped);
        count = nsc_sum_all(kept);
        nsc_free(scaled);
        scaled = nsc_div(grad, count);
    }
    nsc_tensor *neg = nsc_neg(scaled);
    nsc_tensor *rows = neg ? nsc_expand(neg, target->ndim, target->shape) : NULL;
    // masked_fill, not a product: an all-ignored MEAN divides by 0, and inf * 0 is NaN.
    nsc_tensor *result = nsc_masked_fill(rows, dropped, 0.0);
    nsc_tensor *temps[] = { scaled, kept, count, neg, rows };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    return result;
}

static nsc_status nll_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    if (!g->needs_grad[0]) {
        return NSC_OK;
    }
    const loss_params *p = g->params;
    const nsci_meta *lp = &g->in_meta[0];
    nsc_tensor *target = g->in[1];
    nsc_tensor *dropped = nsc_eq_scalar(target, (double)p->ignore_index);
    nsc_tensor *safe = nsc_masked_fill(target, dropped, 0.0);
    nsc_tensor *rows = dropped ? nll_row_grad(grad_out[0], target, dropped, p->reduction) : NULL;
    nsc_tensor *index = nsc_unsqueeze(safe, -1);
    nsc_tensor *src = nsc_unsqueeze(rows, -1);
    nsc_tensor *zeros = nsci_zeros_on(grad_out[0], lp->ndim, lp->shape);
    grad_in[0] = nsc_scatter_add(zeros, -1, index, src);
    nsc_tensor *temps[] = { dropped, safe, rows, index, src, zeros };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_nll_loss = {
    .name = "nll_loss",
    .arity = 2,
    .n_outputs = 1,
    .params_size = sizeof(loss_params),
    .params = loss_desc,
    .infer = class_loss_infer,
    .cpu = nll_cpu,
    .backward = nll_backward,
    .save_inputs = 1u << 1,
};

nsc_tensor *nsc_nll_loss(nsc_tensor *log_probs, nsc_tensor *target, nsc_reduction reduction,
                         int64_t ignore_index) {
    nsc_tensor *in[2] = { log_probs, target };
    loss_params p = { (int)reduction, ignore_index };
    return nsci_run(NSC_OP_nll_loss, 2, in, &p);
}
