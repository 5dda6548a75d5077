// Creation functions: empty, filled, copied from host memory, ranges, eye.
// They are not op-table rows: fills go through the fill_ op, so every device
// with a fill_ kernel can create filled tensors.
#include <math.h>
#include <string.h>

#include "tensor/convert.h"
#include "tensor/tensor_impl.h"

static nsc_status check_dtype(const char *op, nsc_dtype dtype) {
    if ((unsigned)dtype >= NSC_N_DTYPES) {
        return nsci_fail(NSC_ERR_DTYPE, "%s: unknown dtype %d", op, (int)dtype);
    }
    return NSC_OK;
}

// NSC_OK when value converts to dtype without overflow (checked here too, as
// META tensors skip the fill_ that checks it).
static nsc_status check_value(const char *op, nsc_dtype dtype, double value) {
    if (!nsci_scalar_fits(dtype, value)) {
        return nsci_fail(NSC_ERR_ARG, "%s: value %g " NSCI_I64_RANGE, op, value);
    }
    return NSC_OK;
}

static nsc_tensor *make(const char *op, nsc_dtype dtype, nsc_device device, int ndim,
                        const int64_t *shape) {
    if (check_dtype(op, dtype) != NSC_OK || nsci_check_shape(op, ndim, shape) != NSC_OK) {
        return NULL;
    }
    if ((unsigned)device >= NSC_N_DEVICES) {
        return nsci_fail_null(NSC_ERR_DEVICE, "%s: unknown device %d", op, (int)device);
    }
    nsc_tensor *t = nsci_tensor_header(dtype, device, ndim, shape);
    if (t && nsci_tensor_alloc_data(t) != NSC_OK) {
        nsc_free(t);
        return NULL;
    }
    return t;
}

nsc_tensor *nsc_empty(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape) {
    return make("empty", dtype, device, ndim, shape);
}

nsc_tensor *nsc_full(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape,
                     double value) {
    if (check_value("full", dtype, value) != NSC_OK) {
        return NULL;
    }
    nsc_tensor *t = make("full", dtype, device, ndim, shape);
    if (t && device != NSC_META && nsc_fill_(t, value) != NSC_OK) {
        nsc_free(t);
        return NULL;
    }
    return t;
}

nsc_tensor *nsc_zeros(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape) {
    return nsc_full(dtype, device, ndim, shape, 0.0);
}

nsc_tensor *nsc_ones(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape) {
    return nsc_full(dtype, device, ndim, shape, 1.0);
}

nsc_tensor *nsc_from_data(nsc_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    nsc_tensor *t = make("from_data", dtype, NSC_CPU, ndim, shape);
    if (!t) {
        return NULL;
    }
    size_t bytes = (size_t)nsci_numel(ndim, shape) * nsc_dtype_size(dtype);
    if (bytes > 0 && !data) {
        nsc_free(t);
        return nsci_fail_null(NSC_ERR_ARG, "from_data: data is NULL for %zu bytes", bytes);
    }
    if (bytes > 0) {
        memcpy(t->storage->data, data, bytes);
    }
    return t;
}

nsc_tensor *nsc_scalar(nsc_dtype dtype, double value) {
    if (check_value("scalar", dtype, value) != NSC_OK) {
        return NULL;
    }
    return nsc_full(dtype, NSC_CPU, 0, NULL, value);
}

static void fill_sequence(nsc_tensor *t, double start, double step) {
    int64_t n = nsci_numel(t->ndim, t->shape);
    char *p = nsci_data_ptr(t);
    size_t elem = nsc_dtype_size((nsc_dtype)t->dtype);
    // Integral i64 bounds count in int64, as torch does: start + i * step in
    // double loses the last bits beyond 2^53. The values lie in [start, end),
    // so the sum, done modulo 2^64 (i * step alone may exceed int64), is exact.
    if (t->dtype == NSC_I64 && nsci_scalar_fits(NSC_I64, start) && nsci_scalar_fits(NSC_I64, step) &&
        start == floor(start) && step == floor(step)) {
        uint64_t first = (uint64_t)(int64_t)start, by = (uint64_t)(int64_t)step;
        for (int64_t i = 0; i < n; i++) {
            ((int64_t *)p)[i] = (int64_t)(first + (uint64_t)i * by);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        nsci_store(p + (size_t)i * elem, (nsc_dtype)t->dtype, start + (double)i * step);
    }
}

nsc_tensor *nsc_arange(double start, double end, double step, nsc_dtype dtype) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step)) {
        return nsci_fail_null(NSC_ERR_ARG, "arange: start %g, end %g, step %g: expected finite "
                                           "values and a nonzero step",
                              start, end, step);
    }
    if (dtype == NSC_I64) {
        // torch disagrees with itself here (arange(0, 5, 1.5) is [0,1,2,3] in
        // 2.x, [0,1,2,3,4] in 1.13), so a fractional bound or step is refused.
        double v[3] = { start, end, step };
        for (int i = 0; i < 3; i++) {
            if (check_value("arange", dtype, v[i]) != NSC_OK) {
                return NULL;
            }
            if (v[i] != floor(v[i])) {
                return nsci_fail_null(NSC_ERR_ARG,
                                      "arange: start %g, end %g, step %g: expected "
                                      "integral values for an i64 result",
                                      start, end, step);
            }
        }
    }
    double count = ceil((end - start) / step);
    if (count < 0) {
        return nsci_fail_null(NSC_ERR_ARG, "arange: start %g, end %g, step %g: the bounds are "
                                           "inconsistent with the step's sign",
                              start, end, step);
    }
    if (count > 9.0e18) {
        return nsci_fail_null(NSC_ERR_SHAPE, "arange: %g elements overflow int64", count);
    }
    int64_t n = (int64_t)count;
    nsc_tensor *t = make("arange", dtype, NSC_CPU, 1, &n);
    if (t) {
        fill_sequence(t, start, step);
    }
    return t;
}

nsc_tensor *nsc_linspace(double start, double end, int64_t steps, nsc_dtype dtype) {
    if (steps < 0) {
        return nsci_fail_null(NSC_ERR_ARG, "linspace: steps %lld: expected >= 0",
                              (long long)steps);
    }
    if (check_value("linspace", dtype, start) != NSC_OK ||
        check_value("linspace", dtype, end) != NSC_OK) {
        return NULL;
    }
    nsc_tensor *t = make("linspace", dtype, NSC_CPU, 1, &steps);
    if (!t || steps == 0) {
        return t;
    }
    // PyTorch's symmetric formula: the first half counts up from start, the
    // second half down from end, so both endpoints are exact.
    double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0.0;
    char *p = nsci_data_ptr(t);
    size_t elem = nsc_dtype_size(dtype);
    int64_t half = steps == 1 ? 1 : steps / 2; // one step is start, as in torch
    for (int64_t i = 0; i < steps; i++) {
        double v = i < half ? start + step * (double)i : end - step * (double)(steps - 1 - i);
        nsci_store(p + (size_t)i * elem, dtype, v);
    }
    return t;
}

nsc_tensor *nsc_eye(int64_t n, int64_t m, nsc_dtype dtype) {
    nsc_tensor *t = nsc_zeros(dtype, NSC_CPU, NSC_SHAPE(n, m));
    if (!t) {
        nsci_error_prefix("eye(%lld, %lld)", (long long)n, (long long)m);
        return NULL;
    }
    char *p = nsci_data_ptr(t);
    size_t elem = nsc_dtype_size(dtype);
    for (int64_t i = 0; i < NSCI_MIN(n, m); i++) {
        nsci_store(p + (size_t)(i * m + i) * elem, dtype, 1.0);
    }
    return t;
}

static nsc_tensor *like(const char *op, nsc_tensor *x, bool fill, double value) {
    if (!x) {
        if (nsc_last_status() == NSC_OK) {
            nsci_fail(NSC_ERR_ARG, "%s: input is NULL", op);
        }
        return NULL;
    }
    nsc_device device = (nsc_device)x->device;
    if (fill && check_value(op, (nsc_dtype)x->dtype, value) != NSC_OK) {
        return NULL;
    }
    nsc_tensor *t = make(op, (nsc_dtype)x->dtype, device, x->ndim, x->shape);
    if (!t) {
        return NULL;
    }
    t->target_device = x->target_device;
    if (fill && device != NSC_META && nsc_fill_(t, value) != NSC_OK) {
        nsc_free(t);
        return NULL;
    }
    return t;
}

nsc_tensor *nsc_empty_like(nsc_tensor *x) {
    return like("empty_like", x, false, 0);
}

nsc_tensor *nsc_zeros_like(nsc_tensor *x) {
    return like("zeros_like", x, true, 0);
}

nsc_tensor *nsc_ones_like(nsc_tensor *x) {
    return like("ones_like", x, true, 1);
}

nsc_tensor *nsc_full_like(nsc_tensor *x, double value) {
    return like("full_like", x, true, value);
}
