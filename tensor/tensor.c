// Tensor headers and storages: creation of the bare objects, views,
// reference counting and the read-only accessors.
#include <string.h>

#include "tensor/tensor_impl.h"

// --- shapes ---

int64_t nsci_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    return n;
}

void nsci_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

bool nsci_is_contiguous(const nsc_tensor *t) {
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 0) {
            return true;
        }
        if (t->shape[i] != 1 && t->stride[i] != expected) {
            return false;
        }
        expected *= t->shape[i];
    }
    return true;
}

int nsci_wrap_dim(int dim, int ndim) {
    int n = ndim > 0 ? ndim : 1; // a 0-dim tensor accepts dim 0 and -1, as torch
    if (dim < -n || dim >= n) {
        return -1;
    }
    return dim < 0 ? dim + n : dim;
}

nsc_status nsci_check_shape(const char *op, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > NSC_MAX_DIMS) {
        return nsci_fail(NSC_ERR_SHAPE, "%s: rank %d: expected 0..%d dims", op, ndim,
                         NSC_MAX_DIMS);
    }
    if (ndim > 0 && !shape) {
        return nsci_fail(NSC_ERR_ARG, "%s: shape is NULL for rank %d", op, ndim);
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        char buf[160];
        if (shape[i] < 0) {
            return nsci_fail(NSC_ERR_SHAPE, "%s: %s: size %lld at dim %d is negative", op,
                             nsci_shape_str(buf, sizeof buf, ndim, shape), (long long)shape[i], i);
        }
        if (nsci_mul_overflows(n, shape[i], &n)) {
            return nsci_fail(NSC_ERR_SHAPE, "%s: %s: element count overflows int64", op,
                             nsci_shape_str(buf, sizeof buf, ndim, shape));
        }
    }
    size_t bytes;
    if (__builtin_mul_overflow((size_t)n, (size_t)8, &bytes)) {
        return nsci_fail(NSC_ERR_SHAPE, "%s: %lld elements overflow the byte count", op,
                         (long long)n);
    }
    return NSC_OK;
}

// --- headers and storage ---

nsc_tensor *nsci_tensor_header(nsc_dtype dtype, nsc_device device, int ndim,
                               const int64_t *shape) {
    nsc_tensor *t = nsci_calloc(1, sizeof *t);
    if (!t) {
        return NULL;
    }
    atomic_init(&t->refcount, 1);
    t->dtype = (uint8_t)dtype;
    t->device = (uint8_t)device;
    t->target_device = (uint8_t)device;
    t->ndim = ndim;
    if (ndim > 0) {
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    }
    nsci_contiguous_strides(ndim, t->shape, t->stride);
    return t;
}

static nsci_storage *storage_new(nsc_device device, size_t bytes) {
    nsci_storage *s = nsci_calloc(1, sizeof *s);
    if (!s) {
        return NULL;
    }
    atomic_init(&s->refcount, 1);
    s->device = device;
    s->bytes = bytes;
    if (bytes > 0) {
        const nsci_device_ops *ops = &nsci_device_table[device];
        if (!ops->alloc) {
            nsci_free(s);
            return nsci_fail_null(NSC_ERR_DEVICE, "%s: device not available (built without it, "
                                                  "or nsc_cuda_init() not called)",
                                  nsc_device_name(device));
        }
        s->data = ops->alloc(bytes);
        if (!s->data) {
            nsci_free(s);
            return NULL;
        }
    }
    return s;
}

static void storage_release(nsci_storage *s) {
    if (!s || atomic_fetch_sub(&s->refcount, 1) != 1) {
        return;
    }
    if (s->release) {
        s->release(s->release_ctx);
    } else if (s->data) {
        nsci_device_table[s->device].free(s->data);
    }
    nsci_free(s);
}

nsc_status nsci_tensor_alloc_data(nsc_tensor *t) {
    if (t->device == NSC_META) {
        return NSC_OK;
    }
    size_t bytes;
    if (__builtin_mul_overflow((size_t)nsci_numel(t->ndim, t->shape), nsc_dtype_size(t->dtype),
                               &bytes)) {
        return nsci_fail(NSC_ERR_SHAPE, "allocating %lld elements of %s: the byte count overflows",
                         (long long)nsci_numel(t->ndim, t->shape), nsc_dtype_name(t->dtype));
    }
    t->storage = storage_new(t->device, bytes);
    return t->storage ? NSC_OK : nsc_last_status();
}

nsc_tensor *nsci_tensor_view(nsc_tensor *t, int ndim, const int64_t *shape,
                             const int64_t *stride, int64_t offset) {
    nsc_tensor *v = nsci_tensor_header(t->dtype, t->device, ndim, shape);
    if (!v) {
        return NULL;
    }
    v->target_device = t->target_device;
    if (ndim > 0) {
        memcpy(v->stride, stride, (size_t)ndim * sizeof *stride);
    }
    v->offset = offset;
    v->storage = t->storage;
    if (v->storage) {
        atomic_fetch_add(&v->storage->refcount, 1);
    }
    v->base = nsc_retain(t->base ? t->base : t);
    return v;
}

nsc_tensor *nsci_tensor_wrap(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape,
                             void *data, size_t bytes, void (*release)(void *), void *ctx) {
    nsc_tensor *t = nsci_tensor_header(dtype, device, ndim, shape);
    nsci_storage *s = t ? nsci_calloc(1, sizeof *s) : NULL;
    if (!s) {
        nsci_free(t);
        return NULL;
    }
    atomic_init(&s->refcount, 1);
    s->device = device;
    s->data = data;
    s->bytes = bytes;
    s->release = release;
    s->release_ctx = ctx;
    t->storage = s;
    return t;
}

// --- references ---

nsc_tensor *nsc_retain(nsc_tensor *t) {
    if (t) {
        atomic_fetch_add_explicit(&t->refcount, 1, memory_order_relaxed);
    }
    return t;
}

// A pinned tensor (a proxy) keeps the graph's own reference: releases drop
// every other one, but never that last one (nsci_free_pinned does).
static bool release_pinned(nsc_tensor *t) {
    int count = atomic_load(&t->refcount);
    while (count > 1 && !atomic_compare_exchange_weak(&t->refcount, &count, count - 1)) {
    }
    return true;
}

void nsc_free(nsc_tensor *t) {
    if (!t || (t->pinned && release_pinned(t)) || atomic_fetch_sub(&t->refcount, 1) != 1) {
        return;
    }
    if (t->autograd && nsci_hook_table.free_autograd) {
        nsci_hook_table.free_autograd(t->autograd);
    }
    if (t->proxy && nsci_hook_table.free_proxy) {
        nsci_hook_table.free_proxy(t->proxy);
    }
    storage_release(t->storage);
    nsc_free(t->base);
    nsci_free(t);
}

void nsci_free_pinned(nsc_tensor *t) {
    if (t) {
        t->pinned = 0;
        nsc_free(t);
    }
}

// --- accessors ---
// A NULL tensor (the result of a failed call) gives a neutral value and
// records NSC_ERR_ARG, unless an earlier error is already recorded.

static bool is_null(const nsc_tensor *t, const char *fn) {
    if (t) {
        return false;
    }
    if (nsc_last_status() == NSC_OK) {
        nsci_fail(NSC_ERR_ARG, "%s: tensor is NULL", fn);
    }
    return true;
}

int nsc_tensor_ndim(const nsc_tensor *t) {
    return is_null(t, "tensor_ndim") ? -1 : t->ndim;
}

// dim wrapped into t's dims, or -1 with NSC_ERR_ARG recorded (a 0-dim
// tensor has no dim to name, as torch's size(0) on a scalar).
static int accessor_dim(const nsc_tensor *t, int dim, const char *fn) {
    int d = nsci_wrap_dim(dim, t->ndim);
    if (t->ndim == 0) {
        nsci_fail(NSC_ERR_ARG, "%s: dim %d of a 0-dim tensor: it has no dims", fn, dim);
        return -1;
    }
    if (d < 0) {
        nsci_fail(NSC_ERR_ARG, "%s: dim %d is out of range for rank %d: expected %d..%d", fn, dim,
                  t->ndim, -t->ndim, t->ndim - 1);
    }
    return d;
}

int64_t nsc_tensor_size(const nsc_tensor *t, int dim) {
    if (is_null(t, "tensor_size")) {
        return -1;
    }
    int d = accessor_dim(t, dim, "tensor_size");
    return d < 0 ? -1 : t->shape[d];
}

const int64_t *nsc_tensor_shape(const nsc_tensor *t) {
    return is_null(t, "tensor_shape") ? NULL : t->shape;
}

int64_t nsc_tensor_stride(const nsc_tensor *t, int dim) {
    if (is_null(t, "tensor_stride")) {
        return -1;
    }
    int d = accessor_dim(t, dim, "tensor_stride");
    return d < 0 ? -1 : t->stride[d];
}

const int64_t *nsc_tensor_strides(const nsc_tensor *t) {
    return is_null(t, "tensor_strides") ? NULL : t->stride;
}

int64_t nsc_tensor_offset(const nsc_tensor *t) {
    return is_null(t, "tensor_offset") ? -1 : t->offset;
}

int64_t nsc_tensor_numel(const nsc_tensor *t) {
    return is_null(t, "tensor_numel") ? -1 : nsci_numel(t->ndim, t->shape);
}

nsc_dtype nsc_tensor_dtype(const nsc_tensor *t) {
    return is_null(t, "tensor_dtype") ? NSC_N_DTYPES : (nsc_dtype)t->dtype;
}

nsc_device nsc_tensor_device(const nsc_tensor *t) {
    return is_null(t, "tensor_device") ? NSC_N_DEVICES : (nsc_device)t->device;
}

nsc_device nsc_tensor_target_device(const nsc_tensor *t) {
    return is_null(t, "tensor_target_device") ? NSC_N_DEVICES : (nsc_device)t->target_device;
}

bool nsc_tensor_is_contiguous(const nsc_tensor *t) {
    return is_null(t, "tensor_is_contiguous") ? false : nsci_is_contiguous(t);
}

bool nsc_tensor_shares_storage(const nsc_tensor *a, const nsc_tensor *b) {
    return a && b && a->storage && a->storage == b->storage;
}

bool nsc_tensor_is_proxy(const nsc_tensor *t) {
    return t && t->proxy != NULL;
}

void *nsc_tensor_data(nsc_tensor *t) {
    if (!t) {
        return NULL;
    }
    if (t->device != NSC_CPU) {
        return nsci_fail_null(NSC_ERR_DEVICE, "tensor_data: tensor is on %s: expected cpu",
                              nsc_device_name((nsc_device)t->device));
    }
    return nsci_data_ptr(t);
}
