// GPT-2's attention (GPT2Attention): c_attn to q, k, v per head, the key/
// value cache, scaled dot-product attention with the causal and padding
// mask, c_proj. Two paths with one result: the fused op (nsc_attention) when
// no hook point inside is hooked, and the materialized one that calls the
// identity hook points hook_q, hook_k, hook_v (new tokens, [B, H, T, D]),
// hook_pattern (after softmax, [B, H, T, S]) and hook_z (per-head result,
// [B, T, H, D]). Letters: B batch, T new tokens, S = past + T, C width,
// H heads, D = C / H.
#include <math.h>

#include "nn/nn_impl.h"
#include "nsc/ops_attention.h"

// q, k or v of qkv [B, T, 3C] (part 0, 1, 2) as [B, H, T, D]: views.
static nsc_tensor *heads(nsc_tensor *qkv, int part, int64_t n_head) {
    int64_t b = qkv->shape[0], t = qkv->shape[1], c = qkv->shape[2] / 3;
    nsc_tensor *slice = nsc_narrow(qkv, 2, part * c, c);
    nsc_tensor *split = nsc_view(slice, NSC_SHAPE(b, t, n_head, c / n_head));
    nsc_tensor *out = nsc_permute(split, NSC_DIMS(0, 2, 1, 3));
    nsc_free(slice);
    nsc_free(split);
    return out;
}

// Replaces *x by child(*x) (the old reference is dropped); false on failure.
static bool through(nsc_module *child, nsc_tensor **x) {
    nsc_tensor *out = nsc_module_call(child, 1, x);
    nsc_free(*x);
    *x = out;
    return out != NULL;
}

// True when a hook point (or the attention dropout, which only the
// materialized path calls) is hooked, or when dropout on the pattern applies.
static bool needs_materialized(const nsc_module *m, const nsci_gpt2 *g) {
    for (int i = NSCI_ATTN_HOOK_Q; i <= NSCI_ATTN_HOOK_Z; i++) {
        if (nsci_module_has_hooks(nsci_child(m, i))) {
            return true;
        }
    }
    return nsci_module_has_hooks(nsci_child(m, NSCI_ATTN_DROPOUT)) ||
           (m->training && g->config.attn_pdrop > 0);
}

// The fused path skips the hook points: their call counters still advance,
// so call index k means step k whichever path ran.
static void count_skipped_calls(nsc_module *m) {
    nsci_child(m, NSCI_ATTN_DROPOUT)->call_count++;
    for (int i = NSCI_ATTN_HOOK_Q; i <= NSCI_ATTN_HOOK_Z; i++) {
        nsci_child(m, i)->call_count++;
    }
}

// softmax(q k^T * scale + bias) v through the hook points: [B, T, H, D].
static nsc_tensor *materialized(nsc_module *m, nsc_tensor *q, nsc_tensor *k, nsc_tensor *v,
                                nsc_tensor *mask, double scale) {
    int64_t t = q->shape[2], s = k->shape[2];
    nsc_device dev = nsc_tensor_device(q) == NSC_META ? NSC_META : nsc_tensor_target_device(q);
    nsc_tensor *kt = nsc_transpose(k, -2, -1);
    nsc_tensor *raw = nsc_matmul(q, kt);
    nsc_tensor *scaled = nsc_mul_scalar(raw, scale);
    nsc_tensor *bias = nsc_attention_bias(mask, t, s, true, nsc_tensor_dtype(q), dev);
    nsc_tensor *x = nsc_add(scaled, bias);
    nsc_tensor *pattern = nsci_module_result(m, nsc_softmax(x, -1));
    nsc_free(kt);
    nsc_free(raw);
    nsc_free(scaled);
    nsc_free(bias);
    nsc_free(x);
    if (!pattern || !through(nsci_child(m, NSCI_ATTN_HOOK_PATTERN), &pattern) ||
        !through(nsci_child(m, NSCI_ATTN_DROPOUT), &pattern)) {
        nsc_free(pattern);
        return NULL;
    }
    nsc_tensor *heads_out = nsci_module_result(m, nsc_matmul(pattern, v)); // [B, H, T, D]
    nsc_tensor *z = nsc_transpose(heads_out, 1, 2);
    nsc_free(pattern);
    nsc_free(heads_out);
    if (!z || !through(nsci_child(m, NSCI_ATTN_HOOK_Z), &z)) {
        nsc_free(z);
        return NULL;
    }
    return z;
}

// Scores scale: D^-0.5 (scale_attn_weights), divided by layer + 1
// (scale_attn_by_inverse_layer_idx), as GPT2Attention.scaling.
static double attention_scale(const nsc_gpt2_config *c, int layer) {
    double scale = c->scale_attn_weights ? 1.0 / sqrt((double)(c->n_embd / c->n_head)) : 1.0;
    return c->scale_attn_by_inverse_layer_idx ? scale / (double)(layer + 1) : scale;
}

// Runs the attention from q, k, v (new tokens; references consumed) to the
// merged heads [B, T, C].
static nsc_tensor *attend(nsc_module *m, const nsci_gpt2_part *p, nsc_tensor *q, nsc_tensor *k,
                          nsc_tensor *v, nsc_tensor *mask) {
    bool hooked = needs_materialized(m, p->model);
    bool ok = true;
    if (hooked) {
        ok = through(nsci_child(m, NSCI_ATTN_HOOK_Q), &q) &&
             through(nsci_child(m, NSCI_ATTN_HOOK_K), &k) &&
             through(nsci_child(m, NSCI_ATTN_HOOK_V), &v);
    } else {
        count_skipped_calls(m);
    }
    nsc_tensor *k_all = NULL, *v_all = NULL, *z = NULL;
    nsc_kv_cache *cache = p->model->cache;
    if (ok && cache) {
        ok = nsci_kv_cache_append(cache, p->layer, k, v, &k_all, &v_all) == NSC_OK;
    } else if (ok) {
        k_all = nsc_retain(k);
        v_all = nsc_retain(v);
    }
    double scale = attention_scale(&p->model->config, p->layer);
    if (ok) {
        z = hooked ? materialized(m, q, k_all, v_all, mask, scale)
                   : nsci_module_result(m, nsc_attention(q, k_all, v_all, mask, scale, true));
    }
    int64_t b = q ? q->shape[0] : 0, t = q ? q->shape[2] : 0;
    nsc_free(q);
    nsc_free(k);
    nsc_free(v);
    nsc_free(k_all);
    nsc_free(v_all);
    if (!z) {
        return NULL;
    }
    nsc_tensor *merged = nsc_reshape(z, NSC_SHAPE(b, t, -1)); // a view after the fused op
    nsc_free(z);
    return nsci_module_result(m, merged);
}

// in: hidden [B, T, C], attention_mask [B, S] or NULL. Returns [B, T, C].
static nsc_tensor *attention_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    const nsci_gpt2_part *p = state;
    nsc_tensor *x = nsci_module_input(m, n_in, in, 0);
    nsc_tensor *mask = n_in > 1 ? in[1] : NULL;
    if (!x) {
        return NULL;
    }
    if (m->n_children < NSCI_ATTN_N_CHILDREN) {
        return nsci_fail_null(NSC_ERR_STATE,
                              "%s: %d children: expected c_attn, c_proj, "
                              "attn_dropout, resid_dropout and 5 hook points",
                              nsc_module_path(m), m->n_children);
    }
    nsc_tensor *qkv = nsc_module_call(nsci_child(m, NSCI_ATTN_C_ATTN), 1, &x);
    if (!qkv) {
        return NULL;
    }
    int64_t n_head = p->model->config.n_head;
    nsc_tensor *q = heads(qkv, 0, n_head), *k = heads(qkv, 1, n_head), *v = heads(qkv, 2, n_head);
    nsc_free(qkv);
    if (!q || !k || !v) {
        nsc_free(q);
        nsc_free(k);
        nsc_free(v);
        return nsci_module_result(m, NULL);
    }
    nsc_tensor *merged = attend(m, p, q, k, v, mask);
    if (!merged || !through(nsci_child(m, NSCI_ATTN_C_PROJ), &merged) ||
        !through(nsci_child(m, NSCI_ATTN_RESID_DROPOUT), &merged)) {
        nsc_free(merged);
        return NULL;
    }
    return merged;
}

static nsc_status adopt(nsc_module *parent, const char *name, nsc_module *child) {
    nsc_status s = child ? nsc_module_add_child(parent, name, child) : nsc_last_status();
    nsc_module_free(child);
    return s;
}

nsc_module *nsci_gpt2_attention_new(nsci_gpt2 *g, int layer, nsc_generator *gen, bool meta) {
    const nsc_gpt2_config *c = &g->config;
    static const char *const hook_names[] = { "hook_q", "hook_k", "hook_v", "hook_pattern",
                                              "hook_z" };
    double proj_std = c->initializer_range / sqrt(2.0 * (double)c->n_layer);
    nsc_module *m = nsci_gpt2_part_module("GPT2Attention", attention_forward, g, layer);
    bool ok =
        m &&
        adopt(m, "c_attn",
              nsci_gpt2_conv1d(meta, gen, c->n_embd, 3 * c->n_embd, c->initializer_range)) ==
            NSC_OK &&
        adopt(m, "c_proj", nsci_gpt2_conv1d(meta, gen, c->n_embd, c->n_embd, proj_std)) == NSC_OK &&
        adopt(m, "attn_dropout", nsc_dropout_new(c->attn_pdrop)) == NSC_OK &&
        adopt(m, "resid_dropout", nsc_dropout_new(c->resid_pdrop)) == NSC_OK;
    for (int i = 0; ok && i < NSCI_ARRAY_LEN(hook_names); i++) {
        ok = adopt(m, hook_names[i], nsc_identity_new("HookPoint")) == NSC_OK;
    }
    if (!ok) {
        nsc_module_free(m);
        return NULL;
    }
    return m;
}
