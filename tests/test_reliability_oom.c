// Allocation-failure sweeps (issue 12): every allocation of an operation
// fails in turn (nsc_mem_fail_after(k), k = 1, 2, ... until it completes).
// Each failure must be NSC_ERR_OOM with a message naming memory, leave the
// live block count where it was, and leave the model and earlier results
// bit-for-bit as they were. Ops, autograd, traces, safetensors, JSON and
// modules here; GPT-2 in test_reliability_gpt2.c.
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "tests/graph_models.h"
#include "tests/harness.h"
#include "tests/reliability_util.h"
#include "tests/st_util.h"

// Sweeps stop here: far above the largest operation's count (a guard
// against an operation that never completes).
enum {
    MAX_POINTS = 20000
};

static void expect_clean(nsct_oom_result r, int64_t min_points) {
    cr_expect_eq(r.problems, 0, "%d problems (logged above)", r.problems);
    cr_expect_geq(r.points, min_points, "only %lld allocation points", (long long)r.points);
}

// --- (a) an op chain with autograd ---
// loss = sum(softmax(layer_norm(gelu(x W + b))) * c): the product with a
// fixed c keeps the gradient away from zero (the sum of a softmax row is 1).

typedef struct chain {
    nsc_tensor *x, *w, *b, *ln_w, *ln_b, *c; // leaves (x, w, b require grad)
    nsc_tensor *want_loss, *want_gx, *want_gw, *want_gb;
    nsc_tensor *loss, *gx, *gw, *gb; // the run's results
} chain;

static nsc_tensor *chain_loss(chain *ch) {
    nsc_tensor *h = nsc_matmul(ch->x, ch->w);
    nsc_tensor *a = nsc_add(h, ch->b);
    nsc_tensor *g = nsc_gelu(a, NSC_GELU_ERF);
    nsc_tensor *n = nsc_layer_norm(g, 1, ch->ln_w, ch->ln_b, 1e-5);
    nsc_tensor *s = nsc_softmax(n, -1);
    nsc_tensor *m = nsc_mul(s, ch->c);
    nsc_tensor *loss = nsc_sum_all(m);
    nsc_tensor *temps[] = { h, a, g, n, s, m };
    for (int i = 0; i < 6; i++) {
        nsc_free(temps[i]);
    }
    return loss;
}

static bool grads_cleared(chain *ch) {
    return !nsc_tensor_get_grad(ch->x) && !nsc_tensor_get_grad(ch->w) &&
           !nsc_tensor_get_grad(ch->b);
}

static bool chain_run(void *ctx) {
    chain *ch = ctx;
    nsc_tensor *loss = chain_loss(ch);
    nsc_status status = loss ? nsc_backward(loss, NULL, false) : nsc_last_status();
    if (status != NSC_OK) {
        nsc_free(loss);
        // A failed backward may have reached some leaves: clear them for the
        // next run (PyTorch leaves .grad partly accumulated as well).
        nsci_error_saved saved;
        nsci_error_save(&saved);
        nsc_tensor_set_grad(ch->x, NULL);
        nsc_tensor_set_grad(ch->w, NULL);
        nsc_tensor_set_grad(ch->b, NULL);
        nsci_error_restore(&saved);
        return false;
    }
    ch->loss = loss;
    ch->gx = nsc_retain(nsc_tensor_get_grad(ch->x));
    ch->gw = nsc_retain(nsc_tensor_get_grad(ch->w));
    ch->gb = nsc_retain(nsc_tensor_get_grad(ch->b));
    return true;
}

static bool chain_verify(void *ctx) {
    chain *ch = ctx;
    bool same = nsct_st_equal(ch->loss, ch->want_loss) && nsct_st_equal(ch->gx, ch->want_gx) &&
                nsct_st_equal(ch->gw, ch->want_gw) && nsct_st_equal(ch->gb, ch->want_gb);
    nsc_tensor *results[] = { ch->loss, ch->gx, ch->gw, ch->gb };
    for (int i = 0; i < 4; i++) {
        nsc_free(results[i]);
    }
    ch->loss = ch->gx = ch->gw = ch->gb = NULL;
    nsc_tensor_set_grad(ch->x, NULL);
    nsc_tensor_set_grad(ch->w, NULL);
    nsc_tensor_set_grad(ch->b, NULL);
    return same;
}

static void chain_setup(chain *ch) {
    memset(ch, 0, sizeof *ch);
    nsc_generator *gen = nsc_generator_new(12);
    ch->x = nsc_randn(gen, NSC_F32, NSC_SHAPE(6, 16));
    ch->w = nsc_randn(gen, NSC_F32, NSC_SHAPE(16, 12));
    ch->b = nsc_randn(gen, NSC_F32, NSC_SHAPE(12));
    ch->ln_w = nsc_rand(gen, NSC_F32, NSC_SHAPE(12));
    ch->ln_b = nsc_randn(gen, NSC_F32, NSC_SHAPE(12));
    ch->c = nsc_randn(gen, NSC_F32, NSC_SHAPE(6, 12));
    nsc_generator_free(gen);
    nsc_requires_grad_(ch->x, true);
    nsc_requires_grad_(ch->w, true);
    nsc_requires_grad_(ch->b, true);
    cr_assert(chain_run(ch), "reference run: %s", nsc_last_error());
    ch->want_loss = ch->loss, ch->want_gx = ch->gx, ch->want_gw = ch->gw, ch->want_gb = ch->gb;
    ch->loss = ch->gx = ch->gw = ch->gb = NULL;
    nsc_tensor_set_grad(ch->x, NULL);
    nsc_tensor_set_grad(ch->w, NULL);
    nsc_tensor_set_grad(ch->b, NULL);
}

static void chain_teardown(chain *ch) {
    nsc_tensor *all[] = { ch->x, ch->w,         ch->b,       ch->ln_w,    ch->ln_b,
                          ch->c, ch->want_loss, ch->want_gx, ch->want_gw, ch->want_gb };
    for (int i = 0; i < 10; i++) {
        nsc_free(all[i]);
    }
}

Test(reliability_oom, op_chain_with_backward) {
    int64_t start = nsct_rel_live_blocks();
    chain ch;
    chain_setup(&ch);
    nsc_tensor *w_before = nsc_clone(ch.w);
    nsct_oom_op op = { .name = "matmul-add-gelu-layer_norm-softmax-sum+backward",
                       .run = chain_run,
                       .verify = chain_verify,
                       .ctx = &ch };
    nsct_oom_result r = nsct_oom_sweep(&op, MAX_POINTS);
    expect_clean(r, 20);
    cr_expect(nsct_st_equal(ch.w, w_before), "the weights are untouched");
    cr_expect(grads_cleared(&ch));
    nsc_free(w_before);
    chain_teardown(&ch);
    cr_expect_eq(nsct_rel_live_blocks(), start);
}

// After a failed backward: .grad of some leaves may hold part of the pass
// (as in PyTorch; docs/RELIABILITY.md) and the saved tensors already used are
// freed. A retry of the same loss either completes with the reference
// gradients (once .grad is cleared) or fails with NSC_ERR_STATE naming
// retain_graph; it never crashes or gives other numbers.
Test(reliability_oom, a_failed_backward_then_a_retry) {
    chain ch;
    chain_setup(&ch);
    int64_t start = nsct_rel_live_blocks();
    int retried = 0, refused = 0;
    for (int64_t k = 1; k < MAX_POINTS; k++) {
        nsc_tensor *loss = chain_loss(&ch);
        cr_assert(loss, "%s", nsc_last_error());
        nsc_mem_fail_after(k);
        nsc_status status = nsc_backward(loss, NULL, false);
        int64_t failed = nsc_mem_failed_count();
        nsc_mem_fail_after(0);
        if (failed == 0) {
            cr_expect_eq(status, NSC_OK, "%s", nsc_last_error());
            nsc_free(loss);
            break;
        }
        cr_expect_eq(status, NSC_ERR_OOM, "allocation %lld: %s", (long long)k, nsc_last_error());
        nsc_tensor_set_grad(ch.x, NULL);
        nsc_tensor_set_grad(ch.w, NULL);
        nsc_tensor_set_grad(ch.b, NULL);
        status = nsc_backward(loss, NULL, false);
        if (status == NSC_OK) {
            retried++;
            cr_expect(nsct_st_equal(nsc_tensor_get_grad(ch.w), ch.want_gw) &&
                          nsct_st_equal(nsc_tensor_get_grad(ch.x), ch.want_gx) &&
                          nsct_st_equal(nsc_tensor_get_grad(ch.b), ch.want_gb),
                      "allocation %lld: the retry gives other gradients", (long long)k);
        } else {
            refused++;
            cr_expect_eq(status, NSC_ERR_STATE, "allocation %lld: %s", (long long)k,
                         nsc_last_error());
            cr_expect(strstr(nsc_last_error(), "retain_graph"), "%s", nsc_last_error());
        }
        nsc_free(loss);
        nsc_tensor_set_grad(ch.x, NULL);
        nsc_tensor_set_grad(ch.w, NULL);
        nsc_tensor_set_grad(ch.b, NULL);
        cr_expect_eq(nsct_rel_live_blocks(), start, "allocation %lld: leaked", (long long)k);
    }
    cr_log_info("failed backward: %d retries completed, %d refused", retried, refused);
    cr_expect_gt(retried + refused, 10);
    chain_teardown(&ch);
}

// --- (b) a trace with interventions: reads, an in-place edit, a swap, saves ---

enum {
    TRACE_WIDTH = 8
};

typedef struct traced {
    nsc_module *model;
    nsc_tensor *x;
    nsc_tensor *want[3]; // h.0 output, h.1 output (edited), the model output
    nsc_tensor *got[3];
} traced;

static bool trace_run(void *ctx) {
    traced *t = ctx;
    nsc_trace *tr = nsc_trace_new(t->model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &t->x);
    nsc_tensor *h0 = nsc_save(nsc_invoke_output(inv, "h.0", 0));
    nsc_tensor *h1 = nsc_invoke_output(inv, "h.1", 0);
    nsc_zero_(nsc_select(h1, 1, 2));                          // in-place edit
    nsc_tensor *h1_saved = nsc_save(nsc_mul_scalar(h1, 1.0)); // read after the edit
    nsc_tensor *half = nsc_mul_scalar(nsc_invoke_output(inv, "h.2", 0), 0.5);
    nsc_invoke_set_output(inv, "h.2", 0, half); // swap
    nsc_tensor *out = nsc_save(nsc_invoke_output(inv, "", 0));
    nsc_status status = tr ? nsc_trace_run(tr) : nsc_last_status();
    if (status == NSC_OK) {
        nsc_tensor *proxies[] = { h0, h1_saved, out };
        for (int i = 0; i < 3; i++) {
            t->got[i] = nsc_trace_get(tr, proxies[i]);
        }
    }
    nsci_error_saved saved;
    nsci_error_save(&saved);
    nsc_trace_free(tr);
    nsci_error_restore(&saved);
    return status == NSC_OK;
}

static bool trace_verify(void *ctx) {
    traced *t = ctx;
    bool same = true;
    for (int i = 0; i < 3; i++) {
        same = same && nsct_st_equal(t->got[i], t->want[i]);
        nsc_free(t->got[i]);
        t->got[i] = NULL;
    }
    return same;
}

Test(reliability_oom, trace_with_interventions) {
    int64_t start = nsct_rel_live_blocks();
    traced t = { .model = nsct_chain_model(3, TRACE_WIDTH) };
    nsct_warm_paths(t.model);
    nsc_tensor *a = nsc_arange(0, 3 * TRACE_WIDTH, 1, NSC_F32);
    nsc_tensor *s = nsc_mul_scalar(a, 0.05);
    t.x = nsc_reshape(s, NSC_SHAPE(3, TRACE_WIDTH));
    nsc_free(a);
    nsc_free(s);
    nsc_tensor *plain = nsc_module_call(t.model, 1, &t.x);
    nsct_snapshot snap = nsct_snapshot_take(t.model);
    cr_assert(trace_run(&t), "reference trace: %s", nsc_last_error());
    memcpy(t.want, t.got, sizeof t.want);
    memset(t.got, 0, sizeof t.got);
    nsct_oom_op op = { .name = "trace build+run (read, in-place edit, swap, saves)",
                       .run = trace_run,
                       .verify = trace_verify,
                       .ctx = &t };
    nsct_oom_result r = nsct_oom_sweep(&op, MAX_POINTS);
    expect_clean(r, 50);
    cr_expect(nsct_snapshot_equal(t.model, &snap), "the weights are untouched");
    nsc_tensor *again = nsc_module_call(t.model, 1, &t.x);
    cr_expect(nsct_st_equal(again, plain), "a plain forward afterwards is bit-identical");
    for (int64_t i = 0; i < nsc_module_n_modules(t.model); i++) {
        nsc_module *m = nsc_module_at(t.model, i);
        cr_expect_eq(nsc_module_call_count(m), i == 0 || i > 1 ? 1 : 0,
                     "%s: call counters are reset after every run", nsc_module_path(m));
        cr_expect_eq(m->n_hooks, 0, "%s: the trace's hooks are gone", nsc_module_path(m));
    }
    nsc_tensor *all[] = { again, plain, t.x, t.want[0], t.want[1], t.want[2] };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
    nsct_snapshot_free(&snap);
    nsc_module_free(t.model);
    cr_expect_eq(nsct_rel_live_blocks(), start);
}

// --- (c) safetensors: open + load every tensor, and save over a file ---

typedef struct st_case {
    const char *path;
    nsc_tensor *want[4];
    nsc_tensor *got[4];
    bool meta_ok;
} st_case;

static const char *const ST_NAMES[4] = { "weights", "ids", "mask", "scale" };

static bool st_load_run(void *ctx) {
    st_case *c = ctx;
    nsc_safetensors *st = nsc_safetensors_open(c->path);
    bool ok = st != NULL;
    for (int i = 0; ok && i < 4; i++) {
        c->got[i] = nsc_safetensors_load(st, ST_NAMES[i]);
        ok = c->got[i] != NULL;
    }
    const char *note = st ? nsc_safetensors_get_metadata(st, "note") : NULL;
    c->meta_ok = note && strcmp(note, "reliability") == 0;
    nsc_safetensors_free(st);
    if (!ok) {
        for (int i = 0; i < 4; i++) {
            nsc_free(c->got[i]);
            c->got[i] = NULL;
        }
    }
    return ok;
}

static bool st_load_verify(void *ctx) {
    st_case *c = ctx;
    bool same = c->meta_ok;
    for (int i = 0; i < 4; i++) {
        same = same && nsct_st_equal(c->got[i], c->want[i]);
        nsc_free(c->got[i]);
        c->got[i] = NULL;
    }
    return same;
}

static void st_case_make(st_case *c, const char *path) {
    memset(c, 0, sizeof *c);
    c->path = path;
    nsc_generator *gen = nsc_generator_new(3);
    c->want[0] = nsc_randn(gen, NSC_F32, NSC_SHAPE(3, 5));
    c->want[1] = nsc_randint(gen, 0, 1000, NSC_SHAPE(4));
    nsc_tensor *u = nsc_rand(gen, NSC_F32, NSC_SHAPE(2, 2));
    c->want[2] = nsc_gt_scalar(u, 0.5);
    c->want[3] = nsc_scalar(NSC_F64, 0.125);
    nsc_free(u);
    nsc_generator_free(gen);
    const char *key = "note", *value = "reliability";
    cr_assert_eq(nsc_safetensors_save(path, 4, ST_NAMES, c->want, 1, &key, &value), NSC_OK, "%s",
                 nsc_last_error());
}

Test(reliability_oom, safetensors_open_and_load_every_tensor) {
    int64_t start = nsct_rel_live_blocks();
    st_case c;
    st_case_make(&c, nsct_st_tmp_path("rel_load"));
    nsct_oom_op op = { .name = "safetensors open + load 4 tensors",
                       .run = st_load_run,
                       .verify = st_load_verify,
                       .ctx = &c };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 5);
    for (int i = 0; i < 4; i++) {
        nsc_free(c.want[i]);
    }
    remove(c.path);
    cr_expect_eq(nsct_rel_live_blocks(), start);
}

// A save that fails leaves the file that was there byte for byte, and no
// temporary file beside it.
typedef struct st_save {
    const char *path;
    nsc_tensor *tensors[4];
    unsigned char *old_bytes;
    size_t old_len;
} st_save;

static bool st_save_run(void *ctx) {
    st_save *c = ctx;
    const char *key = "note", *value = "second";
    nsc_status s = nsc_safetensors_save(c->path, 4, ST_NAMES, c->tensors, 1, &key, &value);
    if (s != NSC_OK) {
        size_t len = 0;
        unsigned char *now = nsct_st_read(c->path, &len);
        if (!now || len != c->old_len || memcmp(now, c->old_bytes, len) != 0) {
            cr_log_error("a failed save changed %s", c->path);
            nsci_fail(NSC_ERR_STATE, "the old file changed"); // fails the sweep's check
        }
        free(now);
    }
    return s == NSC_OK;
}

static bool st_save_verify(void *ctx) {
    st_save *c = ctx;
    nsc_safetensors *st = nsc_safetensors_open(c->path);
    const char *note = st ? nsc_safetensors_get_metadata(st, "note") : NULL;
    bool same = note && strcmp(note, "second") == 0;
    for (int i = 0; same && i < 4; i++) {
        nsc_tensor *t = nsc_safetensors_load(st, ST_NAMES[i]);
        same = nsct_st_equal(t, c->tensors[i]);
        nsc_free(t);
    }
    nsc_safetensors_free(st);
    return same;
}

static int count_temp_files(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s.tmp* 2>/dev/null | wc -l", path);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) {
        n = -1;
    }
    if (p) {
        pclose(p);
    }
    return n;
}

Test(reliability_oom, safetensors_save_keeps_the_old_file) {
    int64_t start = nsct_rel_live_blocks();
    st_case first;
    st_case_make(&first, nsct_st_tmp_path("rel_save"));
    st_save c = { .path = first.path };
    c.old_bytes = nsct_st_read(c.path, &c.old_len);
    cr_assert(c.old_bytes);
    nsc_generator *gen = nsc_generator_new(4);
    nsc_tensor *big = nsc_randn(gen, NSC_F32, NSC_SHAPE(5, 3));
    c.tensors[0] = nsc_transpose(big, 0, 1); // a strided tensor is written row-major
    c.tensors[1] = nsc_randint(gen, -5, 5, NSC_SHAPE(7));
    c.tensors[2] = nsc_retain(first.want[2]);
    c.tensors[3] = nsc_scalar(NSC_F64, -2.5);
    nsc_generator_free(gen);
    nsct_oom_op op = { .name = "safetensors save over an existing file",
                       .run = st_save_run,
                       .verify = st_save_verify,
                       .ctx = &c };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 1);
    cr_expect_eq(count_temp_files(c.path), 0, "no temporary file is left behind");
    for (int i = 0; i < 4; i++) {
        nsc_free(c.tensors[i]);
        nsc_free(first.want[i]);
    }
    nsc_free(big);
    free(c.old_bytes);
    remove(c.path);
    cr_expect_eq(nsct_rel_live_blocks(), start);
}

// --- (d) JSON: the parser, and a config.json read through the public API ---

static const char JSON_TEXT[] =
    "{\"model_type\": \"gpt2\", \"n_embd\": 64, \"layers\": [1, 2.5, -3e2, true, false, null],"
    " \"nested\": {\"a\": {\"b\": [[], {}, \"\\u00e9\\n\\\"q\\\"\"]}}, \"empty\": \"\","
    " \"long\": \"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\"}";

typedef struct json_case {
    nsci_json_doc *doc;
} json_case;

static bool json_run(void *ctx) {
    json_case *c = ctx;
    c->doc = nsci_json_parse(JSON_TEXT, sizeof JSON_TEXT - 1, NULL, "reliability.json");
    return c->doc != NULL;
}

static bool json_verify(void *ctx) {
    json_case *c = ctx;
    const nsci_json *root = nsci_json_root(c->doc);
    const nsci_json *layers = nsci_json_get(root, "layers");
    const nsci_json *nested = nsci_json_get(nsci_json_get(nsci_json_get(root, "nested"), "a"), "b");
    bool same = root->n_items == 6 && layers && layers->n_items == 6 &&
                layers->items[2]->number == -300.0 && nested && nested->n_items == 3 &&
                strcmp(nested->items[2]->string, "\xc3\xa9\n\"q\"") == 0;
    nsci_json_doc_free(c->doc);
    c->doc = NULL;
    return same;
}

Test(reliability_oom, json_parse) {
    int64_t start = nsct_rel_live_blocks();
    json_case c = { 0 };
    nsct_oom_op op = { .name = "json parse (nested objects, arrays, escapes)",
                       .run = json_run,
                       .verify = json_verify,
                       .ctx = &c };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 10);
    cr_expect_eq(nsct_rel_live_blocks(), start);
}

typedef struct config_case {
    char path[256];
    nsc_gpt2_config want, got;
} config_case;

static bool config_run(void *ctx) {
    config_case *c = ctx;
    nsc_gpt2_config before;
    memset(&before, 0x5a, sizeof before);
    c->got = before;
    nsc_status s = nsc_gpt2_config_load(c->path, &c->got);
    if (s != NSC_OK && memcmp(&before, &c->got, sizeof before) != 0) {
        cr_log_error("a failed config load wrote into *config");
        nsci_fail(NSC_ERR_STATE, "config written"); // fails the sweep's check
    }
    return s == NSC_OK;
}

static bool config_verify(void *ctx) {
    config_case *c = ctx;
    return c->got.n_embd == c->want.n_embd && c->got.n_layer == c->want.n_layer &&
           c->got.vocab_size == c->want.vocab_size &&
           c->got.layer_norm_epsilon == c->want.layer_norm_epsilon &&
           c->got.activation == c->want.activation;
}

Test(reliability_oom, gpt2_config_load) {
    int64_t start = nsct_rel_live_blocks();
    config_case c;
    snprintf(c.path, sizeof c.path, "/tmp/nsc_rel_%d_config.json", (int)getpid());
    c.want = nsc_gpt2_config_default();
    c.want.n_embd = 48, c.want.n_head = 3, c.want.n_layer = 5, c.want.vocab_size = 777;
    c.want.layer_norm_epsilon = 1e-6;
    cr_assert_eq(nsc_gpt2_config_save(&c.want, c.path), NSC_OK, "%s", nsc_last_error());
    nsct_oom_op op = {
        .name = "gpt2 config.json load", .run = config_run, .verify = config_verify, .ctx = &c
    };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 10);
    remove(c.path);
    cr_expect_eq(nsct_rel_live_blocks(), start);
}

// --- (e) modules: construction, and forward passes of a small model ---

typedef struct build_case {
    nsc_module *model;
    int64_t n_modules;
    nsct_snapshot want;
} build_case;

// A Sequential of every layer kind, then an MLP, all from one seeded generator.
static nsc_module *build_layers(void) {
    nsc_generator *gen = nsc_generator_new(21);
    nsc_module *seq = nsc_sequential_new();
    nsc_module *parts[] = {
        nsc_linear_new(6, 8, true, gen),
        nsc_layer_norm_new(8, 1e-5),
        nsc_gelu_new(NSC_GELU_TANH),
        nsc_dropout_new(0.1),
        nsc_conv1d_new(8, 8, gen),
        nsc_identity_new("Probe"),
        nsc_mlp_new(3, (int64_t[]){ 8, 16, 4 }, NSC_ACTIVATION_RELU, gen),
    };
    bool ok = seq && gen;
    for (int i = 0; i < NSCI_ARRAY_LEN(parts); i++) {
        ok = ok && parts[i] && nsc_sequential_append(seq, parts[i]) == NSC_OK;
        nsc_module_free(parts[i]);
    }
    nsc_generator_free(gen);
    if (!ok) {
        nsc_module_free(seq);
        return NULL;
    }
    return seq;
}

static bool build_run(void *ctx) {
    build_case *c = ctx;
    c->model = build_layers();
    return c->model != NULL;
}

static bool build_verify(void *ctx) {
    build_case *c = ctx;
    bool same =
        nsc_module_n_modules(c->model) == c->n_modules && nsct_snapshot_equal(c->model, &c->want);
    nsc_module_free(c->model);
    c->model = NULL;
    return same;
}

Test(reliability_oom, module_construction) {
    build_case c = { 0 };
    nsc_module *ref = build_layers();
    cr_assert(ref, "%s", nsc_last_error());
    c.want = nsct_snapshot_take(ref);
    c.n_modules = nsc_module_n_modules(ref);
    nsc_module_free(ref);
    int64_t start = nsct_rel_live_blocks();
    nsct_oom_op op = { .name = "module construction (7 layer kinds, MLP)",
                       .run = build_run,
                       .verify = build_verify,
                       .ctx = &c };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), 30);
    cr_expect_eq(nsct_rel_live_blocks(), start);
    nsct_snapshot_free(&c.want);
}

typedef struct forward_case {
    nsc_module *model;
    nsc_tensor *x;
    bool backward;
    nsc_tensor *want, *want_grad; // output; grad of the first parameter
    nsc_tensor *got, *got_grad;
} forward_case;

static bool forward_run(void *ctx) {
    forward_case *c = ctx;
    nsc_module_reset_calls(c->model);
    c->got = nsc_module_call(c->model, 1, &c->x);
    if (c->got && c->backward) {
        nsc_tensor *loss = nsc_sum_all(c->got);
        nsc_tensor *w = nsc_module_param_at(c->model, 0, NULL);
        if (!loss || nsc_backward(loss, NULL, false) != NSC_OK) {
            nsc_free(c->got);
            c->got = NULL;
        } else {
            c->got_grad = nsc_retain(nsc_tensor_get_grad(w));
        }
        nsc_free(loss);
        nsci_error_saved saved;
        nsci_error_save(&saved);
        for (int64_t i = 0; i < nsc_module_n_params(c->model); i++) {
            nsc_tensor_set_grad(nsc_module_param_at(c->model, i, NULL), NULL);
        }
        nsci_error_restore(&saved);
    }
    return c->got != NULL;
}

static bool forward_verify(void *ctx) {
    forward_case *c = ctx;
    bool same = nsct_st_equal(c->got, c->want) &&
                (!c->backward || nsct_st_equal(c->got_grad, c->want_grad));
    nsc_free(c->got);
    nsc_free(c->got_grad);
    c->got = c->got_grad = NULL;
    return same;
}

static void forward_sweep(const char *name, nsc_module *model, nsc_tensor *x, bool backward,
                          int64_t min_points) {
    nsct_warm_paths(model);
    forward_case c = { .model = model, .x = x, .backward = backward };
    cr_assert(forward_run(&c), "reference: %s", nsc_last_error());
    c.want = c.got, c.want_grad = c.got_grad;
    c.got = c.got_grad = NULL;
    nsct_snapshot snap = nsct_snapshot_take(model);
    int64_t start = nsct_rel_live_blocks();
    nsct_oom_op op = { .name = name, .run = forward_run, .verify = forward_verify, .ctx = &c };
    expect_clean(nsct_oom_sweep(&op, MAX_POINTS), min_points);
    cr_expect_eq(nsct_rel_live_blocks(), start);
    cr_expect(nsct_snapshot_equal(model, &snap), "%s: the parameters are untouched", name);
    nsct_snapshot_free(&snap);
    nsc_free(c.want);
    nsc_free(c.want_grad);
}

Test(reliability_oom, module_forward_and_backward) {
    nsc_module *chain_model = nsct_chain_model(3, 8);
    nsc_tensor *x = nsc_linspace(-1, 1, 40, NSC_F32);
    nsc_tensor *x5 = nsc_reshape(x, NSC_SHAPE(5, 8));
    forward_sweep("nsct_chain_model forward", chain_model, x5, false, 10);
    nsc_module *layers = build_layers();
    nsc_tensor *first30 = nsc_slice(x, 0, 0, 30, 1);
    nsc_tensor *x6 = nsc_reshape(first30, NSC_SHAPE(5, 6));
    nsc_free(first30);
    nsc_module_requires_grad_(layers, true);
    nsc_module_train(layers, false); // dropout off: each run draws the same numbers
    forward_sweep("layers forward + backward", layers, x6, true, 50);
    nsc_module_free(chain_model);
    nsc_module_free(layers);
    nsc_free(x);
    nsc_free(x5);
    nsc_free(x6);
}

// Regression: parameter paths were built with the allocator, so with it
// exhausted nsc_module_param_at gave "" (and optimizers named tensors "").
Test(reliability_oom, parameter_paths_need_no_allocation) {
    nsc_module *layers = build_layers();
    const char *want[2];
    char copies[2][128];
    for (int i = 0; i < 2; i++) {
        nsc_module_param_at(layers, 6 + i, &want[i]);
        snprintf(copies[i], sizeof copies[i], "%s", want[i]);
    }
    nsc_mem_fail_after(1);
    const char *got = NULL;
    nsc_tensor *t = nsc_module_param_at(layers, 7, &got);
    int64_t failed = nsc_mem_failed_count();
    nsc_mem_fail_after(0);
    cr_expect_not_null(t);
    cr_expect_str_eq(got, copies[1]);
    cr_expect_str_eq(copies[0], "6.0.weight");
    cr_expect_eq(failed, 0, "no allocation was needed");
    nsc_module_free(layers);
}

// Regression: a module path whose building ran out of memory leaked the
// part already built (it now frees it and answers with the name alone).
Test(reliability_oom, module_path_out_of_memory) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsc_module *h1 = nsc_module_find(model, "h.1");
    nsc_module_path(nsc_module_parent(h1)); // "h" cached: only h.1's own path is built
    for (int64_t k = 1; k < 10; k++) {
        int64_t before = nsct_rel_live_blocks();
        nsc_mem_fail_after(k);
        const char *path = nsc_module_path(h1);
        int64_t failed = nsc_mem_failed_count();
        nsc_mem_fail_after(0);
        if (failed == 0) {
            cr_expect_str_eq(path, "h.1");
            break;
        }
        cr_expect_str_eq(path, "1", "allocation %lld: the name alone", (long long)k);
        cr_expect_eq(nsct_rel_live_blocks(), before, "allocation %lld: leaked", (long long)k);
    }
    nsc_module_free(model);
}
