// One-input pointwise ops: neg, abs, exp, log, sqrt, rsqrt, sin, cos, tanh,
// sigmoid, relu, gelu, clamp. x: any shape; out: x's shape. Integer inputs
// of the float functions give f32, as PyTorch's do.
// https://pytorch.org/docs/stable/torch.html#pointwise-ops
#include <math.h>
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/pointwise.h"

// --- loops ---

#define FLOAT_PAIR(OP, EXPR_F, EXPR_D)                                                             \
    NSCI_UNARY_LOOP(OP##_f32, float, float, EXPR_F)                                                \
    NSCI_UNARY_LOOP(OP##_f64, double, double, EXPR_D)

FLOAT_PAIR(neg, -a, -a)
FLOAT_PAIR(abs, fabsf(a), fabs(a))
FLOAT_PAIR(exp, expf(a), exp(a))
FLOAT_PAIR(log, logf(a), log(a))
FLOAT_PAIR(sqrt, sqrtf(a), sqrt(a))
FLOAT_PAIR(rsqrt, 1.0f / sqrtf(a), 1.0 / sqrt(a))
FLOAT_PAIR(sin, sinf(a), sin(a))
FLOAT_PAIR(cos, cosf(a), cos(a))
FLOAT_PAIR(tanh, tanhf(a), tanh(a))
// Stable on both sides: exp of a non-positive number never overflows.
FLOAT_PAIR(sigmoid, a >= 0 ? 1.0f / (1.0f + expf(-a)) : expf(a) / (1.0f + expf(a)),
           a >= 0 ? 1.0 / (1.0 + exp(-a)) : exp(a) / (1.0 + exp(a)))
// NaN stays NaN (a > 0 is false for NaN, so return a itself).
FLOAT_PAIR(relu, (a > 0 || a != a) ? a : 0.0f, (a > 0 || a != a) ? a : 0.0)
// gelu (erf): x * Phi(x); gelu (tanh): GPT-2's gelu_new.
FLOAT_PAIR(gelu_erf, 0.5f * a * (1.0f + erff(a * (float)M_SQRT1_2)),
           0.5 * a * (1.0 + erf(a * M_SQRT1_2)))
NSCI_UNARY_LOOP(gelu_tanh_f64, double, double,
                0.5 * a * (1.0 + tanh(0.7978845608028654 * (a + 0.044715 * a * a * a))))

// gelu_new in f32 runs on the vector kernel (tensor/op_unary_vec.c); a
// strided run is gathered in blocks, so every layout rounds alike.
static void gelu_tanh_f32(int64_t n, char **p, const int64_t *s, void *ctx) {
    (void)ctx;
    if (s[0] == (int64_t)sizeof(float) && s[1] == (int64_t)sizeof(float)) {
        nsci_gelu_tanh_f32_vec((float *)p[0], (const float *)p[1], n);
        return;
    }
    float in[64], out[64];
    for (int64_t i = 0; i < n; i += 64) {
        int64_t w = NSCI_MIN(64, n - i);
        for (int64_t k = 0; k < w; k++) {
            in[k] = *(const float *)(p[1] + (i + k) * s[1]);
        }
        nsci_gelu_tanh_f32_vec(out, in, w);
        for (int64_t k = 0; k < w; k++) {
            *(float *)(p[0] + (i + k) * s[0]) = out[k];
        }
    }
}

NSCI_UNARY_LOOP(neg_i64, int64_t, int64_t, (int64_t)(0 - (uint64_t)a))
NSCI_UNARY_LOOP(abs_i64, int64_t, int64_t, a < 0 ? (int64_t)(0 - (uint64_t)a) : a)
NSCI_UNARY_LOOP(relu_i64, int64_t, int64_t, a > 0 ? a : 0)

static const nsci_param_desc clamp_desc[] = {
    { "min", NSCI_PARAM_F64, offsetof(clamp_params, min), 0 },
    { "max", NSCI_PARAM_F64, offsetof(clamp_params, max), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// A bound as the kernel's type. -INFINITY / INFINITY (no bound) and integral
// bounds beyond int64's range saturate, which clamps exactly as the double
// would: a max of 2^63 ((double)INT64_MAX) bounds nothing, a min of 1e19
// raises every element to INT64_MAX. A cast would be undefined there.
static float bound_f32(double v) {
    return (float)v;
}
static double bound_f64(double v) {
    return v;
}
static int64_t bound_i64(double v) {
    return v >= 9223372036854775808.0    ? INT64_MAX
           : v <= -9223372036854775808.0 ? INT64_MIN
                                         : (int64_t)v;
}

// NaN inputs stay NaN; bounds as torch.clamp (min applied first, then max, so
// min > max gives max everywhere). -INFINITY as min and INFINITY as max never
// bind; an infinite bound on the other side does (clamp(x, inf, inf) is inf).
#define CLAMP_LOOP(SFX, T)                                                                         \
    static void clamp_##SFX(int64_t n, char **p, const int64_t *s, void *ctx) {                    \
        const clamp_params *c = ctx;                                                               \
        const T lo = bound_##SFX(c->min), hi = bound_##SFX(c->max);                                \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T a = *(const T *)(p[1] + i * s[1]);                                                   \
            if (a < lo) {                                                                          \
                a = lo;                                                                            \
            }                                                                                      \
            if (a > hi) {                                                                          \
                a = hi;                                                                            \
            }                                                                                      \
            *(T *)(p[0] + i * s[0]) = a;                                                           \
        }                                                                                          \
    }
CLAMP_LOOP(f32, float)
CLAMP_LOOP(f64, double)
CLAMP_LOOP(i64, int64_t)

// --- per-op description ---

typedef enum result_rule {
    FLOAT_RESULT, // integer and bool inputs give f32
    SAME_RESULT,  // keeps the dtype; bool is refused
} result_rule;

typedef struct unary_kind {
    result_rule rule;
    nsci_inner_fn f32, f64, i64;
} unary_kind;

static const nsci_param_desc gelu_desc[] = {
    { "approximate", NSCI_PARAM_INT, offsetof(gelu_params, approximate), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static const unary_kind *kind_of(const nsci_call *c) {
    static const unary_kind kinds[] = {
        [NSC_OP_neg] = { SAME_RESULT, neg_f32, neg_f64, neg_i64 },
        [NSC_OP_abs] = { SAME_RESULT, abs_f32, abs_f64, abs_i64 },
        [NSC_OP_exp] = { FLOAT_RESULT, exp_f32, exp_f64, NULL },
        [NSC_OP_log] = { FLOAT_RESULT, log_f32, log_f64, NULL },
        [NSC_OP_sqrt] = { FLOAT_RESULT, sqrt_f32, sqrt_f64, NULL },
        [NSC_OP_rsqrt] = { FLOAT_RESULT, rsqrt_f32, rsqrt_f64, NULL },
        [NSC_OP_sin] = { FLOAT_RESULT, sin_f32, sin_f64, NULL },
        [NSC_OP_cos] = { FLOAT_RESULT, cos_f32, cos_f64, NULL },
        [NSC_OP_tanh] = { FLOAT_RESULT, tanh_f32, tanh_f64, NULL },
        [NSC_OP_sigmoid] = { FLOAT_RESULT, sigmoid_f32, sigmoid_f64, NULL },
        [NSC_OP_relu] = { SAME_RESULT, relu_f32, relu_f64, relu_i64 },
        [NSC_OP_clamp] = { SAME_RESULT, clamp_f32, clamp_f64, clamp_i64 },
    };
    static const unary_kind gelu_erf = { FLOAT_RESULT, gelu_erf_f32, gelu_erf_f64, NULL };
    static const unary_kind gelu_tanh = { FLOAT_RESULT, gelu_tanh_f32, gelu_tanh_f64, NULL };
    if (c->op == NSC_OP_gelu) {
        const gelu_params *p = c->params;
        return p->approximate == NSC_GELU_TANH ? &gelu_tanh : &gelu_erf;
    }
    return &kinds[c->op];
}

// --- infer and kernel ---

static nsc_status unary_infer(nsci_call *c) {
    const nsc_tensor *x = c->in[0];
    nsc_dtype dtype = (nsc_dtype)x->dtype;
    const unary_kind *k = kind_of(c);
    if (c->op == NSC_OP_gelu) {
        int a = ((const gelu_params *)c->params)->approximate;
        if (a != NSC_GELU_ERF && a != NSC_GELU_TANH) {
            return nsci_call_fail(c, NSC_ERR_ARG, "approximate %d: expected NSC_GELU_ERF or "
                                                  "NSC_GELU_TANH",
                                  a);
        }
    }
    if (c->op == NSC_OP_clamp) {
        const clamp_params *p = c->params;
        if (isnan(p->min) || isnan(p->max)) {
            return nsci_call_fail(c, NSC_ERR_ARG, "min %g, max %g: bounds may not be NaN", p->min,
                                  p->max);
        }
        // Bounds that bind take part in type promotion, as torch.clamp's
        // scalars do (an integral one turns bool into i64; an infinite one
        // that binds, like a fractional one, turns integers into f32).
        if (p->min != -HUGE_VAL) {
            dtype = nsci_promote(dtype, nsci_scalar_result_type((nsc_dtype)x->dtype, p->min));
        }
        if (p->max != HUGE_VAL) {
            dtype = nsci_promote(dtype, nsci_scalar_result_type((nsc_dtype)x->dtype, p->max));
        }
    }
    if (k->rule == SAME_RESULT && dtype == NSC_BOOL) {
        return nsci_call_fail(c, NSC_ERR_DTYPE,
                              "bool input is not supported: convert it with "
                              "to_dtype first");
    }
    if (k->rule == FLOAT_RESULT && !nsci_is_float(dtype)) {
        dtype = NSC_F32;
    }
    nsci_meta_same_shape(&c->meta[0], x, dtype);
    return NSC_OK;
}

static nsc_status unary_cpu(nsci_call *c) {
    nsc_dtype dtype = (nsc_dtype)c->out[0]->dtype;
    const unary_kind *k = kind_of(c);
    nsci_inner_fn loop = dtype == NSC_F32 ? k->f32 : dtype == NSC_F64 ? k->f64 : k->i64;
    if (!loop) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "no kernel for %s", nsc_dtype_name(dtype));
    }
    void *ctx = c->op == NSC_OP_clamp ? (void *)c->params : NULL;
    return nsci_pointwise_run(c->out[0], 1, c->in, dtype, loop, ctx);
}

// --- backward rules: g is the output gradient ---

static nsc_tensor *grad_neg(const nsci_grad_ctx *c, nsc_tensor *g) {
    (void)c;
    return nsc_neg(g);
}

// d|x| = sign(x): +g where x > 0, -g where x < 0, 0 at 0 (as torch).
static nsc_tensor *grad_abs(const nsci_grad_ctx *c, nsc_tensor *g) {
    nsc_tensor *pos = nsc_gt_scalar(c->in[0], 0), *neg = nsc_lt_scalar(c->in[0], 0);
    nsc_tensor *up = nsc_mul(g, pos), *down = nsc_mul(g, neg);
    nsc_tensor *r = nsc_sub(up, down);
    nsc_tensor *temps[] = { pos, neg, up, down };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    return r;
}

static nsc_tensor *grad_exp(const nsci_grad_ctx *c, nsc_tensor *g) {
    return nsc_mul(g, c->out[0]);
}

static nsc_tensor *grad_log(const nsci_grad_ctx *c, nsc_tensor *g) {
    return nsc_div(g, c->in[0]);
}

// d sqrt(x) = 1 / (2 sqrt(x)).
static nsc_tensor *grad_sqrt(const nsci_grad_ctx *c, nsc_tensor *g) {
    nsc_tensor *twice = nsc_mul_scalar(c->out[0], 2.0);
    nsc_tensor *r = nsc_div(g, twice);
    nsc_free(twice);
    return r;
}

// d x^-1/2 = -1/2 x^-3/2 = -1/2 y^3.
static nsc_tensor *grad_rsqrt(const nsci_grad_ctx *c, nsc_tensor *g) {
    nsc_tensor *cube = nsc_pow_scalar(c->out[0], 3.0);
    nsc_tensor *scaled = nsc_mul_scalar(cube, -0.5);
    nsc_tensor *r = nsc_mul(g, scaled);
    nsc_free(cube);
    nsc_free(scaled);
    return r;
}

static nsc_tensor *grad_sin(const nsci_grad_ctx *c, nsc_tensor *g) {
    nsc_tensor *d = nsc_cos(c->in[0]);
    nsc_tensor *r = nsc_mul(g, d);
    nsc_free(d);
    return r;
}

static nsc_tensor *grad_cos(const nsci_grad_ctx *c, nsc_tensor *g) {
    nsc_tensor *s = nsc_sin(c->in[0]);
    nsc_tensor *d = nsc_neg(s);
    nsc_tensor *r = nsc_mul(g, d);
    nsc_free(s);
    nsc_free(d);
    return r;
}

static nsc_tensor *grad_tanh(const nsci_grad_ctx *c, nsc_tensor *g) {
    return nsci_tanh_backward(g, c->out[0]);
}

static nsc_tensor *grad_sigmoid(const nsci_grad_ctx *c, nsc_tensor *g) {
    return nsci_sigmoid_backward(g, c->out[0]);
}

static nsc_tensor *grad_relu(const nsci_grad_ctx *c, nsc_tensor *g) {
    return nsci_relu_backward(g, c->out[0]);
}

static nsc_tensor *grad_gelu(const nsci_grad_ctx *c, nsc_tensor *g) {
    return nsci_gelu_backward(g, c->in[0], ((const gelu_params *)c->params)->approximate);
}

// The gradient passes where min <= x <= max (bounds included, as torch).
static nsc_tensor *grad_clamp(const nsci_grad_ctx *c, nsc_tensor *g) {
    const clamp_params *p = c->params;
    nsc_tensor *lo = nsc_ge_scalar(c->in[0], p->min), *hi = nsc_le_scalar(c->in[0], p->max);
    nsc_tensor *inside = nsc_logical_and(lo, hi);
    nsc_tensor *r = nsc_mul(g, inside);
    nsc_free(lo);
    nsc_free(hi);
    nsc_free(inside);
    return r;
}

#define UNARY_BACKWARD(OP)                                                                         \
    static nsc_status OP##_backward(const nsci_grad_ctx *c, nsc_tensor *const *grad_out,           \
                                    nsc_tensor **grad_in) {                                        \
        grad_in[0] = grad_##OP(c, grad_out[0]);                                                    \
        return grad_in[0] ? NSC_OK : nsc_last_status();                                            \
    }

UNARY_BACKWARD(neg)
UNARY_BACKWARD(abs)
UNARY_BACKWARD(exp)
UNARY_BACKWARD(log)
UNARY_BACKWARD(sqrt)
UNARY_BACKWARD(rsqrt)
UNARY_BACKWARD(sin)
UNARY_BACKWARD(cos)
UNARY_BACKWARD(tanh)
UNARY_BACKWARD(sigmoid)
UNARY_BACKWARD(relu)
UNARY_BACKWARD(gelu)
UNARY_BACKWARD(clamp)

// --- rows and public functions ---

#define UNARY_ROW(OP, SAVES_IN, SAVES_OUT, PARAMS_SIZE, PARAMS)                                    \
    const nsci_op_def nsci_op_##OP = {                                                             \
        .name = #OP,                                                                               \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = PARAMS_SIZE,                                                                \
        .params = PARAMS,                                                                          \
        .infer = unary_infer,                                                                      \
        .cpu = unary_cpu,                                                                          \
        .backward = OP##_backward,                                                                 \
        .save_inputs = SAVES_IN,                                                                   \
        .save_outputs = SAVES_OUT,                                                                 \
    };

#define UNARY_FN(OP)                                                                               \
    UNARY_ROW(OP, OP##_SAVES_IN, OP##_SAVES_OUT, 0, NULL)                                          \
    nsc_tensor *nsc_##OP(nsc_tensor *x) {                                                          \
        return nsci_run(NSC_OP_##OP, 1, &x, NULL);                                                 \
    }

// What each backward rule reads: inputs (bit 0) or the output (bit 0).
enum {
    neg_SAVES_IN = 0, neg_SAVES_OUT = 0, abs_SAVES_IN = 1, abs_SAVES_OUT = 0,
    exp_SAVES_IN = 0, exp_SAVES_OUT = 1, log_SAVES_IN = 1, log_SAVES_OUT = 0,
    sqrt_SAVES_IN = 0, sqrt_SAVES_OUT = 1, rsqrt_SAVES_IN = 0, rsqrt_SAVES_OUT = 1,
    sin_SAVES_IN = 1, sin_SAVES_OUT = 0, cos_SAVES_IN = 1, cos_SAVES_OUT = 0,
    tanh_SAVES_IN = 0, tanh_SAVES_OUT = 1, sigmoid_SAVES_IN = 0, sigmoid_SAVES_OUT = 1,
    relu_SAVES_IN = 0, relu_SAVES_OUT = 1,
};

UNARY_FN(neg)
UNARY_FN(abs)
UNARY_FN(exp)
UNARY_FN(log)
UNARY_FN(sqrt)
UNARY_FN(rsqrt)
UNARY_FN(sin)
UNARY_FN(cos)
UNARY_FN(tanh)
UNARY_FN(sigmoid)
UNARY_FN(relu)

UNARY_ROW(gelu, 1, 0, sizeof(gelu_params), gelu_desc)
nsc_tensor *nsc_gelu(nsc_tensor *x, nsc_gelu_approx approx) {
    gelu_params p = { (int)approx };
    return nsci_run(NSC_OP_gelu, 1, &x, &p);
}

UNARY_ROW(clamp, 1, 0, sizeof(clamp_params), clamp_desc)
nsc_tensor *nsc_clamp(nsc_tensor *x, double min, double max) {
    clamp_params p = { min, max };
    return nsci_run(NSC_OP_clamp, 1, &x, &p);
}
