// Saving and resuming optimizers (nn/optim_state.c): a run saved, loaded
// into a fresh optimizer and continued gives the uninterrupted run's bits;
// a bad file (another kind, count or setting, a missing or mis-shaped
// entry, a bad number, out of memory) fails naming what is wrong and leaves
// the optimizer unchanged.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/expect.h"
#include "tests/harness.h"
#include "tests/optim_util.h"

enum {
    N_PARAMS = NSCT_OPTIM_N_PARAMS
};

static const char *const STATE_NAMES[] = { "momentum_buffer", "exp_avg", "exp_avg_sq",
                                           "max_exp_avg_sq" };

static char g_dir[64];

static void make_dir(void) {
    // mkdtemp fills in the template: set it again for every test
    snprintf(g_dir, sizeof g_dir, "/tmp/nsc_optim_state_XXXXXX");
    cr_assert(mkdtemp(g_dir), "mkdtemp");
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    cr_expect_eq(system(cmd), 0);
}

static const char *file(const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return path;
}

// Copies of params' current values (same layouts), as fresh leaves.
static void copy_params(nsc_tensor **params, nsc_tensor **copies) {
    nsc_no_grad_begin(); // the copies are leaves, not results of the originals
    for (int i = 0; i < N_PARAMS; i++) {
        nsc_tensor *base = i == 2 ? nsc_transpose(params[i], 0, 1) : nsc_retain(params[i]);
        nsc_tensor *own = nsc_clone(base);
        copies[i] = i == 2 ? nsc_transpose(own, 0, 1) : nsc_retain(own);
        cr_assert(nsc_requires_grad_(copies[i], true) == NSC_OK, "%s", nsc_last_error());
        nsc_free(base);
        nsc_free(own);
    }
    nsc_no_grad_end();
}

typedef nsc_optim *(*make_fn)(nsc_tensor **params, double lr);

static nsc_optim *make_adamw(nsc_tensor **params, double lr) {
    nsc_adamw_config c = {
        .lr = lr, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.05, .amsgrad = true
    };
    return nsc_optim_adamw_new(N_PARAMS, params, &c);
}

static nsc_optim *make_sgd(nsc_tensor **params, double lr) {
    nsc_sgd_config c = { .lr = lr, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01 };
    return nsc_optim_sgd_new(N_PARAMS, params, &c);
}

// Three steps, save, load into a fresh optimizer (built with another lr)
// over copies of the parameters, then three more steps on both.
static void resume_case(make_fn make, const char *name) {
    nsc_tensor *a_params[N_PARAMS], *b_params[N_PARAMS];
    nsct_optim_params(9, NSC_F32, a_params);
    nsc_optim *a = make(a_params, 0.02);
    for (int k = 0; k < 3; k++) {
        nsct_optim_grads(a_params, k, k >= 2);
        cr_assert_eq(nsc_optim_step(a), NSC_OK, "%s", nsc_last_error());
    }
    nsc_optim_set_lr(a, 0.015); // a schedule moved it: the file keeps the current lr
    cr_assert_eq(nsc_optim_save(a, file(name)), NSC_OK, "%s", nsc_last_error());
    copy_params(a_params, b_params);
    nsc_optim *b = make(b_params, 0.5);
    cr_assert_eq(nsc_optim_load(b, file(name)), NSC_OK, "%s", nsc_last_error());
    nsct_optim_expect_same(a, b, name);
    for (int k = 3; k < 6; k++) {
        nsct_optim_grads(a_params, k, k >= 2);
        nsct_optim_grads(b_params, k, k >= 2);
        cr_assert_eq(nsc_optim_step(a), NSC_OK);
        cr_assert_eq(nsc_optim_step(b), NSC_OK);
    }
    nsct_optim_expect_same(a, b, name);
    nsc_optim_free(a);
    nsc_optim_free(b);
    nsct_optim_free_params(a_params);
    nsct_optim_free_params(b_params);
}

// Groups: parameters 0 and 1 with the maker's config, parameter 2 in a
// group of its own that keeps other state (no amsgrad, no momentum).
static nsc_optim *make_adamw_groups(nsc_tensor **params, double lr) {
    nsc_adamw_config c = {
        .lr = lr, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.05, .amsgrad = true
    };
    nsc_optim *opt = nsc_optim_adamw_new(2, params, &c);
    nsc_adamw_config other = {
        .lr = 2 * lr, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .maximize = true
    };
    cr_assert_eq(nsc_optim_add_param_group_adamw(opt, 1, params + 2, &other), NSC_OK, "%s",
                 nsc_last_error());
    return opt;
}

static nsc_optim *make_sgd_groups(nsc_tensor **params, double lr) {
    nsc_sgd_config c = { .lr = lr, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01 };
    nsc_optim *opt = nsc_optim_sgd_new(1, params, &c);
    nsc_sgd_config other = { .lr = 3 * lr };
    cr_assert_eq(nsc_optim_add_param_group_sgd(opt, 2, params + 1, &other), NSC_OK, "%s",
                 nsc_last_error());
    return opt;
}

Test(optim_state, a_resumed_run_gives_the_uninterrupted_bits, .init = make_dir,
     .fini = remove_dir) {
    resume_case(make_adamw, "adamw.safetensors");
    resume_case(make_sgd, "sgd.safetensors");
    resume_case(make_adamw_groups, "adamw_groups.safetensors");
    resume_case(make_sgd_groups, "sgd_groups.safetensors");
}

// Each group's learning rate and hyper-parameters come back with the file.
Test(optim_state, groups_keep_their_own_learning_rates, .init = make_dir, .fini = remove_dir) {
    nsc_tensor *params[N_PARAMS];
    nsct_optim_params(6, NSC_F32, params);
    nsc_optim *a = make_adamw_groups(params, 0.01), *b = make_adamw_groups(params, 0.5);
    cr_assert_eq(nsc_optim_group_set_lr(a, 1, 0.125), NSC_OK);
    cr_assert_eq(nsc_optim_save(a, file("groups.safetensors")), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_optim_load(b, file("groups.safetensors")), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_optim_group_get_lr(b, 0), 0.01);
    cr_expect_eq(nsc_optim_group_get_lr(b, 1), 0.125);
    nsc_optim_free(a);
    nsc_optim_free(b);
    nsct_optim_free_params(params);
}

// An optimizer that has not stepped saves no state: loading it restarts.
Test(optim_state, a_fresh_optimizer_saves_no_state, .init = make_dir, .fini = remove_dir) {
    nsc_tensor *params[N_PARAMS];
    nsct_optim_params(3, NSC_F32, params);
    nsc_optim *fresh = make_adamw(params, 0.01), *used = make_adamw(params, 0.01);
    nsct_optim_grads(params, 2, true);
    cr_assert_eq(nsc_optim_step(used), NSC_OK);
    cr_assert_eq(nsc_optim_save(fresh, file("fresh.safetensors")), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_optim_load(used, file("fresh.safetensors")), NSC_OK, "%s", nsc_last_error());
    for (int64_t i = 0; i < N_PARAMS; i++) {
        cr_expect_eq(nsc_optim_get_step(used, i), 0);
        cr_expect_null(nsc_optim_get_state(used, i, "exp_avg"));
    }
    nsc_optim_free(fresh);
    nsc_optim_free(used);
    nsct_optim_free_params(params);
}

// The hyper-parameters are text in the file's metadata: written under a
// locale with ',' as decimal point they read back under "C", and the other
// way round (the old writer wrote "0,0015", which the old reader refused).
Test(optim_state, files_read_the_same_in_any_locale, .init = make_dir, .fini = remove_dir) {
    locale_t comma = nsct_comma_locale();
    if (!comma) {
        cr_skip_test("no de_DE.UTF-8 locale and no localedef to build one");
    }
    nsc_tensor *params[N_PARAMS];
    nsct_optim_params(3, NSC_F32, params);
    nsc_optim *a = make_adamw(params, 0.0015);
    nsct_optim_grads(params, 1, true);
    cr_assert_eq(nsc_optim_step(a), NSC_OK);
    locale_t c_locale = uselocale(comma);
    char probe[16];
    snprintf(probe, sizeof probe, "%.1f", 0.5);
    cr_assert_str_eq(probe, "0,5", "the locale is in effect");
    cr_assert_eq(nsc_optim_save(a, file("comma.safetensors")), NSC_OK, "%s", nsc_last_error());
    nsc_optim *b = make_adamw(params, 0.3);
    cr_expect_eq(nsc_optim_load(b, file("comma.safetensors")), NSC_OK, "%s", nsc_last_error());
    uselocale(c_locale);
    nsc_optim *c = make_adamw(params, 0.3);
    cr_expect_eq(nsc_optim_load(c, file("comma.safetensors")), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_optim_get_lr(b), 0.0015);
    cr_expect_eq(nsc_optim_get_lr(c), 0.0015);
    nsc_safetensors *st = nsc_safetensors_open(file("comma.safetensors"));
    cr_assert(st, "%s", nsc_last_error());
    cr_expect_str_eq(nsc_safetensors_get_metadata(st, "lr"), "0.0015");
    cr_expect_str_eq(nsc_safetensors_get_metadata(st, "eps"), "1e-06");
    nsc_safetensors_free(st);
    nsc_optim_free(a);
    nsc_optim_free(b);
    nsc_optim_free(c);
    nsct_optim_free_params(params);
    freelocale(comma);
}

// The optimizer b as it stands: its lr, steps and state tensors (pointers).
typedef struct snapshot {
    double lr;
    int64_t steps[N_PARAMS];
    nsc_tensor *state[N_PARAMS][4];
} snapshot;

static snapshot snap(nsc_optim *o) {
    snapshot s = { .lr = nsc_optim_get_lr(o) };
    for (int64_t i = 0; i < N_PARAMS; i++) {
        s.steps[i] = nsc_optim_get_step(o, i);
        for (int k = 0; k < 4; k++) {
            s.state[i][k] = nsc_optim_get_state(o, i, STATE_NAMES[k]);
        }
    }
    return s;
}

static void expect_refused(nsc_optim *o, const char *path, nsc_status want, const char *text) {
    snapshot before = snap(o);
    nsc_status got = nsc_optim_load(o, path);
    cr_expect_eq(got, want, "%s: status %d: %s", text, got, nsc_last_error());
    cr_expect(strstr(nsc_last_error(), text), "wanted \"%s\" in: %s", text, nsc_last_error());
    snapshot after = snap(o);
    cr_expect(memcmp(&before, &after, sizeof before) == 0, "%s: the optimizer changed", text);
    nsc_clear_error();
}

// A hand-made file: one parameter's step (f64, as torch keeps it; none when
// step_count is 0) and state with exp_avg of the given shape, and metadata
// whose "lr" is lr_text.
static void write_file(const char *path, double step_count, int64_t rows, const char *lr_text) {
    nsc_tensor *step = nsc_scalar(NSC_F64, step_count);
    nsc_tensor *m = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(rows, 7));
    nsc_tensor *v = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(5, 7));
    nsc_tensor *tensors[4] = { step, m, v, v };
    const char *names[4] = { "state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq",
                             "state.0.max_exp_avg_sq" };
    const char *keys[8] = { "optimizer", "n_params", "lr",           "beta1",
                            "beta2",     "eps",      "weight_decay", "amsgrad" };
    const char *vals[8] = { "adamw", "3", lr_text, "0.8", "0.95", "1e-06", "0.05", "1" };
    int skip = step_count == 0; // the step entry left out
    cr_assert_eq(nsc_safetensors_save(path, 4 - skip, names + skip, tensors + skip, 8, keys, vals),
                 NSC_OK);
    nsc_free(step);
    nsc_free(m);
    nsc_free(v);
}

Test(optim_state, a_bad_file_changes_nothing, .init = make_dir, .fini = remove_dir) {
    nsc_tensor *params[N_PARAMS];
    nsct_optim_params(4, NSC_F32, params);
    nsc_optim *adamw = make_adamw(params, 0.01), *sgd = make_sgd(params, 0.1);
    nsct_optim_grads(params, 2, true);
    cr_assert_eq(nsc_optim_step(adamw), NSC_OK);
    cr_assert_eq(nsc_optim_step(sgd), NSC_OK);
    cr_assert_eq(nsc_optim_save(adamw, file("adamw.safetensors")), NSC_OK);
    nsc_optim *two = nsc_optim_adamw_new(2, params, &(nsc_adamw_config){ .lr = 0.01 });
    nsc_adamw_config plain = { .lr = 0.01, .beta1 = 0.8, .beta2 = 0.95 };
    nsc_optim *no_ams = nsc_optim_adamw_new(N_PARAMS, params, &plain);

    expect_refused(sgd, file("adamw.safetensors"), NSC_ERR_FORMAT,
                   "metadata \"optimizer\" is \"adamw\": expected \"sgd\"");
    expect_refused(two, file("adamw.safetensors"), NSC_ERR_FORMAT,
                   "saved for 3 parameters: this optimizer has 2");
    expect_refused(no_ams, file("adamw.safetensors"), NSC_ERR_FORMAT,
                   "amsgrad on saved, off here: the state kept differs");
    nsc_optim *grouped = make_adamw_groups(params, 0.01);
    cr_assert_eq(nsc_optim_save(grouped, file("grouped.safetensors")), NSC_OK);
    expect_refused(adamw, file("grouped.safetensors"), NSC_ERR_FORMAT,
                   "saved with 2 parameter groups: this optimizer has 1 (add the same groups");
    expect_refused(grouped, file("adamw.safetensors"), NSC_ERR_FORMAT,
                   "saved with 1 parameter groups: this optimizer has 2");
    nsc_optim *split = nsc_optim_adamw_new(1, params, &(nsc_adamw_config){ .amsgrad = true });
    cr_assert_eq(nsc_optim_add_param_group_adamw(split, 2, params + 1, &plain), NSC_OK);
    expect_refused(split, file("grouped.safetensors"), NSC_ERR_FORMAT,
                   "group 0 saved with 2 parameters: here it has 1");
    nsc_optim *ams1 = nsc_optim_adamw_new(2, params, &(nsc_adamw_config){ .amsgrad = true });
    cr_assert_eq(nsc_optim_add_param_group_adamw(
                     ams1, 1, params + 2, &(nsc_adamw_config){ .beta1 = 0.5, .amsgrad = true }),
                 NSC_OK);
    expect_refused(ams1, file("grouped.safetensors"), NSC_ERR_FORMAT,
                   "group 1: amsgrad off saved, on here: the state kept differs");
    nsc_optim_free(grouped);
    nsc_optim_free(split);
    nsc_optim_free(ams1);
    write_file(file("shape.safetensors"), 2, 4, "0.01");
    expect_refused(adamw, file("shape.safetensors"), NSC_ERR_FORMAT,
                   "state.0.exp_avg is [4,7] f32: expected a float tensor [5,7] (parameter 0)");
    write_file(file("lr.safetensors"), 2, 5, "fast");
    expect_refused(adamw, file("lr.safetensors"), NSC_ERR_FORMAT,
                   "metadata \"lr\" is \"fast\": expected a number");
    write_file(file("negative.safetensors"), 2, 5, "-1");
    expect_refused(adamw, file("negative.safetensors"), NSC_ERR_FORMAT,
                   "negative.safetensors: group 0: adamw: lr -1");
    expect_refused(adamw, file("missing.safetensors"), NSC_ERR_IO, "missing.safetensors");
    // found by fuzz_optim_state: a count past int64 was converted anyway (UB)
    write_file(file("huge.safetensors"), 1e30, 5, "0.01");
    expect_refused(adamw, file("huge.safetensors"), NSC_ERR_FORMAT,
                   "state.0.step is 1e+30: expected one whole step count in [1, 2^53]");
    // State without its step (torch's SGD writes none) was dropped silently.
    write_file(file("no_step.safetensors"), 0, 5, "0.01");
    expect_refused(adamw, file("no_step.safetensors"), NSC_ERR_FORMAT,
                   "state.0.exp_avg is present but state.0.step is missing");
    write_file(file("half.safetensors"), 2.5, 5, "0.01");
    expect_refused(adamw, file("half.safetensors"), NSC_ERR_FORMAT, "state.0.step is 2.5");
    write_file(file("good.safetensors"), 2, 5, "0.25");
    cr_expect_eq(nsc_optim_load(adamw, file("good.safetensors")), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_optim_get_lr(adamw), 0.25);
    cr_expect_eq(nsc_optim_get_step(adamw, 0), 2);
    cr_expect_eq(nsc_optim_get_step(adamw, 1), 0, "a parameter the file leaves out restarts");
    cr_expect_eq(nsc_optim_save(NULL, file("x")), NSC_ERR_ARG);
    cr_expect_eq(nsc_optim_load(adamw, NULL), NSC_ERR_ARG);
    nsc_clear_error();
    nsc_optim *opts[] = { adamw, sgd, two, no_ams };
    for (int k = 0; k < 4; k++) {
        nsc_optim_free(opts[k]);
    }
    nsct_optim_free_params(params);
}

// Out of memory anywhere in a load: refused with nothing changed or leaked.
Test(optim_state, out_of_memory_while_loading, .init = make_dir, .fini = remove_dir) {
    nsc_tensor *params[N_PARAMS];
    nsct_optim_params(5, NSC_F32, params);
    nsc_optim *a = make_adamw(params, 0.01);
    for (int k = 0; k < 3; k++) {
        nsct_optim_grads(params, k, k >= 2);
        cr_assert_eq(nsc_optim_step(a), NSC_OK);
    }
    cr_assert_eq(nsc_optim_save(a, file("a.safetensors")), NSC_OK);
    bool done = false;
    for (int64_t n = 1; n < 200 && !done; n++) {
        nsc_optim *b = make_adamw(params, 0.3);
        nsct_optim_grads(params, 0, false);
        cr_assert_eq(nsc_optim_step(b), NSC_OK);
        snapshot before = snap(b);
        int64_t blocks = nsct_live_blocks();
        nsc_mem_fail_after(n);
        nsc_status status = nsc_optim_load(b, file("a.safetensors"));
        nsc_mem_fail_after(0);
        done = status == NSC_OK;
        if (!done) {
            snapshot after = snap(b);
            cr_expect_eq(status, NSC_ERR_OOM, "n %lld: %s", (long long)n, nsc_last_error());
            cr_expect(memcmp(&before, &after, sizeof before) == 0, "n %lld: changed", (long long)n);
            cr_expect_eq(nsct_live_blocks(), blocks, "n %lld: leaked", (long long)n);
        }
        nsc_clear_error();
        nsc_optim_free(b);
    }
    cr_expect(done, "never succeeded");
    nsc_optim_free(a);
    nsct_optim_free_params(params);
}
