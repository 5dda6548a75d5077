// Helpers shared by the optimizer suites (tests/optim_util.h).
#include <criterion/criterion.h>
#include <stdio.h>

#include "tests/expect.h"
#include "tests/optim_util.h"

static const char *const STATE_NAMES[] = { "momentum_buffer", "exp_avg", "exp_avg_sq",
                                           "max_exp_avg_sq" };

void nsct_optim_params(uint64_t seed, nsc_dtype dtype, nsc_tensor **params) {
    nsc_generator *gen = nsc_generator_new(seed);
    nsc_tensor *raw[NSCT_OPTIM_N_PARAMS] = {
        nsc_randn(gen, dtype, NSC_SHAPE(5, 7)),
        nsc_randn(gen, dtype, NSC_SHAPE(7)),
        nsc_randn(gen, dtype, NSC_SHAPE(6, 4)),
    };
    for (int i = 0; i < NSCT_OPTIM_N_PARAMS; i++) {
        params[i] = i == 2 ? nsc_transpose(raw[i], 0, 1) : nsc_retain(raw[i]);
        cr_assert(params[i] && nsc_requires_grad_(params[i], true) == NSC_OK, "%s",
                  nsc_last_error());
        nsc_free(raw[i]);
    }
    cr_assert(!nsc_tensor_is_contiguous(params[2]));
    nsc_generator_free(gen);
}

void nsct_optim_grads(nsc_tensor **params, int k, bool param1_has_grad) {
    nsc_generator *gen = nsc_generator_new(100 + (uint64_t)k);
    for (int i = 0; i < NSCT_OPTIM_N_PARAMS; i++) {
        nsc_tensor *p = params[i];
        nsc_tensor *g =
            nsc_randn(gen, nsc_tensor_dtype(p), nsc_tensor_ndim(p), nsc_tensor_shape(p));
        cr_assert_eq(nsc_tensor_set_grad(p, i == 1 && !param1_has_grad ? NULL : g), NSC_OK);
        nsc_free(g);
    }
    nsc_generator_free(gen);
}

void nsct_optim_free_params(nsc_tensor **params) {
    for (int i = 0; i < NSCT_OPTIM_N_PARAMS; i++) {
        nsc_free(params[i]);
    }
}

void nsct_optim_expect_same(nsc_optim *a, nsc_optim *b, const char *what) {
    cr_expect_eq(nsc_optim_get_lr(b), nsc_optim_get_lr(a), "%s: lr", what);
    for (int64_t i = 0; i < nsc_optim_n_params(a); i++) {
        char where[128];
        snprintf(where, sizeof where, "%s parameter %lld", what, (long long)i);
        nsct_expect_close(nsc_optim_param_at(b, i), nsc_optim_param_at(a, i), TOL_EXACT, where);
        cr_expect_eq(nsc_optim_get_step(b, i), nsc_optim_get_step(a, i), "%s: steps", where);
        for (int s = 0; s < 4; s++) {
            nsc_tensor *sa = nsc_optim_get_state(a, i, STATE_NAMES[s]);
            nsc_tensor *sb = nsc_optim_get_state(b, i, STATE_NAMES[s]);
            cr_expect_eq(sa == NULL, sb == NULL, "%s: %s in one only", where, STATE_NAMES[s]);
            if (sa && sb) {
                nsct_expect_close(sb, sa, TOL_EXACT, STATE_NAMES[s]);
            }
        }
    }
}

// Initializers (a const object cannot initialize another at file scope).
#define MOMENTUM_INIT                                                                              \
    { .lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01 }
#define ADAMW_INIT                                                                                 \
    { .lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1 }
#define AMSGRAD_INIT                                                                               \
    { .lr = 0.02, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.05, .amsgrad = true }

const nsc_sgd_config NSCT_MOMENTUM = MOMENTUM_INIT;
const nsc_adamw_config NSCT_ADAMW = ADAMW_INIT;
const nsc_adamw_config NSCT_AMSGRAD = AMSGRAD_INIT;

const nsct_optim_variant nsct_optim_variants[NSCT_OPTIM_N_VARIANTS] = {
    { "sgd", NSC_F32, false, .sgd = { .lr = 0.1 } },
    { "sgd_momentum", NSC_F32, false, .sgd = MOMENTUM_INIT },
    { "sgd_f64", NSC_F64, false, .sgd = MOMENTUM_INIT },
    { "sgd_nesterov", NSC_F32, false,
      .sgd = { .lr = 0.05, .momentum = 0.8, .nesterov = true, .weight_decay = 0.05 } },
    { "adamw", NSC_F32, true, .adamw_config = ADAMW_INIT },
    { "adamw_f64", NSC_F64, true, .adamw_config = ADAMW_INIT },
    { "adamw_amsgrad", NSC_F32, true, .adamw_config = AMSGRAD_INIT },
    { "sgd_maximize", NSC_F32, false,
      .sgd = { .lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .maximize = true } },
    { "adamw_maximize_vector", NSC_F32, true, // no amsgrad: the AVX lanes run
      .adamw_config = { .lr = 0.01,
                        .beta1 = 0.9,
                        .beta2 = 0.99,
                        .eps = 1e-8,
                        .weight_decay = 0.1,
                        .maximize = true } },
    { "adamw_maximize", NSC_F32, true,
      .adamw_config = { .lr = 0.02,
                        .beta1 = 0.8,
                        .beta2 = 0.95,
                        .eps = 1e-6,
                        .weight_decay = 0.05,
                        .amsgrad = true,
                        .maximize = true } },
};

int nsct_optim_roles(const nsct_optim_variant *v) {
    return v->adamw ? (v->adamw_config.amsgrad ? 5 : 4) : (v->sgd.momentum != 0 ? 3 : 2);
}
