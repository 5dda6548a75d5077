// The shared test-graph builders (see graph_builders.h): one function per
// classic use, each listed once in nsct_graph_builders with what it covers.
#include "tests/graph_builders.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"


static nsct_built one_trace(nsc_module *model, int n_invokes, const int64_t *rows,
                            nsc_invoke **inv) {
    nsct_built b = { nsc_trace_new(model), NULL };
    for (int i = 0; i < n_invokes; i++) {
        nsc_tensor *x = nsct_chain_input(rows[i], (double)(i * 3) - 4.0);
        inv[i] = nsc_trace_invoke(b.trace, 1, &x);
        nsc_free(x);
    }
    return b;
}

// --- reads, edits, swaps, invokes ---

static nsct_built build_reads(nsc_module *const *m) {
    nsc_invoke *inv;
    nsct_built b = one_trace(m[0], 1, (int64_t[]){ 2 }, &inv);
    nsc_save_as(nsc_invoke_output(inv, "h.1", 0), "h1");
    nsc_save(nsc_invoke_input(inv, "h.2", 0, 0));
    nsc_save_as(nsc_invoke_output(inv, "", 0), "logits \"quoted\"\n");
    nsc_invoke_output(inv, "h.0", 0); // read, never used
    return b;
}

static nsct_built build_inplace_views(nsc_module *const *m) {
    nsc_invoke *inv;
    nsct_built b = one_trace(m[0], 1, (int64_t[]){ 3 }, &inv);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_save_as(nsc_mul_scalar(h0, 1.0), "before");
    nsc_zero_(nsc_select(h0, 1, 2));
    nsc_tensor *ones = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    nsc_add_(nsc_narrow(h0, 1, 0, 2), ones);
    nsc_tensor *half = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(4), 0.5);
    nsc_mul_(nsc_slice(h0, 0, 0, NSC_END, 2), half);
    nsc_free(half);
    nsc_fill_(nsc_select(nsc_select(h0, 0, 1), 0, 3), -2.5);
    nsc_save_as(nsc_mul_scalar(h0, 1.0), "after");
    nsc_save_as(nsc_invoke_output(inv, "h.1", 0), "h1");
    nsc_free(ones);
    return b;
}

static nsct_built build_swaps(nsc_module *const *m) {
    nsc_invoke *inv;
    nsct_built b = one_trace(m[0], 1, (int64_t[]){ 2 }, &inv);
    nsc_save_as(nsc_mul_scalar(nsc_invoke_output(inv, "h.0", 0), 1.0), "original");
    nsc_tensor *ones = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(4));
    nsc_invoke_set_output(inv, "h.0", 0, ones);
    nsc_tensor *twice = nsc_mul_scalar(nsc_invoke_output(inv, "h.1", 0), 2.0);
    nsc_invoke_set_output(inv, "h.1", 0, twice);
    nsc_tensor *in2 = nsc_invoke_input(inv, "h.2", 0, 0);
    nsc_invoke_set_input(inv, "h.2", 0, 0, nsc_add_scalar(in2, 0.5));
    nsc_save_as(nsc_invoke_output(inv, "h.0", 0), "later");
    nsc_save_as(nsc_invoke_output(inv, "", 0), "out");
    nsc_free(ones);
    return b;
}

static nsct_built build_patching(nsc_module *const *m) {
    nsc_invoke *inv[3];
    nsct_built b = one_trace(m[0], 3, (int64_t[]){ 2, 2, 1 }, inv);
    for (int pos = 0; pos < 2; pos++) {
        nsc_tensor *clean = nsc_select(nsc_invoke_output(inv[0], "h.0", 0), 0, pos);
        nsc_copy_(nsc_select(nsc_invoke_output(inv[1], "h.0", 0), 0, pos), clean);
    }
    for (int i = 0; i < 3; i++) {
        nsc_save(nsc_invoke_output(inv[i], "", 0));
    }
    return b;
}

// --- modules, functions, control ---

static nsc_tensor *affine(int n, nsc_tensor *const *args, void *ctx) {
    (void)ctx;
    nsc_tensor *y = nsc_mul_scalar(args[0], 2.0);
    nsc_tensor *z = n > 1 ? nsc_add(y, args[1]) : nsc_add_scalar(y, 1.0);
    nsc_free(y);
    return z;
}

void nsct_builders_register(void) {
    nsc_function_register("nsct_affine", affine, NULL);
}

static nsct_built build_apply_and_functions(nsc_module *const *m) {
    nsc_invoke *inv;
    nsct_built b = one_trace(m[0], 1, (int64_t[]){ 2 }, &inv);
    nsct_builders_register();
    nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
    nsc_save_as(nsc_trace_apply(b.trace, "head", h), "head");
    nsc_save_as(nsc_module_call(nsc_module_find(m[0], "h.2"), 1, &h), "h2 with hooks");
    nsc_tensor *pair[2] = { h, nsc_invoke_output(inv, "h.1", 0) };
    nsc_save_as(nsc_trace_call(b.trace, "nsct_affine", 2, pair), "affine");
    nsc_save_as(nsc_trace_call(b.trace, "nsct_affine", 1, pair), "affine1");
    return b;
}

static nsct_built build_stop_skip_log(nsc_module *const *m) {
    nsc_invoke *inv;
    nsct_built b = one_trace(m[0], 1, (int64_t[]){ 2 }, &inv);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_invoke_skip(inv, "h.1", 0, nsc_mul_scalar(h0, 3.0));
    nsc_trace_log(b.trace, "h0", h0);
    nsc_save_as(nsc_invoke_output(inv, "h.1", 0), "skipped");
    nsc_save_as(nsc_invoke_output(inv, "h.2", 0), "h2");
    nsc_save_as(nsc_invoke_output(inv, "", 0), "never"); // after the stop
    nsc_trace_stop(b.trace, "h.2", 0);
    return b;
}

static nsct_built build_cache(nsc_module *const *m) {
    nsc_invoke *inv[2];
    nsct_built b = one_trace(m[0], 2, (int64_t[]){ 1, 2 }, inv);
    nsc_save(nsc_invoke_output(inv[0], "h.0", 0));
    nsc_trace_cache(b.trace, inv[0], "h.*", true);
    nsc_trace_cache(b.trace, inv[1], "head", false);
    nsc_save(nsc_invoke_output(inv[1], "h.0", 0));
    return b;
}

static nsct_built build_conditionals(nsc_module *const *m) {
    nsc_invoke *inv;
    nsct_built b = one_trace(m[0], 1, (int64_t[]){ 2 }, &inv);
    nsc_trace *tr = b.trace;
    nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
    nsc_trace_if(tr, nsc_gt_scalar(nsc_sum_all(h), -100.0)); // true
    nsc_save_as(nsc_mul_scalar(h, 2.0), "then");
    nsc_trace_if(tr, nsc_lt_scalar(nsc_max(h), -5.0)); // false
    nsc_save_as(nsc_add_scalar(h, 1.0), "inner then");
    nsc_trace_else(tr);
    nsc_tensor *one = nsc_scalar(NSC_F32, 1.5);
    nsc_save_as(nsc_add(h, one), "inner else");
    nsc_trace_end(tr);
    nsc_save_as(nsc_sub_scalar(h, 1.0), "then again");
    nsc_trace_else(tr);
    nsc_save_as(nsc_neg(h), "else");
    nsc_trace_end(tr);
    nsc_tensor *no = nsc_scalar(NSC_BOOL, 0.0);
    nsc_trace_if(tr, no); // a constant condition
    nsc_save_as(nsc_exp(h), "const if");
    nsc_trace_end(tr);
    nsc_free(no);
    nsc_save_as(nsc_invoke_output(inv, "h.1", 0), "h1");
    nsc_free(one);
    return b;
}

// --- gradients ---

static nsct_built build_grads(nsc_module *const *m) {
    nsc_invoke *inv;
    nsct_built b = one_trace(m[0], 1, (int64_t[]){ 2 }, &inv);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0), *h2 = nsc_invoke_output(inv, "h.2", 0);
    nsc_save_as(nsc_proxy_grad(h0), "g0");
    nsc_zero_(nsc_select(nsc_proxy_grad(nsc_invoke_output(inv, "h.1", 0)), 1, 0));
    nsc_tensor *g2 = nsc_proxy_grad(h2);
    nsc_save_as(g2, "g2");
    nsc_tensor *half = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1, 4), 0.5);
    nsc_proxy_set_grad(h2, nsc_mul(g2, half));
    nsc_tensor *out = nsc_invoke_output(inv, "", 0);
    nsc_tensor *loss = nsc_sum_all(nsc_mul(out, out));
    nsc_tensor *after = nsc_trace_backward(loss, true);
    nsc_save_as(nsc_proxy_grad(h0), "g0 pass 1");
    nsc_trace_backward(nsc_mul_scalar(nsc_add(loss, nsc_mul_scalar(after, 0.0)), 2.0), false);
    nsc_save_as(loss, "loss");
    nsc_free(half);
    return b;
}

// --- ops: multi-output, params, constants of every dtype ---

static nsct_built build_ops(nsc_module *const *m) {
    nsc_invoke *inv;
    nsct_built b = one_trace(m[0], 1, (int64_t[]){ 3 }, &inv);
    nsc_tensor *h = nsc_invoke_output(inv, "h.1", 0), *v = NULL, *ix = NULL;
    nsc_max_dim(h, 1, true, &v, &ix);
    nsc_save(v);
    nsc_save(ix);
    nsc_tensor *tv = NULL, *ti = NULL;
    nsc_topk(h, 2, 1, false, &tv, &ti);
    nsc_save(ti);
    nsc_save(nsc_sum(h, 1, (int[]){ 0 }, true));
    nsc_save(nsc_var(h, 2, (int[]){ 0, 1 }, true, false));
    nsc_save(
        nsc_permute(nsc_expand(nsc_unsqueeze(h, 0), NSC_SHAPE(2, 3, 4)), 3, (int[]){ 2, 0, 1 }));
    nsc_tensor *parts[2] = { h, nsc_slice(nsc_neg(h), 1, 0, 4, 1) };
    nsc_save(nsc_cat(2, parts, 1));
    nsc_save(nsc_stack(2, parts, 0));
    nsc_save(nsc_gelu(nsc_clamp(h, -0.5, 0.25), NSC_GELU_TANH));
    nsc_save(nsc_softmax(nsc_to_dtype(h, NSC_F64), -1));
    nsc_tensor *w = nsc_linspace(0.5, 1.5, 4, NSC_F32);
    nsc_save(nsc_layer_norm(h, 1, w, NULL, 1e-5));
    int64_t ids[3] = { 0, 3, (int64_t)1 << 60 };
    nsc_tensor *target = nsc_from_data(NSC_I64, NSC_SHAPE(3), ids);
    nsc_tensor *small = nsc_from_data(NSC_I64, NSC_SHAPE(2), ids);
    nsc_save(nsc_add(nsc_argmax(h, 1, false), target)); // i64 beyond 2^53 exact
    int64_t classes[3] = { 0, 3, 1 };
    nsc_tensor *labels = nsc_from_data(NSC_I64, NSC_SHAPE(3), classes);
    nsc_save(nsc_cross_entropy(h, labels, NSC_REDUCTION_SUM, -100));
    nsc_free(labels);
    nsc_save(nsc_index_select(h, 1, small));
    float odd[4] = { NAN, INFINITY, -INFINITY, -0.0f };
    nsc_tensor *specials = nsc_from_data(NSC_F32, NSC_SHAPE(4), odd);
    nsc_save(nsc_add(h, specials));
    bool mask_bits[4] = { true, false, true, false };
    nsc_tensor *mask = nsc_from_data(NSC_BOOL, NSC_SHAPE(4), mask_bits);
    nsc_save(nsc_masked_fill(nsc_where(mask, h, nsc_mul_scalar(h, 0.1)), mask, 0.1));
    nsc_tensor *big = nsc_linspace(-1, 1, 3000, NSC_F64); // written by name
    nsc_save(nsc_add(nsc_sum_all(h), big));
    nsc_tensor *all[] = { w, target, small, specials, mask, big };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
    return b;
}

// --- models with other batch layouts, GPT-2 and generation ---

static nsct_built build_batch1(nsc_module *const *m) {
    nsct_built b = { nsc_trace_new(m[0]), NULL };
    nsc_invoke *inv[2];
    for (int i = 0; i < 2; i++) {
        nsc_tensor *x = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(2, i + 1, 3), (double)i + 0.25);
        inv[i] = nsc_trace_invoke(b.trace, 1, &x);
        nsc_free(x);
    }
    nsc_tensor *a = nsc_invoke_output(inv[0], "inner", 0);
    nsc_copy_(nsc_invoke_output(inv[1], "inner", 0), nsc_mul_scalar(a, -1.0));
    nsc_save(nsc_invoke_output(inv[1], "", 0));
    nsc_save(a);
    return b;
}

static nsc_tensor *gpt2_prompt(void) {
    int64_t ids[6] = { 3, 17, 42, 8, 99, 5 };
    return nsc_from_data(NSC_I64, NSC_SHAPE(1, 6), ids);
}

static nsct_built build_gpt2_heads(nsc_module *const *m) {
    nsct_built b = { nsc_trace_new(m[0]), NULL };
    nsc_tensor *ids = gpt2_prompt();
    nsc_invoke *base = nsc_trace_invoke(b.trace, 1, &ids);
    nsc_invoke *ablate = nsc_trace_invoke(b.trace, 1, &ids);
    nsc_save(nsc_invoke_output(base, "transformer.h.1.attn.hook_pattern", 0));
    nsc_zero_(nsc_select(nsc_invoke_output(ablate, "transformer.h.1.attn.hook_z", 0), 2, 1));
    nsc_tensor *x = nsc_invoke_output(base, "transformer.h.0", 0);
    nsc_save_as(
        nsc_trace_apply(b.trace, "lm_head", nsc_trace_apply(b.trace, "transformer.ln_f", x)),
        "lens");
    for (int i = 0; i < 2; i++) {
        nsc_invoke *inv = i ? ablate : base;
        nsc_tensor *logits = nsc_narrow(nsc_invoke_output(inv, "", 0), 1, 0, 5);
        nsc_tensor *flat = nsc_reshape(logits, NSC_SHAPE(5, 100));
        nsc_tensor *row = nsc_select(ids, 0, 0), *target = nsc_narrow(row, 0, 1, 5);
        nsc_save(nsc_cross_entropy(flat, target, NSC_REDUCTION_MEAN, -100));
        nsc_free(target);
        nsc_free(row);
    }
    nsc_free(ids);
    return b;
}

static nsct_built build_generation(nsc_module *const *m) {
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 4;
    nsct_built b = { nsc_trace_new_generate(m[0], &o), NULL };
    nsc_tensor *ids = gpt2_prompt();
    nsc_invoke *inv = nsc_trace_invoke(b.trace, 1, &ids);
    nsc_tensor *steer = nsc_linspace(-2, 2, 64, NSC_F32);
    nsc_tensor *every = nsc_invoke_output(inv, "transformer.h.0", NSC_EVERY_CALL);
    nsc_invoke_set_output(inv, "transformer.h.0", NSC_EVERY_CALL, nsc_add(every, steer));
    nsc_save_as(nsc_invoke_output(inv, "", 2), "step 2 logits");
    nsc_save_as(nsc_invoke_output(inv, "generator", 0), "tokens");
    nsc_free(steer);
    nsc_free(ids);
    return b;
}

// --- sessions ---

static nsct_built build_session(nsc_module *const *m) {
    nsct_built b = { NULL, nsc_session_new() };
    nsc_tensor *zero = nsc_zeros(NSC_F32, NSC_CPU, 0, NULL);
    nsc_tensor *total = nsc_session_value(b.session, zero);
    nsc_tensor *x = nsct_chain_input(2, 1.0), *y = nsct_chain_input(2, -3.0);
    nsc_trace *t1 = nsc_session_trace(b.session, m[0]);
    nsc_tensor *from_a = nsc_invoke_output(nsc_trace_invoke(t1, 1, &x), "h.0", 0);
    nsc_trace *t2 = nsc_session_trace(b.session, m[1]);
    nsc_invoke *i2 = nsc_trace_invoke(t2, 1, &y);
    nsc_invoke_set_output(i2, "h.0", 0, from_a);
    nsc_tensor *out = nsc_invoke_output(i2, "", 0);
    nsc_save_as(out, "patched");
    nsc_update(total, nsc_add(total, nsc_add(nsc_sum_all(out), nsc_sum_all(from_a))));
    nsc_free(zero);
    nsc_free(x);
    nsc_free(y);
    return b;
}

static nsct_built build_iterator(nsc_module *const *m) {
    nsct_built b = { NULL, nsc_session_new() };
    nsc_tensor *items[5];
    for (int i = 0; i < 5; i++) {
        items[i] = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1 + i % 2, 4), (double)i * 0.5);
    }
    nsc_tensor *zero = nsc_zeros(NSC_F32, NSC_CPU, 0, NULL);
    nsc_tensor *total = nsc_session_value(b.session, zero);
    nsc_tensor *x = nsct_chain_input(1, 0.0);
    nsc_trace *before = nsc_session_trace(b.session, m[0]);
    nsc_tensor *seed = nsc_sum_all(nsc_invoke_output(nsc_trace_invoke(before, 1, &x), "h.0", 0));
    nsc_iterator *it = nsc_session_iterate(b.session, 5, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *tr = nsc_iterator_trace(it, m[0]);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &item);
    nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
    nsc_update(total, nsc_add(nsc_add(total, nsc_sum_all(h)), seed));
    nsc_save_as(h, "last h0");
    nsc_trace_if(tr, nsc_ge_scalar(nsc_max(item), 1.0));
    nsc_iterator_exit(tr);
    nsc_trace_end(tr);
    nsc_trace *after = nsc_session_trace(b.session, m[0]);
    nsc_invoke *ia = nsc_trace_invoke(after, 1, &x);
    nsc_save_as(nsc_add(nsc_invoke_output(ia, "h.0", 0), total), "after");
    for (int i = 0; i < 5; i++) {
        nsc_free(items[i]);
    }
    nsc_free(zero);
    nsc_free(x);
    return b;
}

const nsct_graph_builder nsct_graph_builders[] = {
    { "reads",
      "Intervention (output, input, the model's output), Lock, named saves",
      1,
      { NSCT_CHAIN },
      build_reads },
    { "inplace_views",
      "in-place zero_/add_/mul_/fill_ through select/narrow/slice views",
      1,
      { NSCT_CHAIN },
      build_inplace_views },
    { "swaps",
      "Swap of outputs and inputs, constants, reads after a swap",
      1,
      { NSCT_CHAIN },
      build_swaps },
    { "patching",
      "three invokes, copy_ from one invoke's rows into another's",
      1,
      { NSCT_CHAIN },
      build_patching },
    { "apply_and_functions",
      "ApplyModule with and without hooks, Function (registered)",
      1,
      { NSCT_CHAIN },
      build_apply_and_functions },
    { "stop_skip_log",
      "Skip, Log, EarlyStop, a save never computed",
      1,
      { NSCT_CHAIN },
      build_stop_skip_log },
    { "cache", "Cache by glob with inputs, per invoke", 1, { NSCT_CHAIN }, build_cache },
    { "conditionals",
      "Conditional with else, nesting, a constant condition",
      1,
      { NSCT_CHAIN },
      build_conditionals },
    { "grads",
      "Grad (read, in-place edit), GradSwap, Backward twice with retain_graph",
      1,
      { NSCT_CHAIN },
      build_grads },
    { "ops",
      "multi-output ops, op params, f64/i64/bool constants, NaN/Inf, a constant by name",
      1,
      { NSCT_CHAIN },
      build_ops },
    { "batch1",
      "batch on dim 1, two invokes of different sizes",
      1,
      { NSCT_BATCH1 },
      build_batch1 },
    { "gpt2_heads",
      "GPT-2 hook points (pattern, hook_z ablation), logit lens, loss",
      1,
      { NSCT_GPT2 },
      build_gpt2_heads },
    { "generation",
      "a generation trace, every-call steering, the generator point",
      1,
      { NSCT_GPT2 },
      build_generation },
    { "session",
      "session values, Bridge between traces on two models, Update",
      2,
      { NSCT_CHAIN, NSCT_CHAIN_B },
      build_session },
    { "iterator",
      "iterator over items of two shapes, Update, exit on a condition, bridges",
      1,
      { NSCT_CHAIN },
      build_iterator },
};
const int nsct_n_graph_builders = NSCI_ARRAY_LEN(nsct_graph_builders);

nsc_module *nsct_builder_model(nsct_model_id id) {
    switch (id) {
        case NSCT_CHAIN:
        case NSCT_CHAIN_B:
            return nsct_chain_model(3, 4);
        case NSCT_BATCH1:
            return nsct_batch1_model(3);
        default:
            return nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    }
}

nsc_status nsct_built_run(nsct_built *b) {
    return b->session ? nsc_session_run(b->session) : nsc_trace_run(b->trace);
}

void nsct_built_free(nsct_built *b) {
    nsc_session_free(b->session);
    nsc_trace_free(b->trace);
    b->session = NULL;
    b->trace = NULL;
}
