// Bad input at the API level (issue 12): NULL arguments to every public
// function family (no crash, a clear error, an earlier error kept), misuse
// of traces (unknown paths, unreachable calls, finished traces, a model
// freed by its caller while a trace holds it), module calls that fail, and
// GPT-2 inputs outside the vocabulary or longer than the context.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"
#include "tests/reliability_util.h"
#include "tests/st_util.h"

// expr takes a NULL argument: it must record an error with a message and
// leave no block behind (whatever it returns).
#define NULL_REFUSED(expr)                                                                         \
    do {                                                                                           \
        int64_t before_ = nsct_rel_live_blocks();                                                  \
        nsc_clear_error();                                                                         \
        (void)(expr);                                                                              \
        cr_expect_neq(nsc_last_status(), NSC_OK, "%s: no error recorded", #expr);                  \
        cr_expect(nsc_last_error()[0], "%s: an empty message", #expr);                             \
        cr_expect_eq(nsct_rel_live_blocks(), before_, "%s: leaked", #expr);                        \
    } while (0)

// expr takes a NULL argument where NULL means "none": no crash, no leak.
#define NULL_ACCEPTED(expr)                                                                        \
    do {                                                                                           \
        int64_t before_ = nsct_rel_live_blocks();                                                  \
        (void)(expr);                                                                              \
        cr_expect_eq(nsct_rel_live_blocks(), before_, "%s: leaked", #expr);                        \
    } while (0)

Test(reliability_api, null_tensors_and_ops) {
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *out[2] = { NULL, NULL }, *values = NULL, *indices = NULL;
    int n_out = 0;
    double buf[6];
    NULL_REFUSED(nsc_from_data(NSC_F32, NSC_SHAPE(2), NULL));
    NULL_REFUSED(nsc_zeros_like(NULL));
    NULL_REFUSED(nsc_full_like(NULL, 1.0));
    NULL_ACCEPTED(nsc_retain(NULL));
    NULL_ACCEPTED(nsc_free(NULL));
    NULL_REFUSED(nsc_tensor_ndim(NULL));
    NULL_REFUSED(nsc_tensor_size(NULL, 0));
    NULL_REFUSED(nsc_tensor_shape(NULL));
    NULL_REFUSED(nsc_tensor_strides(NULL));
    NULL_REFUSED(nsc_tensor_numel(NULL));
    NULL_REFUSED(nsc_tensor_dtype(NULL));
    NULL_REFUSED(nsc_tensor_device(NULL));
    NULL_REFUSED(nsc_tensor_is_contiguous(NULL));
    NULL_REFUSED(nsc_tensor_copy_to(NULL, NSC_F64, buf, sizeof buf));
    NULL_REFUSED(nsc_tensor_copy_to(x, NSC_F64, NULL, sizeof buf));
    NULL_REFUSED(nsc_tensor_print(x, NULL));
    NULL_ACCEPTED(nsc_generator_next_u32(NULL));
    NULL_ACCEPTED(nsc_generator_free(NULL));
    cr_expect_eq(nsc_tensor_ndim(NULL), -1);
    cr_expect_null(nsc_tensor_shape(NULL));
    cr_expect_eq(nsc_tensor_dtype(NULL), NSC_N_DTYPES);
    // One or two ops of every header.
    NULL_REFUSED(nsc_add(x, NULL));
    NULL_REFUSED(nsc_neg(NULL));
    NULL_REFUSED(nsc_where(NULL, x, x));
    NULL_REFUSED(nsc_sum(NULL, 0, NULL, false));
    NULL_REFUSED(nsc_softmax(NULL, 0));
    NULL_REFUSED(nsc_layer_norm(NULL, 1, NULL, NULL, 1e-5));
    NULL_REFUSED(nsc_max_dim(x, 0, false, NULL, &indices));
    NULL_REFUSED(nsc_matmul(x, NULL));
    NULL_REFUSED(nsc_linear(NULL, x, NULL));
    NULL_REFUSED(nsc_embedding(x, NULL));
    NULL_REFUSED(nsc_cat(2, ((nsc_tensor *[]){ x, NULL }), 0));
    NULL_REFUSED(nsc_topk(x, 1, 0, true, &values, NULL));
    NULL_REFUSED(nsc_cross_entropy(x, NULL, NSC_REDUCTION_MEAN, -100));
    NULL_REFUSED(nsc_dropout(NULL, 0.5, true, NULL));
    NULL_REFUSED(nsc_attention(x, NULL, x, NULL, 1.0, false));
    NULL_REFUSED(nsc_reshape(NULL, NSC_SHAPE(6)));
    NULL_REFUSED(nsc_reshape(x, 2, NULL));
    NULL_REFUSED(nsc_split(NULL, 1, 0, 2, out, &n_out));
    NULL_REFUSED(nsc_split(x, 1, 0, 2, NULL, &n_out));
    NULL_REFUSED(nsc_copy_(x, NULL));
    NULL_REFUSED(nsc_copy_(NULL, x));
    NULL_REFUSED(nsc_fill_(NULL, 1.0));
    NULL_REFUSED(nsc_to_dtype(NULL, NSC_F64));
    cr_expect(!out[0] && !values && !indices, "nothing written on refusal");
    nsc_free(x);
}

Test(reliability_api, null_autograd_io_and_training) {
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    nsc_sgd_config sgd = { .lr = 0.1 };
    NULL_REFUSED(nsc_requires_grad_(NULL, true));
    NULL_REFUSED(nsc_backward(NULL, NULL, false));
    NULL_REFUSED(nsc_tensor_set_grad(NULL, x));
    NULL_REFUSED(nsc_retain_grad(NULL));
    NULL_REFUSED(nsc_tensor_register_hook(NULL, NULL, NULL, NULL));
    NULL_REFUSED(nsc_tensor_remove_hook(NULL, 1));
    NULL_ACCEPTED(nsc_tensor_get_grad(NULL));
    NULL_REFUSED(nsc_safetensors_open(NULL));
    NULL_REFUSED(nsc_safetensors_open_memory(NULL, 16, NULL));
    NULL_REFUSED(nsc_safetensors_open_header(NULL));
    NULL_REFUSED(nsc_safetensors_load(NULL, "x"));
    NULL_REFUSED(nsc_safetensors_get_info(NULL, "x", NULL));
    NULL_REFUSED(nsc_safetensors_save(NULL, 1, (const char *[]){ "x" }, &x, 0, NULL, NULL));
    NULL_REFUSED(nsc_safetensors_save("/tmp/nsc_rel_null.safetensors", 1, NULL, &x, 0, NULL, NULL));
    NULL_ACCEPTED(nsc_safetensors_free(NULL));
    NULL_REFUSED(nsc_tokenizer_load(NULL));
    NULL_REFUSED(nsc_tokenizer_encode(NULL, "a", 1, NULL, 0));
    NULL_REFUSED(nsc_tokenizer_decode(NULL, NULL, 0, NULL, 0));
    NULL_ACCEPTED(nsc_tokenizer_free(NULL));
    NULL_REFUSED(nsc_optim_sgd_new(1, &x, NULL));
    NULL_REFUSED(nsc_optim_sgd_new_module(NULL, &sgd));
    NULL_REFUSED(nsc_optim_step(NULL));
    NULL_REFUSED(nsc_optim_zero_grad(NULL, true));
    NULL_REFUSED(nsc_clip_grad_norm_(1, NULL, 1.0, NULL));
    NULL_REFUSED(nsc_lr_schedule_at(NULL, 0));
    NULL_ACCEPTED(nsc_optim_free(NULL));
    nsc_free(x);
}

Test(reliability_api, null_modules_models_and_traces) {
    nsc_module *m = nsct_chain_model(1, 4);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1, 4));
    nsc_gpt2_config config = nsc_gpt2_config_default();
    nsc_tensor *tokens = NULL;
    NULL_REFUSED(nsc_module_add_child(NULL, "a", m));
    NULL_REFUSED(nsc_module_add_child(m, NULL, m));
    NULL_REFUSED(nsc_module_add_param(m, "w", NULL));
    NULL_REFUSED(nsc_module_find(m, NULL));
    NULL_REFUSED(nsc_module_call(NULL, 1, &x));
    NULL_REFUSED(nsc_module_forward(NULL, 1, &x));
    NULL_REFUSED(nsc_module_add_hook(m, NSC_HOOK_OUTPUT, NULL, NULL, NULL));
    NULL_REFUSED(nsc_module_remove_hook(NULL, 1));
    NULL_REFUSED(nsc_module_path(NULL));
    NULL_REFUSED(nsc_module_n_params(NULL));
    NULL_REFUSED(nsc_module_param_at(NULL, 0, NULL));
    NULL_REFUSED(nsc_module_train(NULL, false));
    NULL_REFUSED(nsc_module_requires_grad_(NULL, true));
    NULL_REFUSED(nsc_module_reset_calls(NULL));
    NULL_REFUSED(nsc_module_set_slot(NULL, NULL, NULL));
    NULL_ACCEPTED(nsc_module_free(NULL));
    NULL_REFUSED(nsc_module_child(NULL, "h"));
    NULL_REFUSED(nsc_sequential_append(NULL, m));
    NULL_REFUSED(nsc_mlp_new(2, NULL, NSC_ACTIVATION_RELU, NULL));
    NULL_REFUSED(nsc_gpt2_new(NULL, NULL));
    NULL_REFUSED(nsc_gpt2_config_validate(NULL));
    NULL_REFUSED(nsc_gpt2_config_load(NULL, &config));
    NULL_REFUSED(nsc_gpt2_config_load("/tmp/config.json", NULL));
    NULL_REFUSED(nsc_gpt2_load(NULL));
    NULL_REFUSED(nsc_gpt2_load_weights(NULL, "/tmp/x"));
    NULL_REFUSED(nsc_gpt2_save(NULL, "/tmp/x"));
    NULL_REFUSED(nsc_gpt2_get_config(NULL, &config));
    NULL_REFUSED(nsc_gpt2_position_ids(NULL));
    NULL_REFUSED(nsc_kv_cache_new(NULL, 1, 8));
    NULL_REFUSED(nsc_generate(NULL, x, NULL, NULL, &tokens));
    NULL_REFUSED(nsc_trace_new(NULL));
    NULL_REFUSED(nsc_trace_invoke(NULL, 1, &x));
    NULL_REFUSED(nsc_invoke_output(NULL, "h.0", 0));
    NULL_REFUSED(nsc_trace_get(NULL, x));
    NULL_REFUSED(nsc_trace_run(NULL));
    NULL_REFUSED(nsc_trace_apply(NULL, "head", x));
    NULL_REFUSED(nsc_trace_call(NULL, "f", 1, &x));
    NULL_REFUSED(nsc_function_register(NULL, NULL, NULL));
    NULL_ACCEPTED(nsc_trace_free(NULL));
    cr_expect_null(tokens);
    nsc_free(x);
    nsc_module_free(m);
}

// nsc/module.h: a NULL module records NSC_ERR_ARG naming the function, for
// the lookups (which used to leave no error) and the forward (which said
// NSC_ERR_STATE, "has no forward").
#define NULL_MODULE_IS_ARG(expr, fn)                                                               \
    do {                                                                                           \
        nsc_clear_error();                                                                         \
        cr_expect_null(expr, "%s", #expr);                                                         \
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG, "%s: %s", #expr, nsc_last_error());           \
        cr_expect(strstr(nsc_last_error(), fn ": module is NULL"), "%s: %s", #expr,                \
                  nsc_last_error());                                                               \
    } while (0)

Test(reliability_api, a_null_module_is_an_argument_error_naming_the_function) {
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1, 4));
    int64_t before = nsct_rel_live_blocks();
    NULL_MODULE_IS_ARG(nsc_module_find_tensor(NULL, "weight"), "module_find_tensor");
    NULL_MODULE_IS_ARG(nsc_module_find_tensor(NULL, "h.0.weight"), "module_find_tensor");
    NULL_MODULE_IS_ARG(nsc_module_child(NULL, "h"), "module_child");
    NULL_MODULE_IS_ARG(nsc_module_param(NULL, "weight"), "module_param");
    NULL_MODULE_IS_ARG(nsc_module_buffer(NULL, "mean"), "module_buffer");
    NULL_MODULE_IS_ARG(nsc_module_forward(NULL, 1, &x), "module_forward");
    nsc_clear_error();
    cr_expect_eq(nsc_module_param_count(NULL), 0);
    cr_expect(strstr(nsc_last_error(), "module_param_count: module is NULL"), "%s",
              nsc_last_error());
    // A NULL name is refused too; an absent one is no error.
    nsc_module *m = nsct_chain_model(1, 4);
    nsc_clear_error();
    cr_expect_null(nsc_module_param(m, NULL));
    cr_expect(strstr(nsc_last_error(), "module_param: name is NULL"), "%s", nsc_last_error());
    nsc_clear_error();
    cr_expect_null(nsc_module_find_tensor(m, NULL));
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    nsc_clear_error();
    cr_expect_null(nsc_module_child(m, "absent"));
    cr_expect_eq(nsc_last_status(), NSC_OK, "%s", nsc_last_error());
    // An earlier error stays (module.h): the lookup does not overwrite it.
    nsci_fail(NSC_ERR_SHAPE, "first failure");
    cr_expect_null(nsc_module_child(NULL, "h"));
    cr_expect_str_eq(nsc_last_error(), "first failure");
    nsc_clear_error();
    nsc_module_free(m);
    cr_expect_eq(nsct_rel_live_blocks(), before);
    nsc_free(x);
}

// A NULL produced by a failed call carries that call's error to the end of
// a chain: the next calls do not overwrite it (ops, modules, traces).
Test(reliability_api, null_flows_on_with_the_first_error) {
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *v = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(4));
    nsc_tensor *r = nsc_mul_scalar(nsc_softmax(nsc_add(x, v), -1), 2.0);
    cr_expect_null(r);
    cr_expect(strstr(nsc_last_error(), "add: [2,3], [4]"), "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_ndim(r), -1);
    cr_expect(strstr(nsc_last_error(), "add: [2,3], [4]"), "accessors keep it: %s",
              nsc_last_error());
    nsc_module *m = nsct_chain_model(1, 4);
    nsc_mem_fail_after(1);
    nsc_trace *tr = nsc_trace_new(m);
    nsc_mem_fail_after(0);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h = nsc_save(nsc_invoke_output(inv, "h.0", 0));
    cr_expect(!tr && !inv && !h);
    cr_expect_eq(nsc_last_status(), NSC_ERR_OOM, "%s", nsc_last_error());
    cr_expect_eq(nsc_trace_run(tr), NSC_ERR_OOM, "%s", nsc_last_error());
    nsc_clear_error();
    nsc_free(x);
    nsc_free(v);
    nsc_module_free(m);
}

// expr is given NULL from a failed call: it keeps that call's error, and
// with none recorded it records NSC_ERR_ARG.
#define KEEPS_THE_FIRST_ERROR(expr)                                                                \
    do {                                                                                           \
        int64_t before_ = nsct_rel_live_blocks();                                                  \
        nsci_fail(NSC_ERR_SHAPE, "first failure");                                                 \
        (void)(expr);                                                                              \
        cr_expect_eq(nsc_last_status(), NSC_ERR_SHAPE, "%s: %s", #expr, nsc_last_error());         \
        cr_expect_str_eq(nsc_last_error(), "first failure", "%s", #expr);                          \
        nsc_clear_error();                                                                         \
        (void)(expr);                                                                              \
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG, "%s alone: %s", #expr, nsc_last_error());     \
        cr_expect_eq(nsct_rel_live_blocks(), before_, "%s: leaked", #expr);                        \
        nsc_clear_error();                                                                         \
    } while (0)

// Trace and session building calls given a NULL trace, invoke, session,
// iterator, model or proxy (docs/RELIABILITY.md, "NULL"); they overwrote
// the first error.
Test(reliability_api, trace_and_session_building_keep_the_first_error) {
    nsc_module *m = nsct_chain_model(1, 4);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1, 4));
    nsc_generate_options o = nsc_generate_options_default();
    nsc_trace *no_tr = NULL;
    KEEPS_THE_FIRST_ERROR(nsc_trace_new(NULL));
    KEEPS_THE_FIRST_ERROR(nsc_trace_new_generate(NULL, &o));
    KEEPS_THE_FIRST_ERROR(nsc_trace_apply(no_tr, "head", x));
    KEEPS_THE_FIRST_ERROR(nsc_trace_call(no_tr, "f", 1, &x));
    KEEPS_THE_FIRST_ERROR(nsc_trace_stop(no_tr, "head", 0));
    KEEPS_THE_FIRST_ERROR(nsc_trace_check(no_tr));
    KEEPS_THE_FIRST_ERROR(nsc_trace_cache(no_tr, NULL, "*", false));
    KEEPS_THE_FIRST_ERROR(nsc_trace_to_text(no_tr, NULL));
    nsc_trace *tr = nsc_trace_new(m);
    KEEPS_THE_FIRST_ERROR(nsc_trace_cache(tr, NULL, "*", false));
    nsc_trace_free(tr);
    nsc_session *s = nsc_session_new();
    KEEPS_THE_FIRST_ERROR(nsc_update(NULL, NULL));
    KEEPS_THE_FIRST_ERROR(nsc_iterator_trace(NULL, m));
    KEEPS_THE_FIRST_ERROR(nsc_iterator_exit(NULL));
    KEEPS_THE_FIRST_ERROR(nsc_session_trace(NULL, m));
    KEEPS_THE_FIRST_ERROR(nsc_session_value(NULL, x));
    KEEPS_THE_FIRST_ERROR(nsc_session_iterate(NULL, 1, &x));
    KEEPS_THE_FIRST_ERROR(nsc_session_run(NULL));
    KEEPS_THE_FIRST_ERROR(nsc_session_get(s, NULL));
    nsc_session_free(s);
    // A whole session built from a failed nsc_session_new reports it.
    nsc_mem_fail_after(1);
    s = nsc_session_new();
    nsc_mem_fail_after(0);
    nsc_tensor *acc = nsc_session_value(s, x);
    nsc_iterator *it = nsc_session_iterate(s, 1, &x);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *body = nsc_iterator_trace(it, m);
    nsc_invoke *inv = nsc_trace_invoke(body, 1, &item);
    nsc_update(acc, nsc_add(acc, nsc_invoke_output(inv, "", 0)));
    nsc_iterator_exit(body);
    cr_expect_eq(nsc_session_run(s), NSC_ERR_OOM, "%s", nsc_last_error());
    cr_expect_null(nsc_session_get(s, acc));
    cr_expect(strstr(nsc_last_error(), "out of memory"), "%s", nsc_last_error());
    nsc_clear_error();
    nsc_free(x);
    nsc_module_free(m);
}

// --- traces ---

static nsc_tensor *chain_input(void) {
    nsc_tensor *a = nsc_linspace(-1, 1, 8, NSC_F32);
    nsc_tensor *x = nsc_reshape(a, NSC_SHAPE(2, 4));
    nsc_free(a);
    return x;
}

// The trace retains its model: the caller may drop its own reference first.
Test(reliability_api, a_model_freed_by_its_caller_while_a_trace_holds_it) {
    int64_t start = nsct_rel_live_blocks();
    nsc_module *model = nsct_chain_model(2, 4);
    nsc_tensor *x = chain_input();
    nsc_tensor *want = nsc_module_call(model, 1, &x);
    nsc_module_reset_calls(model);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_module_free(model); // the caller's reference; the trace keeps its own
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *out = nsc_save(nsc_invoke_output(inv, "", 0));
    nsc_free(x); // the invoke retains its inputs too
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_trace_get(tr, out);
    nsc_trace_free(tr); // frees the model
    cr_expect(nsct_st_equal(got, want), "the run used the model the caller dropped");
    nsc_free(got);
    nsc_free(want);
    cr_expect_eq(nsct_rel_live_blocks(), start, "model, inputs and trace are all freed");
}

Test(reliability_api, trace_misuse) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsct_warm_paths(model);
    nsc_tensor *x = chain_input();
    nsc_trace *tr = nsc_trace_new(model), *other = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x), *inv2 = nsc_trace_invoke(other, 1, &x);
    nsc_tensor *theirs = nsc_save(nsc_invoke_output(inv2, "h.0", 0));
    nsc_tensor *mine = nsc_invoke_output(inv, "h.0", 0);
    cr_assert(mine && theirs, "%s", nsc_last_error());
    nsc_clear_error();
    cr_expect_null(nsc_trace_get(tr, x), "a real tensor is not a node");
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG, "%s", nsc_last_error());
    cr_expect_null(nsc_trace_get(tr, theirs), "a proxy of another trace");
    cr_expect_neq(nsc_last_status(), NSC_OK);
    cr_expect_null(nsc_trace_get(tr, nsc_save(mine)), "not run yet");
    cr_expect(strstr(nsc_last_error(), "the trace has not run"), "%s", nsc_last_error());
    cr_expect_null(nsc_tensor_data(mine), "a proxy has no data");
    cr_expect_eq(nsc_last_status(), NSC_ERR_DEVICE, "%s", nsc_last_error());
    cr_expect(isnan(nsc_tensor_item(nsc_select(nsc_select(mine, 0, 0), 0, 0))));
    cr_expect_neq(nsc_backward(mine, NULL, false), NSC_OK, "no backward through a proxy");
    cr_expect_null(nsc_invoke_input(inv, "h.1", 5, 0), "a module with one input");
    cr_expect_neq(nsc_last_status(), NSC_OK);
    nsc_trace_free(tr);
    nsc_trace_free(other);
    nsc_free(x);
    nsc_module_free(model);
}

Test(reliability_api, trace_build_refusals_leave_the_model_usable) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsct_warm_paths(model);
    nsc_tensor *x = chain_input();
    nsc_tensor *want = nsc_module_call(model, 1, &x);
    struct {
        const char *path;
        int64_t call_index;
        const char *text;
    } bad[] = {
        { "h.9", 0, "h has no child \"9\"" },
        { "h..0", 0, "module path \"h..0\": empty segment" },
        { "head.weight", 0, "head has no child \"weight\"" },
        { "h.1", 1, "call index 1 is unreachable" },
        { "h.1", -2, "" },
    };
    for (int i = 0; i < NSCI_ARRAY_LEN(bad); i++) {
        int64_t before = nsct_rel_live_blocks();
        nsc_trace *tr = nsc_trace_new(model);
        nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
        cr_expect_null(nsc_invoke_output(inv, bad[i].path, bad[i].call_index), "%s", bad[i].path);
        cr_expect_neq(nsc_last_status(), NSC_OK);
        cr_expect(strstr(nsc_last_error(), bad[i].text), "%s: %s", bad[i].path, nsc_last_error());
        cr_expect_neq(nsc_trace_run(tr), NSC_OK, "%s: the trace refuses to run", bad[i].path);
        nsc_trace_free(tr);
        cr_expect_eq(nsct_rel_live_blocks(), before, "%s: leaked", bad[i].path);
    }
    nsc_module_reset_calls(model);
    nsc_tensor *again = nsc_module_call(model, 1, &x);
    cr_expect(nsct_st_equal(again, want), "the model runs as before");
    for (int64_t i = 0; i < nsc_module_n_modules(model); i++) {
        cr_expect_eq(nsc_module_at(model, i)->n_hooks, 0, "no hook left behind");
    }
    nsc_free(again);
    nsc_free(want);
    nsc_free(x);
    nsc_module_free(model);
}

// --- module calls that fail ---

static nsc_status failing_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                               nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)values, (void)replace, (void)ctx;
    return nsci_fail(NSC_ERR_STATE, "probe hook: refusing");
}

Test(reliability_api, a_failing_hook_or_forward_frees_everything) {
    nsc_module *model = nsct_chain_model(3, 4);
    nsct_warm_paths(model);
    nsc_tensor *x = chain_input();
    nsc_tensor *want = nsc_module_call(model, 1, &x);
    nsc_module *h1 = nsc_module_find(model, "h.1");
    int64_t handle = nsc_module_add_hook(h1, NSC_HOOK_OUTPUT, failing_hook, NULL, NULL);
    int64_t before = nsct_rel_live_blocks();
    cr_expect_null(nsc_module_call(model, 1, &x));
    cr_expect_eq(nsc_last_status(), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "probe hook: refusing"), "%s", nsc_last_error());
    cr_expect_eq(nsct_rel_live_blocks(), before, "the intermediates are freed");
    nsc_module_remove_hook(h1, handle);
    nsc_module *bare = nsc_module_new("Bare", NULL, NULL, NULL);
    nsc_tensor *wide = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 5));
    before = nsct_rel_live_blocks();
    cr_expect_null(nsc_module_call(bare, 1, &x));
    cr_expect(strstr(nsc_last_error(), "has no forward"), "%s", nsc_last_error());
    nsc_tensor *nine[9] = { x, x, x, x, x, x, x, x, x };
    cr_expect_null(nsc_module_call(model, 9, nine));
    cr_expect(strstr(nsc_last_error(), "9 inputs (at most 8)"), "%s", nsc_last_error());
    cr_expect_null(nsc_module_call(model, 1, &wide));
    cr_expect_eq(nsc_last_status(), NSC_ERR_SHAPE, "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "[2,5]"), "%s", nsc_last_error());
    cr_expect_eq(nsct_rel_live_blocks(), before, "refused calls leave nothing");
    nsc_tensor *again = nsc_module_call(model, 1, &x);
    cr_expect(nsct_st_equal(again, want), "the model runs as before");
    nsc_tensor *all[] = { x, want, wide, again };
    for (int i = 0; i < 4; i++) {
        nsc_free(all[i]);
    }
    nsc_module_free(bare);
    nsc_module_free(model);
}

// A count of inputs with a NULL array is refused before anything runs, with
// a trace open (its proxy check reads the array first) or not.
Test(reliability_api, a_null_input_array_is_refused) {
    nsc_module *model = nsct_chain_model(3, 4);
    nsct_warm_paths(model);
    for (int traced = 0; traced < 2; traced++) {
        nsc_trace *tr = traced ? nsc_trace_new(model) : NULL;
        int64_t calls = nsc_module_call_count(model);
        int64_t before = nsct_rel_live_blocks();
        cr_expect_null(nsc_module_call(model, 1, NULL));
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
        cr_expect(strstr(nsc_last_error(), "module call Chain: 1 inputs and a NULL input array: "
                                           "expected an array of 1 tensors"),
                  "%s", nsc_last_error());
        cr_expect_null(nsc_module_forward(model, 2, NULL));
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
        cr_expect(strstr(nsc_last_error(), "module forward Chain: 2 inputs and a NULL input array"),
                  "%s", nsc_last_error());
        cr_expect_eq(nsc_module_call_count(model), calls, "a refused call is not counted");
        cr_expect_eq(nsct_rel_live_blocks(), before, "refused calls leave nothing");
        nsc_trace_free(tr);
    }
    nsc_module_free(model);
}

// --- GPT-2: token ids outside the vocabulary, sequences beyond the context ---

static nsc_module *tiny_gpt2(void) {
    nsc_gpt2_config c = nsc_gpt2_config_default();
    c.vocab_size = 40, c.n_positions = 8, c.n_embd = 8, c.n_layer = 1, c.n_head = 2;
    nsc_generator *gen = nsc_generator_new(9);
    nsc_module *m = nsc_gpt2_new(&c, gen);
    nsc_generator_free(gen);
    cr_assert(m, "%s", nsc_last_error());
    nsct_warm_paths(m);
    return m;
}

Test(reliability_api, gpt2_ids_outside_the_vocabulary_in_a_trace) {
    nsc_module *model = tiny_gpt2();
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, 5));
    nsc_tensor *want = nsc_module_call(model, 1, &ids);
    nsc_tensor *bad = nsc_clone(ids);
    ((int64_t *)nsc_tensor_data(bad))[3] = 40;
    int64_t before = nsct_rel_live_blocks();
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &bad);
    nsc_tensor *h = nsc_save(nsc_invoke_output(inv, "transformer.h.0", 0));
    cr_assert(h, "the build cannot see values: %s", nsc_last_error());
    cr_expect_eq(nsc_trace_run(tr), NSC_ERR_ARG, "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "40") && strstr(nsc_last_error(), "transformer.wte"), "%s",
              nsc_last_error());
    cr_expect_null(nsc_trace_get(tr, h), "never computed");
    nsc_trace_free(tr);
    cr_expect_eq(nsct_rel_live_blocks(), before, "the failed run left nothing");
    nsc_module_reset_calls(model);
    nsc_tensor *again = nsc_module_call(model, 1, &ids);
    cr_expect(nsct_st_equal(again, want), "the model runs as before");
    nsc_tensor *all[] = { ids, want, bad, again };
    for (int i = 0; i < 4; i++) {
        nsc_free(all[i]);
    }
    nsc_module_free(model);
}

Test(reliability_api, gpt2_sequences_longer_than_the_context) {
    nsc_module *model = tiny_gpt2();
    nsc_tensor *long_ids = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, 9));
    nsc_tensor *prompt = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, 6));
    int64_t before = nsct_rel_live_blocks();
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &long_ids);
    cr_expect_null(nsc_invoke_output(inv, "lm_head", 0), "the META scan refuses it");
    cr_expect(strstr(nsc_last_error(), "n_positions = 8"), "%s", nsc_last_error());
    cr_expect_neq(nsc_trace_run(tr), NSC_OK);
    nsc_trace_free(tr);
    cr_expect_eq(nsct_rel_live_blocks(), before);
    // Generation past the context: a prompt of 6 and 5 new tokens.
    nsc_generate_options opt = nsc_generate_options_default();
    opt.max_new_tokens = 5;
    nsc_tensor *tokens = NULL;
    nsc_status s = nsc_generate(model, prompt, NULL, &opt, &tokens);
    cr_expect_neq(s, NSC_OK, "11 tokens do not fit 8 positions");
    cr_expect(strstr(nsc_last_error(), "8"), "%s", nsc_last_error());
    cr_expect_null(tokens);
    cr_expect_eq(nsct_rel_live_blocks(), before);
    nsc_free(prompt);
    nsc_free(long_ids);
    nsc_module_free(model);
}
