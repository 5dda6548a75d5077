// GPT-2's block (GPT2Block: pre-norm attention and MLP, each with a
// residual) and MLP (GPT2MLP: c_fc, act, c_proj, dropout). Letters: B batch,
// T new tokens, S = past + T, C width.
#include <math.h>

#include "nn/nn_impl.h"

// --- GPT2MLP ---

// in: hidden [B, T, C]. Returns [B, T, C].
static nsc_tensor *mlp_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    static const int order[] = { NSCI_MLP_C_FC, NSCI_MLP_ACT, NSCI_MLP_C_PROJ, NSCI_MLP_DROPOUT };
    nsc_tensor *h = nsc_retain(nsci_module_input(m, n_in, in, 0));
    for (int i = 0; h && i < NSCI_ARRAY_LEN(order); i++) {
        nsc_tensor *next = nsc_module_call(nsci_child(m, order[i]), 1, &h);
        nsc_free(h);
        h = next;
    }
    return h;
}

static nsc_status adopt(nsc_module *parent, const char *name, nsc_module *child) {
    nsc_status s = child ? nsc_module_add_child(parent, name, child) : nsc_last_status();
    nsc_module_free(child);
    return s;
}

static nsc_module *mlp_new(const nsc_gpt2_config *c, nsc_generator *gen, bool meta) {
    int64_t inner = c->n_inner > 0 ? c->n_inner : 4 * c->n_embd;
    double proj_std = c->initializer_range / sqrt(2.0 * (double)c->n_layer);
    nsc_module *m = nsc_module_new("GPT2MLP", mlp_forward, NULL, NULL);
    bool ok =
        m &&
        adopt(m, "c_fc", nsci_gpt2_conv1d(meta, gen, c->n_embd, inner, c->initializer_range)) ==
            NSC_OK &&
        adopt(m, "c_proj", nsci_gpt2_conv1d(meta, gen, inner, c->n_embd, proj_std)) == NSC_OK &&
        adopt(m, "act", nsc_activation_new(c->activation)) == NSC_OK &&
        adopt(m, "dropout", nsc_dropout_new(c->resid_pdrop)) == NSC_OK;
    if (!ok) {
        nsc_module_free(m);
        return NULL;
    }
    return m;
}

// --- GPT2Block ---

// in: hidden [B, T, C], attention_mask [B, S] or NULL. Returns [B, T, C]:
// h + attn(ln_1(h), mask), then that + mlp(ln_2(that)).
static nsc_tensor *block_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    nsc_tensor *h = nsci_module_input(m, n_in, in, 0);
    nsc_tensor *mask = n_in > 1 ? in[1] : NULL;
    if (!h) {
        return NULL;
    }
    nsc_tensor *a = nsc_module_call(nsci_child(m, NSCI_BLOCK_LN_1), 1, &h);
    nsc_tensor *args[2] = { a, mask };
    nsc_tensor *attn = a ? nsc_module_call(nsci_child(m, NSCI_BLOCK_ATTN), 2, args) : NULL;
    nsc_free(a);
    nsc_tensor *h2 = attn ? nsci_module_result(m, nsc_add(attn, h)) : NULL;
    nsc_free(attn);
    nsc_tensor *n = h2 ? nsc_module_call(nsci_child(m, NSCI_BLOCK_LN_2), 1, &h2) : NULL;
    nsc_tensor *ff = n ? nsc_module_call(nsci_child(m, NSCI_BLOCK_MLP), 1, &n) : NULL;
    nsc_free(n);
    nsc_tensor *out = ff ? nsci_module_result(m, nsc_add(h2, ff)) : NULL;
    nsc_free(h2);
    nsc_free(ff);
    return out;
}

static void part_free(void *state) {
    nsci_gpt2_part *p = state;
    nsci_gpt2_release(p->model);
    nsci_free(p);
}

nsc_module *nsci_gpt2_part_module(const char *type, nsc_forward_fn forward, nsci_gpt2 *g,
                                  int layer) {
    nsci_gpt2_part *p = nsci_malloc(sizeof *p);
    if (!p) {
        return NULL;
    }
    p->model = g;
    p->layer = layer;
    nsc_module *m = nsc_module_new(type, forward, p, part_free);
    if (!m) {
        nsci_free(p);
        return NULL;
    }
    atomic_fetch_add(&g->refcount, 1);
    return m;
}

nsc_module *nsci_gpt2_block_new(nsci_gpt2 *g, int layer, nsc_generator *gen, bool meta) {
    const nsc_gpt2_config *c = &g->config;
    nsc_module *m = nsci_gpt2_part_module("GPT2Block", block_forward, g, layer);
    bool ok =
        m &&
        adopt(m, "ln_1", nsci_gpt2_layer_norm(meta, c->n_embd, c->layer_norm_epsilon)) == NSC_OK &&
        adopt(m, "attn", nsci_gpt2_attention_new(g, layer, gen, meta)) == NSC_OK &&
        adopt(m, "ln_2", nsci_gpt2_layer_norm(meta, c->n_embd, c->layer_norm_epsilon)) == NSC_OK &&
        adopt(m, "mlp", mlp_new(c, gen, meta)) == NSC_OK;
    if (!ok) {
        nsc_module_free(m);
        return NULL;
    }
    return m;
}
