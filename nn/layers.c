// Layers as modules: Linear, Conv1D, Embedding, LayerNorm, activations,
// Dropout, Identity. Each forward reads its parameters by name, calls one op
// and names the module in the error when the op fails. Containers
// (Sequential, MLP) are in layers_seq.c.
#include <math.h>
#include <string.h>

#include "nn/nn_impl.h"
#include "nsc/nn.h"

// --- shared helpers ---

bool nsci_module_has_hooks(const nsc_module *m) {
    for (int i = 0; m && i < m->n_hooks; i++) {
        if (!m->hooks[i].removed) {
            return true;
        }
    }
    return false;
}

nsc_tensor *nsci_module_result(const nsc_module *m, nsc_tensor *out) {
    if (!out && nsc_last_status() != NSC_STOPPED) {
        const char *path = nsc_module_path(m);
        nsci_error_context("module %s", *path ? path : nsc_module_type(m));
    }
    return out;
}

nsc_tensor *nsci_module_input(const nsc_module *m, int n_in, nsc_tensor *const *in, int index) {
    if (index >= n_in || !in[index]) {
        const char *path = nsc_module_path(m);
        return nsci_fail_null(NSC_ERR_ARG, "%s %s: input %d is missing (given %d)",
                              nsc_module_type(m), *path ? path : "(root)", index, n_in);
    }
    return in[index];
}

// A module of type with forward and state, its input and output at batch dim 0.
static nsc_module *layer_new(const char *type, nsc_forward_fn forward, void *state) {
    nsc_module *m = nsc_module_new(type, forward, state, state ? nsci_free : NULL);
    if (!m) {
        nsci_free(state);
    }
    return m;
}

// Uniform in [-bound, bound) of shape.
static nsc_tensor *uniform(nsc_generator *gen, int ndim, const int64_t *shape, double bound) {
    nsc_tensor *u = nsc_rand(gen, NSC_F32, ndim, shape);
    nsc_tensor *scaled = nsc_mul_scalar(u, 2.0 * bound);
    nsc_tensor *out = nsc_sub_scalar(scaled, bound);
    nsc_free(u);
    nsc_free(scaled);
    return out;
}

nsc_tensor *nsci_normal(nsc_generator *gen, int ndim, const int64_t *shape, double std) {
    nsc_tensor *n = nsc_randn(gen, NSC_F32, ndim, shape);
    nsc_tensor *out = std == 1.0 ? nsc_retain(n) : nsc_mul_scalar(n, std);
    nsc_free(n);
    return out;
}

static bool positive(const char *what, const char *name, int64_t v) {
    if (v <= 0) {
        nsci_fail(NSC_ERR_ARG, "%s: %s = %lld: expected a positive size", what, name, (long long)v);
        return false;
    }
    return true;
}

// --- Linear and Conv1D ---

static nsc_tensor *linear_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    nsc_tensor *x = nsci_module_input(m, n_in, in, 0);
    if (!x) {
        return NULL;
    }
    return nsci_module_result(
        m, nsc_linear(x, nsc_module_param(m, "weight"), nsc_module_param(m, "bias")));
}

static nsc_tensor *conv1d_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    nsc_tensor *x = nsci_module_input(m, n_in, in, 0);
    if (!x) {
        return NULL;
    }
    nsc_tensor *wt = nsc_transpose(nsc_module_param(m, "weight"), 0, 1); // [out, in], a view
    nsc_tensor *y = nsc_linear(x, wt, nsc_module_param(m, "bias"));
    nsc_free(wt);
    return nsci_module_result(m, y);
}

nsc_module *nsci_linear_with(const char *type, nsc_tensor *weight, nsc_tensor *bias) {
    bool conv = strcmp(type, "Conv1D") == 0;
    nsc_module *m = layer_new(type, conv ? conv1d_forward : linear_forward, NULL);
    nsc_status s = m && weight ? nsc_module_add_param(m, "weight", weight) : NSC_ERR_ARG;
    if (s == NSC_OK && bias) {
        s = nsc_module_add_param(m, "bias", bias);
    }
    if (s != NSC_OK) {
        nsc_module_free(m);
        return NULL;
    }
    return m;
}

// Makes the module with_tensors builds from weight and bias (NULL: absent),
// dropping the caller's references; NULL when either failed.
static nsc_module *linear_from(const char *type, nsc_tensor *weight, nsc_tensor *bias,
                               bool want_bias) {
    nsc_module *m = weight && (bias || !want_bias) ? nsci_linear_with(type, weight, bias) : NULL;
    nsc_free(weight);
    nsc_free(bias);
    return m;
}

nsc_module *nsc_linear_new(int64_t in, int64_t out, bool bias, nsc_generator *gen) {
    if (!positive("linear_new", "in", in) || !positive("linear_new", "out", out)) {
        return NULL;
    }
    double bound = 1.0 / sqrt((double)in); // kaiming_uniform_(a=sqrt(5)) and the bias rule
    nsc_tensor *w = uniform(gen, NSC_SHAPE(out, in), bound);
    nsc_tensor *b = bias && w ? uniform(gen, NSC_SHAPE(out), bound) : NULL;
    return linear_from("Linear", w, b, bias);
}

nsc_module *nsc_conv1d_new(int64_t in, int64_t out, nsc_generator *gen) {
    if (!positive("conv1d_new", "in", in) || !positive("conv1d_new", "out", out)) {
        return NULL;
    }
    nsc_tensor *w = nsci_normal(gen, NSC_SHAPE(in, out), 0.02);
    nsc_tensor *b = w ? nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(out)) : NULL;
    return linear_from("Conv1D", w, b, true);
}

// --- Embedding and LayerNorm ---

static nsc_tensor *embedding_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    nsc_tensor *ids = nsci_module_input(m, n_in, in, 0);
    return ids ? nsci_module_result(m, nsc_embedding(nsc_module_param(m, "weight"), ids)) : NULL;
}

nsc_module *nsci_embedding_with(nsc_tensor *weight) {
    nsc_module *m = layer_new("Embedding", embedding_forward, NULL);
    if (!m || !weight || nsc_module_add_param(m, "weight", weight) != NSC_OK) {
        nsc_module_free(m);
        return NULL;
    }
    return m;
}

nsc_module *nsc_embedding_new(int64_t num, int64_t dim, nsc_generator *gen) {
    if (!positive("embedding_new", "num", num) || !positive("embedding_new", "dim", dim)) {
        return NULL;
    }
    nsc_tensor *w = nsci_normal(gen, NSC_SHAPE(num, dim), 1.0);
    nsc_module *m = w ? nsci_embedding_with(w) : NULL;
    nsc_free(w);
    return m;
}

static nsc_tensor *layer_norm_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    nsc_tensor *x = nsci_module_input(m, n_in, in, 0);
    if (!x) {
        return NULL;
    }
    double eps = *(const double *)state;
    return nsci_module_result(
        m, nsc_layer_norm(x, 1, nsc_module_param(m, "weight"), nsc_module_param(m, "bias"), eps));
}

nsc_module *nsci_layer_norm_with(nsc_tensor *weight, nsc_tensor *bias, double eps) {
    if (!(eps > 0 && eps < 1)) {
        return nsci_fail_null(NSC_ERR_ARG, "layer_norm_new: eps = %g: expected 0 < eps < 1", eps);
    }
    double *state = weight && bias ? nsci_malloc(sizeof *state) : NULL;
    if (!state) {
        return NULL;
    }
    *state = eps;
    nsc_module *m = layer_new("LayerNorm", layer_norm_forward, state);
    if (!m || nsc_module_add_param(m, "weight", weight) != NSC_OK ||
        nsc_module_add_param(m, "bias", bias) != NSC_OK) {
        nsc_module_free(m);
        return NULL;
    }
    return m;
}

nsc_module *nsc_layer_norm_new(int64_t dim, double eps) {
    if (!positive("layer_norm_new", "dim", dim)) {
        return NULL;
    }
    nsc_tensor *w = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(dim));
    nsc_tensor *b = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(dim));
    nsc_module *m = nsci_layer_norm_with(w, b, eps);
    nsc_free(w);
    nsc_free(b);
    return m;
}

// --- activations and identity ---

const char *nsc_activation_name(nsc_activation activation) {
    switch (activation) {
        case NSC_ACTIVATION_RELU:
            return "relu";
        case NSC_ACTIVATION_GELU:
            return "gelu";
        case NSC_ACTIVATION_GELU_TANH:
            return "gelu_new";
        case NSC_ACTIVATION_TANH:
            return "tanh";
        default:
            return "identity";
    }
}

static nsc_tensor *activation_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    nsc_tensor *x = nsci_module_input(m, n_in, in, 0);
    if (!x) {
        return NULL;
    }
    switch (*(const nsc_activation *)state) {
        case NSC_ACTIVATION_RELU:
            return nsci_module_result(m, nsc_relu(x));
        case NSC_ACTIVATION_GELU:
            return nsci_module_result(m, nsc_gelu(x, NSC_GELU_ERF));
        case NSC_ACTIVATION_GELU_TANH:
            return nsci_module_result(m, nsc_gelu(x, NSC_GELU_TANH));
        case NSC_ACTIVATION_TANH:
            return nsci_module_result(m, nsc_tanh(x));
        default:
            return nsc_retain(x);
    }
}

static nsc_tensor *identity_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    return nsc_retain(nsci_module_input(m, n_in, in, 0));
}

nsc_module *nsc_identity_new(const char *type) {
    return layer_new(type ? type : "Identity", identity_forward, NULL);
}

nsc_module *nsc_activation_new(nsc_activation activation) {
    static const char *const types[] = { "Identity", "ReLU", "GELU", "GELU", "Tanh" };
    if ((int)activation < 0 || (int)activation >= NSCI_ARRAY_LEN(types)) {
        return nsci_fail_null(NSC_ERR_ARG, "activation_new: unknown activation %d",
                              (int)activation);
    }
    if (activation == NSC_ACTIVATION_NONE) {
        return nsc_identity_new(NULL);
    }
    nsc_activation *state = nsci_malloc(sizeof *state);
    if (!state) {
        return NULL;
    }
    *state = activation;
    return layer_new(types[activation], activation_forward, state);
}

nsc_module *nsc_gelu_new(nsc_gelu_approx approx) {
    if (approx != NSC_GELU_ERF && approx != NSC_GELU_TANH) {
        return nsci_fail_null(NSC_ERR_ARG, "gelu_new: unknown approximation %d", (int)approx);
    }
    return nsc_activation_new(approx == NSC_GELU_TANH ? NSC_ACTIVATION_GELU_TANH
                                                      : NSC_ACTIVATION_GELU);
}

nsc_module *nsc_relu_new(void) {
    return nsc_activation_new(NSC_ACTIVATION_RELU);
}

// --- Dropout ---

typedef struct dropout_state {
    double p;
    nsc_generator *gen; // NULL: the thread's default generator
} dropout_state;

static void dropout_state_free(void *state) {
    dropout_state *d = state;
    nsc_generator_free(d->gen);
    nsci_free(d);
}

static nsc_tensor *dropout_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    const dropout_state *d = state;
    nsc_tensor *x = nsci_module_input(m, n_in, in, 0);
    if (!x) {
        return NULL;
    }
    if (!m->training || d->p == 0) {
        return nsc_retain(x);
    }
    return nsci_module_result(m, nsc_dropout(x, d->p, true, d->gen));
}

nsc_module *nsc_dropout_new(double p) {
    if (!(p >= 0 && p < 1)) {
        return nsci_fail_null(NSC_ERR_ARG, "dropout_new: p = %g: expected 0 <= p < 1", p);
    }
    dropout_state *d = nsci_calloc(1, sizeof *d);
    if (!d) {
        return NULL;
    }
    d->p = p;
    nsc_module *m = nsc_module_new("Dropout", dropout_forward, d, dropout_state_free);
    if (!m) {
        nsci_free(d);
    }
    return m;
}

nsc_status nsc_dropout_set_seed(nsc_module *dropout, uint64_t seed) {
    if (!dropout || dropout->forward != dropout_forward) {
        return nsci_fail(NSC_ERR_ARG, "dropout_set_seed: %s is not a Dropout module",
                         dropout ? nsc_module_type(dropout) : "NULL");
    }
    nsc_generator *gen = nsc_generator_new(seed);
    if (!gen) {
        return nsc_last_status();
    }
    dropout_state *d = dropout->state;
    nsc_generator_free(d->gen);
    d->gen = gen;
    return NSC_OK;
}
