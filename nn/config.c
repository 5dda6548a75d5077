// GPT-2's configuration: the defaults of transformers.GPT2Config, the
// validation every constructor runs, and config.json reading and writing.
// https://huggingface.co/docs/transformers/model_doc/gpt2#transformers.GPT2Config
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn_impl.h"

// Bounds that catch corrupt files long before memory runs out.
#define MAX_SIZE ((int64_t)1 << 24)

nsc_gpt2_config nsc_gpt2_config_default(void) {
    return (nsc_gpt2_config){
        .vocab_size = 50257,
        .n_positions = 1024,
        .n_embd = 768,
        .n_layer = 12,
        .n_head = 12,
        .n_inner = 0,
        .activation = NSC_ACTIVATION_GELU_TANH,
        .layer_norm_epsilon = 1e-5,
        .resid_pdrop = 0.1,
        .embd_pdrop = 0.1,
        .attn_pdrop = 0.1,
        .initializer_range = 0.02,
        .scale_attn_weights = true,
        .scale_attn_by_inverse_layer_idx = false,
        .tie_word_embeddings = true,
        .bos_token_id = 50256,
        .eos_token_id = 50256,
    };
}

static nsc_status bad_size(const char *field, int64_t v, int64_t lo, int64_t hi) {
    return nsci_fail(NSC_ERR_ARG, "gpt2 config: %s = %lld: expected %lld..%lld", field,
                     (long long)v, (long long)lo, (long long)hi);
}

// Sizes within their bounds and n_embd divisible by n_head.
static nsc_status check_sizes(const nsc_gpt2_config *c) {
    const struct {
        const char *name;
        int64_t v, lo, hi;
    } sizes[] = {
        { "vocab_size", c->vocab_size, 1, MAX_SIZE },
        { "n_positions", c->n_positions, 1, MAX_SIZE },
        { "n_embd", c->n_embd, 1, MAX_SIZE },
        { "n_layer", c->n_layer, 1, 4096 },
        { "n_head", c->n_head, 1, 4096 },
        { "n_inner", c->n_inner, 0, MAX_SIZE },
        { "bos_token_id", c->bos_token_id, -1, MAX_SIZE },
        { "eos_token_id", c->eos_token_id, -1, MAX_SIZE },
    };
    for (int i = 0; i < NSCI_ARRAY_LEN(sizes); i++) {
        if (sizes[i].v < sizes[i].lo || sizes[i].v > sizes[i].hi) {
            return bad_size(sizes[i].name, sizes[i].v, sizes[i].lo, sizes[i].hi);
        }
    }
    if (c->n_embd % c->n_head != 0) {
        return nsci_fail(NSC_ERR_ARG,
                         "gpt2 config: n_embd = %lld, n_head = %lld: expected "
                         "n_embd divisible by n_head",
                         (long long)c->n_embd, (long long)c->n_head);
    }
    return NSC_OK;
}

nsc_status nsc_gpt2_config_validate(const nsc_gpt2_config *c) {
    if (!c) {
        return nsci_fail(NSC_ERR_ARG, "gpt2 config: NULL");
    }
    if (check_sizes(c) != NSC_OK) {
        return nsc_last_status();
    }
    const struct {
        const char *name;
        double v;
    } probs[] = { { "resid_pdrop", c->resid_pdrop },
                  { "embd_pdrop", c->embd_pdrop },
                  { "attn_pdrop", c->attn_pdrop } };
    for (int i = 0; i < NSCI_ARRAY_LEN(probs); i++) {
        if (!(probs[i].v >= 0 && probs[i].v < 1)) {
            return nsci_fail(NSC_ERR_ARG, "gpt2 config: %s = %g: expected a probability in [0, 1)",
                             probs[i].name, probs[i].v);
        }
    }
    if (!(c->layer_norm_epsilon > 0 && c->layer_norm_epsilon < 1)) {
        return nsci_fail(NSC_ERR_ARG, "gpt2 config: layer_norm_epsilon = %g: expected 0 < eps < 1",
                         c->layer_norm_epsilon);
    }
    if (!(c->initializer_range >= 0 && c->initializer_range < 10)) {
        return nsci_fail(NSC_ERR_ARG, "gpt2 config: initializer_range = %g: expected 0..10",
                         c->initializer_range);
    }
    if ((int)c->activation < NSC_ACTIVATION_RELU || (int)c->activation > NSC_ACTIVATION_TANH) {
        return nsci_fail(NSC_ERR_ARG,
                         "gpt2 config: activation %d: expected relu, gelu, gelu_new "
                         "or tanh",
                         (int)c->activation);
    }
    return NSC_OK;
}

// --- reading ---

typedef struct reader {
    const char *path;
    const nsci_json *root;
} reader;

static nsc_status field_error(const reader *r, const char *field, const nsci_json *v,
                              const char *expected) {
    if (!v) {
        return nsci_fail(NSC_ERR_FORMAT, "gpt2 config: %s: field \"%s\" is missing: expected %s",
                         r->path, field, expected);
    }
    return nsci_fail(NSC_ERR_FORMAT,
                     "gpt2 config: %s: field \"%s\" (line %d, column %d): expected %s", r->path,
                     field, v->line, v->column, expected);
}

// An integer field; absent fields keep *out when optional.
static nsc_status get_int(const reader *r, const char *field, bool required, int64_t *out) {
    const nsci_json *v = nsci_json_get(r->root, field);
    if (!v && !required) {
        return NSC_OK;
    }
    if (!v || v->type != NSCI_JSON_NUMBER || !v->is_int) {
        return field_error(r, field, v, "an integer");
    }
    *out = v->integer;
    return NSC_OK;
}

static nsc_status get_number(const reader *r, const char *field, bool required, double *out) {
    const nsci_json *v = nsci_json_get(r->root, field);
    if (!v && !required) {
        return NSC_OK;
    }
    if (!v || v->type != NSCI_JSON_NUMBER) {
        return field_error(r, field, v, "a number");
    }
    *out = v->number;
    return NSC_OK;
}

static nsc_status get_bool(const reader *r, const char *field, bool *out) {
    const nsci_json *v = nsci_json_get(r->root, field);
    if (!v) {
        return NSC_OK;
    }
    if (v->type != NSCI_JSON_BOOL) {
        return field_error(r, field, v, "true or false");
    }
    *out = v->boolean;
    return NSC_OK;
}

// An optional token id: absent or null give -1.
static nsc_status get_token(const reader *r, const char *field, int64_t *out) {
    const nsci_json *v = nsci_json_get(r->root, field);
    if (!v || v->type == NSCI_JSON_NULL) {
        *out = -1;
        return NSC_OK;
    }
    return get_int(r, field, true, out);
}

static nsc_status get_activation(const reader *r, nsc_activation *out) {
    static const struct {
        const char *name;
        nsc_activation act;
    } names[] = { { "gelu_new", NSC_ACTIVATION_GELU_TANH },
                  { "gelu_pytorch_tanh", NSC_ACTIVATION_GELU_TANH },
                  { "gelu", NSC_ACTIVATION_GELU },
                  { "relu", NSC_ACTIVATION_RELU },
                  { "tanh", NSC_ACTIVATION_TANH } };
    const nsci_json *v = nsci_json_get(r->root, "activation_function");
    for (int i = 0; v && v->type == NSCI_JSON_STRING && i < NSCI_ARRAY_LEN(names); i++) {
        if (strcmp(v->string, names[i].name) == 0) {
            *out = names[i].act;
            return NSC_OK;
        }
    }
    return field_error(r, "activation_function", v,
                       "\"gelu_new\", \"gelu_pytorch_tanh\", \"gelu\", \"relu\" or \"tanh\"");
}

// n_inner: null (4 * n_embd) or an integer.
static nsc_status get_inner(const reader *r, int64_t *out) {
    const nsci_json *v = nsci_json_get(r->root, "n_inner");
    if (!v || v->type == NSCI_JSON_NULL) {
        *out = 0;
        return NSC_OK;
    }
    return get_int(r, "n_inner", true, out);
}

// Fields nsc does not implement must hold their neutral value.
static nsc_status check_unsupported(const reader *r) {
    const nsci_json *v = nsci_json_get(r->root, "add_cross_attention");
    if (v && !(v->type == NSCI_JSON_BOOL && !v->boolean)) {
        return field_error(r, "add_cross_attention", v, "false (cross-attention is not supported)");
    }
    v = nsci_json_get(r->root, "model_type");
    if (v && !(v->type == NSCI_JSON_STRING && strcmp(v->string, "gpt2") == 0)) {
        return field_error(r, "model_type", v, "\"gpt2\"");
    }
    return NSC_OK;
}

static nsc_status read_fields(const reader *r, nsc_gpt2_config *c) {
    nsc_status s = check_unsupported(r);
    s = s ? s : get_int(r, "vocab_size", true, &c->vocab_size);
    s = s ? s : get_int(r, "n_positions", true, &c->n_positions);
    s = s ? s : get_int(r, "n_embd", true, &c->n_embd);
    s = s ? s : get_int(r, "n_layer", true, &c->n_layer);
    s = s ? s : get_int(r, "n_head", true, &c->n_head);
    s = s ? s : get_inner(r, &c->n_inner);
    s = s ? s : get_activation(r, &c->activation);
    s = s ? s : get_number(r, "layer_norm_epsilon", true, &c->layer_norm_epsilon);
    s = s ? s : get_number(r, "resid_pdrop", true, &c->resid_pdrop);
    s = s ? s : get_number(r, "embd_pdrop", true, &c->embd_pdrop);
    s = s ? s : get_number(r, "attn_pdrop", true, &c->attn_pdrop);
    s = s ? s : get_number(r, "initializer_range", false, &c->initializer_range);
    s = s ? s : get_bool(r, "scale_attn_weights", &c->scale_attn_weights);
    s = s ? s : get_bool(r, "scale_attn_by_inverse_layer_idx", &c->scale_attn_by_inverse_layer_idx);
    s = s ? s : get_bool(r, "tie_word_embeddings", &c->tie_word_embeddings);
    s = s ? s : get_token(r, "bos_token_id", &c->bos_token_id);
    s = s ? s : get_token(r, "eos_token_id", &c->eos_token_id);
    return s;
}

// A field written twice is refused: Python's json (so transformers) keeps
// the last, a first-match lookup the first; neither guess is safe.
static nsc_status check_unique(const reader *r) {
    int64_t again;
    nsc_status s = nsci_json_repeated_key(r->root, &again);
    if (s == NSC_OK && again >= 0) {
        const nsci_json *v = r->root->items[again];
        s = nsci_fail(NSC_ERR_FORMAT,
                      "gpt2 config: %s: field \"%.60s\" (line %d, column %d) appears twice: "
                      "expected each field once",
                      r->path, r->root->keys[again], v->line, v->column);
    }
    return s;
}

nsc_status nsc_gpt2_config_load(const char *path, nsc_gpt2_config *config) {
    if (!path || !config) {
        return nsci_fail(NSC_ERR_ARG, "gpt2_config_load: path or config is NULL");
    }
    size_t len = 0;
    char *text = nsci_read_file(path, (size_t)1 << 24, &len);
    if (!text) {
        return nsc_last_status();
    }
    nsci_json_limits limits = { 0, 32, NULL };
    nsci_json_doc *doc = nsci_json_parse(text, len, &limits, path);
    nsci_free(text);
    if (!doc) {
        return nsc_last_status();
    }
    reader r = { path, nsci_json_root(doc) };
    nsc_gpt2_config c = nsc_gpt2_config_default();
    nsc_status s = r.root->type == NSCI_JSON_OBJECT
                       ? check_unique(&r)
                       : nsci_fail(NSC_ERR_FORMAT, "gpt2 config: %s: expected a JSON object", path);
    s = s ? s : read_fields(&r, &c);
    nsci_json_doc_free(doc);
    if (s == NSC_OK && nsc_gpt2_config_validate(&c) != NSC_OK) {
        char msg[700];
        snprintf(msg, sizeof msg, "%s", nsc_last_error());
        s = nsci_fail(NSC_ERR_FORMAT, "%s (%s)", msg, path);
    }
    if (s == NSC_OK) {
        *config = c;
    }
    return s;
}

// --- writing ---

static void put_token(nsci_buf *b, const char *field, int64_t id) {
    if (id < 0) {
        nsci_buf_printf(b, "  \"%s\": null,\n", field);
    } else {
        nsci_buf_printf(b, "  \"%s\": %lld,\n", field, (long long)id);
    }
}

static void put_double(nsci_buf *b, const char *field, double v) {
    nsci_buf_printf(b, "  \"%s\": ", field);
    nsci_buf_double(b, v);
    nsci_buf_puts(b, ",\n");
}

static void write_fields(nsci_buf *b, const nsc_gpt2_config *c) {
    nsci_buf_puts(b, "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n");
    nsci_buf_printf(b, "  \"activation_function\": \"%s\",\n", nsc_activation_name(c->activation));
    put_double(b, "attn_pdrop", c->attn_pdrop);
    put_token(b, "bos_token_id", c->bos_token_id);
    put_double(b, "embd_pdrop", c->embd_pdrop);
    put_token(b, "eos_token_id", c->eos_token_id);
    put_double(b, "initializer_range", c->initializer_range);
    put_double(b, "layer_norm_epsilon", c->layer_norm_epsilon);
    nsci_buf_puts(b, "  \"model_type\": \"gpt2\",\n");
    nsci_buf_printf(b, "  \"n_ctx\": %lld,\n  \"n_embd\": %lld,\n  \"n_head\": %lld,\n",
                    (long long)c->n_positions, (long long)c->n_embd, (long long)c->n_head);
    if (c->n_inner > 0) {
        nsci_buf_printf(b, "  \"n_inner\": %lld,\n", (long long)c->n_inner);
    } else {
        nsci_buf_puts(b, "  \"n_inner\": null,\n");
    }
    nsci_buf_printf(b, "  \"n_layer\": %lld,\n  \"n_positions\": %lld,\n", (long long)c->n_layer,
                    (long long)c->n_positions);
    put_double(b, "resid_pdrop", c->resid_pdrop);
    nsci_buf_printf(b, "  \"scale_attn_by_inverse_layer_idx\": %s,\n",
                    c->scale_attn_by_inverse_layer_idx ? "true" : "false");
    nsci_buf_printf(b, "  \"scale_attn_weights\": %s,\n", c->scale_attn_weights ? "true" : "false");
    nsci_buf_printf(b, "  \"tie_word_embeddings\": %s,\n",
                    c->tie_word_embeddings ? "true" : "false");
    nsci_buf_printf(b, "  \"vocab_size\": %lld\n}\n", (long long)c->vocab_size);
}

nsc_status nsc_gpt2_config_save(const nsc_gpt2_config *config, const char *path) {
    if (!path || nsc_gpt2_config_validate(config) != NSC_OK) {
        return path ? nsc_last_status() : nsci_fail(NSC_ERR_ARG, "gpt2_config_save: path is NULL");
    }
    nsci_buf b;
    nsci_buf_init(&b);
    write_fields(&b, config);
    nsci_buf tmp;
    nsci_buf_init(&tmp);
    nsci_buf_printf(&tmp, "%s.tmp", path);
    nsc_status s = b.failed || tmp.failed ? NSC_ERR_OOM : NSC_OK;
    FILE *f = s == NSC_OK ? fopen(tmp.data, "wb") : NULL;
    if (s == NSC_OK && !f) {
        s = nsci_fail(NSC_ERR_IO, "gpt2_config_save: %s: cannot create", tmp.data);
    }
    if (f) {
        bool ok = fwrite(b.data, 1, b.len, f) == b.len;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp.data, path) != 0) {
            remove(tmp.data);
            s = nsci_fail(NSC_ERR_IO, "gpt2_config_save: %s: cannot write", path);
        }
    }
    nsci_buf_free(&b);
    nsci_buf_free(&tmp);
    return s;
}
