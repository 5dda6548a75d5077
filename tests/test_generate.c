// Generation: greedy tokens equal transformers' generate (one prompt, a
// left-padded batch, a stop token), cached and uncached runs agree, sampling
// repeats for a seed, call indices number the steps, the generator module
// sees the final tokens, an edit of keys at step 0 is what later steps see,
// returned values are never written afterwards, the cache grows by doubling,
// its length moves only when a whole call succeeds (the hooks after the
// transformer included), and errors and early stops leave nothing behind.
#include <criterion/criterion.h>
#include <string.h>

#include "tests/harness.h"

static nsc_module *g_model;
static nsc_safetensors *g_ref;

static void load(void) {
    g_model = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(g_model, "gpt2_tiny: %s", nsc_last_error());
    for (int64_t i = 0; i < nsc_module_n_modules(g_model); i++) {
        nsc_module_path(nsc_module_at(g_model, i)); // cached paths: not leaks
    }
    g_ref = nsc_safetensors_open(nsct_fixture_path("gpt2_tiny/reference.safetensors"));
    cr_assert(g_ref, "reference: %s", nsc_last_error());
}

static void unload(void) {
    nsc_module_free(g_model);
    nsc_safetensors_free(g_ref);
}

static nsc_tensor *ref(const char *name) {
    nsc_tensor *t = nsc_safetensors_load(g_ref, name);
    cr_assert(t, "reference %s: %s", name, nsc_last_error());
    return t;
}

static void expect_equal(nsc_tensor *got, nsc_tensor *want, const char *what) {
    char why[1200];
    cr_expect(nsct_close(got, want, TOL_EXACT, why, sizeof why), "%s: %s", what, why);
}

static nsc_tensor *generate(nsc_tensor *ids, nsc_tensor *mask, const nsc_generate_options *o) {
    nsc_tensor *out = NULL;
    nsc_status s = nsc_generate(g_model, ids, mask, o, &out);
    cr_assert_eq(s, NSC_OK, "%s", nsc_last_error());
    return out;
}

// --- against transformers ---

Test(generate, greedy_tokens_equal_transformers, .init = load, .fini = unload) {
    int64_t before = nsct_live_blocks();
    nsc_tensor *prompt = ref("gen.prompt"), *want = ref("gen.tokens");
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 20;
    nsc_tensor *got = generate(prompt, NULL, &o);
    expect_equal(got, want, "one prompt, 20 tokens");
    nsc_free(got);
    nsc_tensor *ids = ref("genpad.ids"), *mask = ref("genpad.mask");
    nsc_tensor *want_pad = ref("genpad.tokens"), *want_stop = ref("genstop.tokens");
    nsc_tensor *stop = ref("genstop.id");
    o.max_new_tokens = 12;
    got = generate(ids, mask, &o);
    expect_equal(got, want_pad, "left-padded batch");
    nsc_free(got);
    o.stop_token = (int64_t)nsc_tensor_item(stop);
    got = generate(ids, mask, &o);
    expect_equal(got, want_stop, "stop token: the row is padded with it");
    nsc_free(got);
    nsc_tensor *temps[] = { prompt, want, ids, mask, want_pad, want_stop, stop };
    for (int i = 0; i < 7; i++) {
        nsc_free(temps[i]);
    }
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(generate, all_rows_stopped_ends_the_run, .init = load, .fini = unload) {
    nsc_tensor *prompt = ref("gen.prompt"), *want = ref("gen.tokens");
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 20;
    o.stop_token = ((const int64_t *)nsc_tensor_data(want))[6 + 3]; // the fourth new token
    nsc_tensor *got = generate(prompt, NULL, &o);
    const int64_t *w = nsc_tensor_data(want);
    int64_t first = 6;
    while (w[first] != o.stop_token) {
        first++;
    }
    cr_expect_eq(nsc_tensor_size(got, 1), first + 1, "ends right after the stop token");
    cr_expect_eq(nsc_module_call_count(g_model), first + 1 - 6, "one call per step");
    nsc_free(got);
    nsc_free(prompt);
    nsc_free(want);
}

// --- cache, sampling ---

Test(generate, cached_and_uncached_runs_give_identical_tokens, .init = load, .fini = unload) {
    nsc_tensor *ids = ref("genpad.ids"), *mask = ref("genpad.mask");
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 15;
    for (int sample = 0; sample < 2; sample++) {
        o.sample = sample;
        o.temperature = 0.8;
        o.top_k = 20;
        o.seed = 11;
        o.use_cache = true;
        nsc_tensor *cached = generate(ids, mask, &o);
        o.use_cache = false;
        nsc_tensor *uncached = generate(ids, mask, &o);
        expect_equal(cached, uncached, sample ? "sampled" : "greedy");
        nsc_free(cached);
        nsc_free(uncached);
    }
    nsc_free(ids);
    nsc_free(mask);
}

Test(generate, sampling_repeats_for_a_seed_and_top_k_one_is_greedy, .init = load, .fini = unload) {
    nsc_tensor *prompt = ref("gen.prompt"), *greedy = ref("gen.tokens");
    nsc_generate_options o = nsc_generate_options_default();
    o.sample = true;
    o.seed = 5;
    o.temperature = 1.5;
    nsc_tensor *a = generate(prompt, NULL, &o), *b = generate(prompt, NULL, &o);
    expect_equal(a, b, "same seed");
    o.seed = 6;
    nsc_tensor *c = generate(prompt, NULL, &o);
    cr_expect_not(nsc_allclose(a, c, 0, 0, false), "another seed, other tokens");
    o.top_k = 1;
    nsc_tensor *d = generate(prompt, NULL, &o);
    expect_equal(d, greedy, "top_k = 1 samples the argmax");
    nsc_tensor *temps[] = { a, b, c, d, prompt, greedy };
    for (int i = 0; i < 6; i++) {
        nsc_free(temps[i]);
    }
}

// --- call indices, the generator module, edits ---

typedef struct trace_log {
    int n;
    int64_t call_index[32];
    int64_t width[32]; // size of dim 1 of the value
} trace_log;

static nsc_status log_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                           nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)n, (void)replace;
    trace_log *t = ctx;
    t->call_index[t->n] = call_index;
    t->width[t->n++] = nsc_tensor_size(values[0], 1);
    return NSC_OK;
}

Test(generate, step_k_is_call_index_k_and_the_generator_sees_the_tokens, .init = load,
     .fini = unload) {
    nsc_tensor *ids = ref("genpad.ids"), *mask = ref("genpad.mask");
    trace_log in = { 0 }, gen = { 0 };
    nsc_module *h1 = nsc_module_find(g_model, "transformer.h.1");
    nsc_module *generator = nsc_module_find(g_model, "generator");
    int64_t a = nsc_module_add_hook(h1, NSC_HOOK_INPUT, log_hook, &in, NULL);
    int64_t b = nsc_module_add_hook(generator, NSC_HOOK_OUTPUT, log_hook, &gen, NULL);
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 5;
    nsc_tensor *out = generate(ids, mask, &o);
    cr_expect_eq(in.n, 5);
    for (int k = 0; k < in.n; k++) {
        cr_expect_eq(in.call_index[k], k);
        cr_expect_eq(in.width[k], k == 0 ? 7 : 1, "step %d: the prompt, then one token", k);
    }
    cr_expect_eq(gen.n, 1);
    cr_expect_eq(gen.call_index[0], 0);
    cr_expect_eq(gen.width[0], 12, "the generator is called with [B, T + n]");
    cr_expect_eq(nsc_module_call_count(nsc_module_find(g_model, "transformer.h.0.attn.hook_k")), 5,
                 "hook points count the fused steps too");
    nsc_module_remove_hook(h1, a);
    nsc_module_remove_hook(generator, b);
    nsc_free(out);
    nsc_free(ids);
    nsc_free(mask);
}

// Scales hook_k's output of layer 0: at call 0 only (cached: what the cache
// keeps), or on the first `prompt` positions at every call (uncached reruns).
typedef struct key_edit {
    bool every_call;
    int64_t prompt;
} key_edit;

static nsc_status edit_keys(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                            nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)n;
    const key_edit *e = ctx;
    if (!e->every_call && call_index > 0) {
        return NSC_OK;
    }
    nsc_tensor *copy = nsc_clone(values[0]);
    nsc_tensor *head = nsc_narrow(copy, 2, 0, e->prompt);
    nsc_tensor *scale = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1), 3.0);
    nsc_status s = nsc_mul_(head, scale);
    nsc_free(head);
    nsc_free(scale);
    replace[0] = copy;
    return s;
}

Test(generate, an_edit_of_keys_at_step_0_is_what_later_steps_see, .init = load, .fini = unload) {
    nsc_tensor *prompt = ref("gen.prompt"), *plain = ref("gen.tokens");
    nsc_module *hook_k = nsc_module_find(g_model, "transformer.h.0.attn.hook_k");
    nsc_generate_options o = nsc_generate_options_default();
    key_edit once = { false, 6 }, always = { true, 6 };
    int64_t h = nsc_module_add_hook(hook_k, NSC_HOOK_OUTPUT, edit_keys, &once, NULL);
    nsc_tensor *cached = generate(prompt, NULL, &o);
    nsc_module_remove_hook(hook_k, h);
    h = nsc_module_add_hook(hook_k, NSC_HOOK_OUTPUT, edit_keys, &always, NULL);
    o.use_cache = false;
    nsc_tensor *uncached = generate(prompt, NULL, &o);
    nsc_module_remove_hook(hook_k, h);
    expect_equal(cached, uncached, "the cache keeps the edited keys");
    cr_expect_not(nsc_allclose(cached, plain, 0, 0, false), "the edit changed the tokens");
    nsc_free(cached);
    nsc_free(uncached);
    nsc_free(prompt);
    nsc_free(plain);
}

// Keeps every value hook_v returns with a copy, to check later that nothing
// wrote into them after they were handed out.
typedef struct kept {
    int n;
    nsc_tensor *value[40], *copy[40];
} kept;

static nsc_status keep_values(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                              nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)replace;
    kept *k = ctx;
    k->value[k->n] = nsc_retain(values[0]);
    k->copy[k->n++] = nsc_clone(values[0]);
    return NSC_OK;
}

Test(generate, returned_values_are_never_written_afterwards, .init = load, .fini = unload) {
    nsc_tensor *ids = ref("genpad.ids"), *mask = ref("genpad.mask");
    static const char *const points[] = { "transformer.h.0.attn.hook_v",
                                          "transformer.h.1.attn.hook_k", "transformer.h.0",
                                          "lm_head" };
    kept *k = calloc(1, sizeof *k);
    int64_t handles[4];
    for (int i = 0; i < 4; i++) {
        handles[i] = nsc_module_add_hook(nsc_module_find(g_model, points[i]), NSC_HOOK_OUTPUT,
                                         keep_values, k, NULL);
    }
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 8;
    nsc_tensor *out = generate(ids, mask, &o);
    cr_expect_eq(k->n, 32);
    for (int i = 0; i < k->n; i++) {
        expect_equal(k->value[i], k->copy[i], "a value kept from a hook");
        nsc_free(k->value[i]);
        nsc_free(k->copy[i]);
    }
    for (int i = 0; i < 4; i++) {
        nsc_module_remove_hook(nsc_module_find(g_model, points[i]), handles[i]);
    }
    free(k);
    nsc_free(out);
    nsc_free(ids);
    nsc_free(mask);
}

// --- the cache by hand ---

Test(generate, the_cache_grows_by_doubling_and_forgets_failed_steps, .init = load, .fini = unload) {
    int64_t before = nsct_live_blocks();
    nsc_kv_cache *cache = nsc_kv_cache_new(g_model, 1, 4);
    cr_assert(cache, "%s", nsc_last_error());
    cr_assert_eq(nsc_gpt2_set_cache(g_model, cache), NSC_OK);
    nsc_tensor *prompt = ref("gen.prompt"), *want = ref("gen.tokens");
    nsc_tensor *in[1] = { prompt };
    nsc_tensor *logits = nsc_module_call(g_model, 1, in);
    cr_expect_eq(nsc_kv_cache_length(cache), 6);
    cr_expect_eq(nsc_kv_cache_capacity(cache), 8, "4 doubled once");
    nsc_free(logits);
    // The next token fed by hand; then a step with a wrong mask fails and
    // leaves the length alone.
    nsc_tensor *next = nsc_narrow(want, 1, 6, 1);
    nsc_tensor *bad_mask = nsc_ones(NSC_I64, NSC_CPU, NSC_SHAPE(1, 3));
    nsc_tensor *args[2] = { next, bad_mask };
    cr_expect_null(nsc_module_call(g_model, 2, args));
    cr_expect_eq(nsc_kv_cache_length(cache), 6);
    in[0] = next;
    logits = nsc_module_call(g_model, 1, in);
    cr_expect_eq(nsc_kv_cache_length(cache), 7);
    nsc_tensor *last = nsc_select(logits, 1, -1), *arg = nsc_argmax(last, -1, false);
    cr_expect_eq((int64_t)nsc_tensor_item(arg), ((const int64_t *)nsc_tensor_data(want))[7],
                 "the cached step predicts transformers' next token");
    nsc_status s = NSC_OK;
    nsc_tensor *out = NULL;
    nsc_generate_options o = nsc_generate_options_default();
    s = nsc_generate(g_model, prompt, NULL, &o, &out);
    cr_expect_eq(s, NSC_ERR_STATE, "generate refuses a model with a cache attached");
    nsc_gpt2_set_cache(g_model, NULL);
    nsc_tensor *temps[] = { logits, next, bad_mask, last, arg, prompt, want };
    for (int i = 0; i < 7; i++) {
        nsc_free(temps[i]);
    }
    nsc_kv_cache_free(cache);
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), before);
}

// A hook that stops (ctx NULL) or fails (ctx non-NULL) the call it runs in.
static nsc_status stop_or_fail(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                               nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)values, (void)replace;
    return ctx ? NSC_ERR_STATE : NSC_STOPPED;
}

// Calls module on prompt with a stopping or failing output hook on where and
// expects a NULL result and the cache length unchanged.
static void expect_length_kept(nsc_kv_cache *cache, nsc_module *module, const char *where,
                               bool fail, nsc_tensor *prompt) {
    int64_t length = nsc_kv_cache_length(cache);
    nsc_module *hooked = *where ? nsc_module_find(g_model, where) : g_model;
    int64_t h =
        nsc_module_add_hook(hooked, NSC_HOOK_OUTPUT, stop_or_fail, fail ? g_model : NULL, NULL);
    cr_assert_geq(h, 0);
    nsc_tensor *out = nsc_module_call(module, 1, &prompt);
    cr_expect_null(out);
    cr_expect_eq(nsc_last_status(), fail ? NSC_ERR_STATE : NSC_STOPPED, "%s", nsc_last_error());
    cr_expect_eq(nsc_kv_cache_length(cache), length,
                 "an output hook on \"%s\" that %s: length %lld, expected %lld", where,
                 fail ? "fails" : "stops", (long long)nsc_kv_cache_length(cache),
                 (long long)length);
    nsc_module_remove_hook(hooked, h);
    nsc_clear_error();
}

Test(generate, the_length_commits_only_when_the_whole_call_succeeds, .init = load, .fini = unload) {
    int64_t before = nsct_live_blocks();
    nsc_kv_cache *cache = nsc_kv_cache_new(g_model, 1, 0);
    cr_assert_eq(nsc_gpt2_set_cache(g_model, cache), NSC_OK);
    nsc_tensor *prompt = ref("gen.prompt"); // [1, 6]
    nsc_module *tf = nsc_module_find(g_model, "transformer");
    // After the transformer returned: its own hooks, lm_head's, the root's.
    const char *points[] = { "transformer", "transformer.ln_f", "lm_head", "" };
    for (int i = 0; i < 4; i++) {
        expect_length_kept(cache, g_model, points[i], false, prompt);
        expect_length_kept(cache, g_model, points[i], true, prompt);
    }
    nsc_tensor *logits = nsc_module_call(g_model, 1, &prompt);
    cr_expect_eq(nsc_kv_cache_length(cache), 6, "a whole call commits");
    nsc_free(logits);
    // The transformer called alone commits by itself, unless its hooks stop.
    nsc_tensor *next = nsc_narrow(prompt, 1, 5, 1);
    expect_length_kept(cache, tf, "transformer", false, next);
    nsc_tensor *h = nsc_module_call(tf, 1, &next);
    cr_expect_eq(nsc_kv_cache_length(cache), 7, "%s", nsc_last_error());
    nsc_free(h);
    logits = nsc_module_forward(g_model, 1, &next); // no hooks, still a whole call
    cr_expect_eq(nsc_kv_cache_length(cache), 8, "%s", nsc_last_error());
    nsc_free(logits);
    nsc_gpt2_set_cache(g_model, NULL);
    nsc_kv_cache_free(cache);
    nsc_free(next);
    nsc_free(prompt);
    cr_expect_eq(nsct_live_blocks(), before);
}

// --- errors and stops ---

static nsc_status stop_at_step_2(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                                 nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)n, (void)values, (void)replace, (void)ctx;
    return call_index == 2 ? NSC_STOPPED : NSC_OK;
}

Test(generate_errors, bad_arguments_and_stops_leave_nothing, .init = load, .fini = unload) {
    nsc_tensor *prompt = ref("gen.prompt");
    nsc_generate_options o = nsc_generate_options_default();
    nsc_tensor *out = (nsc_tensor *)1;
    int64_t before = nsct_live_blocks();
    o.max_new_tokens = 60; // 6 + 60 > 64 positions
    cr_expect_eq(nsc_generate(g_model, prompt, NULL, &o, &out), NSC_ERR_ARG);
    cr_expect_null(out);
    cr_expect(strstr(nsc_last_error(), "n_positions = 64"), "%s", nsc_last_error());
    // 6 + INT64_MAX wrapped below 64 and sized the buffers negative; a
    // prompt expanded to 2^59 rows overflowed rows x (6 + 20) tokens.
    int64_t huge[2] = { INT64_MAX, INT64_MAX - 5 };
    for (int i = 0; i < 4; i++) {
        o.max_new_tokens = huge[i % 2];
        o.use_cache = i < 2;
        cr_expect_eq(nsc_generate(g_model, prompt, NULL, &o, &out), NSC_ERR_ARG);
        cr_expect(strstr(nsc_last_error(), "6 prompt tokens + 922337203685477"), "%s",
                  nsc_last_error());
    }
    o = nsc_generate_options_default();
    nsc_tensor *rows = nsc_expand(prompt, NSC_SHAPE((int64_t)1 << 59, 6));
    cr_expect_eq(nsc_generate(g_model, rows, NULL, &o, &out), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "576460752303423488 rows of 26 tokens"), "%s",
              nsc_last_error());
    nsc_free(rows);
    o.stop_token = 100;
    cr_expect_eq(nsc_generate(g_model, prompt, NULL, &o, &out), NSC_ERR_ARG);
    o = nsc_generate_options_default();
    o.sample = true;
    o.temperature = 0;
    cr_expect_eq(nsc_generate(g_model, prompt, NULL, &o, &out), NSC_ERR_ARG);
    o = nsc_generate_options_default();
    nsc_tensor *meta = nsc_zeros(NSC_I64, NSC_META, NSC_SHAPE(1, 3));
    cr_expect_eq(nsc_generate(g_model, meta, NULL, &o, &out), NSC_ERR_DEVICE);
    nsc_tensor *mask = nsc_ones(NSC_I64, NSC_CPU, NSC_SHAPE(1, 5));
    cr_expect_eq(nsc_generate(g_model, prompt, mask, &o, &out), NSC_ERR_SHAPE);
    cr_expect_eq(nsc_generate(nsc_module_find(g_model, "transformer"), prompt, NULL, &o, &out),
                 NSC_ERR_ARG);
    nsc_module *h0 = nsc_module_find(g_model, "transformer.h.0");
    int64_t h = nsc_module_add_hook(h0, NSC_HOOK_OUTPUT, stop_at_step_2, NULL, NULL);
    cr_expect_eq(nsc_generate(g_model, prompt, NULL, &o, &out), NSC_STOPPED, "%s",
                 nsc_last_error());
    cr_expect_null(out);
    cr_expect_eq(nsc_module_call_count(h0), 3);
    nsc_module_remove_hook(h0, h);
    nsc_free(meta);
    nsc_free(mask);
    cr_expect_eq(nsct_live_blocks(), before);
    nsc_free(prompt);
}

// An MLP replaced by a user module that passes its input on, and at its
// second call (step 1) returns NULL without recording an error.
static nsc_tensor *quiet_on_second_call(nsc_module *m, int n_in, nsc_tensor *const *in,
                                        void *state) {
    (void)m, (void)n_in;
    int *calls = state;
    return (*calls)++ == 1 ? NULL : nsc_retain(in[0]);
}

// That NULL passed for success: generation went on picking tokens from the
// previous step's logits and returned NSC_OK.
Test(generate_errors, a_forward_returning_null_silently_fails_the_run, .init = load,
     .fini = unload) {
    int calls = 0;
    nsc_module *quiet = nsc_module_new("Quiet", quiet_on_second_call, &calls, NULL);
    cr_assert_eq(
        nsc_module_replace_child(nsc_module_find(g_model, "transformer.h.0"), "mlp", quiet),
        NSC_OK);
    nsc_module_path(quiet); // cached: not a leak
    nsc_tensor *prompt = ref("gen.prompt");
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 3;
    nsc_tensor *out = (nsc_tensor *)1;
    for (int cache = 0; cache < 2; cache++) {
        o.use_cache = cache;
        calls = 0;
        int64_t before = nsct_live_blocks();
        nsc_clear_error();
        cr_expect_eq(nsc_generate(g_model, prompt, NULL, &o, &out), NSC_ERR_STATE, "%s",
                     nsc_last_error());
        cr_expect_null(out);
        cr_expect_str_eq(nsc_last_error(), "module transformer.h.0.mlp: its forward returned "
                                           "NULL without recording an error");
        cr_expect_eq(calls, 2, "stopped at step 1");
        cr_expect_eq(nsct_live_blocks(), before);
    }
    nsc_clear_error();
    nsc_free(prompt);
    nsc_module_free(quiet);
}

Test(generate_errors, out_of_memory_sweep, .init = load, .fini = unload) {
    nsc_tensor *ids = ref("genpad.ids"), *mask = ref("genpad.mask");
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 3;
    int64_t start = nsc_mem_stats_get().n_allocs;
    nsc_tensor *out = generate(ids, mask, &o);
    int64_t n_allocs = nsc_mem_stats_get().n_allocs - start;
    nsc_free(out);
    int failures = 0;
    for (int64_t k = 1; k <= n_allocs + 1; k++) {
        int64_t before = nsct_live_blocks();
        out = NULL;
        nsc_mem_fail_after(k);
        nsc_status s = nsc_generate(g_model, ids, mask, &o, &out);
        nsc_mem_fail_after(0);
        if (s != NSC_OK && (s != NSC_ERR_OOM || out)) {
            cr_log_error("allocation %lld: %s", (long long)k, nsc_last_error());
            failures++;
        }
        nsc_free(out);
        if (nsct_live_blocks() != before) {
            cr_log_error("allocation %lld: %lld blocks leaked", (long long)k,
                         (long long)(nsct_live_blocks() - before));
            failures++;
        }
        nsc_clear_error();
    }
    cr_expect_eq(failures, 0);
    nsc_free(ids);
    nsc_free(mask);
}
