// Broadcasting rules shared by every op that broadcasts (PyTorch's: align
// shapes on the right; a size-1 or missing dim stretches).
#include <string.h>

#include "tensor/tensor_impl.h"

nsc_status nsci_broadcast_meta(nsci_call *c, int n, nsc_tensor *const *in, nsci_meta *meta) {
    int ndim = 0;
    for (int i = 0; i < n; i++) {
        ndim = NSCI_MAX(ndim, in[i]->ndim);
    }
    int64_t shape[NSC_MAX_DIMS];
    for (int d = 0; d < ndim; d++) {
        shape[d] = 1;
    }
    for (int i = 0; i < n; i++) {
        const nsc_tensor *t = in[i];
        for (int k = 0; k < t->ndim; k++) {
            int d = ndim - t->ndim + k;
            int64_t size = t->shape[k];
            if (size == shape[d] || size == 1) {
                continue;
            }
            if (shape[d] == 1) {
                shape[d] = size;
                continue;
            }
            return nsci_call_fail(c, NSC_ERR_SHAPE,
                                  "sizes %lld and %lld at dim %d cannot broadcast",
                                  (long long)shape[d], (long long)size, d - ndim);
        }
    }
    meta->ndim = ndim;
    memcpy(meta->shape, shape, sizeof shape);
    return NSC_OK;
}

void nsci_broadcast_strides(const nsc_tensor *t, int ndim, const int64_t *shape,
                            int64_t *stride) {
    int lead = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        int k = d - lead;
        if (k < 0 || (t->shape[k] == 1 && shape[d] != 1)) {
            stride[d] = 0;
        } else {
            stride[d] = t->stride[k];
        }
    }
}
