// Helpers for the optimizer suites: parameters and gradients from seeds
// (tests/test_optim_groups.c, tests/test_optim_state.c), and a bit-for-bit
// comparison of two optimizers (test_optim_state.c: a resumed run against
// an uninterrupted one).
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

#endif
