// Helpers for the optimizer suites: parameters and gradients from seeds
// (tests/test_optim_groups.c, tests/test_optim_state.c), a bit-for-bit
// comparison of two optimizers (test_optim_state.c: a resumed run against
// an uninterrupted one), and the SGD and AdamW variants the update-op
// suites run (test_optim_ops.c, test_optim_lists.c).
#ifndef NSC_TESTS_OPTIM_UTIL_H
#define NSC_TESTS_OPTIM_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc.h"

enum {
    NSCT_OPTIM_N_PARAMS = 3
};

// Leaves requiring grad: [5, 7], [7] and a transposed (non-contiguous) view
// [4, 6], from a seeded generator (one seed, equal values).
void nsct_optim_params(uint64_t seed, nsc_dtype dtype, nsc_tensor **params);
// Step k's gradients (seeded by k); parameter 1 gets none unless
// param1_has_grad.
void nsct_optim_grads(nsc_tensor **params, int k, bool param1_has_grad);
void nsct_optim_free_params(nsc_tensor **params);
// b's lr, parameters, step counts and state tensors equal a's, bit for bit
// (Criterion expectations naming what).
void nsct_optim_expect_same(nsc_optim *a, nsc_optim *b, const char *what);

// Gives t the .grad g although nsc_tensor_set_grad (like torch's .grad
// setter) refuses another dtype or device: for testing the optimizer's own
// check, which stays for gradients made behind the public API's back.
void nsct_force_grad(nsc_tensor *t, nsc_tensor *g);

// An update configuration: SGD or AdamW, its hyper-parameters and dtype.
typedef struct nsct_optim_variant {
    const char *name;
    nsc_dtype dtype;
    bool adamw;
    nsc_sgd_config sgd;
    nsc_adamw_config adamw_config;
} nsct_optim_variant;

extern const nsc_sgd_config NSCT_MOMENTUM;  // momentum, dampening, decay
extern const nsc_adamw_config NSCT_ADAMW;   // decay, no amsgrad
extern const nsc_adamw_config NSCT_AMSGRAD; // other betas and eps, amsgrad

// Every SGD and AdamW variant: plain, momentum, nesterov, f64, amsgrad,
// maximize (with and without amsgrad).
enum {
    NSCT_OPTIM_N_VARIANTS = 10
};
extern const nsct_optim_variant nsct_optim_variants[NSCT_OPTIM_N_VARIANTS];

// The operands one update of v takes: param, grad and the state.
int nsct_optim_roles(const nsct_optim_variant *v);

#endif
