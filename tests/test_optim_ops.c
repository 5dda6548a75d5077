// The optimizers' tensor-op path (nn/optim_ops.c), which CUDA parameters
// take, forced on CPU parameters: the same bits as the fused loops for every
// SGD and AdamW variant, f32 and f64, contiguous and transposed parameters,
// a skipped gradient; a step that fails part-way leaves each parameter
// either stepped or untouched, without leaks; and clipping's pieces. The
// fused loops themselves are checked against torch.optim in test_optim.c.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "nn/optim_impl.h"
#include "tests/expect.h"
#include "tests/harness.h"
#include "tests/optim_util.h"

enum {
    N_PARAMS = NSCT_OPTIM_N_PARAMS,
    N_STEPS = 4
};

typedef struct ops_case {
    const char *name;
    nsc_dtype dtype;
    bool adamw;
    nsc_sgd_config sgd;
    nsc_adamw_config adamw_config;
} ops_case;

static const nsc_adamw_config AMSGRAD = {
    .lr = 0.02, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.05, .amsgrad = true
};

static nsc_optim *make_optim(const ops_case *c, nsc_tensor **params, bool ops) {
    nsc_optim *opt = c->adamw ? nsc_optim_adamw_new(N_PARAMS, params, &c->adamw_config)
                              : nsc_optim_sgd_new(N_PARAMS, params, &c->sgd);
    cr_assert(opt, "%s: %s", c->name, nsc_last_error());
    opt->ops_on_cpu = ops;
    return opt;
}

Test(optim_ops, the_tensor_op_path_gives_the_fused_bits) {
    const nsc_sgd_config momentum = {
        .lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01
    };
    const nsc_adamw_config adamw = {
        .lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1
    };
    const ops_case cases[] = {
        { "sgd", NSC_F32, false, .sgd = { .lr = 0.1 } },
        { "sgd_momentum", NSC_F32, false, .sgd = momentum },
        { "sgd_f64", NSC_F64, false, .sgd = momentum },
        { "sgd_nesterov", NSC_F32, false,
          .sgd = { .lr = 0.05, .momentum = 0.8, .nesterov = true, .weight_decay = 0.05 } },
        { "adamw", NSC_F32, true, .adamw_config = adamw },
        { "adamw_f64", NSC_F64, true, .adamw_config = adamw },
        { "adamw_amsgrad", NSC_F32, true, .adamw_config = AMSGRAD },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nsc_tensor *fused[N_PARAMS], *ops[N_PARAMS];
        nsct_optim_params(1, cases[c].dtype, fused);
        nsct_optim_params(1, cases[c].dtype, ops);
        nsc_optim *a = make_optim(&cases[c], fused, false), *b = make_optim(&cases[c], ops, true);
        for (int k = 0; k < N_STEPS; k++) {
            nsct_optim_grads(fused, k, k != 2);
            nsct_optim_grads(ops, k, k != 2);
            cr_assert_eq(nsc_optim_step(a), NSC_OK, "%s", nsc_last_error());
            cr_assert_eq(nsc_optim_step(b), NSC_OK, "%s", nsc_last_error());
            char what[96];
            snprintf(what, sizeof what, "%s step %d", cases[c].name, k);
            nsct_optim_expect_same(a, b, what);
        }
        nsc_optim_free(a);
        nsc_optim_free(b);
        nsct_optim_free_params(fused);
        nsct_optim_free_params(ops);
    }
}

// A step that runs out of memory part-way: the parameters before the failing
// one have stepped (their step count says so) and equal the fused result,
// the others are untouched, and nothing leaks.
Test(optim_ops, a_failed_update_leaves_its_parameter_as_it_was) {
    const ops_case c = { "adamw_amsgrad", NSC_F32, true, .adamw_config = AMSGRAD };
    nsc_tensor *want[N_PARAMS], *start[N_PARAMS];
    nsct_optim_params(2, NSC_F32, want);
    nsct_optim_params(2, NSC_F32, start);
    nsc_optim *fused = make_optim(&c, want, false);
    nsct_optim_grads(want, 0, true);
    cr_assert_eq(nsc_optim_step(fused), NSC_OK);
    bool done = false;
    int partial = 0; // failures after at least one parameter stepped
    for (int64_t n = 1; n < 400 && !done; n++) {
        int64_t blocks = nsct_live_blocks();
        nsc_tensor *params[N_PARAMS];
        nsct_optim_params(2, NSC_F32, params);
        nsct_optim_grads(params, 0, true);
        nsc_optim *opt = make_optim(&c, params, true);
        nsc_mem_fail_after(n);
        nsc_status status = nsc_optim_step(opt);
        nsc_mem_fail_after(0);
        done = status == NSC_OK;
        cr_expect(done || status == NSC_ERR_OOM, "n %lld: %s", (long long)n, nsc_last_error());
        for (int i = 0; i < N_PARAMS; i++) {
            int64_t steps = nsc_optim_get_step(opt, i);
            partial += !done && i == 0 && steps == 1;
            nsct_expect_close(params[i], steps ? want[i] : start[i], TOL_EXACT,
                              steps ? "a stepped parameter" : "a parameter not stepped");
        }
        nsc_optim_free(opt);
        nsct_optim_free_params(params);
        cr_expect_eq(nsct_live_blocks(), blocks, "n %lld: live blocks", (long long)n);
        nsc_clear_error();
    }
    cr_expect(done, "never succeeded");
    cr_expect_gt(partial, 0, "no failure came after a stepped parameter");
    nsc_optim_free(fused);
    nsct_optim_free_params(want);
    nsct_optim_free_params(start);
}

// Clipping's op pieces give the CPU path's norm (up to summation order: the
// CPU sums fixed blocks, the op a reduction) and scale to the same bits.
Test(optim_ops, clipping_pieces_give_the_cpu_norm_and_scale) {
    nsc_generator *gen = nsc_generator_new(8);
    nsc_tensor *params[2], *copies[2];
    const int64_t rows[2] = { 3000, 41 };
    double sum = 0;
    for (int i = 0; i < 2; i++) {
        params[i] = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(rows[i], 17));
        nsc_tensor *g = nsc_randn(gen, NSC_F32, NSC_SHAPE(rows[i], 17));
        nsc_requires_grad_(params[i], true);
        nsc_tensor_set_grad(params[i], g);
        copies[i] = nsc_clone(g);
        double part = -1;
        cr_assert_eq(nsci_grad_sumsq_ops(g, &part), NSC_OK, "%s", nsc_last_error());
        sum += part;
        nsc_free(g);
    }
    double norm = 0;
    cr_assert_eq(nsc_clip_grad_norm_(2, params, 1.0, &norm), NSC_OK);
    cr_expect(fabs(sqrt(sum) - norm) <= 1e-12 * norm, "ops %.17g, cpu %.17g", sqrt(sum), norm);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(nsci_grad_scale_ops(copies[i], 1.0 / (norm + 1e-6)), NSC_OK);
        nsct_expect_close(copies[i], nsc_tensor_get_grad(params[i]), TOL_EXACT, "scaled");
        nsc_free(copies[i]);
        nsc_free(params[i]);
    }
    nsc_generator_free(gen);
}
