// Saving and restoring the call counters of a module tree: a shape scan or
// an applied module calls modules of the model, and neither may shift the
// call indices of the model's own calls (nor change them when it fails).
#include "nn/nn_impl.h"

static void collect(const nsc_module *m, int64_t *out, int64_t *at) {
    out[(*at)++] = m->call_count;
    for (int i = 0; i < m->n_children; i++) {
        collect(m->children[i], out, at);
    }
}

static void put_back(nsc_module *m, const int64_t *in, int64_t *at) {
    m->call_count = in[(*at)++];
    for (int i = 0; i < m->n_children; i++) {
        put_back(m->children[i], in, at);
    }
}

int64_t *nsci_module_calls_save(nsc_module *root) {
    int64_t *saved = nsci_malloc((size_t)nsc_module_n_modules(root) * sizeof *saved);
    int64_t at = 0;
    if (saved) {
        collect(root, saved, &at);
    }
    return saved;
}

void nsci_module_calls_restore(nsc_module *root, int64_t *saved) {
    int64_t at = 0;
    if (saved) {
        put_back(root, saved, &at);
    }
    nsci_free(saved);
}
