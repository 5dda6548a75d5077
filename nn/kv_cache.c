// The key/value cache of GPT-2 generation: per layer [B, H, capacity, D]
// buffers for keys and values, filled up to the committed length, grown by
// doubling (one copy per doubling, never one per step). Each attention layer
// writes its new keys and values at the length and reads a view of
// [0, length + T); the T new tokens commit when the outermost GPT-2 call
// (the root's, output hooks included) succeeds, so a forward that fails or
// stops anywhere leaves the cache as it was.
// Letters: B batch, H heads, T new tokens, D head size.
#include <string.h>

#include "nn/nn_impl.h"

struct nsc_kv_cache {
    int n_layer;
    int64_t batch, n_head, head_dim;
    int64_t capacity, length;
    nsc_tensor **keys, **values; // per layer, allocated on first use
};

nsc_kv_cache *nsc_kv_cache_new(const nsc_module *model, int64_t batch, int64_t capacity) {
    nsci_gpt2 *g = nsci_gpt2_of(model, "kv_cache_new");
    if (!g) {
        return NULL;
    }
    if (batch <= 0 || capacity < 0 || capacity > g->config.n_positions) {
        return nsci_fail_null(NSC_ERR_ARG,
                              "kv_cache_new: batch %lld, capacity %lld: expected batch > 0 and "
                              "0 <= capacity <= n_positions = %lld",
                              (long long)batch, (long long)capacity,
                              (long long)g->config.n_positions);
    }
    nsc_kv_cache *c = nsci_calloc(1, sizeof *c);
    int n = (int)g->config.n_layer;
    if (c) {
        c->keys = nsci_calloc((size_t)n, sizeof *c->keys);
        c->values = nsci_calloc((size_t)n, sizeof *c->values);
    }
    if (!c || !c->keys || !c->values) {
        nsc_kv_cache_free(c);
        return NULL;
    }
    c->n_layer = n;
    c->batch = batch;
    c->n_head = g->config.n_head;
    c->head_dim = g->config.n_embd / g->config.n_head;
    c->capacity = capacity;
    return c;
}

void nsc_kv_cache_free(nsc_kv_cache *c) {
    if (!c) {
        return;
    }
    for (int i = 0; c->keys && i < c->n_layer; i++) {
        nsc_free(c->keys[i]);
    }
    for (int i = 0; c->values && i < c->n_layer; i++) {
        nsc_free(c->values[i]);
    }
    nsci_free(c->keys);
    nsci_free(c->values);
    nsci_free(c);
}

int64_t nsc_kv_cache_length(const nsc_kv_cache *c) {
    return c ? c->length : 0;
}

int64_t nsc_kv_cache_capacity(const nsc_kv_cache *c) {
    return c ? c->capacity : 0;
}

void nsc_kv_cache_reset(nsc_kv_cache *c) {
    if (c) {
        c->length = 0;
    }
}

void nsci_kv_cache_commit(nsc_kv_cache *c, int64_t t) {
    c->length += t;
}

// A buffer [B, H, capacity, D] like x (dtype and device) holding the first
// `keep` positions of old (NULL: none).
static nsc_tensor *grown(const nsc_kv_cache *c, nsc_tensor *x, nsc_tensor *old, int64_t capacity,
                         int64_t keep) {
    nsc_device dev = nsc_tensor_device(x) == NSC_META ? NSC_META : nsc_tensor_target_device(x);
    nsc_tensor *buf =
        nsc_empty(nsc_tensor_dtype(x), dev, NSC_SHAPE(c->batch, c->n_head, capacity, c->head_dim));
    if (buf && old && keep > 0) {
        nsc_tensor *dst = nsc_narrow(buf, 2, 0, keep);
        nsc_tensor *src = nsc_narrow(old, 2, 0, keep);
        nsc_status s = dst && src ? nsc_copy_(dst, src) : nsc_last_status();
        nsc_free(dst);
        nsc_free(src);
        if (s != NSC_OK) {
            nsc_free(buf);
            buf = NULL;
        }
    }
    return buf;
}

// Writes x [B, H, T, D] at the length of *slot, growing it to capacity
// first when needed, and returns the view [B, H, length + T, D].
static nsc_tensor *write_at(nsc_kv_cache *c, nsc_tensor **slot, nsc_tensor *x, int64_t capacity) {
    int64_t t = x->shape[2];
    bool fits = *slot && nsc_tensor_size(*slot, 2) >= c->length + t &&
                nsc_tensor_dtype(*slot) == nsc_tensor_dtype(x) &&
                (nsc_tensor_device(*slot) == NSC_META) == (nsc_tensor_device(x) == NSC_META);
    if (!fits) {
        nsc_tensor *buf = grown(c, x, *slot, capacity, c->length);
        if (!buf) {
            return NULL;
        }
        nsc_free(*slot);
        *slot = buf;
    }
    nsc_tensor *dst = nsc_narrow(*slot, 2, c->length, t);
    nsc_status s = dst ? nsc_copy_(dst, x) : nsc_last_status();
    nsc_free(dst);
    return s == NSC_OK ? nsc_narrow(*slot, 2, 0, c->length + t) : NULL;
}

nsc_status nsci_kv_cache_append(nsc_kv_cache *c, int layer, nsc_tensor *k, nsc_tensor *v,
                                nsc_tensor **k_all, nsc_tensor **v_all) {
    *k_all = *v_all = NULL;
    char a[160];
    if (layer < 0 || layer >= c->n_layer || k->ndim != 4 || k->shape[0] != c->batch ||
        k->shape[1] != c->n_head || k->shape[3] != c->head_dim || v->ndim != 4 ||
        memcmp(v->shape, k->shape, sizeof(int64_t) * 4) != 0) {
        return nsci_fail(NSC_ERR_SHAPE,
                         "kv_cache: layer %d: keys %s: expected [B, H, T, D] = [%lld, %lld, T, "
                         "%lld] and values of the same shape",
                         layer, nsci_shape_str(a, sizeof a, k->ndim, k->shape), (long long)c->batch,
                         (long long)c->n_head, (long long)c->head_dim);
    }
    int64_t need = c->length + k->shape[2], capacity = c->capacity;
    while (capacity < need) {
        capacity = capacity ? capacity * 2 : need;
    }
    nsc_tensor *keys = NULL, *values = NULL;
    bool grad = nsc_set_grad_enabled(false); // the cache is not differentiable
    keys = write_at(c, &c->keys[layer], k, capacity);
    values = keys ? write_at(c, &c->values[layer], v, capacity) : NULL;
    nsc_set_grad_enabled(grad);
    if (!values) {
        nsc_free(keys);
        return nsc_last_status();
    }
    c->capacity = NSCI_MAX(c->capacity, capacity);
    *k_all = keys;
    *v_all = values;
    return NSC_OK;
}

nsc_status nsc_gpt2_set_cache(nsc_module *model, nsc_kv_cache *cache) {
    nsci_gpt2 *g = nsci_gpt2_of(model, "gpt2_set_cache");
    if (!g) {
        return nsc_last_status();
    }
    if (cache && (cache->n_layer != (int)g->config.n_layer || cache->n_head != g->config.n_head ||
                  cache->head_dim != g->config.n_embd / g->config.n_head)) {
        return nsci_fail(NSC_ERR_ARG, "gpt2_set_cache: the cache was made for another model");
    }
    g->cache = cache;
    g->pending = 0;
    return NSC_OK;
}

nsc_kv_cache *nsci_gpt2_attached_cache(const nsc_module *model) {
    return nsc_is_gpt2(model) ? ((const nsci_gpt2 *)model->state)->cache : NULL;
}

nsc_kv_cache *nsci_gpt2_swap_cache(nsc_module *model, nsc_kv_cache *cache) {
    if (!nsc_is_gpt2(model)) {
        return NULL;
    }
    nsci_gpt2 *g = model->state;
    nsc_kv_cache *old = g->cache;
    if (old != cache) { // without a cache threads may share the model: no write then
        g->cache = cache;
    }
    return old;
}

nsc_kv_cache *nsci_kv_cache_shadow(const nsc_kv_cache *c) {
    nsc_kv_cache *s = nsci_calloc(1, sizeof *s);
    if (s) {
        s->keys = nsci_calloc((size_t)c->n_layer, sizeof *s->keys);
        s->values = nsci_calloc((size_t)c->n_layer, sizeof *s->values);
    }
    if (!s || !s->keys || !s->values) {
        nsc_kv_cache_free(s);
        return NULL;
    }
    s->n_layer = c->n_layer;
    s->batch = c->batch;
    s->n_head = c->n_head;
    s->head_dim = c->head_dim;
    s->capacity = c->capacity;
    s->length = c->length;
    return s;
}
