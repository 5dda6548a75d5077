// Gradient clipping's two pieces for gradients on a device the CPU loops of
// nn/optim_clip.c cannot reach (CUDA): the list ops of tensor/op_clip.c
// (torch's _foreach_norm and _foreach_mul_ in clip_grad_norm_), a few
// launches for all the gradients. The sum of squares stays on the device
// and one scalar is read back for all of them, so a clip waits for the
// device once. Scaling multiplies each gradient in place by the
// coefficient rounded to its dtype (as torch's coefficient tensor and the
// CPU loop). When any two gradients share memory (one tensor set as two
// parameters' gradient, views of one buffer), every gradient is scaled by a
// call of its own, in order, as the CPU loop scales them: the list op would
// refuse them, and a rare case need not be fast. Below 1024
// gradients nothing is allocated, and every check runs before a write, so a
// refusal changes no gradient.
#include "nn/optim_impl.h"
#include "tensor/op_params.h"

nsc_status nsci_grads_sumsq_ops(int64_t n, nsc_tensor *const *grads, double *sumsq) {
    if (n == 0) {
        *sumsq = 0;
        return NSC_OK;
    }
    nsc_no_grad_begin();
    nsc_tensor *total = nsci_clip_sumsq(n, grads);
    nsc_no_grad_end();
    nsc_tensor *host = total ? nsc_to(total, NSC_CPU) : NULL;
    nsc_status status = host ? NSC_OK : nsc_last_status();
    if (host) {
        *sumsq = nsc_tensor_item(host);
    }
    nsc_free(total);
    nsc_free(host);
    return status;
}

nsc_status nsci_grads_scale_ops(int64_t n, nsc_tensor *const *grads, double coef) {
    if (n == 0) {
        return NSC_OK;
    }
    int first, second;
    nsc_status status = n <= INT32_MAX
                            ? nsci_optim_shared_operands((int)n, 1, grads, &first, &second)
                            : nsci_fail(NSC_ERR_ARG, "clip: %lld gradients", (long long)n);
    nsc_no_grad_begin();
    if (status == NSC_OK && first < 0) {
        status = nsci_clip_scale_(n, grads, coef);
    }
    for (int64_t i = 0; status == NSC_OK && first >= 0 && i < n; i++) {
        status = nsci_clip_scale_(1, &grads[i], coef);
    }
    nsc_no_grad_end();
    return status;
}
