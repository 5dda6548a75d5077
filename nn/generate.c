// Autoregressive generation (Hugging Face's GenerationMixin.generate for
// GPT-2, greedy and sampled): step 0 runs the prompt, step k one token per
// row through the key/value cache, so step k is call index k of every
// module. Tokens and the attention mask live in host buffers sized for the
// whole run; each step hands the model small tensors over them. Letters: B
// rows, T prompt length, n generated so far, V vocabulary.
#include <math.h>
#include <string.h>

#include "nn/nn_impl.h"

nsc_generate_options nsc_generate_options_default(void) {
    return (nsc_generate_options){
        .max_new_tokens = 20,
        .sample = false,
        .temperature = 1.0,
        .top_k = 0,
        .seed = 0,
        .stop_token = -1,
        .use_cache = true,
    };
}

typedef struct run {
    nsc_module *model;
    const nsc_generate_options *opt;
    int64_t b, t, v, total; // total = T + max_new_tokens
    int64_t *tokens;        // [B, total]
    int64_t *mask;          // [B, total]: 1 attend, 0 padding
    bool has_mask;
    bool *finished; // [B]
    float *logits;  // [B, V]: the last position's logits of a step
    double *probs;  // [V]: sampling scratch
    nsc_generator *gen;
    nsc_kv_cache *cache;
    nsc_device device; // input_ids' device: each step's inputs and the result go there
} run;

nsc_status nsci_generate_check_options(const char *op, const nsc_generate_options *o, int64_t b,
                                       int64_t t, const nsc_gpt2_config *c) {
    if (!o) {
        return nsci_fail(NSC_ERR_ARG, "%s: options are NULL", op);
    }
    // Compared as max_new_tokens > n_positions - t: t + max_new_tokens wraps
    // for a count near INT64_MAX and then passed, sizing buffers negative.
    if (o->max_new_tokens < 0 || o->max_new_tokens > c->n_positions - (t > 0 ? t : 1)) {
        if (t > 0) {
            return nsci_fail(NSC_ERR_ARG,
                             "%s: %lld prompt tokens + %lld new: expected at most n_positions = "
                             "%lld in all",
                             op, (long long)t, (long long)o->max_new_tokens,
                             (long long)c->n_positions);
        }
        return nsci_fail(NSC_ERR_ARG,
                         "%s: max_new_tokens %lld: expected 0..%lld (n_positions = %lld, less a "
                         "prompt of at least one token)",
                         op, (long long)o->max_new_tokens, (long long)c->n_positions - 1,
                         (long long)c->n_positions);
    }
    int64_t total = (t > 0 ? t : 1) + o->max_new_tokens;
    if (b > INT64_MAX / total) { // rows of an expanded view: [B, total] buffers overflow
        return nsci_fail(NSC_ERR_ARG, "%s: %lld rows of %lld tokens: the count overflows int64", op,
                         (long long)b, (long long)total);
    }
    if (o->sample && (!(o->temperature > 0) || o->top_k < 0)) {
        return nsci_fail(NSC_ERR_ARG, "%s: temperature %g, top_k %lld: expected > 0 and >= 0", op,
                         o->temperature, (long long)o->top_k);
    }
    if (o->stop_token < -1 || o->stop_token >= c->vocab_size) {
        return nsci_fail(NSC_ERR_ARG, "%s: stop_token %lld: expected -1 or 0..%lld", op,
                         (long long)o->stop_token, (long long)c->vocab_size - 1);
    }
    return NSC_OK;
}

static nsc_status check_args(nsc_tensor *ids, nsc_tensor *mask, const nsc_generate_options *o,
                             const nsc_gpt2_config *c) {
    char buf[160];
    if (!ids || nsc_tensor_dtype(ids) != NSC_I64 || nsc_tensor_ndim(ids) != 2) {
        return nsci_fail(NSC_ERR_ARG, "generate: input_ids %s: expected [B, T] i64",
                         ids ? nsci_shape_str(buf, sizeof buf, ids->ndim, ids->shape) : "NULL");
    }
    if (nsc_tensor_device(ids) == NSC_META || (mask && nsc_tensor_device(mask) == NSC_META)) {
        return nsci_fail(NSC_ERR_DEVICE, "generate: inputs on META: generation reads the tokens");
    }
    int64_t b = ids->shape[0], t = ids->shape[1];
    if (b == 0 || t == 0) {
        return nsci_fail(NSC_ERR_SHAPE,
                         "generate: input_ids %s: expected at least one token per "
                         "row",
                         nsci_shape_str(buf, sizeof buf, ids->ndim, ids->shape));
    }
    if (mask && (mask->ndim != 2 || mask->shape[0] != b || mask->shape[1] != t)) {
        return nsci_fail(NSC_ERR_SHAPE, "generate: attention_mask %s: expected [%lld, %lld]",
                         nsci_shape_str(buf, sizeof buf, mask->ndim, mask->shape), (long long)b,
                         (long long)t);
    }
    return nsci_generate_check_options("generate", o, b, t, c);
}

static void run_free(run *r) {
    if (r->cache) {
        nsc_gpt2_set_cache(r->model, NULL);
    }
    nsc_kv_cache_free(r->cache);
    nsc_generator_free(r->gen);
    nsci_free(r->tokens);
    nsci_free(r->mask);
    nsci_free(r->finished);
    nsci_free(r->logits);
    nsci_free(r->probs);
}

// Copies a [B, T] tensor of any dtype into rows of width total (i64, 0/1 when
// as_mask).
static nsc_status copy_rows(const run *r, nsc_tensor *x, int64_t *dst, bool as_mask) {
    int64_t n = r->b * r->t;
    int64_t *tmp = nsci_malloc((size_t)n * sizeof *tmp);
    if (!tmp || nsc_tensor_copy_to(x, NSC_I64, tmp, (size_t)n * sizeof *tmp) != NSC_OK) {
        nsci_free(tmp);
        return nsc_last_status();
    }
    for (int64_t i = 0; i < r->b; i++) {
        for (int64_t j = 0; j < r->t; j++) {
            int64_t v = tmp[i * r->t + j];
            dst[i * r->total + j] = as_mask ? (v != 0) : v;
        }
    }
    nsci_free(tmp);
    return NSC_OK;
}

static nsc_status run_init(run *r, nsc_tensor *ids, nsc_tensor *mask) {
    r->tokens = nsci_calloc((size_t)(r->b * r->total), sizeof *r->tokens);
    r->mask = nsci_calloc((size_t)(r->b * r->total), sizeof *r->mask);
    r->finished = nsci_calloc((size_t)r->b, sizeof *r->finished);
    r->logits = nsci_malloc((size_t)(r->b * r->v) * sizeof *r->logits);
    r->probs = nsci_malloc((size_t)r->v * sizeof *r->probs);
    r->gen = nsc_generator_new(r->opt->seed);
    if (!r->tokens || !r->mask || !r->finished || !r->logits || !r->probs || !r->gen) {
        return nsc_last_status();
    }
    if (copy_rows(r, ids, r->tokens, false) != NSC_OK ||
        (mask && copy_rows(r, mask, r->mask, true) != NSC_OK)) {
        return nsc_last_status();
    }
    for (int64_t i = 0; !mask && i < r->b * r->total; i++) {
        r->mask[i] = 1;
    }
    if (r->opt->use_cache) {
        r->cache = nsc_kv_cache_new(r->model, r->b, r->total);
        if (!r->cache || nsc_gpt2_set_cache(r->model, r->cache) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

// Columns [from, to) of a [B, total] buffer as a new [B, to - from] tensor.
static nsc_tensor *columns(const run *r, const int64_t *buf, int64_t from, int64_t to) {
    nsc_tensor *x = nsc_empty(NSC_I64, NSC_CPU, NSC_SHAPE(r->b, to - from));
    int64_t *dst = x ? nsc_tensor_data(x) : NULL;
    for (int64_t i = 0; dst && i < r->b; i++) {
        memcpy(dst + i * (to - from), buf + i * r->total + from, (size_t)(to - from) * 8);
    }
    return x;
}

// x moved to the run's device (x itself on the CPU); consumes x.
static nsc_tensor *on_device(const run *r, nsc_tensor *x) {
    if (!x || r->device == NSC_CPU) {
        return x;
    }
    nsc_tensor *moved = nsc_to(x, r->device);
    nsc_free(x);
    return moved;
}

// Runs the model on the tokens of this step (the new ones with a cache, all
// without) and copies the last position's logits to r->logits.
static nsc_status forward_step(run *r, int64_t len, int64_t step) {
    int64_t from = r->cache ? (step == 0 ? 0 : len - 1) : 0;
    nsc_tensor *ids = columns(r, r->tokens, from, len);
    nsc_tensor *mask = r->has_mask ? columns(r, r->mask, 0, len) : NULL;
    nsc_tensor *all_pos = mask ? nsc_gpt2_position_ids(mask) : NULL;
    nsc_tensor *pos = all_pos ? nsc_narrow(all_pos, 1, from, len - from) : NULL;
    // Tokens are chosen on the host; a GPU model gets this step's inputs
    // uploaded (B x new tokens ids, the mask and positions: bytes, not logits).
    ids = on_device(r, ids);
    mask = on_device(r, mask);
    pos = on_device(r, pos);
    nsc_tensor *logits = NULL;
    if (ids && (!r->has_mask || (mask && pos))) {
        nsc_tensor *in[3] = { ids, mask, pos };
        logits = nsc_module_call(r->model, 3, in);
    }
    nsc_tensor *last = logits ? nsc_select(logits, 1, -1) : NULL;
    nsc_status s = last ? nsc_tensor_copy_to(last, NSC_F32, r->logits,
                                             (size_t)(r->b * r->v) * sizeof *r->logits)
                        : nsc_last_status();
    nsc_tensor *temps[] = { ids, mask, all_pos, pos, logits, last };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    return s;
}

// Index of the largest logit (the first on ties; NaN counts as largest, as torch.argmax).
static int64_t argmax_row(const float *x, int64_t v) {
    int64_t best = 0;
    for (int64_t j = 1; j < v && !isnan(x[best]); j++) {
        if (x[j] > x[best] || isnan(x[j])) {
            best = j;
        }
    }
    return best;
}

// A uniform double in [0, 1) from two Philox words.
static double uniform01(nsc_generator *gen) {
    uint64_t hi = nsc_generator_next_u32(gen) >> 5, lo = nsc_generator_next_u32(gen) >> 6;
    return (double)(hi * 67108864u + lo) * (1.0 / 9007199254740992.0);
}

// Samples from softmax(x / temperature) restricted to the top_k largest
// logits (every logit at least the k-th largest, as HF's TopKLogitsWarper).
static int64_t sample_row(const run *r, const float *x) {
    int64_t v = r->v, k = r->opt->top_k;
    double *p = r->probs;
    double cut = -INFINITY;
    if (k > 0 && k < v) {
        for (int64_t j = 0; j < v; j++) {
            p[j] = x[j];
        }
        for (int64_t i = 0; i < k; i++) { // partial selection of the k-th largest
            int64_t m = i;
            for (int64_t j = i + 1; j < v; j++) {
                m = p[j] > p[m] ? j : m;
            }
            double tmp = p[i];
            p[i] = p[m];
            p[m] = tmp;
        }
        cut = p[k - 1];
    }
    double max = -INFINITY, sum = 0;
    for (int64_t j = 0; j < v; j++) {
        double xj = (double)x[j];
        max = xj >= cut && xj > max ? xj : max;
    }
    for (int64_t j = 0; j < v; j++) {
        double xj = (double)x[j];
        p[j] = xj >= cut ? exp((xj - max) / r->opt->temperature) : 0;
        sum += p[j];
    }
    double u = uniform01(r->gen) * sum, acc = 0;
    int64_t last = 0;
    for (int64_t j = 0; j < v; j++) {
        if (p[j] > 0) {
            acc += p[j];
            last = j;
            if (u < acc) {
                return j;
            }
        }
    }
    return last; // rounding left u at the very top
}

// Picks every row's next token into column len; true when all rows stopped.
static bool choose(run *r, int64_t len) {
    bool all = true;
    for (int64_t i = 0; i < r->b; i++) {
        const float *x = r->logits + i * r->v;
        int64_t next = r->opt->sample ? sample_row(r, x) : argmax_row(x, r->v);
        if (r->finished[i]) {
            next = r->opt->stop_token;
        }
        r->tokens[i * r->total + len] = next;
        r->mask[i * r->total + len] = 1;
        r->finished[i] = r->finished[i] || next == r->opt->stop_token;
        all = all && r->finished[i];
    }
    return all;
}

static nsc_status generate_steps(run *r, int64_t *len) {
    for (int64_t step = 0; step < r->opt->max_new_tokens; step++) {
        if (forward_step(r, *len, step) != NSC_OK) {
            return nsc_last_status();
        }
        bool done = choose(r, *len);
        (*len)++;
        if (done) {
            break;
        }
    }
    return NSC_OK;
}

nsc_status nsc_generate(nsc_module *model, nsc_tensor *input_ids, nsc_tensor *attention_mask,
                        const nsc_generate_options *options, nsc_tensor **tokens_out) {
    nsci_gpt2 *g = nsci_gpt2_of(model, "generate");
    if (!g || !tokens_out) {
        return g ? nsci_fail(NSC_ERR_ARG, "generate: tokens_out is NULL") : nsc_last_status();
    }
    *tokens_out = NULL;
    if (check_args(input_ids, attention_mask, options, &g->config) != NSC_OK) {
        return nsc_last_status();
    }
    if (g->cache) {
        return nsci_fail(NSC_ERR_STATE, "generate: the model has a cache attached (nsc_gpt2_set_"
                                        "cache): detach it first");
    }
    run r = { .model = model,
              .opt = options,
              .b = input_ids->shape[0],
              .t = input_ids->shape[1],
              .v = g->config.vocab_size,
              .has_mask = attention_mask != NULL,
              .device = nsc_tensor_device(input_ids) };
    r.total = r.t + options->max_new_tokens;
    nsc_module_reset_calls(model);
    nsc_no_grad_begin();
    int64_t len = r.t;
    nsc_status s = run_init(&r, input_ids, attention_mask);
    s = s == NSC_OK ? generate_steps(&r, &len) : s;
    nsc_tensor *tokens = s == NSC_OK ? on_device(&r, columns(&r, r.tokens, 0, len)) : NULL;
    if (s == NSC_OK && tokens) {
        *tokens_out = nsc_module_call(nsci_child(model, NSCI_ROOT_GENERATOR), 1, &tokens);
    }
    s = s == NSC_OK && !*tokens_out ? nsc_last_status() : s;
    nsc_free(tokens);
    run_free(&r);
    nsc_no_grad_end();
    return s;
}
