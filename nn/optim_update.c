// The per-element updates of SGD and AdamW: one fused pass over parameter,
// gradient and state (torch runs one pass per op), split across the thread
// pool by nsci_iter, which also walks non-contiguous parameters. Each element
// repeats torch.optim's op sequence (1.13, single-tensor path) with the same
// roundings: scalars are rounded to the parameter's dtype first, as torch does
// when it multiplies a tensor by a Python float.
#include <math.h>

#include "nn/optim_impl.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// --- SGD ---
// Per element (n: elements of this chunk):
//   d = g + wd * p;  buf = first ? d : momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf;  p = p + (-lr) * d

typedef struct sgd_args {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, has_buf, first;
} sgd_args;

#define SGD_INNER(NAME, T)                                                                         \
    static void NAME(int64_t n, char **ptrs, const int64_t *strides, void *ctx) {                  \
        const sgd_args *a = ctx;                                                                   \
        const T wd = (T)a->weight_decay, mom = (T)a->momentum;                                     \
        const T keep = (T)(1.0 - a->dampening), neg_lr = (T)(-a->lr);                              \
        for (int64_t k = 0; k < n; k++) {                                                          \
            T *p = (T *)(ptrs[0] + k * strides[0]);                                                \
            T d = *(const T *)(ptrs[1] + k * strides[1]);                                          \
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

void nsci_sgd_update(const nsc_optim *opt, int64_t i, nsc_tensor *grad, bool first_step) {
    const nsc_sgd_config *c = &opt->sgd;
    sgd_args args = {
        .lr = opt->lr,
        .momentum = c->momentum,
        .dampening = c->dampening,
        .weight_decay = c->weight_decay,
        .nesterov = c->nesterov,
        .has_buf = c->momentum != 0,
        .first = first_step,
    };
    nsc_tensor *ops[3] = { opt->params[i], grad, opt->state[i * NSCI_OPTIM_MAX_STATE] };
    nsci_iter it;
    nsci_iter_init(&it, args.has_buf ? 3 : 2, ops);
    nsci_iter_run(&it, opt->params[i]->dtype == NSC_F32 ? sgd_f32 : sgd_f64, &args, NSCI_GRAIN);
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

nsci_adamw_scalars nsci_adamw_scalars_of(const nsc_optim *opt, int64_t i) {
    const nsc_adamw_config *c = &opt->adamw;
    double t = (double)opt->steps[i];
    double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    return (nsci_adamw_scalars){
        .decay = 1.0 - opt->lr * c->weight_decay,
        .beta1 = c->beta1,
        .one_minus_beta1 = 1.0 - c->beta1,
        .beta2 = c->beta2,
        .one_minus_beta2 = 1.0 - c->beta2,
        .bc2_sqrt = sqrt(bc2),
        .eps = c->eps,
        .neg_step_size = -(opt->lr / bc1),
        .amsgrad = c->amsgrad,
    };
}

void nsci_adamw_update(const nsc_optim *opt, int64_t i, nsc_tensor *grad) {
    nsci_adamw_scalars args = nsci_adamw_scalars_of(opt, i);
    nsc_tensor *const *state = &opt->state[i * NSCI_OPTIM_MAX_STATE];
    nsc_tensor *ops[5] = { opt->params[i], grad, state[0], state[1], state[2] };
    nsci_iter it;
    nsci_iter_init(&it, args.amsgrad ? 5 : 4, ops);
    nsci_iter_run(&it, opt->params[i]->dtype == NSC_F32 ? adamw_f32 : adamw_f64, &args, NSCI_GRAIN);
}
