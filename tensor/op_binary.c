// Binary arithmetic with broadcasting and type promotion: add, sub, mul, div,
// pow, maximum, minimum. Shapes: a, b broadcast to out.
// https://pytorch.org/docs/stable/torch.html#pointwise-ops
#include <math.h>
#include <string.h>

#include "tensor/tensor_impl.h"

// --- inner loops ---
// One loop per (op, dtype); each has a contiguous path the compiler can
// vectorize and a strided path that also covers broadcast (stride 0).

#define BINARY_LOOP(NAME, T, EXPR)                                                                 \
    static void NAME(int64_t n, char **p, const int64_t *s, void *ctx) {                           \
        (void)ctx;                                                                                 \
        const int64_t e = (int64_t)sizeof(T);                                                      \
        if (s[0] == e && s[1] == e && s[2] == e) {                                                 \
            T *restrict o = (T *)p[0];                                                             \
            const T *restrict x = (const T *)p[1];                                                 \
            const T *restrict y = (const T *)p[2];                                                 \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T a = x[i], b = y[i];                                                              \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        if (s[0] == e && s[1] == e && s[2] == 0) {                                                 \
            T *restrict o = (T *)p[0];                                                             \
            const T *restrict x = (const T *)p[1];                                                 \
            const T b = *(const T *)p[2];                                                          \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T a = x[i];                                                                        \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T a = *(const T *)(p[1] + i * s[1]), b = *(const T *)(p[2] + i * s[2]);                \
            *(T *)(p[0] + i * s[0]) = EXPR;                                                        \
        }                                                                                          \
    }

#define FLOAT_LOOPS(OP, EXPR_F, EXPR_D)                                                            \
    BINARY_LOOP(OP##_f32, float, EXPR_F)                                                           \
    BINARY_LOOP(OP##_f64, double, EXPR_D)

FLOAT_LOOPS(add, a + b, a + b)
FLOAT_LOOPS(sub, a - b, a - b)
FLOAT_LOOPS(mul, a *b, a *b)
FLOAT_LOOPS(div, a / b, a / b)
FLOAT_LOOPS(pow, powf(a, b), pow(a, b))
FLOAT_LOOPS(maximum, (a != a || a > b) ? a : b, (a != a || a > b) ? a : b)
FLOAT_LOOPS(minimum, (a != a || a < b) ? a : b, (a != a || a < b) ? a : b)

// Integers wrap on overflow as PyTorch's do; unsigned arithmetic avoids C's UB.
BINARY_LOOP(add_i64, int64_t, (int64_t)((uint64_t)a + (uint64_t)b))
BINARY_LOOP(sub_i64, int64_t, (int64_t)((uint64_t)a - (uint64_t)b))
BINARY_LOOP(mul_i64, int64_t, (int64_t)((uint64_t)a * (uint64_t)b))
BINARY_LOOP(maximum_i64, int64_t, a > b ? a : b)
BINARY_LOOP(minimum_i64, int64_t, a < b ? a : b)
BINARY_LOOP(add_bool, uint8_t, (uint8_t)(a | b))
BINARY_LOOP(mul_bool, uint8_t, (uint8_t)(a & b))
BINARY_LOOP(maximum_bool, uint8_t, (uint8_t)(a | b))
BINARY_LOOP(minimum_bool, uint8_t, (uint8_t)(a & b))

// A negative exponent gives torch's integer answers: 1 and -1 keep their
// powers, every other base (0 included) gives 0.
static int64_t ipow(int64_t base, int64_t exp) {
    if (exp < 0) {
        return base == 1 ? 1 : base == -1 ? ((exp & 1) ? -1 : 1) : 0;
    }
    uint64_t result = 1, b = (uint64_t)base;
    while (exp > 0) {
        if (exp & 1) {
            result *= b;
        }
        b *= b;
        exp >>= 1;
    }
    return (int64_t)result;
}
BINARY_LOOP(pow_i64, int64_t, ipow(a, b))

typedef struct binary_kernels {
    nsci_inner_fn loop[NSC_N_DTYPES];
} binary_kernels;

static const binary_kernels *kernels_of(nsc_op op) {
    static const binary_kernels add_k = { { add_f32, add_f64, add_i64, add_bool } };
    static const binary_kernels sub_k = { { sub_f32, sub_f64, sub_i64, NULL } };
    static const binary_kernels mul_k = { { mul_f32, mul_f64, mul_i64, mul_bool } };
    static const binary_kernels div_k = { { div_f32, div_f64, NULL, NULL } };
    static const binary_kernels pow_k = { { pow_f32, pow_f64, pow_i64, NULL } };
    static const binary_kernels max_k = { { maximum_f32, maximum_f64, maximum_i64,
                                            maximum_bool } };
    static const binary_kernels min_k = { { minimum_f32, minimum_f64, minimum_i64,
                                            minimum_bool } };
    switch (op) {
        case NSC_OP_add:
        case NSC_OP_add_:
            return &add_k;
        case NSC_OP_sub:
            return &sub_k;
        case NSC_OP_mul:
        case NSC_OP_mul_:
            return &mul_k;
        case NSC_OP_div:
            return &div_k;
        case NSC_OP_pow:
            return &pow_k;
        case NSC_OP_maximum:
            return &max_k;
        case NSC_OP_minimum:
            return &min_k;
        default:
            return NULL;
    }
}

// --- shared infer and kernel ---

static nsc_status binary_infer(nsci_call *c) {
    nsci_meta *m = &c->meta[0];
    if (nsci_broadcast_meta(c, 2, c->in, m) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_dtype t = nsci_result_type(2, c->in);
    if (c->op == NSC_OP_div && !nsci_is_float(t)) {
        t = NSC_F32; // true division
    }
    if (t == NSC_BOOL && (c->op == NSC_OP_sub || c->op == NSC_OP_pow)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "%s of two bool tensors is not supported: "
                                                "convert one with to_dtype",
                              c->def->name);
    }
    m->dtype = t;
    return NSC_OK;
}

nsc_status nsci_binary_cpu(nsc_op op, nsc_tensor *out, nsc_tensor *a, nsc_tensor *b) {
    nsc_dtype t = (nsc_dtype)out->dtype;
    const binary_kernels *k = kernels_of(op);
    nsci_inner_fn loop = k ? k->loop[t] : NULL;
    if (!loop) {
        return nsci_fail(NSC_ERR_DTYPE, "%s: no kernel for dtype %s", nsci_op_defs[op]->name,
                         nsc_dtype_name(t));
    }
    // Inputs of another dtype are converted first (rare: mixed-precision calls).
    nsc_tensor *ca = a->dtype == t ? NULL : nsci_cpu_convert(a, t);
    nsc_tensor *cb = b->dtype == t ? NULL : nsci_cpu_convert(b, t);
    if ((a->dtype != t && !ca) || (b->dtype != t && !cb)) {
        nsc_free(ca);
        nsc_free(cb);
        return nsc_last_status();
    }
    nsc_tensor *ops[3] = { out, ca ? ca : a, cb ? cb : b };
    nsci_iter it;
    nsci_iter_init(&it, 3, ops);
    nsci_iter_run(&it, loop, NULL, NSCI_GRAIN);
    nsc_free(ca);
    nsc_free(cb);
    return NSC_OK;
}

static nsc_status binary_cpu(nsci_call *c) {
    return nsci_binary_cpu(c->op, c->out[0], c->in[0], c->in[1]);
}

// --- backward rules ---

static nsc_status add_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    if (g->needs_grad[0]) {
        grad_in[0] = nsc_retain(grad_out[0]);
    }
    if (g->needs_grad[1]) {
        grad_in[1] = nsc_retain(grad_out[0]);
    }
    return NSC_OK;
}

static nsc_status sub_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    if (g->needs_grad[0]) {
        grad_in[0] = nsc_retain(grad_out[0]);
    }
    if (g->needs_grad[1] && !(grad_in[1] = nsc_neg(grad_out[0]))) {
        return nsc_last_status();
    }
    return NSC_OK;
}

static nsc_status mul_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    if (g->needs_grad[0] && !(grad_in[0] = nsc_mul(grad_out[0], g->in[1]))) {
        return nsc_last_status();
    }
    if (g->needs_grad[1] && !(grad_in[1] = nsc_mul(grad_out[0], g->in[0]))) {
        return nsc_last_status();
    }
    return NSC_OK;
}

// d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -(a/b)/b.
static nsc_status div_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    if (g->needs_grad[0] && !(grad_in[0] = nsc_div(grad_out[0], g->in[1]))) {
        return nsc_last_status();
    }
    if (g->needs_grad[1]) {
        nsc_tensor *neg = nsc_neg(grad_out[0]);
        nsc_tensor *q = nsc_div(neg, g->in[1]); // -g / b
        nsc_tensor *ratio = nsc_div(g->in[0], g->in[1]);
        grad_in[1] = nsc_mul(q, ratio);
        nsc_free(neg);
        nsc_free(q);
        nsc_free(ratio);
        if (!grad_in[1]) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

// d(a^b)/da = b * a^(b-1), taken as 0 where b == 0 (0 * 0^-1 would be NaN);
// d(a^b)/db = a^b * log(a), taken as 0 where a == 0 and b >= 0 (PyTorch's
// conventions, avoiding 0 * inf).
static nsc_status pow_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    nsc_tensor *a = g->in[0], *b = g->in[1];
    if (g->needs_grad[0]) {
        nsc_tensor *bm1 = nsc_sub_scalar(b, 1.0);
        nsc_tensor *p = nsc_pow(a, bm1);
        nsc_tensor *bp = nsc_mul(b, p);
        nsc_tensor *b_zero = nsc_eq_scalar(b, 0.0);
        nsc_tensor *safe = nsc_masked_fill(bp, b_zero, 0.0);
        grad_in[0] = nsc_mul(grad_out[0], safe);
        nsc_tensor *temps[] = { bm1, p, bp, b_zero, safe };
        for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
            nsc_free(temps[i]);
        }
        if (!grad_in[0]) {
            return nsc_last_status();
        }
    }
    if (g->needs_grad[1]) {
        nsc_tensor *log_a = nsc_log(a);
        nsc_tensor *d = nsc_mul(g->out[0], log_a);
        nsc_tensor *a_zero = nsc_eq_scalar(a, 0.0);
        nsc_tensor *b_nonneg = nsc_ge_scalar(b, 0.0);
        nsc_tensor *mask = nsc_logical_and(a_zero, b_nonneg);
        nsc_tensor *safe = nsc_masked_fill(d, mask, 0.0);
        grad_in[1] = nsc_mul(grad_out[0], safe);
        nsc_tensor *temps[] = { log_a, d, a_zero, b_nonneg, mask, safe };
        for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
            nsc_free(temps[i]);
        }
        if (!grad_in[1]) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

// The gradient goes to the larger (smaller) input; ties split it in half,
// and where either is NaN (neither loses) both get it all, as
// torch.maximum's backward: where(self == other, g / 2, g) zeroed where self
// loses.
static nsc_tensor *pick_grad(nsc_tensor *grad, nsc_tensor *self, nsc_tensor *other, bool is_max) {
    nsc_tensor *loses = is_max ? nsc_lt(self, other) : nsc_gt(self, other);
    nsc_tensor *ties = nsc_eq(self, other);
    nsc_tensor *half = nsc_mul_scalar(grad, 0.5);
    nsc_tensor *split = nsc_where(ties, half, grad);
    nsc_tensor *result = nsc_masked_fill(split, loses, 0.0);
    nsc_tensor *temps[] = { loses, ties, half, split };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    return result;
}

static nsc_status extremum_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                    nsc_tensor **grad_in, bool is_max) {
    for (int i = 0; i < 2; i++) {
        if (g->needs_grad[i] && !(grad_in[i] = pick_grad(grad_out[0], g->in[i], g->in[1 - i],
                                                         is_max))) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static nsc_status maximum_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                   nsc_tensor **grad_in) {
    return extremum_backward(g, grad_out, grad_in, true);
}

static nsc_status minimum_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                   nsc_tensor **grad_in) {
    return extremum_backward(g, grad_out, grad_in, false);
}

// --- table rows ---

#define BINARY_ROW(NAME, BACKWARD, SAVES_IN, SAVES_OUT)                                            \
    const nsci_op_def nsci_op_##NAME = {                                                           \
        .name = #NAME,                                                                             \
        .arity = 2,                                                                                \
        .n_outputs = 1,                                                                            \
        .infer = binary_infer,                                                                     \
        .cpu = binary_cpu,                                                                         \
        .backward = BACKWARD,                                                                      \
        .flags = NSCI_OP_BROADCAST,                                                                \
        .save_inputs = SAVES_IN,                                                                   \
        .save_outputs = SAVES_OUT,                                                                 \
    };                                                                                             \
    nsc_tensor *nsc_##NAME(nsc_tensor *a, nsc_tensor *b) {                                         \
        nsc_tensor *in[2] = { a, b };                                                              \
        return nsci_run(NSC_OP_##NAME, 2, in, NULL);                                               \
    }

BINARY_ROW(add, add_backward, 0, 0)
BINARY_ROW(sub, sub_backward, 0, 0)
BINARY_ROW(mul, mul_backward, 3, 0)
BINARY_ROW(div, div_backward, 3, 0)
BINARY_ROW(pow, pow_backward, 3, 1)
BINARY_ROW(maximum, maximum_backward, 3, 0)
BINARY_ROW(minimum, minimum_backward, 3, 0)
