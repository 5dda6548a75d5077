// GPT-2 checkpoints and configs: both file layouts (save_pretrained, with or
// without lm_head.weight, and the hub's with its mask buffers), F16 weights,
// the header-only GPT-2 small checkpoint (its key set and shapes, a META
// model), every malformed input (missing, unknown, mis-shaped, wrongly typed
// tensors, truncated files, bad configs) with the model left unchanged, the
// save/load round trip, and an OOM sweep. Variants are written by the tests
// into a temporary directory from the committed tiny checkpoint.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

#define TOL_LOGITS ((nsct_tol){ 1e-5, 1e-4, "f32 forward: summation order vs PyTorch" })

static char g_dir[256];

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/nsc_ckpt_XXXXXX");
    cr_assert(mkdtemp(g_dir), "mkdtemp");
}

static void remove_dir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_expect_eq(system(cmd), 0);
}

static const char *tiny(const char *file) {
    static char path[512];
    snprintf(path, sizeof path, "%s", nsct_fixture_path(file));
    return path;
}

// A checkpoint directory g_dir/name with the tiny config and the given tensors.
static const char *write_variant(const char *name, int n, const char *const *names,
                                 nsc_tensor *const *tensors) {
    static char dir[400];
    char path[500], cmd[2048];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/config.json'", dir,
             tiny("gpt2_tiny/config.json"), dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(nsc_safetensors_save(path, n, names, tensors, 0, NULL, NULL), NSC_OK, "%s",
                 nsc_last_error());
    return dir;
}

// The tiny checkpoint's tensors (names as in the file) for editing.
typedef struct tensors {
    int n;
    char *name[64];
    nsc_tensor *t[64];
} tensors;

static void read_tiny(tensors *ts) {
    nsc_safetensors *st = nsc_safetensors_open(tiny("gpt2_tiny/model.safetensors"));
    cr_assert(st);
    ts->n = (int)nsc_safetensors_count(st);
    for (int i = 0; i < ts->n; i++) {
        ts->name[i] = strdup(nsc_safetensors_name(st, i));
        ts->t[i] = nsc_safetensors_load(st, ts->name[i]);
    }
    nsc_safetensors_free(st);
}

static void free_tensors(tensors *ts) {
    for (int i = 0; i < ts->n; i++) {
        free(ts->name[i]);
        nsc_free(ts->t[i]);
    }
    ts->n = 0;
}

static int index_of(const tensors *ts, const char *name) {
    for (int i = 0; i < ts->n; i++) {
        if (strcmp(ts->name[i], name) == 0) {
            return i;
        }
    }
    cr_assert(false, "no %s", name);
    return -1;
}

static void add(tensors *ts, const char *name, nsc_tensor *t) {
    ts->name[ts->n] = strdup(name);
    ts->t[ts->n++] = t;
}

static const char *save(tensors *ts, const char *variant) {
    return write_variant(variant, ts->n, (const char *const *)ts->name, ts->t);
}

static nsc_tensor *reference(const char *name) {
    nsc_safetensors *st = nsc_safetensors_open(tiny("gpt2_tiny/reference.safetensors"));
    nsc_tensor *t = st ? nsc_safetensors_load(st, name) : NULL;
    nsc_safetensors_free(st);
    cr_assert(t, "reference %s", name);
    return t;
}

static void expect_logits(nsc_module *m, const char *ref_name, nsct_tol tol, const char *what) {
    nsc_tensor *ids = reference("ids"), *want = reference(ref_name);
    nsc_tensor *in[1] = { ids };
    nsc_tensor *got = nsc_module_call(m, 1, in);
    char why[1200];
    cr_expect(nsct_close(got, want, tol, why, sizeof why), "%s: %s", what, why);
    nsc_free(ids);
    nsc_free(want);
    nsc_free(got);
}

static void expect_load_error(const char *dir, nsc_status status, const char *text) {
    int64_t before = nsct_live_blocks();
    nsc_module *m = nsc_gpt2_load(dir);
    cr_expect_null(m, "%s loaded", dir);
    nsc_module_free(m);
    cr_expect_eq(nsc_last_status(), status, "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), text), "\"%s\" lacks \"%s\"", nsc_last_error(), text);
    cr_expect_eq(nsct_live_blocks(), before, "leak after: %s", text);
    nsc_clear_error();
}

// --- layouts ---

Test(checkpoint, both_layouts_load_the_same_model, .init = make_dir, .fini = remove_dir) {
    int64_t before = nsct_live_blocks();
    nsc_module *m = nsc_gpt2_load(tiny("gpt2_tiny"));
    cr_assert(m, "%s", nsc_last_error());
    expect_logits(m, "logits", TOL_LOGITS, "save_pretrained layout");
    nsc_module_free(m);

    tensors ts = { 0 };
    read_tiny(&ts);
    nsc_tensor *wte = ts.t[index_of(&ts, "transformer.wte.weight")];
    add(&ts, "lm_head.weight", nsc_clone(wte));
    m = nsc_gpt2_load(save(&ts, "with_head"));
    cr_assert(m, "with lm_head.weight: %s", nsc_last_error());
    expect_logits(m, "logits", TOL_LOGITS, "with lm_head.weight");
    nsc_module_free(m);
    free_tensors(&ts);

    // The hub's layout: no prefix, the causal-mask buffers, no head.
    read_tiny(&ts);
    for (int i = 0; i < ts.n; i++) {
        char *short_name = strdup(ts.name[i] + strlen("transformer."));
        free(ts.name[i]);
        ts.name[i] = short_name;
    }
    add(&ts, "h.0.attn.bias", nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1, 1, 64, 64)));
    add(&ts, "h.1.attn.masked_bias", nsc_full(NSC_F32, NSC_CPU, 0, NULL, -1e4));
    m = nsc_gpt2_load(save(&ts, "hub"));
    cr_assert(m, "hub layout: %s", nsc_last_error());
    expect_logits(m, "logits", TOL_LOGITS, "hub layout");
    nsc_module_free(m);
    free_tensors(&ts);

    m = nsc_gpt2_load(tiny("gpt2_tiny_f16"));
    cr_assert(m, "f16 hub layout: %s", nsc_last_error());
    expect_logits(m, "f16.logits", TOL_LOGITS, "f16 weights converted to f32");
    nsc_module_free(m);
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(checkpoint, header_only_gpt2_small_is_recognized_on_meta) {
    int64_t before = nsct_live_blocks();
    const char *dir = tiny("gpt2_small_header");
    nsc_module *m = nsc_gpt2_load(dir); // the data is not there
    cr_expect_null(m);
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
    cr_expect(strstr(nsc_last_error(), "byte"), "%s", nsc_last_error());
    nsc_module_free(m);
    m = nsc_gpt2_load_meta(dir);
    cr_assert(m, "%s", nsc_last_error());
    nsc_gpt2_config c;
    nsc_gpt2_get_config(m, &c);
    cr_expect(c.n_layer == 12 && c.n_head == 12 && c.n_embd == 768 && c.vocab_size == 50257 &&
              c.n_positions == 1024 && c.activation == NSC_ACTIVATION_GELU_TANH);
    cr_expect_eq(nsc_module_n_params(m), 149);
    int64_t total = 0;
    for (int64_t i = 0; i < nsc_module_n_params(m); i++) {
        const char *path;
        nsc_tensor *t = nsc_module_param_at(m, i, &path);
        cr_expect_eq(nsc_tensor_device(t), NSC_META, "%s", path);
        total += strcmp(path, "lm_head.weight") == 0 ? 0 : nsc_tensor_numel(t); // tied
    }
    cr_expect_eq(total, 124439808, "GPT-2 small has 124,439,808 parameters");
    cr_expect_eq(nsc_module_param_count(m), 124439808, "the tied lm_head counts once on META");
    nsc_tensor *w = nsc_module_find_tensor(m, "transformer.h.11.mlp.c_fc.weight");
    cr_expect(nsc_tensor_size(w, 0) == 768 && nsc_tensor_size(w, 1) == 3072);
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_META, NSC_SHAPE(2, 9));
    nsc_tensor *in[1] = { ids };
    int64_t data = nsc_mem_stats_get().data_bytes;
    nsc_tensor *logits = nsc_module_call(m, 1, in);
    cr_assert(logits, "%s", nsc_last_error());
    cr_expect(nsc_tensor_size(logits, 0) == 2 && nsc_tensor_size(logits, 1) == 9 &&
              nsc_tensor_size(logits, 2) == 50257);
    cr_expect_eq(nsc_mem_stats_get().data_bytes, data, "shapes only");
    nsc_free(logits);
    nsc_free(ids);
    nsc_module_free(m);
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), before);
}

// --- malformed checkpoints ---

Test(checkpoint_errors, bad_tensors_are_named, .init = make_dir, .fini = remove_dir) {
    tensors ts = { 0 };
    read_tiny(&ts);
    int at = index_of(&ts, "transformer.h.1.mlp.c_fc.bias");
    nsc_tensor *kept = ts.t[at];
    char *kept_name = ts.name[at];
    ts.name[at] = ts.name[ts.n - 1]; // drop it
    ts.t[at] = ts.t[ts.n - 1];
    ts.n--;
    expect_load_error(save(&ts, "missing"), NSC_ERR_FORMAT,
                      "\"transformer.h.1.mlp.c_fc.bias\" "
                      "is missing");
    add(&ts, "transformer.h.1.mlp.c_fc.bias", nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(255)));
    expect_load_error(save(&ts, "misshaped"), NSC_ERR_SHAPE, "shape [255]: expected [256]");
    nsc_free(ts.t[ts.n - 1]);
    ts.t[ts.n - 1] = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(256));
    expect_load_error(save(&ts, "integer"), NSC_ERR_DTYPE, "dtype I64");
    nsc_free(ts.t[ts.n - 1]);
    ts.t[ts.n - 1] = kept;
    free(ts.name[ts.n - 1]);
    ts.name[ts.n - 1] = kept_name;
    add(&ts, "transformer.h.2.attn.c_attn.weight", nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2)));
    expect_load_error(save(&ts, "unknown"), NSC_ERR_FORMAT,
                      "unknown tensor \"transformer.h.2.attn.c_attn.weight\"");
    free_tensors(&ts);
}

// Copies the first `bytes` bytes of the tiny checkpoint into a variant.
static const char *truncated(const char *name, long bytes) {
    static char dir[400];
    char cmd[4096], config[512], weights[512];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(config, sizeof config, "%s", tiny("gpt2_tiny/config.json"));
    snprintf(weights, sizeof weights, "%s", tiny("gpt2_tiny/model.safetensors"));
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && cp '%s' '%s/config.json' && head -c %ld '%s' > "
             "'%s/model.safetensors'",
             dir, config, dir, bytes, weights, dir);
    cr_assert_eq(system(cmd), 0);
    return dir;
}

Test(checkpoint_errors, truncated_files_and_bad_headers_give_offsets, .init = make_dir,
     .fini = remove_dir) {
    expect_load_error(truncated("cut_data", 300000), NSC_ERR_FORMAT, "beyond the data section");
    expect_load_error(truncated("cut_data", 300000), NSC_ERR_FORMAT, ", byte ");
    expect_load_error(truncated("cut_header", 100), NSC_ERR_FORMAT, "header length");
    expect_load_error(truncated("cut_length", 5), NSC_ERR_FORMAT, "(byte 0)");
    char path[500];
    snprintf(path, sizeof path, "%s/bad_json", g_dir);
    const char *dir = truncated("bad_json", 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    const char header[] = "{\"a\": [1, 2}   ";
    uint64_t len = sizeof header - 1;
    fwrite(&len, 8, 1, f);
    fwrite(header, 1, len, f);
    fclose(f);
    expect_load_error(dir, NSC_ERR_FORMAT, "line 1");
    expect_load_error("/nonexistent/dir", NSC_ERR_IO, "config.json");
}

// Writes g_dir/name/config.json from the tiny one with `from` replaced by `to`.
static const char *config_variant(const char *name, const char *from, const char *to) {
    static char dir[400];
    size_t len = 0;
    char path[500];
    FILE *f = fopen(tiny("gpt2_tiny/config.json"), "rb");
    char text[4096];
    len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    char *at = strstr(text, from);
    cr_assert(at, "config has no %s", from);
    char out[4096];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/'", dir,
             tiny("gpt2_tiny/model.safetensors"), dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "wb");
    fputs(out, f);
    fclose(f);
    return dir;
}

Test(checkpoint_errors, bad_configs_name_the_field, .init = make_dir, .fini = remove_dir) {
    expect_load_error(config_variant("no_layers", "\"n_layer\": 2,", ""), NSC_ERR_FORMAT,
                      "\"n_layer\" is missing");
    expect_load_error(config_variant("neg", "\"n_head\": 4", "\"n_head\": -4"), NSC_ERR_FORMAT,
                      "n_head = -4");
    expect_load_error(config_variant("indivisible", "\"n_head\": 4", "\"n_head\": 3"),
                      NSC_ERR_FORMAT, "divisible");
    expect_load_error(config_variant("typed", "\"n_embd\": 64", "\"n_embd\": \"64\""),
                      NSC_ERR_FORMAT, "\"n_embd\"");
    expect_load_error(config_variant("act", "\"gelu_new\"", "\"swish\""), NSC_ERR_FORMAT,
                      "activation_function");
    expect_load_error(
        config_variant("eps", "\"layer_norm_epsilon\": 1e-05", "\"layer_norm_epsilon\": 0"),
        NSC_ERR_FORMAT, "layer_norm_epsilon");
    expect_load_error(config_variant("drop", "\"attn_pdrop\": 0.0", "\"attn_pdrop\": 1.5"),
                      NSC_ERR_FORMAT, "attn_pdrop");
    expect_load_error(
        config_variant("cross", "\"add_cross_attention\": false", "\"add_cross_attention\": true"),
        NSC_ERR_FORMAT, "add_cross_attention");
    expect_load_error(config_variant("json", "{", "["), NSC_ERR_FORMAT, "config.json");
    // Python's json keeps the last copy, a first-match lookup the first: refused.
    expect_load_error(config_variant("dup", "\"n_head\": 4", "\"n_head\": 4, \"n_head\": 2"),
                      NSC_ERR_FORMAT, "config.json: field \"n_head\" (line ");
    expect_load_error(config_variant("dup", "\"n_head\": 4", "\"n_head\": 4, \"n_head\": 2"),
                      NSC_ERR_FORMAT, ") appears twice: expected each field once");
    // A valid config of another size: every tensor is mis-shaped.
    expect_load_error(config_variant("wide", "\"n_embd\": 64", "\"n_embd\": 128"), NSC_ERR_SHAPE,
                      "expected [");
}

Test(checkpoint_errors, a_failed_load_leaves_the_model_unchanged, .init = make_dir,
     .fini = remove_dir) {
    nsc_module *m = nsc_gpt2_load(tiny("gpt2_tiny"));
    cr_assert(m);
    nsc_module_requires_grad_(m, true);
    int64_t n = nsc_module_n_params(m);
    nsc_tensor *before[32];
    for (int64_t i = 0; i < n; i++) {
        before[i] = nsc_module_param_at(m, i, NULL);
    }
    tensors ts = { 0 };
    read_tiny(&ts);
    int last = index_of(&ts, "transformer.wte.weight"); // read last: the file is in name order
    nsc_free(ts.t[last]);
    ts.t[last] = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(101, 64));
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", save(&ts, "one_bad"));
    cr_expect_eq(nsc_gpt2_load_weights(m, path), NSC_ERR_SHAPE);
    for (int64_t i = 0; i < n; i++) {
        cr_expect_eq(nsc_module_param_at(m, i, NULL), before[i], "parameter %lld replaced",
                     (long long)i);
    }
    // A good file is copied into every parameter, as torch's load_state_dict:
    // the same tensors, the tie and the grad flags kept, so an optimizer made
    // before the load trains the loaded weights.
    nsc_adamw_config adamw = nsc_adamw_defaults();
    nsc_optim *opt = nsc_optim_adamw_new_module(m, &adamw);
    cr_assert(opt, "%s", nsc_last_error());
    nsc_free(ts.t[last]);
    ts.t[last] = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(100, 64), 0.5);
    snprintf(path, sizeof path, "%s/model.safetensors", save(&ts, "good"));
    cr_expect_eq(nsc_gpt2_load_weights(m, path), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *wte = nsc_module_find_tensor(m, "transformer.wte.weight");
    cr_expect_eq(wte, before[0], "the same tensor, its values loaded");
    cr_expect_eq(wte, nsc_module_find_tensor(m, "lm_head.weight"), "still tied");
    cr_expect(nsc_tensor_requires_grad(wte));
    cr_expect(nsc_tensor_is_leaf(wte));
    cr_expect_eq(((const float *)nsc_tensor_data(wte))[3 * 64 + 5], 0.5f);
    int64_t ids[3] = { 1, 2, 3 };
    nsc_tensor *x = nsc_from_data(NSC_I64, NSC_SHAPE(1, 3), ids);
    nsc_tensor *logits = nsc_module_call(m, 1, &x);
    nsc_tensor *loss = nsc_sum_all(logits);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_optim_step(opt), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_optim_get_step(opt, 0), 1, "the optimizer stepped the loaded weights");
    cr_expect_neq(((const float *)nsc_tensor_data(wte))[3 * 64 + 5], 0.5f);
    nsc_free(loss);
    nsc_free(logits);
    nsc_free(x);
    nsc_optim_free(opt);
    free_tensors(&ts);
    nsc_module_free(m);
}

// --- saving ---

Test(checkpoint, save_then_load_round_trips, .init = make_dir, .fini = remove_dir) {
    int64_t before = nsct_live_blocks();
    nsc_module *m = nsc_gpt2_load(tiny("gpt2_tiny"));
    char dir[400];
    snprintf(dir, sizeof dir, "%s/saved", g_dir);
    cr_assert_eq(nsc_gpt2_save(m, dir), NSC_OK, "%s", nsc_last_error());
    nsc_module *back = nsc_gpt2_load(dir);
    cr_assert(back, "%s", nsc_last_error());
    for (int64_t i = 0; i < nsc_module_n_params(m); i++) {
        const char *path;
        nsc_tensor *a = nsc_module_param_at(m, i, &path), *b = nsc_module_param_at(back, i, NULL);
        cr_expect(nsc_allclose(a, b, 0, 0, false), "%s", path);
    }
    expect_logits(back, "logits", TOL_LOGITS, "saved and loaded");
    // save_pretrained's layout: transformer.* names, no tied head, format pt.
    char path[500];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    nsc_safetensors *st = nsc_safetensors_open(path);
    cr_expect_eq(nsc_safetensors_count(st), 28);
    cr_expect(nsc_safetensors_has(st, "transformer.h.1.attn.c_attn.weight"));
    cr_expect_not(nsc_safetensors_has(st, "lm_head.weight"));
    cr_expect_str_eq(nsc_safetensors_get_metadata(st, "format"), "pt");
    nsc_safetensors_free(st);
    nsc_gpt2_config a, b;
    nsc_gpt2_get_config(m, &a);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_expect_eq(nsc_gpt2_config_load(path, &b), NSC_OK);
    cr_expect(a.vocab_size == b.vocab_size && a.n_positions == b.n_positions &&
                  a.n_embd == b.n_embd && a.n_layer == b.n_layer && a.n_head == b.n_head &&
                  a.n_inner == b.n_inner && a.activation == b.activation &&
                  a.layer_norm_epsilon == b.layer_norm_epsilon && a.resid_pdrop == b.resid_pdrop &&
                  a.embd_pdrop == b.embd_pdrop && a.attn_pdrop == b.attn_pdrop &&
                  a.initializer_range == b.initializer_range &&
                  a.scale_attn_weights == b.scale_attn_weights &&
                  a.scale_attn_by_inverse_layer_idx == b.scale_attn_by_inverse_layer_idx &&
                  a.tie_word_embeddings == b.tie_word_embeddings &&
                  a.bos_token_id == b.bos_token_id && a.eos_token_id == b.eos_token_id,
              "config round trip");
    nsc_module_free(back);
    nsc_module *meta = nsc_gpt2_load_meta(tiny("gpt2_tiny"));
    cr_expect_eq(nsc_gpt2_save(meta, dir), NSC_ERR_DEVICE, "META parameters have no data");
    nsc_module_free(meta);
    nsc_module_free(m);
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), before);
}

// Every tensor is checked before the directory is made: a META model (no
// data) made the directory, then was refused; a path past the 1023-byte
// limit was cut to 255 bytes and saved under that name.
Test(checkpoint_errors, save_refuses_before_making_the_directory, .init = make_dir,
     .fini = remove_dir) {
    char dir[400];
    snprintf(dir, sizeof dir, "%s/saved", g_dir);
    nsc_module *meta = nsc_gpt2_load_meta(tiny("gpt2_tiny"));
    int64_t before = nsct_live_blocks();
    cr_expect_eq(nsc_gpt2_save(meta, dir), NSC_ERR_DEVICE);
    cr_expect(strstr(nsc_last_error(), "gpt2_save: "), "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "/saved: transformer.wte.weight is on meta and has no data"),
              "%s", nsc_last_error());
    cr_expect_neq(access(dir, F_OK), 0, "no directory made");
    cr_expect_eq(nsct_live_blocks(), before);
    nsc_module_free(meta);
    nsc_module *m = nsc_gpt2_load(tiny("gpt2_tiny"));
    nsc_module *at = nsc_module_find(m, "transformer.h.0");
    char name[256];
    memset(name, 'a', 255);
    name[255] = '\0';
    for (int i = 0; i < 4; i++) { // transformer.h.0 + 4 x 256 bytes
        nsc_module *next = nsc_module_new("Deep", NULL, NULL, NULL);
        cr_assert_eq(nsc_module_add_child(at, name, next), NSC_OK, "%s", nsc_last_error());
        nsc_module_free(next);
        at = next;
    }
    nsc_tensor *w = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    cr_assert_eq(nsc_module_add_param(at, "w", w), NSC_OK);
    nsc_free(w);
    cr_expect_eq(nsc_gpt2_save(m, dir), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "its path is longer than 1023 bytes"), "%s",
              nsc_last_error());
    cr_expect_neq(access(dir, F_OK), 0, "no directory made");
    cr_expect_eq(nsc_gpt2_load_weights(m, tiny("gpt2_tiny/model.safetensors")), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "its path is longer than 1023 bytes"), "%s",
              nsc_last_error());
    nsc_clear_error();
    nsc_module_free(m);
}

Test(checkpoint, config_defaults_are_gpt2_small) {
    nsc_gpt2_config c = nsc_gpt2_config_default();
    cr_expect(c.n_layer == 12 && c.n_head == 12 && c.n_embd == 768 && c.vocab_size == 50257);
    cr_expect_eq(nsc_gpt2_config_validate(&c), NSC_OK);
    c.resid_pdrop = 1;
    cr_expect_eq(nsc_gpt2_config_validate(&c), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "resid_pdrop"));
    nsc_gpt2_config d;
    cr_expect_eq(nsc_gpt2_config_load(tiny("gpt2_small_header/config.json"), &d), NSC_OK);
    cr_expect(d.eos_token_id == 50256 && d.n_inner == 0 && d.tie_word_embeddings);
}

Test(checkpoint_errors, out_of_memory_sweep) {
    int64_t start = nsc_mem_stats_get().n_allocs;
    nsc_module *m = nsc_gpt2_load(tiny("gpt2_tiny"));
    int64_t n_allocs = nsc_mem_stats_get().n_allocs - start;
    cr_assert(m);
    nsc_module_free(m);
    int failures = 0;
    for (int64_t k = 1; k <= n_allocs + 1; k++) {
        int64_t before = nsct_live_blocks();
        nsc_mem_fail_after(k);
        m = nsc_gpt2_load(tiny("gpt2_tiny"));
        nsc_mem_fail_after(0);
        if (!m && nsc_last_status() != NSC_ERR_OOM) {
            cr_log_error("allocation %lld: %s", (long long)k, nsc_last_error());
            failures++;
        }
        nsc_module_free(m);
        if (nsct_live_blocks() != before) {
            cr_log_error("allocation %lld: %lld blocks leaked", (long long)k,
                         (long long)(nsct_live_blocks() - before));
            failures++;
        }
        nsc_clear_error();
    }
    cr_expect_eq(failures, 0);
}
