// Elementwise iteration over strided, broadcast operands: dims are coalesced
// so that contiguous data becomes one long inner loop the compiler can
// vectorize, then the index space is split across the thread pool.
#include <string.h>

#include "tensor/tensor_impl.h"

void nsci_iter_init(nsci_iter *it, int n_operands, nsc_tensor *const *operands) {
    NSCI_ASSERT(n_operands <= NSCI_ITER_MAX_OPERANDS);
    const nsc_tensor *out = operands[0];
    it->n_operands = n_operands;
    it->numel = nsci_numel(out->ndim, out->shape);
    int64_t strides[NSCI_ITER_MAX_OPERANDS][NSC_MAX_DIMS];
    for (int k = 0; k < n_operands; k++) {
        nsci_broadcast_strides(operands[k], out->ndim, out->shape, strides[k]);
        it->data[k] = nsci_data_ptr(operands[k]);
    }
    // Drop size-1 dims, then merge neighbours that are contiguous for all.
    int nd = 0;
    for (int d = 0; d < out->ndim; d++) {
        if (out->shape[d] == 1) {
            continue;
        }
        bool merge = nd > 0;
        for (int k = 0; k < n_operands && merge; k++) {
            merge = it->stride[k][nd - 1] == strides[k][d] * out->shape[d];
        }
        if (merge) {
            it->shape[nd - 1] *= out->shape[d];
            for (int k = 0; k < n_operands; k++) {
                it->stride[k][nd - 1] = strides[k][d];
            }
            continue;
        }
        it->shape[nd] = out->shape[d];
        for (int k = 0; k < n_operands; k++) {
            it->stride[k][nd] = strides[k][d];
        }
        nd++;
    }
    if (nd == 0) {
        it->shape[0] = 1;
        for (int k = 0; k < n_operands; k++) {
            it->stride[k][0] = 0;
        }
        nd = 1;
    }
    it->ndim = nd;
    for (int k = 0; k < n_operands; k++) {
        int64_t elem = (int64_t)nsc_dtype_size((nsc_dtype)operands[k]->dtype);
        for (int d = 0; d < nd; d++) {
            it->stride[k][d] *= elem;
        }
    }
}

// Runs inner over the linear index range [begin, end).
static void run_range(const nsci_iter *it, nsci_inner_fn inner, void *ctx, int64_t begin,
                      int64_t end) {
    int nd = it->ndim, n_ops = it->n_operands;
    int64_t coord[NSC_MAX_DIMS];
    int64_t rem = begin;
    for (int d = nd - 1; d >= 0; d--) {
        coord[d] = rem % it->shape[d];
        rem /= it->shape[d];
    }
    char *ptrs[NSCI_ITER_MAX_OPERANDS];
    int64_t inner_strides[NSCI_ITER_MAX_OPERANDS];
    for (int k = 0; k < n_ops; k++) {
        ptrs[k] = it->data[k];
        for (int d = 0; d < nd; d++) {
            ptrs[k] += coord[d] * it->stride[k][d];
        }
        inner_strides[k] = it->stride[k][nd - 1];
    }
    int64_t pos = begin;
    while (pos < end) {
        int64_t n = NSCI_MIN(it->shape[nd - 1] - coord[nd - 1], end - pos);
        inner(n, ptrs, inner_strides, ctx);
        pos += n;
        coord[nd - 1] += n;
        for (int k = 0; k < n_ops; k++) {
            ptrs[k] += n * inner_strides[k];
        }
        for (int d = nd - 1; d > 0 && coord[d] == it->shape[d]; d--) {
            coord[d] = 0;
            coord[d - 1]++;
            for (int k = 0; k < n_ops; k++) {
                ptrs[k] += it->stride[k][d - 1] - it->shape[d] * it->stride[k][d];
            }
        }
    }
}

typedef struct iter_job {
    const nsci_iter *it;
    nsci_inner_fn inner;
    void *ctx;
} iter_job;

static void run_job(void *arg, int64_t begin, int64_t end) {
    iter_job *job = arg;
    run_range(job->it, job->inner, job->ctx, begin, end);
}

void nsci_iter_run(const nsci_iter *it, nsci_inner_fn inner, void *ctx, int64_t grain) {
    if (it->numel == 0) {
        return;
    }
    iter_job job = { it, inner, ctx };
    nsci_parallel_for(it->numel, grain, run_job, &job);
}
