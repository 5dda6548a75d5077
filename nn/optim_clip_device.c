// Gradient clipping's two pieces as tensor ops, for gradients on a device
// the CPU loops of nn/optim_clip.c cannot reach (CUDA): the ops dispatch to
// the gradients' device. The sum of squares keeps every gradient's f64 norm
// on the device (nsc_vector_norm: no f64 copy of the gradient) and reads one
// scalar back for all of them, so a clip waits for the device once, not once
// per gradient. Scaling multiplies each gradient in place by the
// coefficient rounded to its dtype (as torch's coefficient tensor and the
// CPU loop); the coefficients are made before any gradient changes, and an
// in-place multiply allocates nothing, so a failure changes no gradient.
#include "nn/optim_impl.h"

nsc_status nsci_grads_sumsq_ops(int64_t n, nsc_tensor *const *grads, double *sumsq) {
    if (n == 0) {
        *sumsq = 0;
        return NSC_OK;
    }
    nsc_tensor **norms = nsci_calloc((size_t)n, sizeof *norms);
    if (!norms) {
        return nsc_last_status();
    }
    bool made = true;
    for (int64_t i = 0; made && i < n; i++) {
        made = (norms[i] = nsc_vector_norm(grads[i], 2, 0, NULL, false, NSC_F64)) != NULL;
    }
    nsc_tensor *stacked = made ? nsc_stack((int)n, norms, 0) : NULL;
    nsc_tensor *squares = nsc_mul(stacked, stacked);
    nsc_tensor *total = nsc_sum_all(squares);
    nsc_tensor *host = nsc_to(total, NSC_CPU);
    nsc_status status = host ? NSC_OK : nsc_last_status();
    if (host) {
        *sumsq = nsc_tensor_item(host);
    }
    for (int64_t i = 0; i < n; i++) {
        nsc_free(norms[i]);
    }
    nsci_free(norms);
    nsc_free(stacked);
    nsc_free(squares);
    nsc_free(total);
    nsc_free(host);
    return status;
}

nsc_status nsci_grads_scale_ops(int64_t n, nsc_tensor *const *grads, double coef) {
    nsc_tensor *coefs[NSC_N_DTYPES] = { 0 }; // one 0-dim tensor per dtype, on the device
    nsc_status status = NSC_OK;
    for (int64_t i = 0; status == NSC_OK && i < n; i++) {
        nsc_dtype dt = nsc_tensor_dtype(grads[i]);
        if (!coefs[dt]) {
            coefs[dt] = nsc_full(dt, nsc_tensor_device(grads[i]), 0, NULL, coef);
            status = coefs[dt] ? NSC_OK : nsc_last_status();
        }
    }
    for (int64_t i = 0; status == NSC_OK && i < n; i++) {
        status = nsc_mul_(grads[i], coefs[nsc_tensor_dtype(grads[i])]);
    }
    for (int d = 0; d < NSC_N_DTYPES; d++) {
        nsc_free(coefs[d]);
    }
    return status;
}
