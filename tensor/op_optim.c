// The optimizer updates as in-place ops (torch._fused_sgd_ and
// torch._fused_adamw_ for one tensor): one pass over parameter, gradient and
// state, where torch's single-tensor path runs one kernel per op. Each
// element repeats torch.optim's op sequence (1.13, single-tensor path) in its
// order: scalars are rounded to the parameter's dtype first, as torch does
// when it multiplies a tensor by a Python float, and every product and sum is
// rounded on its own (torch fuses some multiply-adds: within 2 ulp). The CPU loops
// split across the thread pool by nsci_iter, which also walks non-contiguous
// operands; cuda/op_optim.cu runs the same sequence on the GPU.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/tensor_impl.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// --- SGD ---
// Per element (n: elements of this chunk):
//   d = maximize ? -g : g;  d = d + wd * p
//   buf = first ? d : momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf;  p = p + (-lr) * d

typedef struct sgd_args {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, has_buf, first, maximize;
} sgd_args;

#define SGD_INNER(NAME, T)                                                                         \
    static void NAME(int64_t n, char **ptrs, const int64_t *strides, void *ctx) {                  \
        const sgd_args *a = ctx;                                                                   \
        const T wd = (T)a->weight_decay, mom = (T)a->momentum;                                     \
        const T keep = (T)(1.0 - a->dampening), neg_lr = (T)(-a->lr);                              \
        for (int64_t k = 0; k < n; k++) {                                                          \
            T *p = (T *)(ptrs[0] + k * strides[0]);                                                \
            T d = *(const T *)(ptrs[1] + k * strides[1]);                                          \
            if (a->maximize) {                                                                     \
                d = -d;                                                                            \
            }                                                                                      \
            if (a->weight_decay != 0) {                                                            \
                d = d + wd * *p;                                                                   \
            }                                                                                      \
            if (a->has_buf) {                                                                      \
                T *buf = (T *)(ptrs[2] + k * strides[2]);                                          \
                *buf = a->first ? d : *buf * mom + keep * d;                                       \
                d = a->nesterov ? d + mom * *buf : *buf;                                           \
            }                                                                                      \
            *p = *p + neg_lr * d;                                                                  \
        }                                                                                          \
    }

SGD_INNER(sgd_f32, float)
SGD_INNER(sgd_f64, double)

static nsc_status fused_sgd_cpu(nsci_call *c) {
    const fused_sgd_params *p = c->params;
    sgd_args args = {
        .lr = p->config.lr,
        .momentum = p->config.momentum,
        .dampening = p->config.dampening,
        .weight_decay = p->config.weight_decay,
        .nesterov = p->config.nesterov,
        .has_buf = c->n_in == 3,
        .first = p->first_step,
        .maximize = p->config.maximize,
    };
    nsci_iter it;
    nsci_iter_init(&it, c->n_in, c->in);
    nsci_iter_run(&it, c->in[0]->dtype == NSC_F32 ? sgd_f32 : sgd_f64, &args, NSCI_GRAIN);
    return NSC_OK;
}

// --- AdamW ---
// Per element, with bc1 = 1 - beta1^t and bc2 = 1 - beta2^t:
//   p = p * (1 - lr * wd)
//   m = m * beta1 + (1 - beta1) * g;   v = v * beta2 + (1 - beta2) * g * g
//   vmax = max(vmax, v) when amsgrad (then used for v below)
//   p = p + (-lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)

typedef struct adamw_f32_k {
    float decay, b1, omb1, b2, omb2, bc2_sqrt, eps, neg_step;
} adamw_f32_k;

static inline void adamw_elem_f32(float *p, float g, float *m, float *v, float *vmax,
                                  const adamw_f32_k *k) {
    float pv = *p * k->decay;
    float mv = *m * k->b1 + k->omb1 * g;
    float vv = *v * k->b2 + k->omb2 * g * g;
    *m = mv;
    *v = vv;
    if (vmax) {
        vv = *vmax > vv ? *vmax : vv;
        *vmax = vv;
    }
    float denom = sqrtf(vv) / k->bc2_sqrt + k->eps;
    *p = pv + k->neg_step * mv / denom;
}

#if defined(__SSE2__)
// Four lanes of adamw_elem_f32, the same operations in the same order (IEEE
// sqrt and division are correctly rounded, so lanes equal the scalar path).
static inline void adamw_quad_f32(float *p, const float *g, float *m, float *v, float *vmax,
                                  const adamw_f32_k *k) {
    __m128 gv = _mm_loadu_ps(g);
    __m128 pv = _mm_mul_ps(_mm_loadu_ps(p), _mm_set1_ps(k->decay));
    __m128 mv = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(m), _mm_set1_ps(k->b1)),
                           _mm_mul_ps(_mm_set1_ps(k->omb1), gv));
    __m128 vv = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v), _mm_set1_ps(k->b2)),
                           _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(k->omb2), gv), gv));
    _mm_storeu_ps(m, mv);
    _mm_storeu_ps(v, vv);
    if (vmax) {
        vv = _mm_max_ps(_mm_loadu_ps(vmax), vv);
        _mm_storeu_ps(vmax, vv);
    }
    __m128 denom =
        _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vv), _mm_set1_ps(k->bc2_sqrt)), _mm_set1_ps(k->eps));
    __m128 step = _mm_div_ps(_mm_mul_ps(_mm_set1_ps(k->neg_step), mv), denom);
    _mm_storeu_ps(p, _mm_add_ps(pv, step));
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_ADAMW_AVX 1
// Eight lanes: the same operations again. The two divisions and the square
// root are what the step waits on (measured: adamw_f32 is ~5% of a GPT-2
// training step); 256-bit units do twice the lanes per instruction.
__attribute__((target("avx"))) static void
adamw_octs_f32(int64_t n, float *p, const float *g, float *m, float *v, const adamw_f32_k *k) {
    const __m256 decay = _mm256_set1_ps(k->decay), b1 = _mm256_set1_ps(k->b1);
    const __m256 omb1 = _mm256_set1_ps(k->omb1), b2 = _mm256_set1_ps(k->b2);
    const __m256 omb2 = _mm256_set1_ps(k->omb2), bc2 = _mm256_set1_ps(k->bc2_sqrt);
    const __m256 eps = _mm256_set1_ps(k->eps), neg_step = _mm256_set1_ps(k->neg_step);
    for (int64_t i = 0; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 pv = _mm256_mul_ps(_mm256_loadu_ps(p + i), decay);
        __m256 mv =
            _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(omb1, gv));
        __m256 vv = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2),
                                  _mm256_mul_ps(_mm256_mul_ps(omb2, gv), gv));
        _mm256_storeu_ps(m + i, mv);
        _mm256_storeu_ps(v + i, vv);
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), bc2), eps);
        __m256 step = _mm256_div_ps(_mm256_mul_ps(neg_step, mv), denom);
        _mm256_storeu_ps(p + i, _mm256_add_ps(pv, step));
    }
}

static bool cpu_has_avx(void) {
    return __builtin_cpu_supports("avx");
}
#endif
#endif

static void adamw_f32(int64_t n, char **ptrs, const int64_t *strides, void *ctx) {
    const nsci_adamw_scalars *a = ctx;
    const adamw_f32_k k = {
        (float)a->decay, (float)a->beta1,           (float)a->one_minus_beta1,
        (float)a->beta2, (float)a->one_minus_beta2, (float)a->bc2_sqrt,
        (float)a->eps,   (float)a->neg_step_size,
    };
    bool contiguous = strides[0] == 4 && strides[1] == 4 && strides[2] == 4 && strides[3] == 4 &&
                      (!a->amsgrad || strides[4] == 4);
    int64_t k0 = 0;
    if (contiguous) {
        float *p = (float *)ptrs[0], *m = (float *)ptrs[2], *v = (float *)ptrs[3];
        float *vmax = a->amsgrad ? (float *)ptrs[4] : NULL;
        const float *g = (const float *)ptrs[1];
#if defined(HAVE_ADAMW_AVX)
        if (!vmax && cpu_has_avx()) {
            adamw_octs_f32(n, p, g, m, v, &k);
            k0 = n - n % 8;
        }
#endif
#if defined(__SSE2__)
        for (; k0 + 4 <= n; k0 += 4) {
            adamw_quad_f32(p + k0, g + k0, m + k0, v + k0, vmax ? vmax + k0 : NULL, &k);
        }
#endif
        for (; k0 < n; k0++) {
            adamw_elem_f32(p + k0, g[k0], m + k0, v + k0, vmax ? vmax + k0 : NULL, &k);
        }
        return;
    }
    for (; k0 < n; k0++) {
        float *vmax = a->amsgrad ? (float *)(ptrs[4] + k0 * strides[4]) : NULL;
        adamw_elem_f32(
            (float *)(ptrs[0] + k0 * strides[0]), *(const float *)(ptrs[1] + k0 * strides[1]),
            (float *)(ptrs[2] + k0 * strides[2]), (float *)(ptrs[3] + k0 * strides[3]), vmax, &k);
    }
}

static void adamw_f64(int64_t n, char **ptrs, const int64_t *strides, void *ctx) {
    const nsci_adamw_scalars *a = ctx;
    for (int64_t k = 0; k < n; k++) {
        double *p = (double *)(ptrs[0] + k * strides[0]);
        double g = *(const double *)(ptrs[1] + k * strides[1]);
        double *m = (double *)(ptrs[2] + k * strides[2]);
        double *v = (double *)(ptrs[3] + k * strides[3]);
        double pv = *p * a->decay;
        *m = *m * a->beta1 + a->one_minus_beta1 * g;
        *v = *v * a->beta2 + a->one_minus_beta2 * g * g;
        double vv = *v;
        if (a->amsgrad) {
            double *vmax = (double *)(ptrs[4] + k * strides[4]);
            vv = *vmax > vv ? *vmax : vv;
            *vmax = vv;
        }
        *p = pv + a->neg_step_size * *m / (sqrt(vv) / a->bc2_sqrt + a->eps);
    }
}

nsci_adamw_scalars nsci_adamw_scalars_of(const fused_adamw_params *p) {
    const nsc_adamw_config *c = &p->config;
    double t = (double)p->step;
    double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    return (nsci_adamw_scalars){
        .decay = 1.0 - c->lr * c->weight_decay,
        .beta1 = c->beta1,
        .one_minus_beta1 = c->maximize ? -(1.0 - c->beta1) : 1.0 - c->beta1,
        .beta2 = c->beta2,
        .one_minus_beta2 = 1.0 - c->beta2,
        .bc2_sqrt = sqrt(bc2),
        .eps = c->eps,
        .neg_step_size = -(c->lr / bc1),
        .amsgrad = c->amsgrad,
    };
}

static nsc_status fused_adamw_cpu(nsci_call *c) {
    nsci_adamw_scalars args = nsci_adamw_scalars_of(c->params);
    nsci_iter it;
    nsci_iter_init(&it, c->n_in, c->in);
    nsci_iter_run(&it, c->in[0]->dtype == NSC_F32 ? adamw_f32 : adamw_f64, &args, NSCI_GRAIN);
    return NSC_OK;
}

// --- configuration checks (nn/optim.c's constructors use them too) ---

bool nsci_sgd_config_problem(const nsc_sgd_config *c, char *why, size_t why_bytes) {
    if (!(c->lr >= 0) || !(c->momentum >= 0) || !(c->weight_decay >= 0) || isnan(c->dampening)) {
        snprintf(why, why_bytes,
                 "lr %g, momentum %g, dampening %g, weight_decay %g: expected lr, momentum and "
                 "weight_decay >= 0",
                 c->lr, c->momentum, c->dampening, c->weight_decay);
        return true;
    }
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0)) {
        snprintf(why, why_bytes,
                 "nesterov with momentum %g and dampening %g: nesterov momentum requires "
                 "momentum > 0 and zero dampening",
                 c->momentum, c->dampening);
        return true;
    }
    return false;
}

bool nsci_adamw_config_problem(const nsc_adamw_config *c, char *why, size_t why_bytes) {
    if (!(c->lr >= 0) || !(c->eps >= 0) || !(c->weight_decay >= 0)) {
        snprintf(why, why_bytes, "lr %g, eps %g, weight_decay %g: expected all three >= 0", c->lr,
                 c->eps, c->weight_decay);
        return true;
    }
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1)) {
        snprintf(why, why_bytes, "betas (%g, %g): expected each in [0, 1)", c->beta1, c->beta2);
        return true;
    }
    return false;
}

// --- shape rules ---

static const char *const sgd_names[] = { "param", "grad", "momentum_buffer" };
static const char *const adamw_names[] = { "param", "grad", "exp_avg", "exp_avg_sq",
                                           "max_exp_avg_sq" };

static bool shares_storage(const nsc_tensor *a, const nsc_tensor *b) {
    return a->storage && a->storage == b->storage;
}

// Every operand has param's float dtype and exact shape (nothing broadcasts:
// the state is per element); the written ones (all but grad, input 1) repeat
// no element; no two operands share memory (a gradient overlapping what is
// written would give a result that depends on the order elements are
// visited in, and a race on a GPU); state tensors do not require grad.
static nsc_status check_operands(nsci_call *c, const char *const *names) {
    const nsc_tensor *p = c->in[0];
    if (p->dtype != NSC_F32 && p->dtype != NSC_F64) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "param is %s: expected f32 or f64",
                              nsc_dtype_name((nsc_dtype)p->dtype));
    }
    for (int i = 1; i < c->n_in; i++) {
        const nsc_tensor *t = c->in[i];
        if (t->dtype != p->dtype) {
            return nsci_call_fail(c, NSC_ERR_DTYPE, "%s is %s: expected param's dtype %s", names[i],
                                  nsc_dtype_name((nsc_dtype)t->dtype),
                                  nsc_dtype_name((nsc_dtype)p->dtype));
        }
        if (t->ndim != p->ndim || memcmp(t->shape, p->shape, (size_t)p->ndim * 8) != 0) {
            char a[160], b[160];
            return nsci_call_fail(c, NSC_ERR_SHAPE, "%s has shape %s: expected param's shape %s",
                                  names[i], nsci_shape_str(a, sizeof a, t->ndim, t->shape),
                                  nsci_shape_str(b, sizeof b, p->ndim, p->shape));
        }
    }
    for (int i = 0; i < c->n_in; i++) {
        const nsc_tensor *t = c->in[i];
        for (int d = 0; i != 1 && d < t->ndim; d++) {
            if (t->stride[d] == 0 && t->shape[d] > 1) {
                return nsci_call_fail(c, NSC_ERR_ARG,
                                      "dim %d of %s repeats one memory location (stride 0): it "
                                      "is written in place",
                                      d, names[i]);
            }
        }
        if (i >= 2 && t->requires_grad) {
            return nsci_call_fail(c, NSC_ERR_ARG,
                                  "%s requires grad: optimizer state is never differentiated",
                                  names[i]);
        }
        for (int k = i + 1; k < c->n_in; k++) {
            if (shares_storage(t, c->in[k])) {
                int written = i == 1 ? k : i;
                return nsci_call_fail(c, NSC_ERR_ARG,
                                      "%s and %s share memory: %s is written in place", names[i],
                                      names[k], names[written]);
            }
        }
    }
    nsci_meta *m = &c->meta[0];
    m->dtype = (nsc_dtype)p->dtype;
    m->ndim = p->ndim;
    memcpy(m->shape, p->shape, sizeof p->shape);
    return NSC_OK;
}

static nsc_status fused_sgd_infer(nsci_call *c) {
    const fused_sgd_params *p = c->params;
    char why[256];
    if (nsci_sgd_config_problem(&p->config, why, sizeof why)) {
        return nsci_call_fail(c, NSC_ERR_ARG, "%s", why);
    }
    int want = p->config.momentum != 0 ? 3 : 2;
    if (c->n_in != want) {
        return nsci_call_fail(
            c, NSC_ERR_ARG, "momentum %g and %d tensors: expected param, grad%s (%d tensors)",
            p->config.momentum, c->n_in, want == 3 ? ", momentum_buffer" : "", want);
    }
    return check_operands(c, sgd_names);
}

static nsc_status fused_adamw_infer(nsci_call *c) {
    const fused_adamw_params *p = c->params;
    char why[256];
    if (nsci_adamw_config_problem(&p->config, why, sizeof why)) {
        return nsci_call_fail(c, NSC_ERR_ARG, "%s", why);
    }
    if (p->step < 1) {
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "step %lld: expected the step count this update makes (>= 1)",
                              (long long)p->step);
    }
    int want = p->config.amsgrad ? 5 : 4;
    if (c->n_in != want) {
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "amsgrad %s and %d tensors: expected param, grad, exp_avg, "
                              "exp_avg_sq%s (%d tensors)",
                              p->config.amsgrad ? "true" : "false", c->n_in,
                              want == 5 ? ", max_exp_avg_sq" : "", want);
    }
    return check_operands(c, adamw_names);
}

// --- rows and public functions ---

static const nsci_param_desc fused_sgd_desc[] = {
    { "lr", NSCI_PARAM_F64, offsetof(fused_sgd_params, config.lr), 0 },
    { "momentum", NSCI_PARAM_F64, offsetof(fused_sgd_params, config.momentum), 0 },
    { "dampening", NSCI_PARAM_F64, offsetof(fused_sgd_params, config.dampening), 0 },
    { "weight_decay", NSCI_PARAM_F64, offsetof(fused_sgd_params, config.weight_decay), 0 },
    { "nesterov", NSCI_PARAM_BOOL, offsetof(fused_sgd_params, config.nesterov), 0 },
    { "maximize", NSCI_PARAM_BOOL, offsetof(fused_sgd_params, config.maximize), 0 },
    { "is_first_step", NSCI_PARAM_BOOL, offsetof(fused_sgd_params, first_step), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static const nsci_param_desc fused_adamw_desc[] = {
    { "lr", NSCI_PARAM_F64, offsetof(fused_adamw_params, config.lr), 0 },
    { "beta1", NSCI_PARAM_F64, offsetof(fused_adamw_params, config.beta1), 0 },
    { "beta2", NSCI_PARAM_F64, offsetof(fused_adamw_params, config.beta2), 0 },
    { "eps", NSCI_PARAM_F64, offsetof(fused_adamw_params, config.eps), 0 },
    { "weight_decay", NSCI_PARAM_F64, offsetof(fused_adamw_params, config.weight_decay), 0 },
    { "amsgrad", NSCI_PARAM_BOOL, offsetof(fused_adamw_params, config.amsgrad), 0 },
    { "maximize", NSCI_PARAM_BOOL, offsetof(fused_adamw_params, config.maximize), 0 },
    { "step", NSCI_PARAM_I64, offsetof(fused_adamw_params, step), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static const char no_grad_reason[] = "an optimizer update: torch runs it under no_grad";
static const char no_graph_reason[] =
    "a graph tracks writes into an op's first input only, and an optimizer update also writes "
    "its state; step from a registered function (nsc_function_register) or after the trace";

const nsci_op_def nsci_op_fused_sgd_ = {
    .name = "fused_sgd_",
    .arity = -1,
    .n_outputs = 1,
    .params_size = sizeof(fused_sgd_params),
    .params = fused_sgd_desc,
    .infer = fused_sgd_infer,
    .cpu = fused_sgd_cpu,
    .no_grad = no_grad_reason,
    .no_graph = no_graph_reason,
    .flags = NSCI_OP_INPLACE,
};

const nsci_op_def nsci_op_fused_adamw_ = {
    .name = "fused_adamw_",
    .arity = -1,
    .n_outputs = 1,
    .params_size = sizeof(fused_adamw_params),
    .params = fused_adamw_desc,
    .infer = fused_adamw_infer,
    .cpu = fused_adamw_cpu,
    .no_grad = no_grad_reason,
    .no_graph = no_graph_reason,
    .flags = NSCI_OP_INPLACE,
};

// Dispatch bumps param's version counter; the state tensors are written too.
static void bump_state_versions(int n, nsc_tensor *const *in) {
    for (int i = 2; i < n; i++) {
        if (in[i]->storage) {
            atomic_fetch_add(&in[i]->storage->version, 1);
        }
    }
}

nsc_status nsc_fused_sgd_(nsc_tensor *param, nsc_tensor *grad, nsc_tensor *momentum_buffer,
                          const nsc_sgd_config *config, bool first_step) {
    if (!config) {
        return nsci_fail(NSC_ERR_ARG, "fused_sgd_: config is NULL: expected an nsc_sgd_config");
    }
    if (param && grad && config->momentum != 0 && !momentum_buffer) {
        return nsci_fail(NSC_ERR_ARG,
                         "fused_sgd_: momentum %g and momentum_buffer NULL: "
                         "momentum needs a buffer (zeros before the first step)",
                         config->momentum);
    }
    fused_sgd_params p = { *config, first_step };
    nsc_tensor *in[3] = { param, grad, momentum_buffer };
    int n = momentum_buffer ? 3 : 2;
    nsc_status status = nsci_run_inplace(NSC_OP_fused_sgd_, n, in, &p);
    if (status == NSC_OK) {
        bump_state_versions(n, in);
    }
    return status;
}

nsc_status nsc_fused_adamw_(nsc_tensor *param, nsc_tensor *grad, nsc_tensor *exp_avg,
                            nsc_tensor *exp_avg_sq, nsc_tensor *max_exp_avg_sq,
                            const nsc_adamw_config *config, int64_t step) {
    if (!config) {
        return nsci_fail(NSC_ERR_ARG, "fused_adamw_: config is NULL: expected an nsc_adamw_config");
    }
    if (param && grad && exp_avg && exp_avg_sq && config->amsgrad && !max_exp_avg_sq) {
        return nsci_fail(NSC_ERR_ARG, "fused_adamw_: amsgrad and max_exp_avg_sq NULL: amsgrad "
                                      "needs it (zeros before the first step)");
    }
    fused_adamw_params p = { *config, step };
    nsc_tensor *in[5] = { param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq };
    int n = max_exp_avg_sq ? 5 : 4;
    nsc_status status = nsci_run_inplace(NSC_OP_fused_adamw_, n, in, &p);
    if (status == NSC_OK) {
        bump_state_versions(n, in);
    }
    return status;
}
