// The optimizer updates as in-place ops (torch._fused_sgd_ and
// torch._fused_adamw_): one pass over parameter, gradient and state, where
// torch's single-tensor path runs one kernel per op. The inputs are lists,
// role by role as torch's TensorList arguments: with n parameters, operand r
// of parameter j is in[r * n + j] (one parameter is the list of one). Each
// element repeats torch.optim's op sequence (1.13, single-tensor path) in its
// order: scalars are rounded to the parameter's dtype first, as torch does
// when it multiplies a tensor by a Python float, and every product and sum is
// rounded on its own (torch fuses some multiply-adds: within 2 ulp). The CPU loops
// split across the thread pool by nsci_iter, which also walks non-contiguous
// operands; cuda/op_optim.cu runs the same sequence on the GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

// Runs inner over each parameter's operands in turn (every list has the
// same dtype, checked by the infer rule).
static void run_each_parameter(const nsci_call *c, int roles, nsci_inner_fn inner, void *args) {
    int n = c->n_in / roles;
    for (int j = 0; j < n; j++) {
        nsc_tensor *operands[NSCI_OPTIM_ROLES];
        for (int r = 0; r < roles; r++) {
            operands[r] = c->in[r * n + j];
        }
        nsci_iter it;
        nsci_iter_init(&it, roles, operands);
        nsci_iter_run(&it, inner, args, NSCI_GRAIN);
    }
}

static nsc_status fused_sgd_cpu(nsci_call *c) {
    const fused_sgd_params *p = c->params;
    int roles = nsci_sgd_roles(&p->config);
    sgd_args args = {
        .lr = p->config.lr,
        .momentum = p->config.momentum,
        .dampening = p->config.dampening,
        .weight_decay = p->config.weight_decay,
        .nesterov = p->config.nesterov,
        .has_buf = roles == 3,
        .first = p->first_step,
        .maximize = p->config.maximize,
    };
    run_each_parameter(c, roles, c->in[0]->dtype == NSC_F32 ? sgd_f32 : sgd_f64, &args);
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
    int roles = nsci_adamw_roles(&((const fused_adamw_params *)c->params)->config);
    run_each_parameter(c, roles, c->in[0]->dtype == NSC_F32 ? adamw_f32 : adamw_f64, &args);
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

// Input k's name: "exp_avg" for one parameter, "exp_avgs[3]" in lists of n.
static const char *operand_name(char *buf, size_t size, const char *const *names, int n, int k) {
    if (n == 1) {
        return names[k];
    }
    snprintf(buf, size, "%ss[%d]", names[k / n], k % n);
    return buf;
}

typedef struct storage_slot {
    const nsci_storage *storage;
    int index;
} storage_slot;

static int by_storage_then_index(const void *a, const void *b) {
    const storage_slot *x = a, *y = b;
    if (x->storage != y->storage) {
        return (uintptr_t)x->storage < (uintptr_t)y->storage ? -1 : 1;
    }
    return (x->index > y->index) - (x->index < y->index);
}

// Sorting makes the check n log n (a GPT-2 step batches ~600 operands);
// small calls sort on the stack, so an optimizer step (whose batches stay
// within NSCI_OPTIM_STACK_OPERANDS) allocates nothing once its state exists.
nsc_status nsci_optim_shared_operands(int n_in, int roles, nsc_tensor *const *in, int *first,
                                      int *second) {
    *first = *second = -1;
    int n = n_in / roles;
    storage_slot local[NSCI_OPTIM_STACK_OPERANDS];
    storage_slot *slots =
        n_in <= NSCI_OPTIM_STACK_OPERANDS ? local : nsci_malloc(sizeof *slots * (size_t)n_in);
    if (!slots) {
        return nsc_last_status();
    }
    int used = 0;
    for (int k = 0; k < n_in; k++) {
        if (in[k]->storage) {
            slots[used++] = (storage_slot){ in[k]->storage, k };
        }
    }
    qsort(slots, (size_t)used, sizeof *slots, by_storage_then_index);
    for (int s = 0; s < used;) {
        int end = s + 1;
        while (end < used && slots[end].storage == slots[s].storage) {
            end++;
        }
        int written = -1; // the group's first written member after its first
        for (int m = s + 1; m < end && written < 0; m++) {
            if (slots[m].index / n != 1 || slots[s].index / n != 1) {
                written = slots[m].index;
            }
        }
        if (written >= 0 && (*first < 0 || slots[s].index < *first)) {
            *first = slots[s].index;
            *second = written;
        }
        s = end;
    }
    if (slots != local) {
        nsci_free(slots);
    }
    return NSC_OK;
}

// Every operand has the parameters' float dtype and its own parameter's
// exact shape (nothing broadcasts: the state is per element); the written
// ones (all but the gradients) repeat no element; no written operand shares
// memory with another (a gradient overlapping what is written would give a
// result that depends on the order elements are visited in, and a race on a
// GPU); state tensors do not require grad.
static nsc_status check_operands(nsci_call *c, int roles, const char *const *names) {
    int n = c->n_in / roles;
    bool recording = nsci_hook_table.grad_enabled && nsci_hook_table.grad_enabled();
    const nsc_tensor *p0 = c->in[0];
    char name[96], other[96];
    if (p0->dtype != NSC_F32 && p0->dtype != NSC_F64) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "%s is %s: expected f32 or f64",
                              operand_name(name, sizeof name, names, n, 0),
                              nsc_dtype_name((nsc_dtype)p0->dtype));
    }
    for (int k = 1; k < c->n_in; k++) {
        const nsc_tensor *t = c->in[k], *p = c->in[k % n];
        if (t->dtype != p0->dtype) {
            return nsci_call_fail(c, NSC_ERR_DTYPE, "%s is %s: expected %s's dtype %s",
                                  operand_name(name, sizeof name, names, n, k),
                                  nsc_dtype_name((nsc_dtype)t->dtype),
                                  operand_name(other, sizeof other, names, n, 0),
                                  nsc_dtype_name((nsc_dtype)p0->dtype));
        }
        if (t->ndim != p->ndim || memcmp(t->shape, p->shape, (size_t)p->ndim * 8) != 0) {
            char a[160], b[160];
            return nsci_call_fail(c, NSC_ERR_SHAPE, "%s has shape %s: expected %s's shape %s",
                                  operand_name(name, sizeof name, names, n, k),
                                  nsci_shape_str(a, sizeof a, t->ndim, t->shape),
                                  operand_name(other, sizeof other, names, n, k % n),
                                  nsci_shape_str(b, sizeof b, p->ndim, p->shape));
        }
    }
    for (int k = 0; k < c->n_in; k++) {
        const nsc_tensor *t = c->in[k];
        for (int d = 0; k / n != 1 && d < t->ndim; d++) {
            if (t->stride[d] == 0 && t->shape[d] > 1) {
                return nsci_call_fail(c, NSC_ERR_ARG,
                                      "dim %d of %s repeats one memory location (stride 0): it "
                                      "is written in place",
                                      d, operand_name(name, sizeof name, names, n, k));
            }
        }
        if (k / n >= 2 && t->requires_grad) {
            return nsci_call_fail(c, NSC_ERR_ARG,
                                  "%s requires grad: optimizer state is never differentiated",
                                  operand_name(name, sizeof name, names, n, k));
        }
        // Autograd checks and records the write into input 0 only: a later
        // parameter would be written behind the tape's back.
        if (k > 0 && k < n && recording && t->requires_grad) {
            return nsci_call_fail(c, NSC_ERR_STATE,
                                  "%s requires grad and is written in place with grad mode on: "
                                  "step under nsc_no_grad_begin(), as torch.optim does",
                                  operand_name(name, sizeof name, names, n, k));
        }
    }
    int i, k;
    if (nsci_optim_shared_operands(c->n_in, roles, c->in, &i, &k) != NSC_OK) {
        return nsc_last_status();
    }
    if (i >= 0) {
        const char *a = operand_name(name, sizeof name, names, n, i);
        const char *b = operand_name(other, sizeof other, names, n, k);
        return nsci_call_fail(c, NSC_ERR_ARG, "%s and %s share memory: %s is written in place", a,
                              b, i / n == 1 ? b : a);
    }
    nsci_meta *m = &c->meta[0];
    m->dtype = (nsc_dtype)p0->dtype;
    m->ndim = p0->ndim;
    memcpy(m->shape, p0->shape, sizeof p0->shape);
    return NSC_OK;
}

static nsc_status fused_sgd_infer(nsci_call *c) {
    const fused_sgd_params *p = c->params;
    char why[256];
    if (nsci_sgd_config_problem(&p->config, why, sizeof why)) {
        return nsci_call_fail(c, NSC_ERR_ARG, "%s", why);
    }
    int roles = nsci_sgd_roles(&p->config);
    if (c->n_in == 0 || c->n_in % roles != 0) {
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "momentum %g and %d tensors: expected param, grad%s (%d tensors), "
                              "or %d lists of one length",
                              p->config.momentum, c->n_in, roles == 3 ? ", momentum_buffer" : "",
                              roles, roles);
    }
    return check_operands(c, roles, sgd_names);
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
    int roles = nsci_adamw_roles(&p->config);
    if (c->n_in == 0 || c->n_in % roles != 0) {
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "amsgrad %s and %d tensors: expected param, grad, exp_avg, "
                              "exp_avg_sq%s (%d tensors), or %d lists of one length",
                              p->config.amsgrad ? "true" : "false", c->n_in,
                              roles == 5 ? ", max_exp_avg_sq" : "", roles, roles);
    }
    return check_operands(c, roles, adamw_names);
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

static nsc_status fused_update(nsc_op op, int n_in, int roles, nsc_tensor *const *in,
                               const void *params) {
    nsc_status status = nsci_run_inplace(op, n_in, in, params);
    int n = n_in / roles;
    for (int k = 1; status == NSC_OK && k < n_in; k++) {
        if (k / n != 1 && in[k]->storage) {
            atomic_fetch_add(&in[k]->storage->version, 1);
        }
    }
    return status;
}

nsc_status nsci_fused_sgd_run(int n_in, nsc_tensor *const *in, const fused_sgd_params *p) {
    return fused_update(NSC_OP_fused_sgd_, n_in, nsci_sgd_roles(&p->config), in, p);
}

nsc_status nsci_fused_adamw_run(int n_in, nsc_tensor *const *in, const fused_adamw_params *p) {
    return fused_update(NSC_OP_fused_adamw_, n_in, nsci_adamw_roles(&p->config), in, p);
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
    return fused_update(NSC_OP_fused_sgd_, n, n, in, &p);
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
    return fused_update(NSC_OP_fused_adamw_, n, n, in, &p);
}

// --- lists ---

// Lays the lists out role by role (lists[r][j] at r * n + j) after checking
// that each list the configuration needs is there, and no other, and that
// no element is NULL. *in is NULL and the status NSC_OK for n == 0.
static nsc_status gather_lists(const char *op, int64_t n, int roles, int given,
                               nsc_tensor *const *const *lists, const char *const *names,
                               nsc_tensor ***in) {
    *in = NULL;
    if (n < 0 || n > INT32_MAX / NSCI_OPTIM_ROLES) {
        return nsci_fail(NSC_ERR_ARG, "%s: %lld parameters: expected 0 to %d", op, (long long)n,
                         INT32_MAX / NSCI_OPTIM_ROLES);
    }
    if (n == 0) {
        return NSC_OK;
    }
    for (int r = 0; r < given; r++) {
        bool wanted = r < roles;
        if (wanted && !lists[r]) {
            return nsci_fail(NSC_ERR_ARG, "%s: %ss is NULL: %s", op, names[r],
                             r < 2 ? "expected a list of n tensors"
                                   : "the configuration keeps this state (zeros before the first "
                                     "step)");
        }
        if (!wanted && lists[r]) {
            return nsci_fail(NSC_ERR_ARG, "%s: %ss given, and the configuration keeps no %s", op,
                             names[r], names[r]);
        }
    }
    nsc_tensor **all = nsci_malloc(sizeof *all * (size_t)(roles * n));
    if (!all) {
        return nsc_last_status();
    }
    for (int r = 0; r < roles; r++) {
        for (int64_t j = 0; j < n; j++) {
            if (!lists[r][j]) {
                nsci_free(all);
                return nsci_fail(NSC_ERR_ARG, "%s: %ss[%lld] is NULL", op, names[r], (long long)j);
            }
            all[r * n + j] = lists[r][j];
        }
    }
    *in = all;
    return NSC_OK;
}

nsc_status nsc_fused_sgd_list_(int64_t n, nsc_tensor *const *params, nsc_tensor *const *grads,
                               nsc_tensor *const *momentum_buffers, const nsc_sgd_config *config,
                               bool first_step) {
    if (!config) {
        return nsci_fail(NSC_ERR_ARG, "fused_sgd_: config is NULL: expected an nsc_sgd_config");
    }
    int roles = nsci_sgd_roles(config);
    nsc_tensor *const *lists[3] = { params, grads, momentum_buffers };
    nsc_tensor **in;
    nsc_status status = gather_lists("fused_sgd_", n, roles, 3, lists, sgd_names, &in);
    if (status != NSC_OK || !in) {
        return status; // refused, or nothing to update
    }
    fused_sgd_params p = { *config, first_step };
    status = fused_update(NSC_OP_fused_sgd_, roles * (int)n, roles, in, &p);
    nsci_free(in);
    return status;
}

nsc_status nsc_fused_adamw_list_(int64_t n, nsc_tensor *const *params, nsc_tensor *const *grads,
                                 nsc_tensor *const *exp_avgs, nsc_tensor *const *exp_avg_sqs,
                                 nsc_tensor *const *max_exp_avg_sqs, const nsc_adamw_config *config,
                                 int64_t step) {
    if (!config) {
        return nsci_fail(NSC_ERR_ARG, "fused_adamw_: config is NULL: expected an nsc_adamw_config");
    }
    int roles = nsci_adamw_roles(config);
    nsc_tensor *const *lists[5] = { params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs };
    nsc_tensor **in;
    nsc_status status = gather_lists("fused_adamw_", n, roles, 5, lists, adamw_names, &in);
    if (status != NSC_OK || !in) {
        return status; // refused, or nothing to update
    }
    fused_adamw_params p = { *config, step };
    status = fused_update(NSC_OP_fused_adamw_, roles * (int)n, roles, in, &p);
    nsci_free(in);
    return status;
}
