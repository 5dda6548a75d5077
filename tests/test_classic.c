// nnsight's classic uses (issue 7 item 6, issue 8 item 1) as nsc traces on
// the tiny GPT-2 (suite classic) and on the shipped model (suite
// classic_shipped, skipped where models/induction is absent), against
// PyTorch with plain forward hooks on the same transformers model
// (tests/fixtures/make_classic_fixture.py): logit lens, head ablation
// through the pattern hook point, activation patching across invokes in one
// pass, steering at every generation step, early stop, and attribution
// patching.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nsc/gpt2.h"
#include "tests/harness.h"

// f32 through two layers and a 100-token head: a few ulp per op, summed.
#define TOL_CLASSIC ((nsct_tol){ 1e-4, 1e-4, "f32 GPT-2 forward: op order differs from torch" })

typedef struct classic {
    nsc_module *model;
    nsc_safetensors *ref;
    nsc_tensor *clean, *corrupt;
    int64_t n_layer, T;
} classic;

// A model and its reference values.
typedef struct subject {
    const char *model; // a fixture name, or a path under the source root
    bool in_source_root;
    const char *ref; // under tests/fixtures
} subject;

static const subject TINY = { "gpt2_tiny", false, "classic/reference.safetensors" };
static const subject SHIPPED = { "models/induction", true, "classic/induction.safetensors" };

static void setup(classic *c, const subject *s) {
    char dir[1024];
    if (s->in_source_root) {
        const char *root = getenv("NSC_SOURCE_DIR");
        snprintf(dir, sizeof dir, "%s/%s", root ? root : ".", s->model);
        char weights[1100];
        snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
        if (access(weights, R_OK) != 0) {
            cr_skip_test("%s is not in this checkout", dir);
        }
    } else {
        snprintf(dir, sizeof dir, "%s", nsct_fixture_path(s->model));
    }
    c->model = nsc_gpt2_load(dir);
    c->ref = nsc_safetensors_open(nsct_fixture_path(s->ref));
    cr_assert(c->model && c->ref, "%s", nsc_last_error());
    c->clean = nsc_safetensors_load(c->ref, "ids.clean");
    c->corrupt = nsc_safetensors_load(c->ref, "ids.corrupt");
    nsc_gpt2_config cfg;
    nsc_gpt2_get_config(c->model, &cfg);
    c->n_layer = cfg.n_layer;
    c->T = nsc_tensor_size(c->clean, 1);
}

static void teardown(classic *c) {
    nsc_free(c->clean);
    nsc_free(c->corrupt);
    nsc_safetensors_free(c->ref);
    nsc_module_free(c->model);
}

static void expect_ref(classic *c, nsc_tensor *got, const char *name, nsct_tol tol) {
    nsc_tensor *want = nsc_safetensors_load(c->ref, name);
    char why[600];
    cr_expect(nsct_close(got, want, tol, why, sizeof why), "%s: %s", name, why);
    nsc_free(want);
}

static const char *block(int64_t l) {
    static char path[32];
    snprintf(path, sizeof path, "transformer.h.%lld", (long long)l);
    return path;
}

static void logit_lens_at_every_block(const subject *s) {
    classic c;
    setup(&c, s);
    nsc_trace *tr = nsc_trace_new(c.model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &c.clean);
    nsc_tensor *lens[8];
    for (int64_t l = 0; l < c.n_layer; l++) {
        nsc_tensor *h = nsc_invoke_output(inv, block(l), 0);
        lens[l] = nsc_save(nsc_trace_apply(tr, "lm_head", nsc_trace_apply(tr, "transformer.ln_f", h)));
    }
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got[8];
    for (int64_t l = 0; l < c.n_layer; l++) {
        got[l] = nsc_trace_get(tr, lens[l]);
    }
    nsc_tensor *stacked = nsc_stack((int)c.n_layer, got, 0);
    expect_ref(&c, stacked, "lens.logits", TOL_CLASSIC);
    nsc_free(stacked);
    for (int64_t l = 0; l < c.n_layer; l++) {
        nsc_free(got[l]);
    }
    nsc_trace_free(tr);
    teardown(&c);
}

static void zero_ablation_of_one_head_through_the_pattern(const subject *s) {
    classic c;
    setup(&c, s);
    nsc_trace *tr = nsc_trace_new(c.model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &c.clean);
    nsc_tensor *pattern = nsc_invoke_output(inv, "transformer.h.0.attn.hook_pattern", 0);
    cr_assert_eq(nsc_zero_(nsc_select(pattern, 1, 1)), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *logits = nsc_save(nsc_invoke_output(inv, "", 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_trace_get(tr, logits);
    expect_ref(&c, got, "ablate.logits", TOL_CLASSIC);
    nsc_free(got);
    nsc_trace_free(tr);
    teardown(&c);
}

// The whole layer x position table in one forward pass: invoke 0 is the
// clean prompt, and one corrupted invoke per cell takes the clean value of
// block l at position p.
static void activation_patching_table_in_one_pass(const subject *s) {
    classic c;
    setup(&c, s);
    nsc_trace *tr = nsc_trace_new(c.model);
    nsc_invoke *clean = nsc_trace_invoke(tr, 1, &c.clean);
    int64_t cells = c.n_layer * c.T;
    nsc_invoke *cell[32];
    for (int64_t i = 0; i < cells; i++) {
        cell[i] = nsc_trace_invoke(tr, 1, &c.corrupt);
    }
    nsc_tensor *last[32];
    for (int64_t i = 0; i < cells; i++) {
        int64_t l = i / c.T, p = i % c.T;
        nsc_tensor *src = nsc_select(nsc_invoke_output(clean, block(l), 0), 1, p);
        nsc_tensor *dst = nsc_select(nsc_invoke_output(cell[i], block(l), 0), 1, p);
        cr_assert_eq(nsc_copy_(dst, src), NSC_OK, "%s", nsc_last_error());
        last[i] = nsc_save(nsc_select(nsc_select(nsc_invoke_output(cell[i], "", 0), 1, -1), 0, 0));
    }
    int64_t dispatches = nsc_module_hook_dispatches(c.model);
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_module_hook_dispatches(c.model) - dispatches, 1, "one forward pass");
    nsc_tensor *rows[32];
    for (int64_t i = 0; i < cells; i++) {
        rows[i] = nsc_trace_get(tr, last[i]);
    }
    nsc_tensor *flat = nsc_stack((int)cells, rows, 0);
    nsc_tensor *table = nsc_reshape(flat, NSC_SHAPE(c.n_layer, c.T, -1));
    expect_ref(&c, table, "patch.logits", TOL_CLASSIC);
    for (int64_t i = 0; i < cells; i++) {
        nsc_free(rows[i]);
    }
    nsc_free(flat);
    nsc_free(table);
    nsc_trace_free(tr);
    teardown(&c);
}

static void steering_at_every_generation_step(const subject *s) {
    classic c;
    setup(&c, s);
    nsc_tensor *vector = nsc_safetensors_load(c.ref, "steer.vector");
    nsc_tensor *prompt = nsc_slice(c.clean, 1, 0, 6, 1);
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 10;
    nsc_trace *tr = nsc_trace_new_generate(c.model, &o);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &prompt);
    nsc_tensor *h0 = nsc_invoke_output(inv, "transformer.h.0", NSC_EVERY_CALL);
    cr_assert_eq(nsc_invoke_set_output(inv, "transformer.h.0", NSC_EVERY_CALL, nsc_add(h0, vector)),
                 NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *tokens = nsc_trace_generated(tr);
    expect_ref(&c, tokens, "steer.tokens", TOL_EXACT);
    nsc_free(tokens);
    nsc_free(prompt);
    nsc_free(vector);
    nsc_trace_free(tr);
    teardown(&c);
}

static void early_stop_after_block_0(const subject *s) {
    classic c;
    setup(&c, s);
    nsc_trace *tr = nsc_trace_new(c.model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &c.clean);
    nsc_tensor *h0 = nsc_save(nsc_invoke_output(inv, "transformer.h.0", 0));
    nsc_tensor *logits = nsc_save(nsc_invoke_output(inv, "", 0));
    cr_assert_eq(nsc_trace_stop(tr, "transformer.h.0", 0), NSC_OK);
    nsc_module *h1 = nsc_module_find(c.model, "transformer.h.1");
    int64_t k0 = nsci_kernel_count();
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    int64_t stopped_kernels = nsci_kernel_count() - k0;
    nsc_tensor *got = nsc_trace_get(tr, h0);
    expect_ref(&c, got, "stop.h0", TOL_CLASSIC);
    cr_expect_null(nsc_trace_get(tr, logits), "the logits were never computed");
    cr_expect_eq(nsc_module_call_count(h1), 0);
    nsc_tensor *full = nsc_module_forward(c.model, 1, &c.clean);
    nsc_free(full);
    k0 = nsci_kernel_count();
    full = nsc_module_forward(c.model, 1, &c.clean);
    cr_expect_lt(stopped_kernels, nsci_kernel_count() - k0, "fewer kernels than a full pass");
    nsc_free(full);
    nsc_free(got);
    nsc_trace_free(tr);
    teardown(&c);
}

// Attribution patching: gradient x (clean - corrupt) per block and
// position, with the clean and corrupted prompts as two invokes of one pass
// and one backward.
static void attribution_patching_matches_pytorch(const subject *s) {
    classic c;
    setup(&c, s);
    nsc_tensor *answer = nsc_safetensors_load(c.ref, "attr.answer");
    int64_t a = (int64_t)nsc_tensor_item(answer);
    nsc_trace *tr = nsc_trace_new(c.model);
    nsc_invoke *cl = nsc_trace_invoke(tr, 1, &c.clean), *co = nsc_trace_invoke(tr, 1, &c.corrupt);
    nsc_tensor *scores[8];
    for (int64_t l = 0; l < c.n_layer; l++) {
        nsc_tensor *hc = nsc_invoke_output(cl, block(l), 0), *hx = nsc_invoke_output(co, block(l), 0);
        nsc_tensor *diff = nsc_sub(hc, hx);
        scores[l] = nsc_save(nsc_select(nsc_sum(nsc_mul(nsc_proxy_grad(hx), diff), NSC_DIMS(-1), false),
                                        0, 0));
    }
    nsc_tensor *logits = nsc_invoke_output(co, "", 0);
    nsc_tensor *metric = nsc_select(nsc_select(nsc_select(logits, 1, -1), 0, 0), 0, a);
    cr_assert(nsc_trace_backward(metric, false), "%s", nsc_last_error());
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got[8];
    for (int64_t l = 0; l < c.n_layer; l++) {
        got[l] = nsc_trace_get(tr, scores[l]);
    }
    nsc_tensor *stacked = nsc_stack((int)c.n_layer, got, 0);
    expect_ref(&c, stacked, "attr.scores", TOL_CLASSIC);
    for (int64_t l = 0; l < c.n_layer; l++) {
        nsc_free(got[l]);
    }
    nsc_free(stacked);
    nsc_free(answer);
    nsc_trace_free(tr);
    teardown(&c);
}

// Each use on both models.
#define ON_BOTH_MODELS(NAME)                                                                       \
    Test(classic, NAME) {                                                                          \
        NAME(&TINY);                                                                               \
    }                                                                                              \
    Test(classic_shipped, NAME) {                                                                  \
        NAME(&SHIPPED);                                                                            \
    }

ON_BOTH_MODELS(logit_lens_at_every_block)
ON_BOTH_MODELS(zero_ablation_of_one_head_through_the_pattern)
ON_BOTH_MODELS(activation_patching_table_in_one_pass)
ON_BOTH_MODELS(steering_at_every_generation_step)
ON_BOTH_MODELS(early_stop_after_block_0)
ON_BOTH_MODELS(attribution_patching_matches_pytorch)
