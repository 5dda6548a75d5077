// Containers: Sequential (children "0", "1", ... called in order) and the
// multi-layer perceptron built on it.
#include <stdio.h>

#include "nn/nn_impl.h"
#include "nsc/nn.h"

// Calls every child in order on the previous output; frees each
// intermediate, and passes NULL (an error or NSC_STOPPED) straight up.
static nsc_tensor *sequential_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    nsc_tensor *x = nsci_module_input(m, n_in, in, 0);
    nsc_tensor *h = nsc_retain(x);
    for (int i = 0; h && i < m->n_children; i++) {
        nsc_tensor *next = nsc_module_call(m->children[i], 1, &h);
        nsc_free(h);
        h = next;
    }
    return h;
}

static nsc_module *sequential_of_type(const char *type) {
    return nsc_module_new(type, sequential_forward, NULL, NULL);
}

nsc_module *nsc_sequential_new(void) {
    return sequential_of_type("Sequential");
}

nsc_status nsc_sequential_append(nsc_module *seq, nsc_module *child) {
    if (!seq || seq->forward != sequential_forward) {
        return nsci_fail(NSC_ERR_ARG, "sequential_append: %s is not a Sequential",
                         seq ? nsc_module_type(seq) : "NULL");
    }
    char name[24];
    snprintf(name, sizeof name, "%d", seq->n_children);
    return nsc_module_add_child(seq, name, child);
}

// Appends child and drops the caller's reference (NULL: the failed constructor's status).
static nsc_status append_new(nsc_module *seq, nsc_module *child) {
    nsc_status s = child ? nsc_sequential_append(seq, child) : nsc_last_status();
    nsc_module_free(child);
    return s;
}

nsc_module *nsc_mlp_new(int n_sizes, const int64_t *sizes, nsc_activation activation,
                        nsc_generator *gen) {
    if (n_sizes < 2 || !sizes) {
        return nsci_fail_null(NSC_ERR_ARG, "mlp_new: %d sizes: expected at least 2", n_sizes);
    }
    for (int i = 0; i < n_sizes; i++) {
        if (sizes[i] <= 0) {
            return nsci_fail_null(NSC_ERR_ARG, "mlp_new: sizes[%d] = %lld: expected > 0", i,
                                  (long long)sizes[i]);
        }
    }
    nsc_module *m = sequential_of_type("MLP");
    for (int i = 0; m && i + 1 < n_sizes; i++) {
        bool ok = append_new(m, nsc_linear_new(sizes[i], sizes[i + 1], true, gen)) == NSC_OK;
        if (ok && i + 2 < n_sizes) {
            ok = append_new(m, nsc_activation_new(activation)) == NSC_OK;
        }
        if (!ok) {
            nsc_module_free(m);
            m = NULL;
        }
    }
    return m;
}
