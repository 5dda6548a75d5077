// The optional NaN/Inf check (nsc/check.h, issue 12): which module it names,
// where the value sits, that it is per thread and off by default, that it
// sees values an intervention wrote, and that it leaves nothing behind.
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"
#include "tests/reliability_util.h"

// A module computing log(x) (NaN for negative inputs), for a model whose
// middle layer produces a NaN from finite inputs.
static nsc_tensor *log_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)m, (void)n_in, (void)state;
    return nsc_log(in[0]);
}

// root (Sequential): 0 = Linear 4->4, 1 = Log, 2 = Linear 4->2.
static nsc_module *log_model(void) {
    nsc_generator *gen = nsc_generator_new(3);
    nsc_module *seq = nsc_sequential_new();
    nsc_module *parts[] = { nsc_linear_new(4, 4, true, gen),
                            nsc_module_new("Log", log_forward, NULL, NULL),
                            nsc_linear_new(4, 2, true, gen) };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(nsc_sequential_append(seq, parts[i]), NSC_OK, "%s", nsc_last_error());
        nsc_module_free(parts[i]);
    }
    nsc_generator_free(gen);
    nsct_warm_paths(seq);
    return seq;
}

Test(reliability_check, off_by_default_and_per_thread) {
    cr_expect_not(nsc_check_finite_enabled());
    cr_expect_not(nsc_set_check_finite(true));
    cr_expect(nsc_check_finite_enabled());
    cr_expect(nsc_set_check_finite(false));
    cr_expect_not(nsc_check_finite_enabled());
}

Test(reliability_check, names_the_module_that_produced_the_value) {
    nsc_module *model = log_model();
    nsc_tensor *x = nsc_linspace(-2, 2, 12, NSC_F32);
    nsc_tensor *x3 = nsc_reshape(x, NSC_SHAPE(3, 4));
    nsc_tensor *plain = nsc_module_call(model, 1, &x3);
    cr_assert(plain, "off: the NaN flows on silently: %s", nsc_last_error());
    int64_t before = nsct_rel_live_blocks();
    nsc_set_check_finite(true);
    nsc_module_reset_calls(model);
    nsc_tensor *out = nsc_module_call(model, 1, &x3);
    nsc_set_check_finite(false);
    cr_expect_null(out);
    cr_expect_eq(nsc_last_status(), NSC_ERR_STATE);
    const char *phrases[] = { "check_finite: output of 1 (Log, call 0) holds nan at [",
                              "values are not finite", "its inputs were finite" };
    for (int i = 0; i < 3; i++) {
        cr_expect(strstr(nsc_last_error(), phrases[i]), "\"%s\" lacks \"%s\"", nsc_last_error(),
                  phrases[i]);
    }
    cr_expect_eq(nsct_rel_live_blocks(), before, "the failed forward freed everything");
    nsc_free(out);
    nsc_free(plain);
    nsc_free(x);
    nsc_free(x3);
    nsc_module_free(model);
}

Test(reliability_check, a_non_finite_input_is_told_apart) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsct_warm_paths(model);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
    ((float *)nsc_tensor_data(x))[5] = NAN; // row 1
    nsc_set_check_finite(true);
    nsc_tensor *out = nsc_module_call(model, 1, &x);
    nsc_set_check_finite(false);
    cr_expect_null(out);
    cr_expect(strstr(nsc_last_error(), "output of h.0 (Block, call 0)"), "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "its input 0 already held non-finite values"), "%s",
              nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "holds nan at [1,0] (4 of 8 values"),
              "the row of the NaN: %s", nsc_last_error());
    nsc_free(x);
    nsc_module_free(model);
}

static nsc_status nan_input_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                                 nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)ctx;
    replace[0] = nsc_mul_scalar(values[0], NAN);
    return NSC_OK;
}

// The inputs told about are those the forward received: an input hook's
// NaN was reported as "its inputs were finite" (the caller's were).
Test(reliability_check, an_input_hook_s_value_is_the_input) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsct_warm_paths(model);
    nsc_module *h0 = nsc_module_find(model, "h.0");
    cr_assert(nsc_module_add_hook(h0, NSC_HOOK_INPUT, nan_input_hook, NULL, NULL) > 0);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
    int64_t before = nsct_rel_live_blocks();
    nsc_set_check_finite(true);
    nsc_tensor *out = nsc_module_call(model, 1, &x);
    nsc_set_check_finite(false);
    cr_expect_null(out);
    cr_expect(strstr(nsc_last_error(), "output of h.0 (Block, call 0)"), "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "its input 0 already held non-finite values"), "%s",
              nsc_last_error());
    cr_expect_eq(nsct_rel_live_blocks(), before, "the hook's input is freed");
    nsc_free(x);
    nsc_module_free(model);
}

Test(reliability_check, finite_runs_are_unchanged) {
    nsc_module *model = nsct_chain_model(3, 8);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 8));
    nsc_tensor *want = nsc_module_call(model, 1, &x);
    nsc_set_check_finite(true);
    nsc_tensor *got = nsc_module_call(model, 1, &x);
    nsc_set_check_finite(false);
    cr_expect(nsc_allclose(got, want, 0, 0, false), "the check changes nothing when all is finite");
    nsc_free(got);
    nsc_free(want);
    nsc_free(x);
    nsc_module_free(model);
}

// A value written by an intervention is checked where it enters the model.
Test(reliability_check, sees_values_an_intervention_wrote) {
    nsc_module *model = nsct_chain_model(3, 4);
    nsct_warm_paths(model);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
    nsc_tensor *nan_row = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(4), NAN);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    cr_assert_eq(nsc_invoke_set_output(inv, "h.1", 0, nan_row), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *out = nsc_save(nsc_invoke_output(inv, "", 0));
    nsc_set_check_finite(true);
    nsc_status s = nsc_trace_run(tr);
    nsc_set_check_finite(false);
    cr_expect_eq(s, NSC_ERR_STATE, "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "output of h.1 (Block, call 0) holds nan at [0,0]"), "%s",
              nsc_last_error());
    cr_expect_null(nsc_trace_get(tr, out));
    nsc_trace_free(tr);
    nsc_free(nan_row);
    nsc_free(x);
    nsc_module_free(model);
}

Test(reliability_check, one_tensor) {
    nsc_tensor *t = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(2, 3));
    cr_expect_eq(nsc_check_finite(t, "t"), NSC_OK);
    nsc_tensor *col = nsc_select(t, 1, 2); // strided: [2] with stride 3
    ((double *)nsc_tensor_data(t))[5] = -INFINITY;
    cr_expect_eq(nsc_check_finite(col, "column 2"), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "check_finite: column 2 holds -inf at [1] (1 of 2 values"),
              "%s", nsc_last_error());
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor *meta = nsc_zeros(NSC_F32, NSC_META, NSC_SHAPE(3));
    cr_expect_eq(nsc_check_finite(ids, NULL), NSC_OK, "integers are always finite");
    cr_expect_eq(nsc_check_finite(meta, NULL), NSC_OK, "META has no values");
    nsc_clear_error();
    cr_expect_eq(nsc_check_finite(NULL, NULL), NSC_ERR_ARG);
    nsc_free(t);
    nsc_free(col);
    nsc_free(ids);
    nsc_free(meta);
}

static void *check_on_other_thread(void *p) {
    *(bool *)p = nsc_check_finite_enabled();
    return NULL;
}

Test(reliability_check, the_switch_belongs_to_its_thread) {
    nsc_set_check_finite(true);
    bool seen = true;
    pthread_t t;
    pthread_create(&t, NULL, check_on_other_thread, &seen);
    pthread_join(t, NULL);
    nsc_set_check_finite(false);
    cr_expect_not(seen, "another thread starts with the check off");
}
