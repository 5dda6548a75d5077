// A trace leaves the model as it found it (RELIABILITY.md): its shape scan
// and its ApplyModule nodes neither read nor extend a KV cache the user
// attached, shift no call index, move no random generator, and a scan that
// fails changes nothing. An applied module's calls are not the model's own:
// no hook point fires on them.
#include <criterion/criterion.h>
#include <string.h>

#include "tests/harness.h"

static nsc_module *tiny(void) {
    nsc_module *m = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(m, "%s", nsc_last_error());
    return m;
}

// ids [1, n]: start, start + 7, ... (within the tiny vocabulary).
static nsc_tensor *ids(int64_t n, int64_t start) {
    nsc_tensor *t = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, n));
    int64_t *d = nsc_tensor_data(t);
    for (int64_t i = 0; i < n; i++) {
        d[i] = (start + 7 * i) % 60;
    }
    return t;
}

static bool same(nsc_tensor *a, nsc_tensor *b) {
    return a && b && nsc_allclose(a, b, 0, 0, false);
}

// The logits of `next` after `prompt` through a fresh cache.
static nsc_tensor *cached_logits(nsc_module *m, nsc_tensor *prompt, nsc_tensor *next) {
    nsc_kv_cache *c = nsc_kv_cache_new(m, 1, 0);
    cr_assert_eq(nsc_gpt2_set_cache(m, c), NSC_OK);
    nsc_free(nsc_module_call(m, 1, &prompt));
    nsc_tensor *out = nsc_module_call(m, 1, &next);
    nsc_gpt2_set_cache(m, NULL);
    nsc_kv_cache_free(c);
    return out;
}

Test(graph_model_state, a_scan_leaves_the_users_cache_and_the_run_extends_it) {
    nsc_module *m = tiny();
    nsc_tensor *prompt = ids(5, 3), *next = ids(1, 11), *after = ids(1, 20);
    nsc_tensor *want_next = cached_logits(m, prompt, next);
    nsc_kv_cache *c = nsc_kv_cache_new(m, 1, 0);
    cr_assert_eq(nsc_gpt2_set_cache(m, c), NSC_OK);
    nsc_free(nsc_module_call(m, 1, &prompt));
    // Checked only: the scan ran GPT-2 on META with the cache attached, which
    // advanced its length and swapped its buffers for META ones.
    nsc_trace *checked = nsc_trace_new(m);
    nsc_trace_invoke(checked, 1, &next);
    cr_assert_eq(nsc_trace_check(checked), NSC_OK, "%s", nsc_last_error());
    nsc_trace_free(checked);
    cr_expect_eq(nsc_kv_cache_length(c), 5);
    // Run: the trace is model(next) with the past, as a plain call would be.
    nsc_trace *tr = nsc_trace_new(m);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &next);
    nsc_tensor *logits = nsc_save(nsc_invoke_output(inv, "lm_head", 0));
    nsc_tensor *att = nsc_save(nsc_invoke_output(inv, "transformer.h.0.attn", 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_trace_get(tr, logits), *a = nsc_trace_get(tr, att);
    cr_expect(same(got, want_next), "the traced call sees the 5 cached tokens");
    cr_expect_eq(nsc_tensor_size(a, 1), 1, "one new position");
    cr_expect_eq(nsc_kv_cache_length(c), 6, "the run, a real call, commits its token");
    nsc_tensor *later = nsc_module_call(m, 1, &after);
    cr_expect(later, "%s", nsc_last_error());
    nsc_gpt2_set_cache(m, NULL);
    nsc_kv_cache_free(c);
    nsc_tensor *all[] = { prompt, next, after, want_next, got, a, later };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        nsc_free(all[i]);
    }
    nsc_trace_free(tr);
    nsc_module_free(m);
}

Test(graph_model_state, a_generation_trace_refuses_an_attached_cache_and_keeps_it) {
    nsc_module *m = tiny();
    nsc_tensor *prompt = ids(5, 3), *next = ids(1, 11);
    nsc_tensor *want = cached_logits(m, prompt, next);
    nsc_kv_cache *c = nsc_kv_cache_new(m, 1, 0);
    nsc_gpt2_set_cache(m, c);
    nsc_free(nsc_module_call(m, 1, &prompt));
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 2;
    nsc_trace *tr = nsc_trace_new_generate(m, &o);
    nsc_trace_invoke(tr, 1, &prompt);
    cr_expect_eq(nsc_trace_check(tr), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "cache attached"), "%s", nsc_last_error());
    nsc_trace_free(tr);
    nsc_tensor *got = nsc_module_call(m, 1, &next); // the cache is still attached, length 5
    cr_expect(same(got, want), "%s", nsc_last_error());
    nsc_gpt2_set_cache(m, NULL);
    nsc_kv_cache_free(c);
    nsc_tensor *all[] = { prompt, next, want, got };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        nsc_free(all[i]);
    }
    nsc_module_free(m);
}

// Step 2's logits of a 3-token generation, with or without an applied block
// whose result the model never uses.
static nsc_tensor *step2_logits(nsc_module *m, bool apply) {
    nsc_tensor *prompt = ids(5, 5);
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 3;
    nsc_trace *tr = nsc_trace_new_generate(m, &o);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &prompt);
    if (apply) {
        nsc_tensor *h = nsc_invoke_output(inv, "transformer.h.0", 0);
        cr_assert(nsc_save(nsc_trace_apply(tr, "transformer.h.0", h)), "%s", nsc_last_error());
    }
    nsc_tensor *logits = nsc_save(nsc_invoke_output(inv, "lm_head", 2));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v = nsc_trace_get(tr, logits);
    nsc_trace_free(tr);
    nsc_free(prompt);
    return v;
}

Test(graph_model_state, an_applied_module_leaves_the_generation_cache) {
    nsc_module *m = tiny();
    nsc_tensor *plain = step2_logits(m, false), *applied = step2_logits(m, true);
    // The applied block wrote its keys over the real layer 0's in the cache.
    cr_expect(same(plain, applied), "sums %g and %g", nsct_sum(plain), nsct_sum(applied));
    nsc_free(plain);
    nsc_free(applied);
    nsc_module_free(m);
}

// h.1's mlp output (call 0) and h.1's output (call 0), with an applied h.1
// (hooks on or off) after h.0 or none.
static void read_h1(nsc_module *m, int apply, nsc_tensor **mlp, nsc_tensor **block) {
    nsc_tensor *x = ids(4, 2);
    nsc_trace *tr = nsc_trace_new(m);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    if (apply) {
        nsc_tensor *h = nsc_mul_scalar(nsc_invoke_output(inv, "transformer.h.0", 0), 2.0);
        nsc_tensor *out = nsc_trace_apply_n(tr, "transformer.h.1", 1, &h, apply == 2);
        cr_assert(nsc_save(out), "%s", nsc_last_error());
    }
    nsc_tensor *pm = nsc_save(nsc_invoke_output(inv, "transformer.h.1.mlp", 0));
    nsc_tensor *pb = nsc_save(nsc_invoke_output(inv, "transformer.h.1", 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    *mlp = nsc_trace_get(tr, pm);
    *block = nsc_trace_get(tr, pb);
    nsc_trace_free(tr);
    nsc_free(x);
}

Test(graph_model_state, an_applied_module_shifts_no_call_index) {
    nsc_module *m = tiny();
    nsc_tensor *mlp0, *block0, *mlp1, *block1, *mlp2, *block2;
    read_h1(m, 0, &mlp0, &block0);
    read_h1(m, 1, &mlp1, &block1); // hooks off: its children were still counted
    read_h1(m, 2, &mlp2, &block2); // hooks on: the trace's own points fired on it
    cr_expect(same(mlp0, mlp1) && same(block0, block1), "hooks off");
    cr_expect(same(mlp0, mlp2) && same(block0, block2), "hooks on");
    nsc_tensor *all[] = { mlp0, block0, mlp1, block1, mlp2, block2 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        nsc_free(all[i]);
    }
    nsc_module_free(m);
}

Test(graph_model_state, a_failed_scan_keeps_the_call_counters) {
    nsc_module *m = tiny();
    nsc_tensor *x = ids(3, 1), *long_x = ids(70, 1); // 70 > n_positions = 64
    nsc_free(nsc_module_call(m, 1, &x));
    nsc_module *h0 = nsc_module_find(m, "transformer.h.0");
    cr_assert_eq(nsc_module_call_count(m), 1);
    nsc_trace *tr = nsc_trace_new(m);
    nsc_trace_invoke(tr, 1, &long_x);
    cr_expect_neq(nsc_trace_check(tr), NSC_OK);
    cr_expect_eq(nsc_module_call_count(m), 1);
    cr_expect_eq(nsc_module_call_count(h0), 1);
    nsc_trace_free(tr);
    nsc_trace *ok = nsc_trace_new(m);
    nsc_trace_invoke(ok, 1, &x);
    cr_expect_eq(nsc_trace_check(ok), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_module_call_count(h0), 1, "a check is not a run");
    nsc_trace_free(ok);
    nsc_free(x);
    nsc_free(long_x);
    nsc_module_free(m);
}

Test(graph_model_state, a_scan_moves_no_random_generator) {
    nsc_gpt2_config cfg = nsc_gpt2_config_default(); // dropout 0.1 (the fixture has 0)
    cfg.vocab_size = 60;
    cfg.n_positions = 16;
    cfg.n_embd = 16;
    cfg.n_layer = 1;
    cfg.n_head = 2;
    nsc_generator *gen = nsc_generator_new(3);
    nsc_module *m = nsc_gpt2_new(&cfg, gen);
    nsc_generator_free(gen);
    cr_assert(m, "%s", nsc_last_error());
    nsc_module_train(m, true); // dropout draws
    nsc_tensor *x = ids(4, 3);
    nsc_manual_seed(123);
    nsc_tensor *want = nsc_module_call(m, 1, &x);
    nsc_manual_seed(123);
    nsc_trace *tr = nsc_trace_new(m);
    nsc_trace_invoke(tr, 1, &x);
    cr_assert_eq(nsc_trace_check(tr), NSC_OK, "%s", nsc_last_error());
    nsc_trace_free(tr);
    nsc_tensor *got = nsc_module_call(m, 1, &x);
    cr_expect(same(got, want), "the seeded call repeats after a check");
    nsc_manual_seed(123);
    tr = nsc_trace_new(m);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *logits = nsc_save(nsc_invoke_output(inv, "lm_head", 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *traced = nsc_trace_get(tr, logits);
    cr_expect(same(traced, want), "and so does the traced one");
    nsc_trace_free(tr);
    nsc_tensor *all[] = { x, want, got, traced };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        nsc_free(all[i]);
    }
    nsc_module_free(m);
}

// Every allocation of a trace's check failing in turn: the user's cache
// stays attached with its length (a failed shadow left none attached).
Test(graph_model_state, a_scan_out_of_memory_keeps_the_users_cache) {
    nsc_module *m = tiny();
    nsc_tensor *prompt = ids(3, 1), *next = ids(1, 11);
    nsc_kv_cache *c = nsc_kv_cache_new(m, 1, 0);
    nsc_gpt2_set_cache(m, c);
    nsc_status s = NSC_ERR_OOM;
    for (int k = 1; k < 400 && s != NSC_OK; k++) {
        nsc_kv_cache_reset(c);
        nsc_free(nsc_module_call(m, 1, &prompt));
        nsc_trace *tr = nsc_trace_new(m);
        nsc_invoke *inv = nsc_trace_invoke(tr, 1, &next);
        nsc_mem_fail_after(k);
        nsc_save(nsc_invoke_output(inv, "transformer.h.0", 0));
        s = nsc_trace_check(tr);
        nsc_mem_fail_after(0);
        nsc_trace_free(tr);
        nsc_clear_error();
        cr_expect_eq(nsc_kv_cache_length(c), 3, "allocation %d", k);
        nsc_tensor *out = nsc_module_call(m, 1, &next);
        cr_expect(out, "%s", nsc_last_error());
        cr_expect_eq(nsc_kv_cache_length(c), 4, "allocation %d: the cache is attached", k);
        nsc_free(out);
    }
    cr_expect_eq(s, NSC_OK, "the sweep reached a passing check");
    nsc_gpt2_set_cache(m, NULL);
    nsc_kv_cache_free(c);
    nsc_free(prompt);
    nsc_free(next);
    nsc_module_free(m);
}

// A trace over a module inside a tree (GPT-2's transformer) names modules
// from that module everywhere, as nsc_invoke_output takes them: the cache
// pattern, its results, the text form (which read back failed: "transformer
// has no child transformer") and an applied module.
Test(graph_model_state, a_trace_over_a_sub_module_names_paths_from_it) {
    nsc_module *m = tiny();
    nsc_module *sub = nsc_module_find(m, "transformer");
    nsc_tensor *x = ids(4, 2);
    nsc_trace *tr = nsc_trace_new(sub);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    cr_expect_eq(nsc_trace_cache(tr, inv, "h.*", false), 2, "%s", nsc_last_error());
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_tensor *applied = nsc_save_as(nsc_trace_apply(tr, "ln_f", h0), "lens");
    cr_assert(applied, "%s", nsc_last_error());
    char *text = nsc_trace_to_text(tr, NULL);
    cr_assert(text, "%s", nsc_last_error());
    cr_expect(strstr(text, "\"module\": \"h.0\"") && !strstr(text, "transformer."), "%s", text);
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *cached = nsc_trace_cache_get(tr, inv, "h.1", NSC_HOOK_OUTPUT);
    cr_expect(cached, "%s", nsc_last_error());
    nsc_graph_load_options lo = { .n_models = 1, .models = &sub };
    nsc_graph *g = nsc_graph_parse(text, strlen(text), "sub.json", &lo);
    cr_assert(g, "%s", nsc_last_error());
    cr_assert_eq(nsc_graph_run(g), NSC_OK, "%s", nsc_last_error());
    nsc_tensor_set *results = nsc_graph_results(g);
    cr_assert(results, "%s", nsc_last_error());
    cr_expect(nsc_tensor_set_get(results, "cache.0.h.1.output"), "the cache's result name");
    nsc_tensor *lens = nsc_trace_get(tr, applied);
    cr_expect(same(nsc_tensor_set_get(results, "lens"), lens), "the parsed graph's lens");
    nsc_free(lens);
    nsc_tensor_set_free(results);
    nsc_graph_free(g);
    nsc_text_free(text);
    nsc_free(cached);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(m);
}
