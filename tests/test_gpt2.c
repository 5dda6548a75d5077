// GPT-2 against Hugging Face transformers (tests/fixtures/gpt2_tiny, made by
// make_gpt2_fixture.py): the module tree and names, logits, loss and every
// parameter's gradient, a left-padded batch, the fused and materialized
// attention paths, a META forward that learns every hook point's shape,
// input errors, an early stop from a hook, and out-of-memory sweeps.
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "tests/expect.h"
#include "tests/harness.h"

// Logits: one f32 forward through 2 blocks; PyTorch sums in other orders.
#define TOL_LOGITS ((nsct_tol){ 1e-5, 1e-4, "f32 forward: summation order vs PyTorch" })
// Gradients: a backward through the whole model accumulates more rounding.
#define TOL_GRAD ((nsct_tol){ 1e-5, 1e-3, "f32 backward: summation order vs PyTorch" })
// Fused vs materialized attention: the same math, blocked differently (the
// gradients pass through both paths' rounding once more).
#define TOL_PATHS      ((nsct_tol){ 1e-6, 1e-5, "f32: blocked vs whole-matrix attention" })
#define TOL_PATHS_GRAD ((nsct_tol){ 1e-5, 1e-4, "f32 gradients: blocked vs whole-matrix" })

static nsc_module *g_model;
static nsc_safetensors *g_ref;

static void load(void) {
    g_model = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(g_model, "gpt2_tiny: %s", nsc_last_error());
    // Module paths are cached on first use (an allocation owned by the
    // module): make them now so that leak counts see only the forwards.
    for (int64_t i = 0; i < nsc_module_n_modules(g_model); i++) {
        nsc_module_path(nsc_module_at(g_model, i));
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

static nsc_tensor *call3(nsc_module *m, nsc_tensor *a, nsc_tensor *b, nsc_tensor *c) {
    nsc_tensor *in[3] = { a, b, c };
    return nsc_module_call(m, 3, in);
}

// --- the tree ---

Test(gpt2, module_tree_and_names_follow_hugging_face, .init = load, .fini = unload) {
    static const char *const paths[][2] = {
        { "transformer", "GPT2Model" },
        { "transformer.wte", "Embedding" },
        { "transformer.wpe", "Embedding" },
        { "transformer.drop", "Dropout" },
        { "transformer.h", "ModuleList" },
        { "transformer.h.1", "GPT2Block" },
        { "transformer.h.0.ln_1", "LayerNorm" },
        { "transformer.h.0.attn", "GPT2Attention" },
        { "transformer.h.0.attn.c_attn", "Conv1D" },
        { "transformer.h.0.attn.c_proj", "Conv1D" },
        { "transformer.h.0.attn.attn_dropout", "Dropout" },
        { "transformer.h.0.attn.resid_dropout", "Dropout" },
        { "transformer.h.0.attn.hook_q", "HookPoint" },
        { "transformer.h.0.attn.hook_k", "HookPoint" },
        { "transformer.h.0.attn.hook_v", "HookPoint" },
        { "transformer.h.0.attn.hook_pattern", "HookPoint" },
        { "transformer.h.0.attn.hook_z", "HookPoint" },
        { "transformer.h.0.ln_2", "LayerNorm" },
        { "transformer.h.0.mlp", "GPT2MLP" },
        { "transformer.h.0.mlp.c_fc", "Conv1D" },
        { "transformer.h.0.mlp.c_proj", "Conv1D" },
        { "transformer.h.0.mlp.act", "GELU" },
        { "transformer.h.0.mlp.dropout", "Dropout" },
        { "transformer.ln_f", "LayerNorm" },
        { "lm_head", "Linear" },
        { "generator", "Generator" },
    };
    cr_expect_str_eq(nsc_module_type(g_model), "GPT2LMHeadModel");
    for (int i = 0; i < NSCI_ARRAY_LEN(paths); i++) {
        nsc_module *m = nsc_module_find(g_model, paths[i][0]);
        cr_expect(m, "%s: %s", paths[i][0], nsc_last_error());
        if (m) {
            cr_expect_str_eq(nsc_module_type(m), paths[i][1], "%s", paths[i][0]);
        }
    }
    // Parameters in HF's state_dict order, the tied head listed last.
    static const char *const names[] = {
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.ln_1.bias",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_attn.bias",
        "transformer.h.0.attn.c_proj.weight",
        "transformer.h.0.attn.c_proj.bias",
        "transformer.h.0.ln_2.weight",
        "transformer.h.0.ln_2.bias",
        "transformer.h.0.mlp.c_fc.weight",
        "transformer.h.0.mlp.c_fc.bias",
        "transformer.h.0.mlp.c_proj.weight",
        "transformer.h.0.mlp.c_proj.bias",
    };
    cr_assert_eq(nsc_module_n_params(g_model), 2 + 2 * 12 + 2 + 1);
    for (int i = 0; i < NSCI_ARRAY_LEN(names); i++) {
        const char *path;
        nsc_module_param_at(g_model, i, &path);
        cr_expect_str_eq(path, names[i]);
    }
    const char *last;
    nsc_tensor *head = nsc_module_param_at(g_model, 28, &last);
    cr_expect_str_eq(last, "lm_head.weight");
    cr_expect_eq(head, nsc_module_find_tensor(g_model, "transformer.wte.weight"),
                 "tied: one tensor");
    cr_expect_eq(nsc_module_param_count(g_model), 110592);
    nsc_tensor *w = nsc_module_find_tensor(g_model, "transformer.h.1.attn.c_attn.weight");
    cr_expect(nsc_tensor_size(w, 0) == 64 && nsc_tensor_size(w, 1) == 192, "Conv1D is [in, out]");
    cr_expect_not(nsc_module_is_training(g_model), "loaded in evaluation mode");
    cr_expect(nsc_is_gpt2(g_model));
    cr_expect_not(nsc_is_gpt2(nsc_module_find(g_model, "transformer")));
}

// --- numbers against transformers ---

Test(gpt2, logits_match_transformers, .init = load, .fini = unload) {
    const char *torch = nsc_safetensors_get_metadata(g_ref, "torch");
    const char *transformers = nsc_safetensors_get_metadata(g_ref, "transformers");
    cr_assert(torch && transformers, "the fixture records its versions");
    cr_log_info("reference from torch %s, transformers %s", torch, transformers);
    int64_t before = nsct_live_blocks();
    nsc_tensor *ids = ref("ids"), *want = ref("logits");
    nsc_tensor *got = call3(g_model, ids, NULL, NULL);
    cr_assert(got, "%s", nsc_last_error());
    nsct_expect_close(got, want, TOL_LOGITS, "logits");
    nsc_tensor *via_transformer = call3(nsc_module_find(g_model, "transformer"), ids, NULL, NULL);
    cr_expect_eq(nsc_tensor_ndim(via_transformer), 3);
    cr_expect_eq(nsc_tensor_size(via_transformer, 2), 64, "transformer returns the hidden states");
    nsc_free(via_transformer);
    nsc_free(got);
    nsc_free(ids);
    nsc_free(want);
    cr_expect_eq(nsct_live_blocks(), before);
}

// HF's causal LM loss: logits[:, :-1] against ids[:, 1:], mean over tokens.
static nsc_tensor *lm_loss(nsc_tensor *logits, nsc_tensor *ids) {
    int64_t b = nsc_tensor_size(ids, 0), t = nsc_tensor_size(ids, 1),
            v = nsc_tensor_size(logits, 2);
    nsc_tensor *head = nsc_narrow(logits, 1, 0, t - 1);
    nsc_tensor *flat = nsc_reshape(head, NSC_SHAPE(b * (t - 1), v));
    nsc_tensor *tail = nsc_narrow(ids, 1, 1, t - 1);
    nsc_tensor *target = nsc_reshape(tail, NSC_SHAPE(b * (t - 1)));
    nsc_tensor *loss = nsc_cross_entropy(flat, target, NSC_REDUCTION_MEAN, -100);
    nsc_free(head);
    nsc_free(flat);
    nsc_free(tail);
    nsc_free(target);
    return loss;
}

Test(gpt2, loss_and_every_gradient_match_transformers, .init = load, .fini = unload) {
    cr_assert_eq(nsc_module_requires_grad_(g_model, true), NSC_OK);
    nsc_tensor *ids = ref("ids"), *want_loss = ref("loss");
    nsc_tensor *logits = call3(g_model, ids, NULL, NULL);
    nsc_tensor *loss = lm_loss(logits, ids);
    cr_assert(loss, "%s", nsc_last_error());
    nsct_expect_close(loss, want_loss, TOL_LOGITS, "loss");
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    int checked = 0;
    for (int64_t i = 0; i < nsc_module_n_params(g_model); i++) {
        const char *path;
        nsc_tensor *p = nsc_module_param_at(g_model, i, &path);
        char key[300];
        snprintf(key, sizeof key, "grad.%s", path);
        if (strcmp(path, "lm_head.weight") == 0) {
            continue; // the same tensor as wte: its gradient holds both uses
        }
        nsc_tensor *want = ref(key);
        nsct_expect_close(nsc_tensor_get_grad(p), want, TOL_GRAD, key);
        nsc_free(want);
        checked++;
    }
    cr_expect_eq(checked, 28);
    nsc_free(logits);
    nsc_free(loss);
    nsc_free(ids);
    nsc_free(want_loss);
}

typedef struct seen_grad {
    int calls;
    nsc_tensor *grad;
} seen_grad;

static nsc_status keep_grad_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    seen_grad *seen = ctx;
    (void)replacement;
    seen->calls++;
    nsc_free(seen->grad);
    seen->grad = nsc_clone(grad);
    return NSC_OK;
}

// A hook on the tied wte/lm_head weight runs once, on the total of both uses
// (torch's AccumulateGrad sums a leaf's edges first): it saw each use's part.
Test(gpt2, a_hook_on_the_tied_embedding_sees_its_total_once, .init = load, .fini = unload) {
    cr_assert_eq(nsc_module_requires_grad_(g_model, true), NSC_OK);
    nsc_tensor *wte = nsc_module_param(nsc_module_find(g_model, "transformer.wte"), "weight");
    seen_grad seen = { 0 };
    cr_assert_gt(nsc_tensor_register_hook(wte, keep_grad_hook, &seen, NULL), 0, "%s",
                 nsc_last_error());
    nsc_tensor *ids = ref("ids");
    nsc_tensor *logits = call3(g_model, ids, NULL, NULL);
    nsc_tensor *loss = lm_loss(logits, ids);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(seen.calls, 1, "the hook ran %d times", seen.calls);
    nsc_tensor *want = ref("grad.transformer.wte.weight");
    nsct_expect_close(seen.grad, want, TOL_GRAD, "the hook's gradient");
    nsc_free(want);
    nsc_free(seen.grad);
    nsc_free(logits);
    nsc_free(loss);
    nsc_free(ids);
}

Test(gpt2, left_padded_batch_matches_transformers, .init = load, .fini = unload) {
    int64_t before = nsct_live_blocks();
    nsc_tensor *ids = ref("pad.ids"), *mask = ref("pad.mask"), *pos = ref("pad.position_ids");
    nsc_tensor *want = ref("pad.logits");
    nsc_tensor *got = call3(g_model, ids, mask, pos);
    cr_assert(got, "%s", nsc_last_error());
    nsct_expect_close(got, want, TOL_LOGITS, "padded logits (every position, padding included)");
    // nsc's position ids agree wherever the mask is 1 (padding: 1, as transformers 4).
    nsc_tensor *mine = nsc_gpt2_position_ids(mask);
    const int64_t *a = nsc_tensor_data(mine), *b = nsc_tensor_data(pos),
                  *mk = nsc_tensor_data(mask);
    for (int64_t i = 0; i < nsc_tensor_numel(mask); i++) {
        cr_expect_eq(a[i], mk[i] ? b[i] : 1, "position %lld", (long long)i);
    }
    nsc_tensor *temps[] = { ids, mask, pos, want, got, mine };
    for (int i = 0; i < 6; i++) {
        nsc_free(temps[i]);
    }
    cr_expect_eq(nsct_live_blocks(), before);
}

// --- fused and materialized attention ---

static nsc_status passive_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                               nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)values, (void)replace;
    (*(int *)ctx)++;
    return NSC_OK;
}

// Logits and the gradient of their sum with respect to every parameter.
static nsc_tensor *run_with_grads(nsc_tensor *ids, nsc_tensor *mask, nsc_tensor **grads) {
    nsc_tensor *logits = call3(g_model, ids, mask, NULL);
    nsc_tensor *w = nsc_linspace(-1, 1, nsc_tensor_numel(logits), NSC_F32);
    nsc_tensor *w3 = nsc_view(w, 3, nsc_tensor_shape(logits));
    nsc_tensor *prod = nsc_mul(logits, w3);
    nsc_tensor *loss = nsc_sum_all(prod);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    for (int64_t i = 0; i < nsc_module_n_params(g_model); i++) {
        nsc_tensor *p = nsc_module_param_at(g_model, i, NULL);
        grads[i] = nsc_clone(nsc_tensor_get_grad(p));
        nsc_tensor_set_grad(p, NULL);
    }
    nsc_free(w);
    nsc_free(w3);
    nsc_free(prod);
    nsc_free(loss);
    return logits;
}

Test(gpt2, fused_and_materialized_attention_agree_with_gradients, .init = load, .fini = unload) {
    nsc_module_requires_grad_(g_model, true);
    nsc_tensor *ids = ref("pad.ids"), *mask = ref("pad.mask");
    nsc_tensor *g_fused[32] = { 0 }, *g_hooked[32] = { 0 };
    nsc_module_reset_calls(g_model);
    nsc_tensor *fused = run_with_grads(ids, mask, g_fused);
    nsc_module *pattern = nsc_module_find(g_model, "transformer.h.0.attn.hook_pattern");
    nsc_module *z = nsc_module_find(g_model, "transformer.h.1.attn.hook_z");
    cr_expect_eq(nsc_module_call_count(pattern), 1, "the fused path still counts hook calls");
    int fired = 0;
    int64_t h1 = nsc_module_add_hook(pattern, NSC_HOOK_OUTPUT, passive_hook, &fired, NULL);
    int64_t h2 = nsc_module_add_hook(z, NSC_HOOK_OUTPUT, passive_hook, &fired, NULL);
    nsc_tensor *hooked = run_with_grads(ids, mask, g_hooked);
    cr_expect_eq(fired, 2, "each hook point fired once");
    cr_expect_eq(nsc_module_call_count(pattern), 2);
    nsct_expect_close(hooked, fused, TOL_PATHS, "logits");
    for (int64_t i = 0; i < nsc_module_n_params(g_model); i++) {
        const char *path;
        nsc_module_param_at(g_model, i, &path);
        if (strcmp(path, "lm_head.weight") == 0) {
            continue; // wte's tensor: its gradient was taken (and cleared) above
        }
        nsct_expect_close(g_hooked[i], g_fused[i], TOL_PATHS_GRAD, path);
        nsc_free(g_hooked[i]);
        nsc_free(g_fused[i]);
    }
    nsc_module_remove_hook(pattern, h1);
    nsc_module_remove_hook(z, h2);
    nsc_free(fused);
    nsc_free(hooked);
    nsc_free(ids);
    nsc_free(mask);
}

// --- META: the shapes of every hook point, no data, no kernel ---

typedef struct shapes_seen {
    int n;
    char path[64][96];
    int ndim[64];
    int64_t shape[64][4];
} shapes_seen;

static nsc_status record_shape(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                               nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)kind, (void)call_index, (void)n, (void)replace;
    shapes_seen *s = ctx;
    snprintf(s->path[s->n], sizeof s->path[0], "%s", nsc_module_path(m));
    s->ndim[s->n] = nsc_tensor_ndim(values[0]);
    for (int d = 0; d < s->ndim[s->n] && d < 4; d++) {
        s->shape[s->n][d] = nsc_tensor_size(values[0], d);
    }
    cr_expect_eq(nsc_tensor_device(values[0]), NSC_META, "%s", nsc_module_path(m));
    s->n++;
    return NSC_OK;
}

static void expect_shape(const shapes_seen *s, const char *path, int ndim, const int64_t *want) {
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->path[i], path) == 0) {
            cr_expect_eq(s->ndim[i], ndim, "%s", path);
            for (int d = 0; d < ndim; d++) {
                cr_expect_eq(s->shape[i][d], want[d], "%s dim %d", path, d);
            }
            return;
        }
    }
    cr_expect(false, "%s never fired", path);
}

Test(gpt2, meta_forward_learns_every_hook_point_shape, .init = load, .fini = unload) {
    static const char *const hooked[] = { "transformer.h.1.attn.hook_q",
                                          "transformer.h.1.attn.hook_k",
                                          "transformer.h.1.attn.hook_v",
                                          "transformer.h.1.attn.hook_pattern",
                                          "transformer.h.1.attn.hook_z",
                                          "transformer.h.0",
                                          "transformer.h.0.mlp.act",
                                          "transformer",
                                          "lm_head" };
    shapes_seen *seen = calloc(1, sizeof *seen);
    int64_t handles[16];
    for (int i = 0; i < NSCI_ARRAY_LEN(hooked); i++) {
        handles[i] = nsc_module_add_hook(nsc_module_find(g_model, hooked[i]), NSC_HOOK_OUTPUT,
                                         record_shape, seen, NULL);
    }
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_META, NSC_SHAPE(3, 5));
    nsc_tensor *mask = nsc_ones(NSC_I64, NSC_META, NSC_SHAPE(3, 5));
    int64_t data = nsc_mem_stats_get().data_bytes, kernels = nsci_kernel_count();
    nsc_tensor *logits = call3(g_model, ids, mask, NULL);
    cr_assert(logits, "%s", nsc_last_error());
    cr_expect_eq(nsc_mem_stats_get().data_bytes, data, "no data allocated on META");
    cr_expect_eq(nsci_kernel_count(), kernels, "no kernel ran on META");
    expect_shape(seen, "transformer.h.1.attn.hook_q", 4, (int64_t[]){ 3, 4, 5, 16 });
    expect_shape(seen, "transformer.h.1.attn.hook_k", 4, (int64_t[]){ 3, 4, 5, 16 });
    expect_shape(seen, "transformer.h.1.attn.hook_v", 4, (int64_t[]){ 3, 4, 5, 16 });
    expect_shape(seen, "transformer.h.1.attn.hook_pattern", 4, (int64_t[]){ 3, 4, 5, 5 });
    expect_shape(seen, "transformer.h.1.attn.hook_z", 4, (int64_t[]){ 3, 5, 4, 16 });
    expect_shape(seen, "transformer.h.0", 3, (int64_t[]){ 3, 5, 64 });
    expect_shape(seen, "transformer.h.0.mlp.act", 3, (int64_t[]){ 3, 5, 256 });
    expect_shape(seen, "transformer", 3, (int64_t[]){ 3, 5, 64 });
    expect_shape(seen, "lm_head", 3, (int64_t[]){ 3, 5, 100 });
    for (int i = 0; i < NSCI_ARRAY_LEN(hooked); i++) {
        nsc_module_remove_hook(nsc_module_find(g_model, hooked[i]), handles[i]);
    }
    nsc_free(logits);
    // Without hooks (the fused op) META works too.
    logits = call3(g_model, ids, NULL, NULL);
    cr_expect(logits && nsc_tensor_device(logits) == NSC_META && nsc_tensor_size(logits, 2) == 100);
    nsc_free(logits);
    nsc_free(ids);
    nsc_free(mask);
    free(seen);
}

// --- errors ---

static void expect_failure(nsc_tensor *ids, nsc_tensor *mask, nsc_tensor *pos, nsc_status status,
                           const char *text) {
    int64_t before = nsct_live_blocks();
    nsc_tensor *out = call3(g_model, ids, mask, pos);
    cr_expect_null(out);
    cr_expect_eq(nsc_last_status(), status, "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), text), "\"%s\" lacks \"%s\"", nsc_last_error(), text);
    nsc_free(out);
    cr_expect_eq(nsct_live_blocks(), before, "leak after: %s", text);
    nsc_clear_error();
}

Test(gpt2_errors, bad_inputs_fail_clearly_without_leaks, .init = load, .fini = unload) {
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2, 4));
    ((int64_t *)nsc_tensor_data(ids))[6] = 100; // row 1, position 2: outside the vocabulary
    expect_failure(ids, NULL, NULL, NSC_ERR_ARG, "100");
    expect_failure(ids, NULL, NULL, NSC_ERR_ARG, "[1,2]");
    expect_failure(ids, NULL, NULL, NSC_ERR_ARG, "transformer.wte");
    ((int64_t *)nsc_tensor_data(ids))[6] = -3;
    expect_failure(ids, NULL, NULL, NSC_ERR_ARG, "-3");
    nsc_tensor *longer = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, 65));
    expect_failure(longer, NULL, NULL, NSC_ERR_SHAPE, "n_positions = 64");
    nsc_tensor *floats = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
    expect_failure(floats, NULL, NULL, NSC_ERR_DTYPE, "expected [B, T] i64");
    nsc_tensor *rank1 = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(4));
    expect_failure(rank1, NULL, NULL, NSC_ERR_SHAPE, "input_ids [4]");
    nsc_tensor *ok = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2, 4));
    nsc_tensor *mask = nsc_ones(NSC_I64, NSC_CPU, NSC_SHAPE(2, 5));
    expect_failure(ok, mask, NULL, NSC_ERR_SHAPE, "attention_mask [2,5]");
    nsc_tensor *pos = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
    expect_failure(ok, NULL, pos, NSC_ERR_SHAPE, "position_ids");
    nsc_tensor *far = nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(2, 4), 64);
    expect_failure(ok, NULL, far, NSC_ERR_ARG, "transformer.wpe");
    nsc_tensor *temps[] = { ids, longer, floats, rank1, ok, mask, pos, far };
    for (int i = 0; i < 8; i++) {
        nsc_free(temps[i]);
    }
    nsc_tensor *four[4] = { NULL };
    cr_expect_null(nsc_module_call(g_model, 4, four));
    cr_expect_null(nsc_module_call(g_model, 0, four));
}

static nsc_status stop_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                            nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)values, (void)replace, (void)ctx;
    return NSC_STOPPED;
}

Test(gpt2_errors, a_hook_stopping_mid_forward_frees_everything, .init = load, .fini = unload) {
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2, 6));
    nsc_module *h0 = nsc_module_find(g_model, "transformer.h.0");
    int64_t handle = nsc_module_add_hook(h0, NSC_HOOK_OUTPUT, stop_hook, NULL, NULL);
    int fired = 0;
    for (int fused = 0; fused < 2; fused++) {
        int64_t handle_q = -1;
        if (!fused) { // the materialized path too
            nsc_module *q = nsc_module_find(g_model, "transformer.h.0.attn.hook_q");
            handle_q = nsc_module_add_hook(q, NSC_HOOK_OUTPUT, passive_hook, &fired, NULL);
        }
        nsc_module_reset_calls(g_model);
        int64_t before = nsct_live_blocks();
        nsc_tensor *out = call3(g_model, ids, NULL, NULL);
        cr_expect_null(out);
        cr_expect_eq(nsc_last_status(), NSC_STOPPED, "%s", nsc_last_error());
        cr_expect_eq(nsct_live_blocks(), before, "leaked after the stop");
        cr_expect_eq(nsc_module_call_count(h0), 1);
        cr_expect_eq(nsc_module_call_count(nsc_module_find(g_model, "transformer.h.1")), 0);
        cr_expect_eq(nsc_module_call_count(nsc_module_find(g_model, "transformer.ln_f")), 0);
        cr_expect_eq(nsc_module_call_count(nsc_module_find(g_model, "lm_head")), 0);
        if (handle_q > 0) {
            nsc_module_remove_hook(nsc_module_find(g_model, "transformer.h.0.attn.hook_q"),
                                   handle_q);
        }
        nsc_clear_error();
    }
    nsc_module_remove_hook(h0, handle);
    cr_expect_eq(fired, 1, "the materialized run reached hook_q");
    nsc_free(ids);
}

// Every allocation of a forward (and of a forward + backward) fails in turn:
// the call returns NULL with NSC_ERR_OOM and nothing leaks.
Test(gpt2_errors, out_of_memory_sweep, .init = load, .fini = unload) {
    nsc_tensor *ids = ref("pad.ids"), *mask = ref("pad.mask");
    int64_t start = nsc_mem_stats_get().n_allocs;
    nsc_tensor *out = call3(g_model, ids, mask, NULL);
    int64_t n_allocs = nsc_mem_stats_get().n_allocs - start;
    cr_assert(out);
    nsc_free(out);
    int failures = 0;
    for (int64_t k = 1; k <= n_allocs + 1; k++) {
        int64_t before = nsct_live_blocks();
        nsc_mem_fail_after(k);
        out = call3(g_model, ids, mask, NULL);
        nsc_mem_fail_after(0);
        if (!out && nsc_last_status() != NSC_ERR_OOM) {
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

// --- construction ---

Test(gpt2, new_initializes_as_hugging_face) {
    nsc_gpt2_config c = nsc_gpt2_config_default();
    c.n_layer = 8, c.n_head = 4, c.n_embd = 128, c.vocab_size = 300, c.n_positions = 32;
    int64_t before = nsct_live_blocks();
    nsc_generator *gen = nsc_generator_new(7);
    nsc_module *m = nsc_gpt2_new(&c, gen);
    cr_assert(m, "%s", nsc_last_error());
    nsc_tensor *w = nsc_module_find_tensor(m, "transformer.h.3.attn.c_attn.weight");
    nsc_tensor *proj = nsc_module_find_tensor(m, "transformer.h.3.mlp.c_proj.weight");
    nsc_tensor *sw = nsc_std(w, 0, NULL, false, false), *sp = nsc_std(proj, 0, NULL, false, false);
    cr_expect(fabs(nsc_tensor_item(sw) - 0.02) < 0.001, "c_attn std %g", nsc_tensor_item(sw));
    cr_expect(fabs(nsc_tensor_item(sp) - 0.005) < 0.0003, "c_proj std %g (0.02 / sqrt(16))",
              nsc_tensor_item(sp));
    nsc_tensor *bias = nsc_module_find_tensor(m, "transformer.h.3.attn.c_attn.bias");
    nsc_tensor *ln = nsc_module_find_tensor(m, "transformer.ln_f.weight");
    nsc_tensor *bsum = nsc_sum_all(bias), *lsum = nsc_sum_all(ln);
    cr_expect_eq(nsc_tensor_item(bsum), 0.0);
    cr_expect_eq(nsc_tensor_item(lsum), 128.0);
    cr_expect_not(nsc_module_is_training(m));
    nsc_tensor *temps[] = { sw, sp, bsum, lsum };
    for (int i = 0; i < 4; i++) {
        nsc_free(temps[i]);
    }
    nsc_module_free(m);
    nsc_generator_free(gen);
    c.n_head = 5; // 128 is not divisible by 5
    cr_expect_null(nsc_gpt2_new(&c, NULL));
    cr_expect(strstr(nsc_last_error(), "n_head = 5"), "%s", nsc_last_error());
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(gpt2, training_mode_uses_dropout_and_repeats_for_a_seed) {
    nsc_gpt2_config c = nsc_gpt2_config_default();
    c.n_layer = 2, c.n_head = 2, c.n_embd = 32, c.vocab_size = 50, c.n_positions = 16;
    nsc_generator *gen = nsc_generator_new(3);
    nsc_module *m = nsc_gpt2_new(&c, gen);
    nsc_tensor *ids = nsc_randint(gen, 0, 50, NSC_SHAPE(2, 8));
    nsc_tensor *eval = call3(m, ids, NULL, NULL);
    nsc_module_train(m, true);
    nsc_module_requires_grad_(m, true);
    nsc_manual_seed(21);
    nsc_tensor *a = call3(m, ids, NULL, NULL);
    nsc_manual_seed(21);
    nsc_tensor *b = call3(m, ids, NULL, NULL);
    cr_assert(a && b, "%s", nsc_last_error());
    cr_expect_not(nsc_allclose(a, eval, 1e-4, 1e-4, false), "dropout changed the logits");
    nsct_expect_close(a, b, TOL_EXACT, "the same seed, the same masks");
    nsc_tensor *loss = lm_loss(a, ids);
    cr_expect_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *g =
        nsc_tensor_get_grad(nsc_module_find_tensor(m, "transformer.h.1.attn.c_attn.weight"));
    cr_expect(g != NULL, "gradients through the materialized attention with dropout");
    nsc_tensor *temps[] = { ids, eval, a, b, loss };
    for (int i = 0; i < 5; i++) {
        nsc_free(temps[i]);
    }
    nsc_module_free(m);
    nsc_generator_free(gen);
}

// --- the fused op's argument checks ---

static void expect_attention_error(nsc_tensor *q, nsc_tensor *k, nsc_tensor *v, nsc_tensor *mask,
                                   bool causal, nsc_status status, const char *text) {
    int64_t before = nsct_live_blocks();
    nsc_tensor *out = nsc_attention(q, k, v, mask, 0.5, causal);
    cr_expect_null(out);
    cr_expect_eq(nsc_last_status(), status, "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), text), "\"%s\" lacks \"%s\"", nsc_last_error(), text);
    cr_expect_eq(nsct_live_blocks(), before);
    nsc_clear_error();
}

Test(attention, bad_arguments_fail_clearly) {
    nsc_tensor *q = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3, 4, 8));
    nsc_tensor *k = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3, 6, 8));
    nsc_tensor *k64 = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(2, 3, 6, 8));
    nsc_tensor *k_short = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3, 2, 8));
    nsc_tensor *k_wide = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3, 6, 7));
    nsc_tensor *q3 = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4, 8));
    nsc_tensor *mask = nsc_ones(NSC_BOOL, NSC_CPU, NSC_SHAPE(2, 5));
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2, 3, 4, 8));
    expect_attention_error(q, k64, k, NULL, true, NSC_ERR_DTYPE, "expected one of f32, f64");
    expect_attention_error(ids, ids, ids, NULL, true, NSC_ERR_DTYPE, "i64");
    expect_attention_error(q3, k, k, NULL, true, NSC_ERR_SHAPE, "expected q [B,H,T,D]");
    expect_attention_error(q, k_wide, k, NULL, true, NSC_ERR_SHAPE, "one B, H, S and D");
    expect_attention_error(q, k_short, k_short, NULL, true, NSC_ERR_SHAPE, "at least as many keys");
    expect_attention_error(q, k, k, mask, true, NSC_ERR_SHAPE, "mask: expected [B, S] = [2, 6]");
    nsc_tensor *ok = nsc_attention(q, k_short, k_short, NULL, 0.5, false);
    cr_expect(ok && nsc_tensor_size(ok, 1) == 4 && nsc_tensor_size(ok, 2) == 3,
              "non-causal: any key count; out [B, T, H, Dv]");
    cr_expect_null(nsc_attention_bias(mask, 4, 6, true, NSC_F32, NSC_CPU));
    cr_expect_null(nsc_attention_bias(NULL, 4, 3, true, NSC_F32, NSC_CPU));
    cr_expect_null(nsc_attention_bias(NULL, 4, 6, true, NSC_I64, NSC_CPU));
    nsc_tensor *bias = nsc_attention_bias(NULL, 2, 3, true, NSC_F32, NSC_CPU);
    const float *bv = nsc_tensor_data(bias);
    cr_expect(bv[0] == 0 && bv[1] == 0 && bv[2] == -FLT_MAX && bv[5] == 0,
              "query 0 sees keys 0..1, query 1 all three");
    nsc_tensor *temps[] = { q, k, k64, k_short, k_wide, q3, mask, ids, ok, bias };
    for (int i = 0; i < 10; i++) {
        nsc_free(temps[i]);
    }
}
