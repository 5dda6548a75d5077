// Optimizers, clipping and schedules: SGD and AdamW against torch.optim step
// by step (tests/fixtures/optim.bin, made by make_optim_fixture.py), on
// contiguous and non-contiguous parameters, with a skipped gradient; per-
// parameter state and step counts; zero_grad; clip_grad_norm_; the warmup +
// cosine schedule against LambdaLR; every error class; memory (state freed,
// out-of-memory sweeps); thread-count independence; and the MLP example's
// training, shortened, reaching its accuracy.
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/expect.h"
#include "tests/harness.h"
#include "tests/optim_util.h"

// --- tolerances ---

// f32 steps against torch: each element goes through ~8 roundings per step,
// and torch's AVX2 kernels fuse multiply-adds (one rounding fewer each), so
// results drift by an ulp or two per step: after 5 steps the largest
// difference seen is 2.4e-7 on values near 2 (2 ulp). 1e-6 leaves 4x room.
#define TOL_OPTIM_F32 ((nsct_tol){ 1e-6, 1e-6, "f32 steps: rounding and torch's FMAs" })
// f64 runs the same formula: 2 ulp (2.2e-16) seen; FMAs and rounding order only.
#define TOL_OPTIM_F64 ((nsct_tol){ 1e-14, 1e-13, "f64 steps: rounding order" })
// LambdaLR computes base_lr * (lr(s) / base_lr): two roundings.
#define TOL_LR ((nsct_tol){ 0, 1e-15, "lr: LambdaLR's multiply and divide" })
// torch.norm accumulates f32 in f32 (vectorized cascade); nsc in f64: 2e-8 seen.
#define TOL_NORM ((nsct_tol){ 0, 1e-6, "norm: f32 vs f64 accumulation" })

enum {
    N_PARAMS = 3,
    N_STEPS = 5
};

static nsct_fixtures *fixtures(void) {
    static nsct_fixtures *fx;
    if (!fx) {
        fx = nsct_fixtures_load(nsct_fixture_path("optim.bin"));
        cr_assert(fx, "tests/fixtures/optim.bin missing: run make_optim_fixture.py");
    }
    return fx;
}

static nsc_tensor *fixture(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static nsc_tensor *fixture(const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return nsct_fixture_get(fixtures(), name);
}

static void expect_status(nsc_status got, nsc_status want, const char *text) {
    cr_expect_eq(got, want, "\"%s\": got %s (%s)", text, nsc_status_name(got), nsc_last_error());
    cr_expect(strstr(nsc_last_error(), text), "message \"%s\" lacks \"%s\"", nsc_last_error(),
              text);
    nsc_clear_error();
}

// A new leaf requiring grad holding src's values in dtype. transposed: the
// leaf is a non-contiguous view (the transpose of a contiguous [n, m] tensor).
static nsc_tensor *leaf(nsc_tensor *src, nsc_dtype dtype, bool transposed) {
    nsc_tensor *cast = nsc_to_dtype(src, dtype);
    nsc_tensor *t = NULL;
    if (transposed) {
        nsc_tensor *cast_t = nsc_transpose(cast, 0, 1);
        nsc_tensor *store = nsc_contiguous(cast_t);
        t = nsc_transpose(store, 0, 1);
        nsc_free(cast_t);
        nsc_free(store);
        cr_assert(t && !nsc_tensor_is_contiguous(t));
    } else {
        t = nsc_clone(cast);
    }
    nsc_free(cast);
    cr_assert(t && nsc_requires_grad_(t, true) == NSC_OK, "%s", nsc_last_error());
    return t;
}

// The fixture's starting parameters; parameter 2 ([3, 2]) is a transposed view.
static void make_params(nsc_dtype dtype, nsc_tensor **params) {
    for (int i = 0; i < N_PARAMS; i++) {
        nsc_tensor *init = fixture("init.p%d", i);
        params[i] = leaf(init, dtype, i == 2);
        nsc_free(init);
    }
}

// Gives each parameter the fixture's gradient for step k (a copy: steps and
// clipping write into .grad), or none where the fixture has none.
static void set_grads(nsc_tensor **params, int k, nsc_dtype dtype) {
    for (int i = 0; i < N_PARAMS; i++) {
        nsc_tensor *g = fixture("grad.s%d.p%d", k, i);
        nsc_tensor *cast = g ? nsc_to_dtype(g, dtype) : NULL;
        nsc_tensor *own = cast ? nsc_clone(cast) : NULL;
        cr_assert_eq(nsc_tensor_set_grad(params[i], own), NSC_OK);
        nsc_free(g);
        nsc_free(cast);
        nsc_free(own);
    }
}

static void free_params(nsc_tensor **params, int n) {
    for (int i = 0; i < n; i++) {
        nsc_free(params[i]);
    }
}

// --- against torch.optim ---

typedef struct optim_case {
    const char *name;
    nsc_dtype dtype;
    bool adamw;
    nsc_sgd_config sgd;
    nsc_adamw_config adamw_config;
    const nsc_lr_schedule *schedule; // drives lr before each step when set
    int64_t group0;                  // > 0: params [group0, N_PARAMS) form group 1 with
    nsc_sgd_config sgd1;             // these hyper-parameters
    nsc_adamw_config adamw1;
} optim_case;

static void run_case(const optim_case *c) {
    nsct_tol tol = c->dtype == NSC_F32 ? TOL_OPTIM_F32 : TOL_OPTIM_F64;
    nsc_tensor *params[N_PARAMS];
    make_params(c->dtype, params);
    int64_t n0 = c->group0 > 0 ? c->group0 : N_PARAMS;
    nsc_optim *opt = c->adamw ? nsc_optim_adamw_new(n0, params, &c->adamw_config)
                              : nsc_optim_sgd_new(n0, params, &c->sgd);
    if (c->group0 > 0) {
        cr_assert(opt, "%s: %s", c->name, nsc_last_error());
        nsc_status added =
            c->adamw ? nsc_optim_add_param_group_adamw(opt, N_PARAMS - c->group0,
                                                       params + c->group0, &c->adamw1)
                     : nsc_optim_add_param_group_sgd(opt, N_PARAMS - c->group0, params + c->group0,
                                                     &c->sgd1);
        cr_assert_eq(added, NSC_OK, "%s: %s", c->name, nsc_last_error());
        cr_assert_eq(nsc_optim_n_groups(opt), 2);
        cr_assert_eq(nsc_optim_group_of(opt, N_PARAMS - 1), 1);
    }
    cr_assert(opt, "%s: %s", c->name, nsc_last_error());
    nsc_tensor *lrs = fixture("%s.lr", c->name);
    cr_assert(lrs, "%s: no fixture", c->name);
    const double *want_lr = nsc_tensor_data(lrs);
    for (int k = 0; k < N_STEPS; k++) {
        if (c->schedule) {
            cr_assert_eq(nsc_lr_schedule_apply(c->schedule, k, opt), NSC_OK);
        }
        double lr = nsc_optim_get_lr(opt);
        cr_expect(fabs(lr - want_lr[k]) <= TOL_LR.rtol * want_lr[k], "%s step %d: lr %.17g, %.17g",
                  c->name, k, lr, want_lr[k]);
        set_grads(params, k, c->dtype);
        cr_assert_eq(nsc_optim_step(opt), NSC_OK, "%s", nsc_last_error());
        for (int i = 0; i < N_PARAMS; i++) {
            char what[96];
            snprintf(what, sizeof what, "%s step %d parameter %d", c->name, k, i);
            nsc_tensor *want = fixture("%s.s%d.p%d", c->name, k, i);
            nsct_expect_close(params[i], want, tol, what);
            nsc_free(want);
        }
    }
    // Parameter 1 had no gradient at step 2: it stepped 4 times, the others 5.
    cr_expect_eq(nsc_optim_get_step(opt, 0), 5);
    cr_expect_eq(nsc_optim_get_step(opt, 1), 4);
    nsc_free(lrs);
    nsc_optim_free(opt);
    free_params(params, N_PARAMS);
}

static const nsc_sgd_config SGD_MOMENTUM = {
    .lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01
};
static const nsc_adamw_config ADAMW = {
    .lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1
};

Test(optim, sgd_matches_torch) {
    run_case(&(optim_case){ "sgd", NSC_F32, false, .sgd = { .lr = 0.1 } });
    run_case(&(optim_case){ "sgd_momentum", NSC_F32, false, .sgd = SGD_MOMENTUM });
    run_case(&(optim_case){ "sgd_f64", NSC_F64, false, .sgd = SGD_MOMENTUM });
    run_case(&(optim_case){
        "sgd_nesterov", NSC_F32, false,
        .sgd = { .lr = 0.05, .momentum = 0.8, .nesterov = true, .weight_decay = 0.05 } });
}

Test(optim, adamw_matches_torch) {
    run_case(&(optim_case){ "adamw", NSC_F32, true, .adamw_config = ADAMW });
    run_case(&(optim_case){ "adamw_f64", NSC_F64, true, .adamw_config = ADAMW });
    run_case(&(optim_case){ "adamw_amsgrad", NSC_F32, true,
                            .adamw_config = { .lr = 0.02,
                                              .beta1 = 0.8,
                                              .beta2 = 0.95,
                                              .eps = 1e-6,
                                              .weight_decay = 0.05,
                                              .amsgrad = true } });
}

// Group 0: parameters 0 and 1 with the optimizer's config; group 1:
// parameter 2 with its own (torch's param_groups, make_optim_fixture.py).
Test(optim, parameter_groups_match_torch) {
    run_case(&(optim_case){ "adamw_groups", NSC_F32, true, .adamw_config = ADAMW, .group0 = 2,
                            .adamw1 = { .lr = 0.02, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6 } });
    run_case(&(optim_case){ "sgd_groups", NSC_F32, false, .sgd = SGD_MOMENTUM, .group0 = 1,
                            .sgd1 = { .lr = 0.1 } });
}

Test(optim, a_schedule_drives_adamw_as_lambda_lr) {
    static const nsc_lr_schedule sched = {
        .max_lr = 0.01, .min_lr = 0.001, .warmup_steps = 2, .total_steps = 4
    };
    nsc_adamw_config config = nsc_adamw_defaults();
    config.lr = 0.01;
    run_case(&(optim_case){ "sched", NSC_F32, true, .adamw_config = config, .schedule = &sched });
}

Test(optim, state_is_per_parameter_and_named_as_torch) {
    nsc_tensor *params[N_PARAMS];
    make_params(NSC_F32, params);
    nsc_adamw_config config = ADAMW;
    config.amsgrad = true;
    nsc_optim *opt = nsc_optim_adamw_new(N_PARAMS, params, &config);
    cr_assert(opt);
    cr_expect_str_eq(nsc_optim_name(opt), "adamw");
    cr_expect_eq(nsc_optim_n_params(opt), N_PARAMS);
    cr_expect_eq(nsc_optim_param_at(opt, 2), params[2]);
    cr_expect_null(nsc_optim_param_at(opt, 3));
    cr_expect_null(nsc_optim_get_state(opt, 0, "exp_avg"), "no state before the first step");
    set_grads(params, 2, NSC_F32); // parameter 1 has no gradient at step 2
    cr_assert_eq(nsc_optim_step(opt), NSC_OK);
    const char *names[] = { "exp_avg", "exp_avg_sq", "max_exp_avg_sq" };
    for (int s = 0; s < 3; s++) {
        nsc_tensor *st = nsc_optim_get_state(opt, 2, names[s]);
        cr_expect(st && nsc_tensor_is_contiguous(st) && !nsc_tensor_requires_grad(st));
        cr_expect(st && nsc_tensor_size(st, 0) == 3 && nsc_tensor_size(st, 1) == 2);
        cr_expect_null(nsc_optim_get_state(opt, 1, names[s]), "parameter 1 never stepped");
    }
    cr_expect_null(nsc_optim_get_state(opt, 0, "momentum_buffer"));
    cr_expect_eq(nsc_optim_get_step(opt, 1), 0);
    cr_expect_eq(nsc_optim_get_step(opt, 9), -1);
    nsc_optim_free(opt);
    free_params(params, N_PARAMS);
}

Test(optim, sgd_without_momentum_keeps_no_state) {
    nsc_tensor *params[N_PARAMS];
    make_params(NSC_F32, params);
    nsc_optim *opt = nsc_optim_sgd_new(N_PARAMS, params, &(nsc_sgd_config){ .lr = 0.1 });
    set_grads(params, 0, NSC_F32);
    int64_t blocks = nsct_live_blocks();
    cr_assert_eq(nsc_optim_step(opt), NSC_OK);
    cr_expect_eq(nsct_live_blocks(), blocks, "a plain SGD step allocates nothing");
    cr_expect_null(nsc_optim_get_state(opt, 0, "momentum_buffer"));
    nsc_optim_free(opt);
    free_params(params, N_PARAMS);
}

// --- zero_grad, in-place semantics ---

Test(optim, zero_grad_sets_to_none_or_zeroes_in_place) {
    nsc_tensor *params[N_PARAMS];
    make_params(NSC_F32, params);
    nsc_optim *opt = nsc_optim_sgd_new(N_PARAMS, params, &(nsc_sgd_config){ .lr = 0.1 });
    set_grads(params, 2, NSC_F32);
    nsc_tensor *g0 = nsc_tensor_get_grad(params[0]);
    cr_assert_eq(nsc_optim_zero_grad(opt, false), NSC_OK);
    cr_expect_eq(nsc_tensor_get_grad(params[0]), g0, "the same tensor, zeroed");
    nsc_tensor *zero = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(4, 5));
    nsct_expect_close(g0, zero, TOL_EXACT, "zeroed grad");
    cr_expect_null(nsc_tensor_get_grad(params[1]), "a missing grad stays missing");
    cr_assert_eq(nsc_optim_zero_grad(opt, true), NSC_OK);
    for (int i = 0; i < N_PARAMS; i++) {
        cr_expect_null(nsc_tensor_get_grad(params[i]));
    }
    cr_expect_eq(nsc_optim_zero_grad(NULL, true), NSC_ERR_ARG);
    nsc_clear_error();
    nsc_free(zero);
    nsc_optim_free(opt);
    free_params(params, N_PARAMS);
}

Test(optim, a_step_is_an_in_place_write_that_stales_saved_tensors) {
    nsc_tensor *p = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    cr_assert_eq(nsc_requires_grad_(p, true), NSC_OK);
    nsc_tensor *sq = nsc_mul(p, p); // saves p
    nsc_tensor *y = nsc_sum_all(sq);
    nsc_tensor *g = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor_set_grad(p, g);
    nsc_optim *opt = nsc_optim_sgd_new(1, &p, &(nsc_sgd_config){ .lr = 0.5 });
    cr_assert_eq(nsc_optim_step(opt), NSC_OK);
    cr_expect_float_eq(((float *)nsc_tensor_data(p))[0], 0.5f, 0);
    cr_expect_eq(nsc_backward(y, NULL, false), NSC_ERR_STATE,
                 "backward through a value the step overwrote must fail: %s", nsc_last_error());
    nsc_clear_error();
    nsc_optim_free(opt);
    nsc_free(y);
    nsc_free(sq);
    nsc_free(g);
    nsc_free(p);
}

// --- module trees ---

static nsc_tensor *no_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)m;
    (void)n_in;
    (void)state;
    return nsc_retain(in[0]);
}

Test(optim, module_trees_give_each_parameter_once_with_its_path) {
    nsc_module *root = nsc_module_new("Root", no_forward, NULL, NULL);
    nsc_module *a = nsc_module_new("A", no_forward, NULL, NULL);
    nsc_module *b = nsc_module_new("B", no_forward, NULL, NULL);
    nsc_tensor *shared = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 2));
    nsc_tensor *own = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    cr_assert_eq(nsc_module_add_param(a, "weight", shared), NSC_OK);
    cr_assert_eq(nsc_module_add_param(b, "weight", shared), NSC_OK); // tied
    cr_assert_eq(nsc_module_add_param(b, "bias", own), NSC_OK);
    cr_assert_eq(nsc_module_add_child(root, "a", a), NSC_OK);
    cr_assert_eq(nsc_module_add_child(root, "b", b), NSC_OK);
    int64_t blocks = nsct_live_blocks();
    nsc_adamw_config config = nsc_adamw_defaults();
    cr_expect_null(nsc_optim_adamw_new_module(root, &config));
    expect_status(nsc_last_status(), NSC_ERR_STATE,
                  "parameter 0 (a.weight [2,2] f32) does not "
                  "require grad");
    cr_expect_eq(nsct_live_blocks(), blocks);
    cr_assert_eq(nsc_module_requires_grad_(root, true), NSC_OK);
    blocks = nsct_live_blocks(); // requires_grad_ gave the tensors autograd state
    nsc_optim *opt = nsc_optim_adamw_new_module(root, &config);
    cr_assert(opt, "%s", nsc_last_error());
    cr_expect_eq(nsc_optim_n_params(opt), 2, "the tied weight once");
    cr_expect_eq(nsc_optim_param_at(opt, 0), shared);
    cr_expect_eq(nsc_optim_param_at(opt, 1), own);
    nsc_optim *sgd = nsc_optim_sgd_new_module(root, &(nsc_sgd_config){ .lr = 1 });
    cr_expect(sgd && nsc_optim_n_params(sgd) == 2);
    nsc_optim_free(sgd);
    nsc_optim_free(opt);
    cr_expect_eq(nsct_live_blocks(), blocks, "optimizers released everything");
    nsc_module_free(a);
    nsc_module_free(b);
    nsc_module_free(root);
    nsc_free(shared);
    nsc_free(own);
}

// --- clip_grad_norm_ ---

// Parameters with the fixture's step-0 gradients times 3 (as the fixture
// script): parameter 1 has none, parameter 2's is a transposed view.
static void clip_case(const char *name, double max_norm) {
    nsc_tensor *params[N_PARAMS];
    make_params(NSC_F32, params);
    for (int i = 0; i < N_PARAMS; i += 2) {
        nsc_tensor *g = fixture("grad.s0.p%d", i);
        nsc_tensor *g3 = nsc_mul_scalar(g, 3.0);
        nsc_tensor *grad = i == 2 ? leaf(g3, NSC_F32, true) : nsc_clone(g3);
        if (i == 2) {
            nsc_tensor *plain = nsc_detach(grad); // a grad must not require grad itself
            nsc_free(grad);
            grad = plain;
        }
        cr_assert_eq(nsc_tensor_set_grad(params[i], grad), NSC_OK);
        nsc_free(g);
        nsc_free(g3);
        nsc_free(grad);
    }
    double norm = 0;
    cr_assert_eq(nsc_clip_grad_norm_(N_PARAMS, params, max_norm, &norm), NSC_OK, "%s",
                 nsc_last_error());
    nsc_tensor *want_norm = fixture("clip.%s.norm", name);
    double want = ((double *)nsc_tensor_data(want_norm))[0];
    cr_expect(fabs(norm - want) <= TOL_NORM.rtol * want, "%s: norm %.9g, torch %.9g", name, norm,
              want);
    for (int i = 0; i < N_PARAMS; i += 2) {
        nsc_tensor *g = fixture("clip.%s.g%d", name, i);
        nsct_expect_close(nsc_tensor_get_grad(params[i]), g, TOL_F32, name);
        nsc_free(g);
    }
    cr_expect_null(nsc_tensor_get_grad(params[1]));
    nsc_free(want_norm);
    free_params(params, N_PARAMS);
}

Test(optim, clip_grad_norm_matches_torch) {
    clip_case("above", 1.0);
    clip_case("below", 1000.0);
}

Test(optim, clip_grad_norm_of_nothing_and_of_infinity) {
    nsc_tensor *p = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(4));
    cr_assert_eq(nsc_requires_grad_(p, true), NSC_OK);
    double norm = -1;
    cr_expect_eq(nsc_clip_grad_norm_(1, &p, 1.0, &norm), NSC_OK, "no grad: norm 0");
    cr_expect_eq(norm, 0.0);
    cr_expect_eq(nsc_clip_grad_norm_(0, &p, 1.0, &norm), NSC_OK);
    nsc_tensor *g = nsc_from_data(NSC_F32, NSC_SHAPE(4), (float[]){ 1, INFINITY, 2, 3 });
    nsc_tensor_set_grad(p, g);
    cr_expect_eq(nsc_clip_grad_norm_(1, &p, 1.0, &norm), NSC_OK);
    cr_expect(isinf(norm));
    float *v = nsc_tensor_data(g);
    cr_expect(v[0] == 0 && isnan(v[1]), "scaled by 1 / inf as torch: %g %g", (double)v[0],
              (double)v[1]);
    nsc_free(g);
    nsc_free(p);
}

// --- schedule ---

Test(optim, schedule_matches_lambda_lr) {
    static const struct {
        const char *name;
        nsc_lr_schedule s;
    } cases[] = {
        { "gpt", { 6e-4, 6e-5, 10, 50 } },
        { "no_warmup", { 1.0, 0.0, 0, 20 } },
        { "flat_end", { 0.1, 0.1, 3, 3 } },
    };
    for (int c = 0; c < NSCI_ARRAY_LEN(cases); c++) {
        nsc_tensor *want = fixture("schedule.%s", cases[c].name);
        cr_assert(want);
        const double *w = nsc_tensor_data(want);
        for (int64_t k = 0; k < nsc_tensor_numel(want); k++) {
            double lr = nsc_lr_schedule_at(&cases[c].s, k);
            cr_expect(fabs(lr - w[k]) <= TOL_LR.rtol * w[k], "%s step %lld: %.17g vs %.17g",
                      cases[c].name, (long long)k, lr, w[k]);
        }
        nsc_free(want);
    }
    nsc_lr_schedule s = { 1.0, 0.1, 4, 10 };
    cr_expect_eq(nsc_lr_schedule_at(&s, 0), 0.25, "warmup starts at max_lr / warmup_steps");
    cr_expect_eq(nsc_lr_schedule_at(&s, 3), 1.0, "and reaches max_lr at its last step");
    cr_expect_eq(nsc_lr_schedule_at(&s, 10), 0.1);
    cr_expect_eq(nsc_lr_schedule_at(&s, 1000), 0.1);
}

// --- errors ---

Test(optim_errors, constructors_refuse_bad_parameter_lists) {
    nsc_tensor *p = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *plain = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    nsc_tensor *ints = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2));
    nsc_tensor *meta = nsc_zeros(NSC_F32, NSC_META, NSC_SHAPE(2));
    nsc_tensor *row = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1, 3));
    cr_assert_eq(nsc_requires_grad_(p, true), NSC_OK);
    nsc_tensor *wide = nsc_expand(row, NSC_SHAPE(4, 3));
    cr_assert_eq(nsc_requires_grad_(wide, true), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *derived = nsc_mul_scalar(p, 2.0);
    nsc_adamw_config ok = nsc_adamw_defaults();
    int64_t blocks = nsct_live_blocks();
    cr_expect_null(nsc_optim_adamw_new(0, &p, &ok));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "adamw: 0 parameters: expected a non-empty list");
    cr_expect_null(nsc_optim_adamw_new(2, NULL, &ok));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "(NULL list)");
    cr_expect_null(nsc_optim_adamw_new(2, (nsc_tensor *[]){ p, NULL }, &ok));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "adamw: parameter 1 is NULL");
    cr_expect_null(
        nsc_optim_sgd_new(2, (nsc_tensor *[]){ p, plain }, &(nsc_sgd_config){ .lr = 0.1 }));
    expect_status(nsc_last_status(), NSC_ERR_STATE,
                  "sgd: parameter 1 ([2] f32) does not require grad: expected a leaf that "
                  "requires grad");
    cr_expect_null(nsc_optim_adamw_new(1, &derived, &ok));
    expect_status(nsc_last_status(), NSC_ERR_STATE, "parameter 0 ([2,3] f32) is not a leaf");
    cr_expect_null(nsc_optim_adamw_new(1, &ints, &ok));
    expect_status(nsc_last_status(), NSC_ERR_DTYPE, "parameter 0 ([2] i64): expected f32 or f64");
    cr_expect_null(nsc_optim_adamw_new(1, &meta, &ok));
    expect_status(nsc_last_status(), NSC_ERR_DEVICE,
                  "on meta: expected a tensor with data (cpu or cuda)");
    cr_expect_null(nsc_optim_adamw_new(2, (nsc_tensor *[]){ p, p }, &ok));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "is the same tensor as parameter 0");
    cr_expect_null(nsc_optim_adamw_new(1, &wide, &ok));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "has overlapping elements (stride 0)");
    cr_expect_null(nsc_optim_adamw_new_module(NULL, &ok));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "module is NULL");
    cr_expect_eq(nsct_live_blocks(), blocks, "failed constructors leak nothing");
    cr_expect(nsc_tensor_requires_grad(p) && !nsc_tensor_requires_grad(plain));
    nsc_tensor *all[] = { p, plain, ints, meta, row, wide, derived };
    free_params(all, NSCI_ARRAY_LEN(all));
}

Test(optim_errors, constructors_refuse_bad_hyper_parameters) {
    nsc_tensor *p = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    cr_assert_eq(nsc_requires_grad_(p, true), NSC_OK);
    int64_t blocks = nsct_live_blocks();
    nsc_adamw_config c = nsc_adamw_defaults();
    c.lr = -1;
    cr_expect_null(nsc_optim_adamw_new(1, &p, &c));
    expect_status(nsc_last_status(), NSC_ERR_ARG,
                  "adamw: lr -1, eps 1e-08, weight_decay 0.01: "
                  "expected all three >= 0");
    c = nsc_adamw_defaults();
    c.beta2 = 1.0;
    cr_expect_null(nsc_optim_adamw_new(1, &p, &c));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "betas (0.9, 1): expected each in [0, 1)");
    c.beta2 = NAN;
    cr_expect_null(nsc_optim_adamw_new(1, &p, &c));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "expected each in [0, 1)");
    cr_expect_null(nsc_optim_adamw_new(1, &p, NULL));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "config is NULL");
    cr_expect_null(nsc_optim_sgd_new(1, &p, &(nsc_sgd_config){ .lr = 0.1, .nesterov = true }));
    expect_status(nsc_last_status(), NSC_ERR_ARG,
                  "nesterov momentum requires momentum > 0 and zero dampening");
    cr_expect_null(nsc_optim_sgd_new(
        1, &p, &(nsc_sgd_config){ .lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = 1 }));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "sgd: nesterov with momentum 0.9 and dampening");
    cr_expect_null(nsc_optim_sgd_new(1, &p, &(nsc_sgd_config){ .lr = 0.1, .momentum = -1 }));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "momentum -1");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_free(p);
}

Test(optim_errors, a_bad_gradient_fails_the_step_before_any_change) {
    nsc_tensor *params[N_PARAMS];
    make_params(NSC_F32, params);
    nsc_optim *opt = nsc_optim_adamw_new(N_PARAMS, params, &ADAMW);
    set_grads(params, 0, NSC_F32);
    nsc_tensor *wrong = nsc_ones(NSC_F64, NSC_CPU, NSC_SHAPE(3, 2));
    expect_status(nsc_tensor_set_grad(params[2], wrong), NSC_ERR_DTYPE,
                  "set_grad: gradient f64 on cpu for a tensor f32 on cpu");
    nsct_force_grad(params[2], wrong);
    nsc_tensor *before[N_PARAMS];
    for (int i = 0; i < N_PARAMS; i++) {
        before[i] = nsc_clone(params[i]);
    }
    int64_t blocks = nsct_live_blocks();
    expect_status(nsc_optim_step(opt), NSC_ERR_DTYPE,
                  "adamw step: gradient [3,2] f64 on cpu: expected the shape, dtype and device of "
                  "parameter 2 ([3,2] f32)");
    cr_expect_eq(nsct_live_blocks(), blocks, "no state was allocated");
    for (int i = 0; i < N_PARAMS; i++) {
        nsct_expect_close(params[i], before[i], TOL_EXACT, "parameter after a failed step");
        cr_expect_eq(nsc_optim_get_step(opt, i), 0);
        cr_expect_null(nsc_optim_get_state(opt, i, "exp_avg"));
    }
    expect_status(nsc_optim_step(NULL), NSC_ERR_ARG, "optimizer is NULL");
    expect_status(nsc_optim_set_lr(opt, -0.5), NSC_ERR_ARG, "lr -0.5: expected lr >= 0");
    cr_expect_eq(nsc_optim_get_lr(opt), ADAMW.lr, "lr unchanged");
    nsc_free(wrong);
    free_params(before, N_PARAMS);
    nsc_optim_free(opt);
    free_params(params, N_PARAMS);
}

Test(optim_errors, clip_and_schedule_arguments) {
    nsc_tensor *p = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    double norm = 7;
    expect_status(nsc_clip_grad_norm_(1, NULL, 1.0, &norm), NSC_ERR_ARG, "(NULL list)");
    expect_status(nsc_clip_grad_norm_(1, &p, -1.0, &norm), NSC_ERR_ARG,
                  "max_norm -1: expected a list and max_norm >= 0");
    expect_status(nsc_clip_grad_norm_(2, (nsc_tensor *[]){ p, NULL }, 1.0, &norm), NSC_ERR_ARG,
                  "clip_grad_norm: parameter 1 is NULL");
    cr_expect_eq(norm, 7, "nothing written on failure");
    expect_status(nsc_optim_clip_grad_norm(NULL, 1.0, NULL), NSC_ERR_ARG, "optimizer is NULL");
    nsc_lr_schedule bad[] = {
        { 0.1, 0.2, 0, 10 },  // min above max
        { 0.1, 0.0, 11, 10 }, // warmup past the end
        { 0.1, -1, 0, 10 },
    };
    for (int i = 0; i < NSCI_ARRAY_LEN(bad); i++) {
        cr_expect(isnan(nsc_lr_schedule_at(&bad[i], 0)));
        expect_status(nsc_last_status(), NSC_ERR_ARG, "expected 0 <= min_lr <= max_lr");
    }
    nsc_lr_schedule good = { 0.1, 0.0, 0, 10 };
    cr_expect(isnan(nsc_lr_schedule_at(&good, -1)));
    expect_status(nsc_last_status(), NSC_ERR_ARG, "step -1 of max_lr 0.1");
    expect_status(nsc_lr_schedule_apply(&good, 0, NULL), NSC_ERR_ARG, "NULL optimizer");
    nsc_free(p);
}

// --- memory ---

Test(optim, free_releases_state_and_parameter_references) {
    nsc_tensor *params[N_PARAMS];
    make_params(NSC_F32, params);
    int64_t blocks = nsct_live_blocks();
    nsc_adamw_config config = ADAMW;
    config.amsgrad = true;
    nsc_optim *opt = nsc_optim_adamw_new(N_PARAMS, params, &config);
    set_grads(params, 0, NSC_F32);
    int64_t with_grads = nsct_live_blocks();
    cr_assert_eq(nsc_optim_step(opt), NSC_OK);
    cr_expect_gt(nsct_live_blocks(), with_grads, "state allocated on the first step");
    cr_assert_eq(nsc_optim_zero_grad(opt, true), NSC_OK);
    nsc_optim_free(opt);
    nsc_optim_free(NULL);
    cr_expect_eq(nsct_live_blocks(), blocks);
    free_params(params, N_PARAMS);
}

Test(optim, out_of_memory_sweep) {
    for (int amsgrad = 0; amsgrad < 2; amsgrad++) {
        bool done = false;
        for (int64_t n = 1; n < 200 && !done; n++) {
            nsc_tensor *params[N_PARAMS];
            make_params(NSC_F32, params);
            set_grads(params, 0, NSC_F32);
            nsc_tensor *p0 = nsc_clone(params[0]);
            nsc_adamw_config config = ADAMW;
            config.amsgrad = amsgrad;
            int64_t blocks = nsct_live_blocks();
            nsc_mem_fail_after(n);
            nsc_optim *opt = nsc_optim_adamw_new(N_PARAMS, params, &config);
            nsc_status status = opt ? nsc_optim_step(opt) : nsc_last_status();
            nsc_mem_fail_after(0);
            done = status == NSC_OK;
            if (!done) {
                cr_expect_eq(status, NSC_ERR_OOM, "n %lld: %s", (long long)n, nsc_last_error());
                cr_expect_eq(nsc_optim_get_step(opt, 0), opt ? 0 : -1);
                cr_expect_null(nsc_optim_get_state(opt, 0, "exp_avg"));
                nsct_expect_close(params[0], p0, TOL_EXACT, "parameter after a failed step");
            }
            nsc_optim_free(opt);
            if (!done) {
                cr_expect_eq(nsct_live_blocks(), blocks, "n %lld leaked", (long long)n);
            }
            nsc_clear_error();
            nsc_free(p0);
            free_params(params, N_PARAMS);
        }
        cr_expect(done, "never succeeded");
    }
}

// --- threads and layouts ---

// One AdamW step on a [rows, cols] parameter with deterministic values, laid
// out contiguous (the vector path) or transposed (the strided path).
static nsc_tensor *adamw_step_big(bool transposed, int threads) {
    nsc_set_num_threads(threads);
    nsc_generator *gen = nsc_generator_new(5);
    nsc_tensor *init = nsc_randn(gen, NSC_F32, NSC_SHAPE(997, 301));
    nsc_tensor *grad = nsc_randn(gen, NSC_F32, NSC_SHAPE(997, 301));
    nsc_tensor *p = leaf(init, NSC_F32, transposed);
    nsc_tensor_set_grad(p, grad);
    nsc_optim *opt = nsc_optim_adamw_new(1, &p, &ADAMW);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(nsc_optim_step(opt), NSC_OK);
    }
    nsc_tensor *out = nsc_clone(p);
    nsc_optim_free(opt);
    nsc_free(p);
    nsc_free(grad);
    nsc_free(init);
    nsc_generator_free(gen);
    return out;
}

Test(optim, steps_do_not_depend_on_threads_or_layout) {
    nsc_tensor *two = adamw_step_big(false, 2);
    nsc_tensor *strided = adamw_step_big(true, 2);
    nsc_tensor *one = adamw_step_big(false, 1);
    nsct_expect_close(one, two, TOL_EXACT, "1 vs 2 threads");
    nsct_expect_close(strided, two, TOL_EXACT, "strided vs vector path");
    nsc_free(one);
    nsc_free(two);
    nsc_free(strided);
}

Test(optim, clip_norm_does_not_depend_on_threads) {
    double norms[2];
    for (int t = 0; t < 2; t++) {
        nsc_set_num_threads(2 - t);
        nsc_generator *gen = nsc_generator_new(6);
        nsc_tensor *p = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1000, 1001));
        nsc_tensor *g = nsc_randn(gen, NSC_F32, NSC_SHAPE(1000, 1001));
        nsc_requires_grad_(p, true);
        nsc_tensor_set_grad(p, g);
        cr_assert_eq(nsc_clip_grad_norm_(1, &p, 1e9, &norms[t]), NSC_OK);
        nsc_free(p);
        nsc_free(g);
        nsc_generator_free(gen);
    }
    cr_expect_eq(norms[0], norms[1], "%.17g vs %.17g", norms[0], norms[1]);
    cr_expect(fabs(norms[0] - 1000.5) < 5, "sqrt(n) for unit normals: %g", norms[0]);
}

// --- the MLP example, shortened (examples/train_mlp.c; the same data, model
// and loop through the library, fewer steps) ---

enum {
    SPIRAL_HIDDEN = 64,
    SPIRAL_STEPS = 300,
    SPIRAL_BATCH = 128
};

static double uniform01(nsc_generator *gen) {
    return nsc_generator_next_u32(gen) / 4294967296.0;
}

static void spirals(uint64_t seed, int per_class, nsc_tensor **x, nsc_tensor **y) {
    int64_t n = 3 * (int64_t)per_class;
    float *xy = calloc(2 * (size_t)n, sizeof *xy);
    int64_t *cls = calloc((size_t)n, sizeof *cls);
    nsc_generator *gen = nsc_generator_new(seed);
    for (int64_t i = 0; i < n; i++) {
        double r = uniform01(gen), u = 1.0 - uniform01(gen), v = uniform01(gen);
        double angle =
            4.0 * ((double)(i / per_class) + r) + 0.2 * sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
        xy[2 * i] = (float)(r * sin(angle));
        xy[2 * i + 1] = (float)(r * cos(angle));
        cls[i] = i / per_class;
    }
    *x = nsc_from_data(NSC_F32, NSC_SHAPE(n, 2), xy);
    *y = nsc_from_data(NSC_I64, NSC_SHAPE(n), cls);
    nsc_generator_free(gen);
    free(xy);
    free(cls);
}

// bound * (2 * U[0, 1) - 1): torch.nn.Linear's init with bound 1 / sqrt(fan_in).
static nsc_tensor *uniform_init(nsc_generator *gen, double bound, int ndim, const int64_t *shape) {
    nsc_tensor *u = nsc_rand(gen, NSC_F32, ndim, shape);
    nsc_tensor *centered = nsc_sub_scalar(u, 0.5);
    nsc_tensor *w = nsc_mul_scalar(centered, 2 * bound);
    nsc_free(u);
    nsc_free(centered);
    cr_assert(w && nsc_requires_grad_(w, true) == NSC_OK);
    return w;
}

// The model's parameters as a flat list: w1, b1, w2, b2, w3, b3.
static void mlp_params(nsc_tensor **w) {
    int64_t sizes[4] = { 2, SPIRAL_HIDDEN, SPIRAL_HIDDEN, 3 };
    nsc_generator *gen = nsc_generator_new(42);
    for (int l = 0; l < 3; l++) {
        double bound = 1.0 / sqrt((double)sizes[l]);
        w[2 * l] = uniform_init(gen, bound, NSC_SHAPE(sizes[l + 1], sizes[l]));
        w[2 * l + 1] = uniform_init(gen, bound, NSC_SHAPE(sizes[l + 1]));
    }
    nsc_generator_free(gen);
}

static nsc_tensor *mlp(nsc_tensor **w, nsc_tensor *x) {
    nsc_tensor *z1 = nsc_linear(x, w[0], w[1]);
    nsc_tensor *h1 = nsc_relu(z1);
    nsc_tensor *z2 = nsc_linear(h1, w[2], w[3]);
    nsc_tensor *h2 = nsc_relu(z2);
    nsc_tensor *out = nsc_linear(h2, w[4], w[5]);
    nsc_tensor *tmp[] = { z1, h1, z2, h2 };
    free_params(tmp, NSCI_ARRAY_LEN(tmp));
    return out;
}

static double mlp_accuracy(nsc_tensor **w, nsc_tensor *x, nsc_tensor *y) {
    nsc_no_grad_begin();
    nsc_tensor *logits = mlp(w, x);
    nsc_tensor *pred = nsc_argmax(logits, 1, false);
    nsc_tensor *hit = nsc_eq(pred, y);
    nsc_tensor *hits = nsc_sum_all(hit);
    double acc = nsc_tensor_item(hits) / (double)nsc_tensor_numel(y);
    nsc_tensor *tmp[] = { logits, pred, hit, hits };
    free_params(tmp, NSCI_ARRAY_LEN(tmp));
    nsc_no_grad_end();
    return acc;
}

Test(optim_training, mlp_learns_spirals_to_95_percent, .timeout = 120) {
    nsc_tensor *x, *y, *tx, *ty, *w[6];
    spirals(1, 1000, &x, &y);
    spirals(2, 300, &tx, &ty);
    mlp_params(w);
    nsc_adamw_config config = nsc_adamw_defaults();
    config.weight_decay = 1e-4;
    nsc_optim *opt = nsc_optim_adamw_new(6, w, &config);
    nsc_lr_schedule schedule = { 1e-2, 1e-4, SPIRAL_STEPS / 20, SPIRAL_STEPS };
    nsc_generator *batches = nsc_generator_new(3);
    double first_loss = 0, last_loss = 0;
    for (int64_t step = 0; step < SPIRAL_STEPS; step++) {
        cr_assert_eq(nsc_lr_schedule_apply(&schedule, step, opt), NSC_OK);
        nsc_tensor *idx = nsc_randint(batches, 0, 3000, NSC_SHAPE(SPIRAL_BATCH));
        nsc_tensor *xb = nsc_index_select(x, 0, idx), *yb = nsc_index_select(y, 0, idx);
        nsc_tensor *logits = mlp(w, xb);
        nsc_tensor *loss = nsc_cross_entropy(logits, yb, NSC_REDUCTION_MEAN, -100);
        cr_assert(loss, "%s", nsc_last_error());
        cr_assert_eq(nsc_optim_zero_grad(opt, true), NSC_OK);
        cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
        cr_assert_eq(nsc_optim_step(opt), NSC_OK);
        last_loss = nsc_tensor_item(loss);
        first_loss = step == 0 ? last_loss : first_loss;
        nsc_tensor *tmp[] = { idx, xb, yb, logits, loss };
        free_params(tmp, NSCI_ARRAY_LEN(tmp));
    }
    double train_acc = mlp_accuracy(w, x, y), test_acc = mlp_accuracy(w, tx, ty);
    cr_expect(first_loss > 1.0 && last_loss < 0.2, "loss %g -> %g", first_loss, last_loss);
    cr_expect_geq(train_acc, 0.95, "train accuracy %g", train_acc);
    cr_expect_geq(test_acc, 0.95, "held-out accuracy %g", test_acc);
    nsc_generator_free(batches);
    nsc_optim_free(opt);
    nsc_tensor *all[] = { x, y, tx, ty, w[0], w[1], w[2], w[3], w[4], w[5] };
    free_params(all, NSCI_ARRAY_LEN(all));
}
