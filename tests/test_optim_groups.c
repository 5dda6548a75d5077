// Parameter groups' API (nn/optim.c): add_param_group's refusals and its
// out-of-memory sweep, each leaving the optimizer as it was, and the group
// learning rates. The groups' steps against torch are in test_optim.c
// (optim::parameter_groups_match_torch), their saving in test_optim_state.c.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

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
