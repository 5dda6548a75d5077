// Generation traces (issue 7 item 4) on the tiny GPT-2 fixture: call index
// k is step k, the final tokens are a hook point, every-call bodies run at
// each step without unrolling, and a key edit at step 0 is what the cache
// keeps.
#include <criterion/criterion.h>
#include <string.h>

#include "nsc/gpt2.h"
#include "tests/harness.h"

static nsc_module *tiny(void) {
    nsc_module *m = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(m, "%s", nsc_last_error());
    return m;
}

static nsc_tensor *prompt(void) {
    int64_t ids[5] = { 3, 17, 42, 8, 99 };
    return nsc_from_data(NSC_I64, NSC_SHAPE(1, 5), ids);
}

static nsc_generate_options greedy(int64_t n) {
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = n;
    return o;
}

Test(graph_generate, call_index_k_is_step_k) {
    nsc_module *model = tiny();
    nsc_tensor *ids = prompt();
    nsc_generate_options o = greedy(4);
    nsc_tensor *eager = NULL;
    cr_assert_eq(nsc_generate(model, ids, NULL, &o, &eager), NSC_OK, "%s", nsc_last_error());
    nsc_trace *tr = nsc_trace_new_generate(model, &o);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
    nsc_tensor *logits[4], *tokens;
    for (int k = 0; k < 4; k++) {
        logits[k] = nsc_save(nsc_invoke_output(inv, "", k));
        cr_assert(logits[k], "%s", nsc_last_error());
        cr_expect_eq(nsc_tensor_size(logits[k], 1), k == 0 ? 5 : 1, "step %d's length", k);
    }
    tokens = nsc_save(nsc_invoke_output(inv, "generator", 0));
    cr_expect_eq(nsc_tensor_size(tokens, 1), 9);
    cr_expect_null(nsc_invoke_output(inv, "", 4), "only 4 steps run");
    cr_expect(strstr(nsc_last_error(), "unreachable"), "%s", nsc_last_error());
    nsc_trace_free(tr);
    tr = nsc_trace_new_generate(model, &o);
    inv = nsc_trace_invoke(tr, 1, &ids);
    for (int k = 0; k < 4; k++) {
        logits[k] =
            nsc_save(nsc_argmax(nsc_select(nsc_invoke_output(inv, "", k), 1, -1), -1, false));
    }
    tokens = nsc_save(nsc_invoke_output(inv, "generator", 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_trace_generated(tr), *hook_tokens = nsc_trace_get(tr, tokens);
    cr_expect(nsc_allclose(got, eager, 0, 0, false), "the trace generates the same tokens");
    cr_expect(nsc_allclose(hook_tokens, eager, 0, 0, false));
    for (int k = 0; k < 4; k++) {
        nsc_tensor *next = nsc_trace_get(tr, logits[k]);
        cr_expect_eq(nsct_flat(next, 0), nsct_flat(eager, 5 + k), "step %d chose its token", k);
        nsc_free(next);
    }
    nsc_free(got);
    nsc_free(hook_tokens);
    nsc_free(eager);
    nsc_trace_free(tr);
    nsc_free(ids);
    nsc_module_free(model);
}

typedef struct steer {
    nsc_tensor *vector;
} steer;

static nsc_status add_vector(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                             nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m;
    (void)kind;
    (void)call_index;
    (void)n;
    replace[0] = nsc_add(values[0], ((steer *)ctx)->vector);
    return replace[0] ? NSC_OK : nsc_last_status();
}

// Steering at every step: an every-call body equals a permanent module hook.
Test(graph_generate, an_every_call_body_steers_every_step) {
    nsc_module *model = tiny();
    nsc_tensor *ids = prompt();
    nsc_generate_options o = greedy(6);
    nsc_generator *gen = nsc_generator_new(5);
    nsc_tensor *raw = nsc_randn(gen, NSC_F32, NSC_SHAPE(64));
    steer s = { nsc_mul_scalar(raw, 4.0) };
    nsc_module *block = nsc_module_find(model, "transformer.h.0");
    int64_t h = nsc_module_add_hook(block, NSC_HOOK_OUTPUT, add_vector, &s, NULL);
    nsc_tensor *eager = NULL, *plain = NULL;
    cr_assert_eq(nsc_generate(model, ids, NULL, &o, &eager), NSC_OK);
    nsc_module_remove_hook(block, h);
    cr_assert_eq(nsc_generate(model, ids, NULL, &o, &plain), NSC_OK);
    nsc_trace *tr = nsc_trace_new_generate(model, &o);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
    nsc_tensor *every = nsc_invoke_output(inv, "transformer.h.0", NSC_EVERY_CALL);
    cr_assert_eq(
        nsc_invoke_set_output(inv, "transformer.h.0", NSC_EVERY_CALL, nsc_add(every, s.vector)),
        NSC_OK, "%s", nsc_last_error());
    int64_t nodes = nsc_trace_n_nodes(tr);
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_trace_n_nodes(tr), nodes, "no unrolling");
    nsc_tensor *got = nsc_trace_generated(tr);
    cr_expect(nsc_allclose(got, eager, 0, 0, false), "steered like the module hook");
    cr_expect_not(nsc_allclose(got, plain, 0, 0, false), "and unlike no steering");
    nsc_free(got);
    nsc_free(eager);
    nsc_free(plain);
    nsc_free(raw);
    nsc_free(s.vector);
    nsc_generator_free(gen);
    nsc_trace_free(tr);
    nsc_free(ids);
    nsc_module_free(model);
}

// Zeroing layer 0's keys at step 0 changes step 1's logits: the cache keeps
// the edited keys. It equals an eager run editing hook_k at call 0 only.
static nsc_status zero_at_call0(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                                nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m;
    (void)kind;
    (void)n;
    (void)ctx;
    if (call_index == 0) {
        replace[0] = nsc_zeros_like(values[0]);
    }
    return NSC_OK;
}

Test(graph_generate, a_key_edit_at_step_0_is_what_the_cache_keeps) {
    nsc_module *model = tiny();
    nsc_tensor *ids = prompt();
    nsc_generate_options o = greedy(2);
    nsc_tensor *step1[2];
    for (int edit = 0; edit < 2; edit++) {
        nsc_trace *tr = nsc_trace_new_generate(model, &o);
        nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
        if (edit) {
            cr_assert_eq(nsc_zero_(nsc_invoke_output(inv, "transformer.h.0.attn.hook_k", 0)),
                         NSC_OK, "%s", nsc_last_error());
        }
        nsc_tensor *l1 = nsc_save(nsc_invoke_output(inv, "", 1));
        cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
        step1[edit] = nsc_trace_get(tr, l1);
        nsc_trace_free(tr);
    }
    cr_expect_not(nsc_allclose(step1[0], step1[1], 1e-6, 1e-6, false), "step 1 changed");
    nsc_module *hook_k = nsc_module_find(model, "transformer.h.0.attn.hook_k");
    int64_t h = nsc_module_add_hook(hook_k, NSC_HOOK_OUTPUT, zero_at_call0, NULL, NULL);
    nsc_tensor *tokens = NULL, *last = NULL;
    cr_assert_eq(nsc_generate(model, ids, NULL, &o, &tokens), NSC_OK);
    nsc_module_remove_hook(hook_k, h);
    nsc_trace *tr = nsc_trace_new_generate(model, &o);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
    nsc_zero_(nsc_invoke_output(inv, "transformer.h.0.attn.hook_k", 0));
    nsc_tensor *toks = nsc_save(nsc_invoke_output(inv, "generator", 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK);
    last = nsc_trace_get(tr, toks);
    cr_expect(nsc_allclose(last, tokens, 0, 0, false), "the same tokens as the eager edit");
    nsc_free(last);
    nsc_free(tokens);
    nsc_trace_free(tr);
    nsc_free(step1[0]);
    nsc_free(step1[1]);
    nsc_free(ids);
    nsc_module_free(model);
}

// A skip at every call skips the module at every step, with each step's
// output shape (the prompt's [1, 5, 64], then [1, 1, 64]); the tokens are
// those of replacing its output with zeros at every step.
Test(graph_generate, an_every_call_skip_skips_every_step) {
    nsc_module *model = tiny();
    nsc_tensor *ids = prompt();
    nsc_generate_options o = greedy(3);
    nsc_tensor *z = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(64));
    nsc_tensor *tokens[2], *step2 = NULL;
    for (int skip = 0; skip < 2; skip++) {
        nsc_trace *tr = nsc_trace_new_generate(model, &o);
        nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
        nsc_status st = skip ? nsc_invoke_skip(inv, "transformer.h.1.mlp", NSC_EVERY_CALL, z)
                             : nsc_invoke_set_output(inv, "transformer.h.1.mlp", NSC_EVERY_CALL, z);
        cr_assert_eq(st, NSC_OK, "%s", nsc_last_error());
        nsc_tensor *out2 = skip ? nsc_save(nsc_invoke_output(inv, "transformer.h.1.mlp", 2)) : NULL;
        int64_t calls_before =
            nsc_module_call_count(nsc_module_find(model, "transformer.h.1.mlp.c_fc"));
        cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
        (void)calls_before;
        tokens[skip] = nsc_trace_generated(tr);
        if (skip) {
            step2 = nsc_trace_get(tr, out2);
        }
        nsc_trace_free(tr);
    }
    cr_expect(nsc_allclose(tokens[1], tokens[0], 0, 0, false), "the same tokens");
    cr_assert(step2, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_size(step2, 1), 1, "step 2's own shape");
    cr_expect_float_eq(nsct_sum(step2), 0.0, 0);
    nsc_free(step2);
    nsc_free(tokens[0]);
    nsc_free(tokens[1]);
    nsc_free(z);
    nsc_free(ids);
    nsc_module_free(model);
}

// No new token: nsc_generate runs no forward, so a model point is
// unreachable at build time, not silently never computed.
Test(graph_generate, no_new_token_makes_model_points_unreachable) {
    nsc_module *model = tiny();
    nsc_tensor *ids = prompt();
    nsc_generate_options o = greedy(0);
    nsc_trace *tr = nsc_trace_new_generate(model, &o);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
    cr_expect_null(nsc_invoke_output(inv, "transformer.h.0", 0));
    cr_expect(strstr(nsc_last_error(), "unreachable: the module runs 0 time(s)"), "%s",
              nsc_last_error());
    nsc_trace_free(tr);
    nsc_free(ids);
    nsc_module_free(model);
}

// An every-call body's values are counted out as they are replaced at each
// step: what the trace holds after the run is the saved value, however many
// steps ran.
Test(graph_generate, a_body_holds_no_more_after_more_steps) {
    nsc_module *model = tiny();
    nsc_tensor *ids = prompt();
    int64_t held[2];
    for (int i = 0; i < 2; i++) {
        nsc_generate_options o = greedy(i == 0 ? 1 : 6);
        nsc_trace *tr = nsc_trace_new_generate(model, &o);
        nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
        nsc_tensor *h = nsc_invoke_output(inv, "transformer.h.0", NSC_EVERY_CALL);
        nsc_save(nsc_sum_all(nsc_mul_scalar(h, 2.0)));
        cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
        held[i] = nsc_trace_held_bytes(tr);
        nsc_trace_free(tr);
    }
    cr_expect_eq(held[0], 4, "one f32 saved");
    cr_expect_eq(held[1], held[0], "6 steps hold what 1 step holds");
    nsc_free(ids);
    nsc_module_free(model);
}

// Options are checked when the trace is made, as nsc_generate checks them
// (max_new_tokens near INT64_MAX wrapped t + n there), and against the
// prompt's length at the shape scan.
Test(graph_generate, options_are_checked_when_the_trace_is_made) {
    nsc_module *model = tiny(); // n_positions 64, vocabulary 100
    nsc_tensor *ids = prompt();
    int64_t before = nsct_live_blocks();
    int64_t bad_counts[3] = { INT64_MAX, 64, -1 };
    for (int i = 0; i < 3; i++) {
        nsc_generate_options o = greedy(bad_counts[i]);
        nsc_clear_error();
        cr_expect_null(nsc_trace_new_generate(model, &o), "max_new_tokens %lld",
                       (long long)bad_counts[i]);
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
        cr_expect(strstr(nsc_last_error(), "trace_new_generate: max_new_tokens") &&
                      strstr(nsc_last_error(), "expected 0..63"),
                  "%s", nsc_last_error());
    }
    nsc_generate_options o = greedy(2);
    o.stop_token = 100;
    cr_expect_null(nsc_trace_new_generate(model, &o));
    cr_expect(strstr(nsc_last_error(), "stop_token 100: expected -1 or 0..99"), "%s",
              nsc_last_error());
    cr_expect_eq(nsct_live_blocks(), before);
    // 63 new tokens fit some prompt; this one has 5 tokens: refused at the scan.
    o = greedy(63);
    o.use_cache = false;
    nsc_trace *tr = nsc_trace_new_generate(model, &o);
    cr_assert(tr, "%s", nsc_last_error());
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
    cr_expect_null(nsc_invoke_output(inv, "", 0));
    cr_expect(strstr(nsc_last_error(), "generate: 5 prompt tokens + 63 new: expected at most "
                                       "n_positions = 64 in all"),
              "%s", nsc_last_error());
    nsc_trace_free(tr);
    nsc_free(ids);
    nsc_module_free(model);
}
