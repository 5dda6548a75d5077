// Helpers shared by the pointwise op families.
#include <string.h>

#include "tensor/pointwise.h"

void nsci_meta_same_shape(nsci_meta *m, const nsc_tensor *x, nsc_dtype dtype) {
    m->dtype = dtype;
    m->ndim = x->ndim;
    memcpy(m->shape, x->shape, sizeof x->shape);
}

nsc_status nsci_pointwise_run(nsc_tensor *out, int n_in, nsc_tensor *const *in,
                              nsc_dtype compute, nsci_inner_fn loop, void *ctx) {
    nsc_tensor *ops[NSCI_ITER_MAX_OPERANDS] = { out };
    nsc_tensor *converted[NSCI_ITER_MAX_OPERANDS] = { 0 };
    nsc_status status = NSC_OK;
    for (int i = 0; i < n_in; i++) {
        ops[i + 1] = in[i];
        if (in[i]->dtype != compute) {
            converted[i] = nsci_cpu_convert(in[i], compute);
            if (!converted[i]) {
                status = nsc_last_status();
                goto done;
            }
            ops[i + 1] = converted[i];
        }
    }
    nsci_iter it;
    nsci_iter_init(&it, n_in + 1, ops);
    nsci_iter_run(&it, loop, ctx, NSCI_GRAIN);
done:
    for (int i = 0; i < n_in; i++) {
        nsc_free(converted[i]);
    }
    return status;
}
