// Parameter groups' API (nn/optim.c): add_param_group's refusals and its
// out-of-memory sweep, each leaving the optimizer as it was; the group
// learning rates; docs/TRAINING.md's decay recipe; an added parameter of a
// module-built optimizer. The groups' steps against torch are in
// test_optim.c (optim::parameter_groups_match_torch), their saving in
// test_optim_state.c.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/expect.h"
#include "tests/harness.h"
#include "tests/optim_util.h"

static const nsc_adamw_config ADAMW = {
    .lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1
};
static const nsc_sgd_config SGD_MOMENTUM = {
    .lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01
};

static void expect_status(nsc_status got, nsc_status want, const char *text) {
    cr_expect_eq(got, want, "\"%s\": got %s (%s)", text, nsc_status_name(got), nsc_last_error());
    cr_expect(strstr(nsc_last_error(), text), "message \"%s\" lacks \"%s\"", nsc_last_error(),
              text);
    nsc_clear_error();
}

// add_param_group refuses a bad list, a parameter already in a group,
// another kind's config and a bad hyper-parameter, leaving the optimizer
// as it was; out of memory anywhere in it changes nothing and leaks nothing.
Test(optim_errors, add_param_group_refuses_and_changes_nothing) {
    nsc_tensor *params[NSCT_OPTIM_N_PARAMS];
    nsct_optim_params(3, NSC_F32, params);
    nsc_optim *opt = nsc_optim_adamw_new(2, params, &ADAMW);
    nsc_adamw_config bad = ADAMW;
    bad.beta1 = 1.5;
    expect_status(nsc_optim_add_param_group_adamw(opt, 1, params + 1, &ADAMW), NSC_ERR_ARG,
                  "parameter 0 is parameter 1 of group 0: expected each parameter in one group");
    expect_status(nsc_optim_add_param_group_sgd(opt, 1, params + 2, &SGD_MOMENTUM), NSC_ERR_ARG,
                  "sgd add_param_group: the optimizer is adamw");
    expect_status(nsc_optim_add_param_group_adamw(opt, 1, params + 2, &bad), NSC_ERR_ARG,
                  "betas (1.5, 0.99)");
    expect_status(nsc_optim_add_param_group_adamw(opt, 0, params + 2, &ADAMW), NSC_ERR_ARG,
                  "0 parameters: expected a non-empty list");
    expect_status(nsc_optim_add_param_group_adamw(NULL, 1, params + 2, &ADAMW), NSC_ERR_ARG,
                  "optimizer is NULL");
    expect_status(nsc_optim_group_set_lr(opt, 1, 0.1), NSC_ERR_ARG, "group 1, lr 0.1");
    cr_expect_eq(nsc_optim_n_groups(opt), 1);
    cr_expect_eq(nsc_optim_n_params(opt), 2);
    cr_expect(isnan(nsc_optim_group_get_lr(opt, 1)));
    cr_expect_eq(nsc_optim_group_of(opt, 2), -1);
    bool done = false;
    for (int64_t n = 1; n < 50 && !done; n++) {
        int64_t blocks = nsct_live_blocks();
        nsc_mem_fail_after(n);
        nsc_status status = nsc_optim_add_param_group_adamw(opt, 1, params + 2, &ADAMW);
        nsc_mem_fail_after(0);
        done = status == NSC_OK;
        if (!done) {
            cr_expect_eq(status, NSC_ERR_OOM, "n %lld: %s", (long long)n, nsc_last_error());
            cr_expect_eq(nsc_optim_n_groups(opt), 1);
            cr_expect_eq(nsct_live_blocks(), blocks, "n %lld leaked", (long long)n);
        }
        nsc_clear_error();
    }
    cr_expect(done, "never succeeded");
    cr_expect_eq(nsc_optim_n_groups(opt), 2);
    cr_expect_eq(nsc_optim_param_at(opt, 2), params[2]);
    // set_lr sets every group's; a group's own setter only its own
    cr_assert_eq(nsc_optim_set_lr(opt, 0.5), NSC_OK);
    cr_expect_eq(nsc_optim_group_get_lr(opt, 1), 0.5);
    cr_assert_eq(nsc_optim_group_set_lr(opt, 1, 0.25), NSC_OK);
    cr_expect_eq(nsc_optim_get_lr(opt), 0.5);
    cr_expect_eq(nsc_optim_group_get_lr(opt, 1), 0.25);
    nsc_optim_free(opt);
    nsct_optim_free_params(params);
}

// docs/TRAINING.md's recipe, as written there, on the tiny GPT-2 (whose
// lm_head is tied to wte): matrices decay, vectors do not, each tensor once;
// one step leaves a zero-gradient matrix decayed and a zero-gradient
// vector where it was.
Test(optim_groups, the_documented_decay_recipe_runs_on_gpt2) {
    nsc_module *model = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(model, "%s", nsc_last_error());
    nsc_module_requires_grad_(model, true);
    int64_t n = nsc_module_n_params(model), n_decay = 0, n_other = 0;
    nsc_tensor **decay = calloc(n, sizeof *decay), **other = calloc(n, sizeof *other);
    for (int64_t i = 0; i < n; i++) {
        nsc_tensor *p = nsc_module_param_at(model, i, NULL);
        bool seen = false;
        for (int64_t k = 0; k < n_decay; k++) {
            seen |= decay[k] == p;
        }
        for (int64_t k = 0; k < n_other; k++) {
            seen |= other[k] == p;
        }
        if (!seen && nsc_tensor_ndim(p) >= 2) {
            decay[n_decay++] = p;
        } else if (!seen) {
            other[n_other++] = p;
        }
    }
    nsc_adamw_config c = nsc_adamw_defaults();
    c.weight_decay = 0.1;
    nsc_optim *opt = nsc_optim_adamw_new(n_decay, decay, &c);
    c.weight_decay = 0;
    cr_assert(opt, "%s", nsc_last_error());
    cr_assert_eq(nsc_optim_add_param_group_adamw(opt, n_other, other, &c), NSC_OK, "%s",
                 nsc_last_error());
    cr_expect_eq(nsc_optim_n_params(opt), n_decay + n_other);
    cr_expect_lt(n_decay + n_other, n, "the tied tensor is listed twice by the module, kept once");
    nsc_tensor *m = decay[0], *v = other[0];
    nsc_tensor *m0 = nsc_clone(m), *v0 = nsc_clone(v);
    nsc_tensor *gm = nsc_zeros_like(m), *gv = nsc_zeros_like(v);
    nsc_tensor_set_grad(m, gm);
    nsc_tensor_set_grad(v, gv);
    cr_assert_eq(nsc_optim_step(opt), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *decayed = nsc_mul_scalar(m0, 1.0 - 1e-3 * 0.1);
    nsct_expect_close(m, decayed, TOL_EXACT, "a matrix without gradient only decays");
    nsct_expect_close(v, v0, TOL_EXACT, "a vector without gradient stays");
    nsc_tensor *frees[] = { m0, v0, gm, gv, decayed };
    for (size_t i = 0; i < sizeof frees / sizeof frees[0]; i++) {
        nsc_free(frees[i]);
    }
    nsc_optim_free(opt);
    free(decay);
    free(other);
    nsc_module_free(model);
}

// A module-built optimizer names its parameters by path; one added later
// has none, and its errors say so cleanly.
Test(optim_groups, an_added_parameter_of_a_module_optimizer_has_no_path) {
    nsc_module *model = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(model, "%s", nsc_last_error());
    nsc_module_requires_grad_(model, true);
    nsc_optim *opt = nsc_optim_adamw_new_module(model, &ADAMW);
    cr_assert(opt, "%s", nsc_last_error());
    int64_t n = nsc_optim_n_params(opt);
    nsc_tensor *extra = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 2));
    cr_assert_eq(nsc_requires_grad_(extra, true), NSC_OK);
    cr_assert_eq(nsc_optim_add_param_group_adamw(opt, 1, &extra, &ADAMW), NSC_OK, "%s",
                 nsc_last_error());
    nsc_tensor *bad = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(2, 2));
    nsct_force_grad(extra, bad);
    char want[96];
    snprintf(want, sizeof want,
             "expected the shape, dtype and device of parameter %lld ([2,2] f32)", (long long)n);
    expect_status(nsc_optim_step(opt), NSC_ERR_DTYPE, want);
    nsc_free(bad);
    nsc_free(extra);
    nsc_optim_free(opt);
    nsc_module_free(model);
}

// Parameters that are overlapping views of one buffer step in list order,
// as torch does. Expected values: torch 1.13 and 2.15 (b = arange(1, 7);
// o1 = b[0:4].detach().requires_grad_(); o2 = b[2:6] likewise; grads
// [1..4] and [10..40] at each of two steps).
Test(optim_groups, overlapping_views_step_in_list_order_as_torch) {
    const double want[2][6] = {
        { 0.709999979, 1.41999996, -0.769999921, -2.96000004, -3.70000005, -5.5999999 },
        { 0.798101008, 1.79610205, 2.58861804, 3.58462405, 4.79010534, 5.78810644 },
    };
    for (int kind = 0; kind < 2; kind++) {
        nsc_tensor *b = nsc_arange(1, 7, 1, NSC_F32);
        nsc_tensor *o[2] = { nsc_narrow(b, 0, 0, 4), nsc_narrow(b, 0, 2, 4) };
        nsc_requires_grad_(o[0], true);
        nsc_requires_grad_(o[1], true);
        nsc_adamw_config ac = nsc_adamw_defaults();
        ac.lr = 0.1;
        nsc_optim *opt =
            kind == 0 ? nsc_optim_sgd_new(2, o, &(nsc_sgd_config){ .lr = 0.1, .momentum = 0.9 })
                      : nsc_optim_adamw_new(2, o, &ac);
        cr_assert(opt, "%s", nsc_last_error());
        for (int step = 0; step < 2; step++) {
            for (int p = 0; p < 2; p++) {
                nsc_tensor *a = nsc_arange(1, 5, 1, NSC_F32);
                nsc_tensor *g = nsc_mul_scalar(a, p ? 10.0 : 1.0);
                cr_assert_eq(nsc_tensor_set_grad(o[p], g), NSC_OK, "%s", nsc_last_error());
                nsc_free(a);
                nsc_free(g);
            }
            cr_assert_eq(nsc_optim_step(opt), NSC_OK, "%s", nsc_last_error());
        }
        for (int i = 0; i < 6; i++) {
            cr_expect_float_eq(nsct_flat(b, i), want[kind][i], 1e-6 * (1 + fabs(want[kind][i])),
                               "%s element %d: %.9g", kind ? "adamw" : "sgd", i, nsct_flat(b, i));
        }
        nsc_optim_free(opt);
        nsc_free(o[0]);
        nsc_free(o[1]);
        nsc_free(b);
    }
}
