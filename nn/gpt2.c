// GPT-2 (Hugging Face's GPT2LMHeadModel): the root and GPT2Model
// ("transformer") forwards, the module tree, position ids. Blocks and MLPs
// are in gpt2_block.c, attention in gpt2_attention.c, checkpoints in
// checkpoint.c. Letters: B batch, T new tokens, S = past + T, C width, V vocab.
// https://github.com/huggingface/transformers/blob/main/src/transformers/models/gpt2/modeling_gpt2.py
#include <string.h>

#include "nn/nn_impl.h"

// --- the shared part ---

void nsci_gpt2_release(nsci_gpt2 *g) {
    if (g && atomic_fetch_sub(&g->refcount, 1) == 1) {
        nsci_free(g);
    }
}

static void shared_free(void *state) {
    nsci_gpt2_release(state);
}

static nsc_tensor *root_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state);

bool nsc_is_gpt2(const nsc_module *m) {
    return m && m->forward == root_forward;
}

nsci_gpt2 *nsci_gpt2_of(const nsc_module *model, const char *op) {
    if (!nsc_is_gpt2(model)) {
        return nsci_fail_null(NSC_ERR_ARG,
                              "%s: a %s module: expected a GPT-2 root (nsc_gpt2_new "
                              "or nsc_gpt2_load)",
                              op, model ? nsc_module_type(model) : "NULL");
    }
    return model->state;
}

nsc_status nsc_gpt2_get_config(const nsc_module *model, nsc_gpt2_config *config) {
    nsci_gpt2 *g = nsci_gpt2_of(model, "gpt2_get_config");
    if (!g || !config) {
        return g ? nsci_fail(NSC_ERR_ARG, "gpt2_get_config: config is NULL") : nsc_last_status();
    }
    *config = g->config;
    return NSC_OK;
}

// --- GPT2Model: embeddings, blocks, final norm ---

// The module's path for messages (computed only on failure: the first
// nsc_module_path call caches the path, an allocation).
static const char *where_of(const nsc_module *m) {
    return *nsc_module_path(m) ? nsc_module_path(m) : "gpt2";
}

// Checks the inputs of the transformer (ids, mask, position ids) against the
// past length; all shape-only, so it holds on META too.
static nsc_status check_inputs(const nsc_module *m, const nsci_gpt2 *g, nsc_tensor *ids,
                               nsc_tensor *mask, nsc_tensor *pos, int64_t past) {
    char buf[160];
    if (nsc_tensor_dtype(ids) != NSC_I64 || nsc_tensor_ndim(ids) != 2) {
        return nsci_fail(nsc_tensor_dtype(ids) != NSC_I64 ? NSC_ERR_DTYPE : NSC_ERR_SHAPE,
                         "%s: input_ids %s %s: expected [B, T] i64", where_of(m),
                         nsci_shape_str(buf, sizeof buf, ids->ndim, ids->shape),
                         nsc_dtype_name(nsc_tensor_dtype(ids)));
    }
    int64_t b = ids->shape[0], t = ids->shape[1];
    if (past + t > g->config.n_positions) {
        return nsci_fail(NSC_ERR_SHAPE,
                         "%s: a sequence of %lld tokens (%lld cached + %lld new): expected at "
                         "most n_positions = %lld",
                         where_of(m), (long long)(past + t), (long long)past, (long long)t,
                         (long long)g->config.n_positions);
    }
    if (mask && (mask->ndim != 2 || mask->shape[0] != b || mask->shape[1] != past + t)) {
        return nsci_fail(NSC_ERR_SHAPE,
                         "%s: attention_mask %s: expected [B, past + T] = [%lld, %lld]",
                         where_of(m), nsci_shape_str(buf, sizeof buf, mask->ndim, mask->shape),
                         (long long)b, (long long)(past + t));
    }
    if (pos && (nsc_tensor_dtype(pos) != NSC_I64 || pos->ndim != 2 || pos->shape[0] != b ||
                pos->shape[1] != t)) {
        return nsci_fail(NSC_ERR_SHAPE,
                         "%s: position_ids %s %s: expected [B, T] = [%lld, %lld] i64", where_of(m),
                         nsci_shape_str(buf, sizeof buf, pos->ndim, pos->shape),
                         nsc_dtype_name(nsc_tensor_dtype(pos)), (long long)b, (long long)t);
    }
    return NSC_OK;
}

// start + arange(n) made on device itself by doubling (t, then cat(t, t +
// len)): exact in i64, log2(n) small ops, and no host copy, which a GPU
// forward must not make (torch.arange(device=) runs a kernel too).
static nsc_tensor *arange_on(nsc_device device, int64_t start, int64_t n) {
    nsc_tensor *t = nsc_full(NSC_I64, device, NSC_SHAPE(1), (double)start);
    for (int64_t len = 1; t && len < n; len *= 2) {
        nsc_tensor *upper = nsc_add_scalar(t, (double)len);
        nsc_tensor *both[2] = { t, upper };
        nsc_tensor *next = upper ? nsc_cat(2, both, 0) : NULL;
        nsc_free(upper);
        nsc_free(t);
        t = next;
    }
    nsc_tensor *out = t ? nsc_narrow(t, 0, 0, n) : NULL;
    nsc_free(t);
    return out;
}

// past + arange(T) for every row ([B, T] on ids' device; META zeros when ids
// are META).
static nsc_tensor *default_positions(nsc_tensor *ids, int64_t past) {
    int64_t b = ids->shape[0], t = ids->shape[1];
    if (nsc_tensor_device(ids) == NSC_META) {
        return nsc_zeros(NSC_I64, NSC_META, NSC_SHAPE(b, t));
    }
    nsc_tensor *row = arange_on(nsc_tensor_target_device(ids), past, t);
    nsc_tensor *row2 = row ? nsc_view(row, NSC_SHAPE(1, t)) : NULL;
    nsc_tensor *all = row2 ? nsc_expand(row2, NSC_SHAPE(b, t)) : NULL;
    nsc_free(row);
    nsc_free(row2);
    return all;
}

// Calls child on h (consumed) and returns its output, or NULL.
static nsc_tensor *call_on(nsc_module *child, nsc_tensor *h) {
    nsc_tensor *out = nsc_module_call(child, 1, &h);
    nsc_free(h);
    return out;
}

// in: input_ids [B, T] i64, attention_mask [B, S] or NULL, position_ids
// [B, T] or NULL. Returns the final hidden states [B, T, C] (after ln_f).
static nsc_tensor *transformer_forward(nsc_module *m, int n_in, nsc_tensor *const *in,
                                       void *state) {
    nsci_gpt2 *g = state;
    nsc_tensor *ids = nsci_module_input(m, n_in, in, 0);
    nsc_tensor *mask = n_in > 1 ? in[1] : NULL, *pos = n_in > 2 ? in[2] : NULL;
    int64_t past = g->cache ? nsc_kv_cache_length(g->cache) : 0;
    if (!ids || check_inputs(m, g, ids, mask, pos, past) != NSC_OK) {
        return NULL;
    }
    nsc_tensor *positions = pos ? nsc_retain(pos) : default_positions(ids, past);
    if (!positions) {
        return nsci_module_result(m, NULL);
    }
    nsc_tensor *tok = nsc_module_call(nsci_child(m, NSCI_TF_WTE), 1, &ids);
    nsc_tensor *where = tok ? nsc_module_call(nsci_child(m, NSCI_TF_WPE), 1, &positions) : NULL;
    nsc_tensor *h = where ? nsci_module_result(m, nsc_add(tok, where)) : NULL;
    nsc_free(tok);
    nsc_free(where);
    nsc_free(positions);
    h = h ? call_on(nsci_child(m, NSCI_TF_DROP), h) : NULL;
    nsc_module *blocks = nsci_child(m, NSCI_TF_H);
    for (int i = 0; h && i < blocks->n_children; i++) {
        nsc_tensor *args[2] = { h, mask };
        nsc_tensor *next = nsc_module_call(blocks->children[i], 2, args);
        nsc_free(h);
        h = next;
    }
    h = h ? call_on(nsci_child(m, NSCI_TF_LN_F), h) : NULL;
    if (g->cache) { // pending stays untouched without a cache: threads may share the model
        g->pending = h ? ids->shape[1] : 0;
    }
    return h;
}

// The new tokens join the cache only when the outermost GPT-2 call returns
// with its output hooks done: the root's, or the transformer's when it was
// called alone. A hook on lm_head or the root that fails or stops after the
// transformer returned must leave the length as it was (nsc/generate.h).
static void commit_on_done(nsc_module *m, bool ok) {
    nsci_gpt2 *g = m->state;
    if (!g->cache || (m->forward == transformer_forward && g->in_root > 0)) {
        return; // no cache (nothing to write: threads may share the model), or the root decides
    }
    if (ok && g->pending > 0) {
        nsci_kv_cache_commit(g->cache, g->pending);
    }
    g->pending = 0;
}

// --- GPT2LMHeadModel ---

// in: as the transformer's. Returns logits [B, T, V].
static nsc_tensor *root_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    nsci_gpt2 *g = state;
    if (n_in > 3) {
        return nsci_fail_null(NSC_ERR_ARG,
                              "gpt2: %d inputs: expected input_ids, "
                              "attention_mask and position_ids",
                              n_in);
    }
    nsc_kv_cache *cache = g->cache; // counted only with a cache: threads may share the model
    g->in_root += cache != NULL;
    nsc_tensor *h = nsc_module_call(nsci_child(m, NSCI_ROOT_TRANSFORMER), n_in, in);
    nsc_tensor *logits = h ? call_on(nsci_child(m, NSCI_ROOT_LM_HEAD), h) : NULL;
    g->in_root -= cache != NULL;
    return logits;
}

// --- building the tree ---

// Adds child under name and drops the caller's reference.
static nsc_status adopt(nsc_module *parent, const char *name, nsc_module *child) {
    nsc_status s = child ? nsc_module_add_child(parent, name, child) : nsc_last_status();
    nsc_module_free(child);
    return s;
}

// A module sharing g (one more reference; released when the module goes).
static nsc_module *shared_module(const char *type, nsc_forward_fn forward, nsci_gpt2 *g) {
    nsc_module *m = nsc_module_new(type, forward, g, shared_free);
    if (m) {
        atomic_fetch_add(&g->refcount, 1);
        m->call_done = commit_on_done;
    }
    return m;
}

nsc_tensor *nsci_gpt2_init(bool meta, nsc_generator *gen, int ndim, const int64_t *shape,
                           double std) {
    if (meta) {
        return nsc_empty(NSC_F32, NSC_META, ndim, shape);
    }
    return std > 0 ? nsci_normal(gen, ndim, shape, std) : nsc_zeros(NSC_F32, NSC_CPU, ndim, shape);
}

nsc_module *nsci_gpt2_layer_norm(bool meta, int64_t c, double eps) {
    nsc_device dev = meta ? NSC_META : NSC_CPU;
    nsc_tensor *w = nsc_ones(NSC_F32, dev, NSC_SHAPE(c)),
               *b = nsc_zeros(NSC_F32, dev, NSC_SHAPE(c));
    nsc_module *m = w && b ? nsci_layer_norm_with(w, b, eps) : NULL;
    nsc_free(w);
    nsc_free(b);
    return m;
}

nsc_module *nsci_gpt2_conv1d(bool meta, nsc_generator *gen, int64_t in, int64_t out, double std) {
    nsc_tensor *w = nsci_gpt2_init(meta, gen, NSC_SHAPE(in, out), std);
    nsc_tensor *b = w ? nsci_gpt2_init(meta, gen, NSC_SHAPE(out), 0) : NULL;
    nsc_module *m = w && b ? nsci_linear_with("Conv1D", w, b) : NULL;
    nsc_free(w);
    nsc_free(b);
    return m;
}

static nsc_module *embedding(bool meta, nsc_generator *gen, int64_t n, int64_t c, double std) {
    nsc_tensor *w = nsci_gpt2_init(meta, gen, NSC_SHAPE(n, c), std);
    nsc_module *e = w ? nsci_embedding_with(w) : NULL;
    nsc_free(w);
    return e;
}

static nsc_module *build_transformer(nsci_gpt2 *g, nsc_generator *gen, bool meta) {
    const nsc_gpt2_config *c = &g->config;
    nsc_module *tf = shared_module("GPT2Model", transformer_forward, g);
    nsc_module *h = tf ? nsc_module_new("ModuleList", NULL, NULL, NULL) : NULL;
    bool ok =
        h &&
        adopt(tf, "wte", embedding(meta, gen, c->vocab_size, c->n_embd, c->initializer_range)) ==
            NSC_OK &&
        adopt(tf, "wpe", embedding(meta, gen, c->n_positions, c->n_embd, c->initializer_range)) ==
            NSC_OK &&
        adopt(tf, "drop", nsc_dropout_new(c->embd_pdrop)) == NSC_OK;
    for (int i = 0; ok && i < c->n_layer; i++) {
        char name[24];
        snprintf(name, sizeof name, "%d", i);
        ok = adopt(h, name, nsci_gpt2_block_new(g, i, gen, meta)) == NSC_OK;
    }
    ok = ok && nsc_module_add_child(tf, "h", h) == NSC_OK &&
         adopt(tf, "ln_f", nsci_gpt2_layer_norm(meta, c->n_embd, c->layer_norm_epsilon)) == NSC_OK;
    nsc_module_free(h);
    if (!ok) {
        nsc_module_free(tf);
        return NULL;
    }
    return tf;
}

// lm_head: a bias-free Linear whose weight is wte's (tied) or its own.
static nsc_module *build_lm_head(nsci_gpt2 *g, nsc_module *tf, nsc_generator *gen, bool meta) {
    const nsc_gpt2_config *c = &g->config;
    nsc_tensor *w =
        c->tie_word_embeddings
            ? nsc_retain(nsc_module_param(nsci_child(tf, NSCI_TF_WTE), "weight"))
            : nsci_gpt2_init(meta, gen, NSC_SHAPE(c->vocab_size, c->n_embd), c->initializer_range);
    nsc_module *head = w ? nsci_linear_with("Linear", w, NULL) : NULL;
    nsc_free(w);
    return head;
}

// Every value a GPT-2 module takes or returns has its batch first (ids,
// masks, position ids, hidden states, q/k/v and the pattern, tokens):
// declared here for every module; no input lacks a batch dim (default
// position ids are expanded to [B, T]).
static nsc_status declare_batch_dims(nsc_module *root) {
    for (int64_t i = 0; i < nsc_module_n_modules(root); i++) {
        nsc_module *m = nsc_module_at(root, i);
        for (int k = 0; k < 3; k++) {
            if (nsc_module_set_batch_dim(m, NSC_HOOK_INPUT, k, 0) != NSC_OK) {
                return nsc_last_status();
            }
        }
        if (nsc_module_set_batch_dim(m, NSC_HOOK_OUTPUT, 0, 0) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

nsc_module *nsci_gpt2_build(const nsc_gpt2_config *config, nsc_generator *gen, bool meta) {
    if (!config || nsc_gpt2_config_validate(config) != NSC_OK) {
        return config ? NULL : nsci_fail_null(NSC_ERR_ARG, "gpt2_new: config is NULL");
    }
    nsci_gpt2 *g = nsci_calloc(1, sizeof *g);
    if (!g) {
        return NULL;
    }
    atomic_init(&g->refcount, 1);
    g->config = *config;
    nsc_module *root = shared_module("GPT2LMHeadModel", root_forward, g);
    nsci_gpt2_release(g); // the modules hold their own references now
    nsc_module *tf = root ? build_transformer(g, gen, meta) : NULL;
    bool ok = tf && nsc_module_add_child(root, "transformer", tf) == NSC_OK &&
              adopt(root, "lm_head", build_lm_head(g, tf, gen, meta)) == NSC_OK &&
              adopt(root, "generator", nsc_identity_new("Generator")) == NSC_OK &&
              declare_batch_dims(root) == NSC_OK;
    nsc_module_free(tf);
    if (!ok) {
        nsc_module_free(root);
        return NULL;
    }
    nsc_module_train(root, false); // as from_pretrained: evaluation mode
    return root;
}

nsc_module *nsc_gpt2_new(const nsc_gpt2_config *config, nsc_generator *gen) {
    return nsci_gpt2_build(config, gen, false);
}

// --- position ids ---

nsc_tensor *nsc_gpt2_position_ids(nsc_tensor *mask) {
    if (!mask || nsc_tensor_ndim(mask) != 2) {
        return nsci_fail_null(NSC_ERR_SHAPE, "gpt2_position_ids: expected a [B, S] mask");
    }
    int64_t b = mask->shape[0], s = mask->shape[1];
    if (nsc_tensor_device(mask) == NSC_META) {
        return nsc_zeros(NSC_I64, NSC_META, NSC_SHAPE(b, s));
    }
    nsc_tensor *m = nsc_to_dtype(mask, NSC_I64);
    nsc_tensor *mc = nsc_contiguous(m);
    nsc_tensor *out = mc ? nsc_empty(NSC_I64, NSC_CPU, NSC_SHAPE(b, s)) : NULL;
    nsc_tensor *host = out ? nsc_to(mc, NSC_CPU) : NULL;
    if (host) {
        const int64_t *src = nsc_tensor_data(host);
        int64_t *dst = nsc_tensor_data(out);
        for (int64_t r = 0; r < b; r++) {
            int64_t seen = 0;
            for (int64_t j = 0; j < s; j++) {
                seen += src[r * s + j] != 0;
                dst[r * s + j] = src[r * s + j] != 0 ? seen - 1 : 1;
            }
        }
    }
    if (!host) {
        nsc_free(out);
        out = NULL;
    }
    nsc_free(m);
    nsc_free(mc);
    nsc_free(host);
    if (out && nsc_tensor_device(mask) != NSC_CPU) { // on the mask's device, as torch's cumsum
        nsc_tensor *moved = nsc_to(out, nsc_tensor_device(mask));
        nsc_free(out);
        out = moved;
    }
    return out;
}
