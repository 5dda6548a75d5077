// Elementwise losses and masks: mse_loss and dropout. Separate from
// op_loss.c, whose losses work per row of class scores.
#include <math.h>
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/pointwise.h"

// A gradient in the input's dtype (inputs of another float dtype were promoted).
static nsc_tensor *as_input_dtype(nsc_tensor *grad, const nsci_meta *in) {
    if (!grad || grad->dtype == in->dtype || !nsci_is_float(in->dtype)) {
        return grad;
    }
    nsc_tensor *converted = nsc_to_dtype(grad, in->dtype);
    nsc_free(grad);
    return converted;
}

// --- mse_loss ---
// (a - b)^2 elementwise (a, b broadcast, float), then mean, sum or none.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.mse_loss.html
// Saves a and b: d/da = 2 (a - b) g (/ n for mean), d/db = -d/da.

static const nsci_param_desc mse_desc[] = {
    { "reduction", NSCI_PARAM_INT, offsetof(mse_params, reduction), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status mse_infer(nsci_call *c) {
    const mse_params *p = c->params;
    nsci_meta *m = &c->meta[0];
    if (nsci_broadcast_meta(c, 2, c->in, m) != NSC_OK) {
        return nsc_last_status();
    }
    m->dtype = nsci_result_type(2, c->in);
    if (!nsci_is_float(m->dtype)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "inputs promote to %s: expected f32 or f64",
                              nsc_dtype_name(m->dtype));
    }
    if ((unsigned)p->reduction > NSC_REDUCTION_NONE) {
        return nsci_call_fail(c, NSC_ERR_ARG, "unknown reduction %d", p->reduction);
    }
    if (p->reduction != NSC_REDUCTION_NONE) {
        m->ndim = 0;
    }
    return NSC_OK;
}

NSCI_BINARY_TO_LOOP(square_diff_f32, float, float, (a - b) * (a - b))
NSCI_BINARY_TO_LOOP(square_diff_f64, double, double, (a - b) * (a - b))

static nsc_status mse_cpu(nsci_call *c) {
    const mse_params *p = c->params;
    nsc_tensor *out = c->out[0];
    nsc_dtype dtype = (nsc_dtype)out->dtype;
    nsci_inner_fn loop = dtype == NSC_F64 ? square_diff_f64 : square_diff_f32;
    if (p->reduction == NSC_REDUCTION_NONE) {
        return nsci_pointwise_run(out, 2, c->in, dtype, loop, NULL);
    }
    nsci_meta joint;
    nsci_broadcast_meta(c, 2, c->in, &joint); // checked by infer
    nsc_tensor *squares = nsci_tensor_header(dtype, NSC_CPU, joint.ndim, joint.shape);
    if (!squares || nsci_tensor_alloc_data(squares) != NSC_OK ||
        nsci_pointwise_run(squares, 2, c->in, dtype, loop, NULL) != NSC_OK) {
        nsc_free(squares);
        return nsc_last_status();
    }
    // Summed in double: the result stays within a few ulp of torch's for any order.
    int64_t n = nsci_numel(joint.ndim, joint.shape);
    const char *s = nsci_data_ptr(squares);
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        total += dtype == NSC_F64 ? ((const double *)s)[i] : (double)((const float *)s)[i];
    }
    nsc_free(squares);
    // MEAN of nothing is 0/0: NaN, as torch.
    double v = p->reduction == NSC_REDUCTION_MEAN ? total / (double)n : total;
    nsci_store(nsci_data_ptr(out), dtype, v);
    return NSC_OK;
}

static nsc_status mse_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    const mse_params *p = g->params;
    nsc_tensor *diff = nsc_sub(g->in[0], g->in[1]);
    double n = diff ? (double)nsc_tensor_numel(diff) : 1.0;
    double scale = p->reduction == NSC_REDUCTION_MEAN ? 2.0 / n : 2.0;
    nsc_tensor *scaled = nsc_mul_scalar(diff, scale);
    nsc_tensor *da = nsc_mul(scaled, grad_out[0]);
    nsc_free(diff);
    nsc_free(scaled);
    if (!da) {
        return nsc_last_status();
    }
    if (g->needs_grad[1] && !(grad_in[1] = as_input_dtype(nsc_neg(da), &g->in_meta[1]))) {
        nsc_free(da);
        return nsc_last_status();
    }
    if (g->needs_grad[0]) {
        grad_in[0] = as_input_dtype(nsc_retain(da), &g->in_meta[0]);
    }
    nsc_free(da);
    return (!g->needs_grad[0] || grad_in[0]) ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_mse_loss = {
    .name = "mse_loss",
    .arity = 2,
    .n_outputs = 1,
    .params_size = sizeof(mse_params),
    .params = mse_desc,
    .infer = mse_infer,
    .cpu = mse_cpu,
    .backward = mse_backward,
    .flags = NSCI_OP_BROADCAST,
    .save_inputs = 3,
};

nsc_tensor *nsc_mse_loss(nsc_tensor *a, nsc_tensor *b, nsc_reduction reduction) {
    nsc_tensor *in[2] = { a, b };
    mse_params p = { (int)reduction };
    return nsci_run(NSC_OP_mse_loss, 2, in, &p);
}

// --- dropout ---
// Training: out = x * keep / (1 - p), keep ~ Bernoulli(1 - p) per element; p == 1
// gives zeros (x * 0, so NaN stays NaN, as torch). Evaluation returns x itself.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.dropout.html
// Outputs: out (x's dtype) and the keep mask (bool), saved for backward:
// storing one byte per element is cheaper than regenerating it, and keeps the
// backward a plain product that runs on every device.
// Randomness: nsc_dropout draws a 64-bit seed from the generator (so the
// generator advances on every training call, on META too); element i of the
// row-major output takes its word from a Philox stream keyed by the seed and
// i's chunk, so the mask does not depend on the thread count.

static const nsci_param_desc dropout_desc[] = {
    { "p", NSCI_PARAM_F64, offsetof(dropout_params, p), 0 },
    { "seed", NSCI_PARAM_I64, offsetof(dropout_params, seed), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

enum {
    DROPOUT_CHUNK = 1 << 14
}; // elements per Philox stream

static nsc_status dropout_infer(nsci_call *c) {
    const dropout_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    if (!nsci_is_float((nsc_dtype)x->dtype)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "x is %s: expected f32 or f64",
                              nsc_dtype_name((nsc_dtype)x->dtype));
    }
    if (!(p->p >= 0.0 && p->p <= 1.0)) {
        return nsci_call_fail(c, NSC_ERR_ARG, "p %g: expected a probability in [0, 1]", p->p);
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    nsci_meta_same_shape(&c->meta[1], x, NSC_BOOL);
    return NSC_OK;
}

typedef struct mask_job {
    uint8_t *mask;
    int64_t n;
    uint64_t seed, threshold; // dropped when the 32-bit word < threshold
    atomic_bool failed;
} mask_job;

// splitmix64's finalizer: decorrelates the keys of neighbouring chunks.
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void mask_chunks(void *ctx, int64_t begin, int64_t end) {
    mask_job *job = ctx;
    for (int64_t chunk = begin; chunk < end; chunk++) {
        nsc_generator *gen =
            nsc_generator_new(mix64(job->seed + (uint64_t)chunk * 0x9E3779B97F4A7C15ull));
        if (!gen) {
            atomic_store(&job->failed, true);
            return;
        }
        int64_t lo = chunk * DROPOUT_CHUNK, hi = NSCI_MIN(lo + DROPOUT_CHUNK, job->n);
        for (int64_t i = lo; i < hi; i++) {
            job->mask[i] = nsc_generator_next_u32(gen) >= job->threshold;
        }
        nsc_generator_free(gen);
    }
}

// out = x * (keep ? scale : 0); operands (out, x, mask).
#define DROPOUT_LOOP(NAME, T)                                                                      \
    static void NAME(int64_t n, char **p, const int64_t *s, void *ctx) {                           \
        const T scale = (T)(*(const double *)ctx);                                                 \
        if (s[0] == (int64_t)sizeof(T) && s[1] == (int64_t)sizeof(T) && s[2] == 1) {               \
            T *restrict o = (T *)p[0];                                                             \
            const T *restrict x = (const T *)p[1];                                                 \
            const uint8_t *restrict keep = (const uint8_t *)p[2];                                  \
            for (int64_t i = 0; i < n; i++) {                                                      \
                o[i] = x[i] * (keep[i] ? scale : (T)0);                                            \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T a = *(const T *)(p[1] + i * s[1]);                                                   \
            *(T *)(p[0] + i * s[0]) = a * (*(const uint8_t *)(p[2] + i * s[2]) ? scale : (T)0);    \
        }                                                                                          \
    }

DROPOUT_LOOP(dropout_f32, float)
DROPOUT_LOOP(dropout_f64, double)

static nsc_status dropout_cpu(nsci_call *c) {
    const dropout_params *p = c->params;
    nsc_tensor *out = c->out[0], *mask = c->out[1];
    mask_job job = { .mask = (uint8_t *)nsci_data_ptr(mask),
                     .n = nsci_numel(mask->ndim, mask->shape),
                     .seed = (uint64_t)p->seed,
                     .threshold = (uint64_t)ldexp(p->p, 32) };
    atomic_init(&job.failed, false);
    if (job.n == 0) {
        return NSC_OK;
    }
    if (p->p == 0.0) {
        memset(job.mask, 1, (size_t)job.n);
    } else {
        nsci_parallel_for((job.n + DROPOUT_CHUNK - 1) / DROPOUT_CHUNK, 1, mask_chunks, &job);
    }
    if (atomic_load(&job.failed)) {
        return nsci_call_fail(c, NSC_ERR_OOM, "no memory for a generator");
    }
    double scale = p->p < 1.0 ? 1.0 / (1.0 - p->p) : 0.0;
    nsc_tensor *ops[3] = { out, c->in[0], mask };
    nsci_iter it;
    nsci_iter_init(&it, 3, ops);
    nsci_iter_run(&it, out->dtype == NSC_F64 ? dropout_f64 : dropout_f32, &scale, NSCI_GRAIN);
    return NSC_OK;
}

static nsc_status dropout_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                   nsc_tensor **grad_in) {
    const dropout_params *p = g->params;
    double scale = p->p < 1.0 ? 1.0 / (1.0 - p->p) : 0.0;
    nsc_tensor *kept = nsc_mul(grad_out[0], g->out[1]);
    grad_in[0] = nsc_mul_scalar(kept, scale);
    nsc_free(kept);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_dropout = {
    .name = "dropout",
    .arity = 1,
    .n_outputs = 2,
    .params_size = sizeof(dropout_params),
    .params = dropout_desc,
    .infer = dropout_infer,
    .cpu = dropout_cpu,
    .backward = dropout_backward,
    .flags = NSCI_OP_RANDOM,
    .save_outputs = 1u << 1,
};

nsc_tensor *nsc_dropout(nsc_tensor *x, double p, bool train, nsc_generator *gen) {
    if (!x) {
        if (nsc_last_status() == NSC_OK) {
            nsci_fail(NSC_ERR_ARG, "dropout: input 0 is NULL");
        }
        return NULL;
    }
    if (!(p >= 0.0 && p <= 1.0)) { // checked here too: evaluation never dispatches
        char shape[160];
        return nsci_fail_null(NSC_ERR_ARG, "dropout: %s: p %g: expected a probability in [0, 1]",
                              nsci_shape_str(shape, sizeof shape, x->ndim, x->shape), p);
    }
    if (!train) {
        return nsc_retain(x);
    }
    dropout_params params = { .p = p };
    // p == 0 keeps everything and META has no values to mask: no draw, so the
    // generator does not move (torch's META dropout leaves it too; a trace's
    // shape scan must not change what the run after it draws).
    if (p > 0.0 && x->device != NSC_META) {
        gen = gen ? gen : nsc_generator_default();
        uint64_t hi = nsc_generator_next_u32(gen);
        params.seed = (int64_t)(hi << 32 | nsc_generator_next_u32(gen));
    }
    return nsci_run(NSC_OP_dropout, 1, &x, &params);
}
