// Small models for the graph tests (see graph_models.h).
#include "tests/graph_models.h"

#include <stdio.h>

static nsc_tensor *block_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)n_in;
    (void)state;
    nsc_tensor *h = nsc_matmul(in[0], nsc_module_param(m, "weight"));
    nsc_tensor *hb = nsc_add(h, nsc_module_param(m, "bias"));
    nsc_tensor *y = nsc_tanh(hb);
    nsc_free(h);
    nsc_free(hb);
    return y;
}

static nsc_tensor *head_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)n_in;
    (void)state;
    return nsc_matmul(in[0], nsc_module_param(m, "weight"));
}

static nsc_tensor *chain_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)n_in;
    (void)state;
    nsc_module *h = nsc_module_child(m, "h");
    nsc_tensor *x = nsc_retain(in[0]);
    for (int64_t i = 1; x && i < nsc_module_n_modules(h); i++) {
        nsc_tensor *next = nsc_module_call(nsc_module_at(h, i), 1, &x);
        nsc_free(x);
        x = next;
    }
    nsc_tensor *out = x ? nsc_module_call(nsc_module_child(m, "head"), 1, &x) : NULL;
    nsc_free(x);
    return out;
}

static nsc_tensor *container_forward(nsc_module *m, int n_in, nsc_tensor *const *in,
                                     void *state) {
    (void)m;
    (void)n_in;
    (void)in;
    (void)state;
    return NULL; // never called: a path segment only
}

static nsc_module *with_params(const char *type, nsc_forward_fn fn, nsc_generator *gen,
                               int64_t rows, int64_t cols, bool bias) {
    nsc_module *m = nsc_module_new(type, fn, NULL, NULL);
    nsc_tensor *w = nsc_randn(gen, NSC_F32, NSC_SHAPE(rows, cols));
    nsc_tensor *ws = nsc_mul_scalar(w, 0.5);
    nsc_module_add_param(m, "weight", ws);
    if (bias) {
        nsc_tensor *b = nsc_randn(gen, NSC_F32, NSC_SHAPE(cols));
        nsc_module_add_param(m, "bias", b);
        nsc_free(b);
    }
    nsc_free(w);
    nsc_free(ws);
    return m;
}

nsc_module *nsct_chain_model(int n_blocks, int64_t width) {
    nsc_generator *gen = nsc_generator_new(42);
    nsc_module *root = nsc_module_new("Chain", chain_forward, NULL, NULL);
    nsc_module *h = nsc_module_new("ModuleList", container_forward, NULL, NULL);
    for (int i = 0; i < n_blocks; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        nsc_module *b = with_params("Block", block_forward, gen, width, width, true);
        nsc_module_add_child(h, name, b);
        nsc_module_free(b);
    }
    nsc_module *head = with_params("Head", head_forward, gen, width, 3, false);
    nsc_module_add_child(root, "h", h);
    nsc_module_add_child(root, "head", head);
    nsc_module_free(h);
    nsc_module_free(head);
    nsc_generator_free(gen);
    return root;
}

static nsc_tensor *inner_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)n_in;
    (void)state;
    nsc_tensor *twice = nsc_mul_scalar(in[0], 2.0);
    nsc_tensor *y = nsc_add(twice, nsc_module_param(m, "bias"));
    nsc_free(twice);
    return y;
}

static nsc_tensor *pass_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    return nsc_module_call(nsc_module_child(m, "inner"), n_in, in);
}

nsc_module *nsct_batch1_model(int64_t channels) {
    nsc_module *root = nsc_module_new("Pass", pass_forward, NULL, NULL);
    nsc_module *inner = nsc_module_new("Inner", inner_forward, NULL, NULL);
    nsc_tensor *bias = nsc_arange(0, (double)channels, 1, NSC_F32);
    nsc_module_add_param(inner, "bias", bias);
    nsc_free(bias);
    nsc_module_set_batch_dim(root, NSC_HOOK_INPUT, 0, 1);
    nsc_module_set_batch_dim(root, NSC_HOOK_OUTPUT, 0, 1);
    nsc_module_set_batch_dim(inner, NSC_HOOK_INPUT, 0, 1);
    nsc_module_set_batch_dim(inner, NSC_HOOK_OUTPUT, 0, 1);
    nsc_module_add_child(root, "inner", inner);
    nsc_module_free(inner);
    return root;
}

static nsc_tensor *feed_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)m;
    (void)n_in;
    (void)state;
    return nsc_detach(in[0]);
}

static nsc_tensor *feed_root_forward(nsc_module *m, int n_in, nsc_tensor *const *in,
                                     void *state) {
    (void)state;
    return nsc_module_call(nsc_module_child(m, "feed"), n_in, in);
}

nsc_module *nsct_feed_model(void) {
    nsc_module *root = nsc_module_new("FeedRoot", feed_root_forward, NULL, NULL);
    nsc_module *feed = nsc_module_new("Feed", feed_forward, NULL, NULL);
    for (int i = 0; i < 8; i++) {
        nsc_module_set_batch_dim(root, NSC_HOOK_INPUT, i, -1);
        nsc_module_set_batch_dim(feed, NSC_HOOK_INPUT, i, -1);
    }
    nsc_module_set_batch_dim(root, NSC_HOOK_OUTPUT, 0, -1);
    nsc_module_set_batch_dim(feed, NSC_HOOK_OUTPUT, 0, -1);
    nsc_module_add_child(root, "feed", feed);
    nsc_module_free(feed);
    return root;
}

nsc_tensor *nsct_chain_input(int64_t rows, double start) {
    nsc_tensor *a = nsc_arange(start, start + (double)(rows * 4), 1, NSC_F32);
    nsc_tensor *s = nsc_mul_scalar(a, 0.1);
    nsc_tensor *x = nsc_reshape(s, NSC_SHAPE(rows, 4));
    nsc_free(a);
    nsc_free(s);
    return x;
}

void nsct_chain_start(nsct_chain_trace *f, int n_blocks) {
    f->model = nsct_chain_model(n_blocks, 4);
    f->x = nsct_chain_input(2, 0);
    f->tr = nsc_trace_new(f->model);
    f->inv = nsc_trace_invoke(f->tr, 1, &f->x);
}

void nsct_chain_finish(nsct_chain_trace *f) {
    nsc_trace_free(f->tr);
    nsc_free(f->x);
    nsc_module_free(f->model);
}
