// Allocation-failure sweeps over GPT-2 (issue 12, continued from
// test_reliability_oom.c): a forward + backward, a trace with interventions,
// checkpoint load and load_weights, and save over an existing checkpoint.
// The model is a small random GPT-2 (nsc_gpt2_new), saved to a temporary
// directory for the checkpoint sweeps, so no fixture is needed.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/reliability_util.h"
#include "tests/st_util.h"

enum {
    MAX_POINTS = 50000,
    B = 2,
    T = 7
};

static nsc_gpt2_config small_config(void) {
    nsc_gpt2_config c = nsc_gpt2_config_default();
    c.vocab_size = 50, c.n_positions = 16, c.n_embd = 16, c.n_layer = 2, c.n_head = 2;
    c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = 0;
    return c;
}

static nsc_module *small_gpt2(uint64_t seed) {
    nsc_gpt2_config c = small_config();
    nsc_generator *gen = nsc_generator_new(seed);
    nsc_module *m = nsc_gpt2_new(&c, gen);
    nsc_generator_free(gen);
    cr_assert(m, "%s", nsc_last_error());
    nsct_warm_paths(m);
    return m;
}

static nsc_tensor *token_ids(void) {
    nsc_generator *gen = nsc_generator_new(5);
    nsc_tensor *ids = nsc_randint(gen, 0, 50, NSC_SHAPE(B, T));
    nsc_generator_free(gen);
    return ids;
}

static void expect_clean(nsct_oom_result r, int64_t min_points) {
    cr_expect_eq(r.problems, 0, "%d problems (logged above)", r.problems);
    cr_expect_geq(r.points, min_points, "only %lld allocation points", (long long)r.points);
}

// --- (f) forward + backward ---

typedef struct fwd_bwd {
    nsc_module *model;
    nsc_tensor *ids, *targets;
    nsc_tensor *want[3], *got[3]; // logits, grad of wte, grad of h.1.mlp.c_fc.weight
} fwd_bwd;

static void clear_grads(nsc_module *m) {
    nsci_error_saved saved;
    nsci_error_save(&saved);
    for (int64_t i = 0; i < nsc_module_n_params(m); i++) {
        nsc_tensor_set_grad(nsc_module_param_at(m, i, NULL), NULL);
    }
    nsci_error_restore(&saved);
}

static bool fwd_bwd_run(void *ctx) {
    fwd_bwd *c = ctx;
    nsc_module_reset_calls(c->model);
    nsc_tensor *logits = nsc_module_call(c->model, 1, &c->ids);
    nsc_tensor *flat = nsc_reshape(logits, NSC_SHAPE(B * T, 50));
    nsc_tensor *loss = nsc_cross_entropy(flat, c->targets, NSC_REDUCTION_MEAN, -100);
    bool ok = loss && nsc_backward(loss, NULL, false) == NSC_OK;
    if (ok) {
        c->got[0] = nsc_retain(logits);
        c->got[1] = nsc_retain(
            nsc_tensor_get_grad(nsc_module_find_tensor(c->model, "transformer.wte.weight")));
        c->got[2] = nsc_retain(nsc_tensor_get_grad(
            nsc_module_find_tensor(c->model, "transformer.h.1.mlp.c_fc.weight")));
    }
    nsc_free(loss);
    nsc_free(flat);
    nsc_free(logits);
    clear_grads(c->model);
    return ok;
}

static bool results_verify(nsc_tensor **got, nsc_tensor **want, int n) {
    bool same = true;
    for (int i = 0; i < n; i++) {
        same = same && nsct_st_equal(got[i], want[i]);
        nsc_free(got[i]);
        got[i] = NULL;
    }
    return same;
}

static bool fwd_bwd_verify(void *ctx) {
    fwd_bwd *c = ctx;
    return results_verify(c->got, c->want, 3);
}

Test(reliability_gpt2, forward_and_backward) {
    fwd_bwd c = { .model = small_gpt2(1), .ids = token_ids() };
    nsc_module_requires_grad_(c.model, true);
    c.targets = nsc_reshape(c.ids, NSC_SHAPE(B * T));
    cr_assert(fwd_bwd_run(&c), "reference: %s", nsc_last_error());
    memcpy(c.want, c.got, sizeof c.want);
    memset(c.got, 0, sizeof c.got);
    cr_assert(c.want[1] && c.want[2], "the gradients exist");
    nsct_snapshot snap = nsct_snapshot_take(c.model);
    int64_t start = nsct_rel_live_blocks();
    nsct_oom_op op = { .name = "gpt2 forward + cross_entropy + backward",
                       .run = fwd_bwd_run,
                       .verify = fwd_bwd_verify,
                       .ctx = &c };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 500);
    cr_expect_eq(nsct_rel_live_blocks(), start);
    cr_expect(nsct_snapshot_equal(c.model, &snap), "the weights are untouched");
    nsct_snapshot_free(&snap);
    for (int i = 0; i < 3; i++) {
        nsc_free(c.want[i]);
    }
    nsc_free(c.ids);
    nsc_free(c.targets);
    nsc_module_free(c.model);
}

// --- a trace on GPT-2: a read, an in-place edit of an MLP output, a swap ---

typedef struct gpt2_trace {
    nsc_module *model;
    nsc_tensor *ids;
    nsc_tensor *want[2], *got[2]; // h.0.mlp output after the edit, the logits
} gpt2_trace;

static bool gpt2_trace_run(void *ctx) {
    gpt2_trace *c = ctx;
    nsc_trace *tr = nsc_trace_new(c->model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &c->ids);
    nsc_tensor *mlp = nsc_invoke_output(inv, "transformer.h.0.mlp", 0);
    nsc_zero_(nsc_select(mlp, 1, -1));
    nsc_tensor *edited = nsc_save(nsc_mul_scalar(mlp, 1.0));
    nsc_tensor *h1 = nsc_invoke_output(inv, "transformer.h.1.attn", 0);
    nsc_invoke_set_output(inv, "transformer.h.1.attn", 0, nsc_mul_scalar(h1, 0.5));
    nsc_tensor *logits = nsc_save(nsc_invoke_output(inv, "lm_head", 0));
    nsc_status status = tr ? nsc_trace_run(tr) : nsc_last_status();
    if (status == NSC_OK) {
        c->got[0] = nsc_trace_get(tr, edited);
        c->got[1] = nsc_trace_get(tr, logits);
    }
    nsci_error_saved saved;
    nsci_error_save(&saved);
    nsc_trace_free(tr);
    nsci_error_restore(&saved);
    return status == NSC_OK;
}

static bool gpt2_trace_verify(void *ctx) {
    gpt2_trace *c = ctx;
    return results_verify(c->got, c->want, 2);
}

Test(reliability_gpt2, trace_with_interventions) {
    gpt2_trace c = { .model = small_gpt2(2), .ids = token_ids() };
    nsc_tensor *plain = nsc_module_call(c.model, 1, &c.ids);
    nsc_module_reset_calls(c.model);
    cr_assert(gpt2_trace_run(&c), "reference: %s", nsc_last_error());
    memcpy(c.want, c.got, sizeof c.want);
    memset(c.got, 0, sizeof c.got);
    nsct_snapshot snap = nsct_snapshot_take(c.model);
    int64_t start = nsct_rel_live_blocks();
    nsct_oom_op op = { .name = "gpt2 trace (edit, swap, saves)",
                       .run = gpt2_trace_run,
                       .verify = gpt2_trace_verify,
                       .ctx = &c };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 300);
    cr_expect_eq(nsct_rel_live_blocks(), start);
    cr_expect(nsct_snapshot_equal(c.model, &snap), "the weights are untouched");
    nsc_tensor *again = nsc_module_call(c.model, 1, &c.ids);
    cr_expect(nsct_st_equal(again, plain), "a plain forward afterwards is bit-identical");
    nsct_snapshot_free(&snap);
    nsc_tensor *all[] = { plain, again, c.want[0], c.want[1], c.ids };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
    nsc_module_free(c.model);
}

// --- (g) checkpoints ---

typedef struct ckpt {
    char dir[256], file[300];
    nsc_module *model;    // loaded by the run
    nsc_module *target;   // load_weights' model (another seed)
    nsct_snapshot want;   // the saved model's tensors
    nsct_snapshot before; // target's tensors before
} ckpt;

static void ckpt_setup(ckpt *c, nsc_module *saved) {
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "/tmp/nsc_rel_%d_ckpt", (int)getpid());
    snprintf(c->file, sizeof c->file, "%s/model.safetensors", c->dir);
    cr_assert_eq(nsc_gpt2_save(saved, c->dir), NSC_OK, "%s", nsc_last_error());
    c->want = nsct_snapshot_take(saved);
}

static void ckpt_teardown(ckpt *c) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", c->dir);
    cr_expect_eq(system(cmd), 0);
    nsct_snapshot_free(&c->want);
    nsct_snapshot_free(&c->before);
}

static bool load_run(void *ctx) {
    ckpt *c = ctx;
    c->model = nsc_gpt2_load(c->dir);
    return c->model != NULL;
}

static bool load_verify(void *ctx) {
    ckpt *c = ctx;
    nsct_warm_paths(c->model);
    bool same = nsct_snapshot_equal(c->model, &c->want);
    nsc_module_free(c->model);
    c->model = NULL;
    return same;
}

Test(reliability_gpt2, checkpoint_load) {
    nsc_module *saved = small_gpt2(3);
    ckpt c;
    ckpt_setup(&c, saved);
    nsc_module_free(saved);
    int64_t start = nsct_rel_live_blocks();
    nsct_oom_op op = { .name = "gpt2 checkpoint load (config.json + safetensors)",
                       .run = load_run,
                       .verify = load_verify,
                       .ctx = &c };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 100);
    cr_expect_eq(nsct_rel_live_blocks(), start);
    ckpt_teardown(&c);
}

static bool load_weights_run(void *ctx) {
    ckpt *c = ctx;
    nsc_status s = nsc_gpt2_load_weights(c->target, c->file);
    if (s != NSC_OK && !nsct_snapshot_equal(c->target, &c->before)) {
        cr_log_error("a failed load_weights changed the model");
        nsci_fail(NSC_ERR_STATE, "model changed"); // fails the sweep's check
    }
    return s == NSC_OK;
}

static bool load_weights_verify(void *ctx) {
    ckpt *c = ctx;
    bool same = nsct_snapshot_equal(c->target, &c->want);
    // Back to the target's own weights for a next run (only after a run
    // that completed although an allocation failed).
    cr_expect_eq(nsct_snapshot_restore(c->target, &c->before), NSC_OK, "%s", nsc_last_error());
    cr_expect(nsct_snapshot_equal(c->target, &c->before));
    return same;
}

Test(reliability_gpt2, checkpoint_load_weights_is_all_or_nothing) {
    nsc_module *saved = small_gpt2(4);
    ckpt c;
    ckpt_setup(&c, saved);
    nsc_module_free(saved);
    int64_t start = nsct_rel_live_blocks();
    c.target = small_gpt2(5);
    c.before = nsct_snapshot_take(c.target);
    nsct_oom_op op = { .name = "gpt2 load_weights into a model",
                       .run = load_weights_run,
                       .verify = load_weights_verify,
                       .ctx = &c,
                       .keeps_blocks = true };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 50);
    nsc_module_free(c.target);
    nsct_snapshot_free(&c.before);
    cr_expect_eq(nsct_rel_live_blocks(), start, "the loaded weights are freed with the model");
    ckpt_teardown(&c);
}
