// nsc_cuda_init and the public CUDA calls (a CUDA build), the device table,
// and the glue helpers every cuda/glue_*.c file uses: elementwise operand
// descriptions, contiguous copies and scratch tensors made without dispatch.
// Globals here: g_ready (atomic, set once under g_lock by nsc_cuda_init).
#ifdef NSC_HAVE_CUDA
#include <pthread.h>
#include <string.h>

#include "cuda/cuda_impl.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int g_ready;

nsc_status nsci_cuda_error(const char *call, const char *what, const char *file, int line) {
    return nsci_fail(NSC_ERR_DEVICE, "cuda: %s: %s (%s:%d)", call, what, file, line);
}

void nsci_cuda_fill_kernels(nsci_kernel_fn *table) {
    nsci_cuda_fill_pointwise(table);
    nsci_cuda_fill_reduce(table);
    nsci_cuda_fill_index(table);
    nsci_cuda_fill_optim(table);
    nsci_cuda_fill_clip(table);
}

nsc_status nsc_cuda_init(void) {
    if (atomic_load(&g_ready)) {
        return NSC_OK;
    }
    pthread_mutex_lock(&g_lock);
    nsc_status status = NSC_OK;
    if (!atomic_load(&g_ready)) {
        const char *why = NULL;
        if (nsci_cuda_count_devices(&why) == 0) {
            status = nsci_fail(NSC_ERR_DEVICE,
                               "cuda_init: no CUDA device is visible (cudaGetDeviceCount: %s; "
                               "no GPU, no driver, a driver older than this CUDA runtime, or "
                               "CUDA_VISIBLE_DEVICES hides them)",
                               why ? why : "it counts 0 devices");
        } else {
            status = nsci_cuda_runtime_init();
        }
        if (status == NSC_OK) {
            nsci_cuda_fill_kernels(nsci_device_kernels[NSC_CUDA]);
            nsci_device_table[NSC_CUDA] = (nsci_device_ops){ .alloc = nsci_cuda_alloc,
                                                            .free = nsci_cuda_free,
                                                            .to_host = nsci_cuda_to_host,
                                                            .from_host = nsci_cuda_from_host,
                                                            .copy = nsci_cuda_copy,
                                                            .mark = nsci_cuda_mark,
                                                            .mark_elapsed =
                                                                nsci_cuda_mark_elapsed,
                                                            .mark_free = nsci_cuda_mark_free };
            atomic_store(&g_ready, 1);
        }
    }
    pthread_mutex_unlock(&g_lock);
    return status;
}

bool nsc_cuda_available(void) {
    return atomic_load(&g_ready) || nsci_cuda_count_devices(NULL) > 0;
}

int nsc_cuda_device_count(void) {
    return nsci_cuda_count_devices(NULL);
}

nsc_status nsc_cuda_synchronize(void) {
    if (!atomic_load(&g_ready)) {
        return nsci_fail(NSC_ERR_STATE, "cuda_synchronize: nsc_cuda_init() has not succeeded");
    }
    return nsci_cuda_sync();
}

nsc_cuda_stats nsc_cuda_stats_get(void) {
    if (!atomic_load(&g_ready)) {
        return (nsc_cuda_stats){ 0 };
    }
    return nsci_cuda_stats();
}

void nsc_cuda_empty_cache(void) {
    if (atomic_load(&g_ready)) {
        nsci_cuda_release_cache();
    }
}

// --- glue helpers ---

void nsci_cuda_ew_make(nsci_cuda_ew *e, nsc_tensor *out, int n_in, nsc_tensor *const *in) {
    memset(e, 0, sizeof *e);
    e->ndim = out->ndim;
    e->n_operands = n_in + 1;
    memcpy(e->shape, out->shape, sizeof out->shape);
    e->numel = nsci_numel(out->ndim, out->shape);
    e->data[0] = nsci_data_ptr(out);
    e->dtype[0] = out->dtype;
    memcpy(e->stride[0], out->stride, sizeof out->stride);
    for (int k = 0; k < n_in; k++) {
        e->data[k + 1] = nsci_data_ptr(in[k]);
        e->dtype[k + 1] = in[k]->dtype;
        nsci_broadcast_strides(in[k], out->ndim, out->shape, e->stride[k + 1]);
    }
    nsci_cuda_ew_coalesce(e);
}

nsc_tensor *nsci_cuda_empty(nsc_dtype dtype, int ndim, const int64_t *shape) {
    nsc_tensor *t = nsci_tensor_header(dtype, NSC_CUDA, ndim, shape);
    if (t && nsci_tensor_alloc_data(t) != NSC_OK) {
        nsc_free(t);
        return NULL;
    }
    return t;
}

nsc_status nsci_cuda_copy_into(nsc_tensor *dst, nsc_tensor *src) {
    nsci_cuda_ew e;
    nsci_cuda_ew_make(&e, dst, 1, &src);
    return nsci_cuda_ew_run(NSCI_EW_COPY, (nsc_dtype)dst->dtype, &e, 0, 0);
}

nsc_tensor *nsci_cuda_contig(nsc_tensor *t, nsc_dtype dtype) {
    if (t->dtype == dtype && nsci_is_contiguous(t)) {
        return nsc_retain(t);
    }
    nsc_tensor *c = nsci_cuda_empty(dtype, t->ndim, t->shape);
    if (c && nsci_cuda_copy_into(c, t) != NSC_OK) {
        nsc_free(c);
        return NULL;
    }
    return c;
}
#endif
