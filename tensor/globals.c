// Every global of tensor/ in one place, with its thread rule (STYLE.md).
// The allocator counters (util/alloc.c, atomic), the error record
// (util/error.c, thread-local) and the thread pool (util/parallel.c, set up
// once under pthread_once) are the only others; grad mode is thread-local in
// autograd/.
#include <string.h>

#include "tensor/tensor_impl.h"

// CPU memory: host memory through the counting, recycling allocator.
static void *cpu_alloc(size_t bytes) {
    return nsci_data_alloc(bytes);
}

static nsc_status host_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) {
        memmove(dst, src, bytes);
    }
    return NSC_OK;
}

// Set once: CPU at compile time, CUDA by nsc_cuda_init() before any CUDA use.
nsci_device_ops nsci_device_table[NSC_N_DEVICES] = {
    [NSC_CPU] = { .alloc = cpu_alloc,
                  .free = nsci_data_free,
                  .to_host = host_copy,
                  .from_host = host_copy,
                  .copy = host_copy },
};

// Set once by nsc_cuda_init() before any CUDA use; read-only afterwards.
nsci_kernel_fn nsci_device_kernels[NSC_N_DEVICES][NSC_OP_COUNT];

// Set once by the first trace (graph/) and the first autograd call, each
// under pthread_once; read-only afterwards.
nsci_hooks nsci_hook_table;

// Built at compile time from ops.def; constant.
const nsci_op_def *const nsci_op_defs[NSC_OP_COUNT] = {
#define NSC_OP(name) [NSC_OP_##name] = &nsci_op_##name,
#include "tensor/ops.def"
#undef NSC_OP
};

nsc_op nsci_op_by_name(const char *name) {
    for (int i = 0; i < NSC_OP_COUNT; i++) {
        if (strcmp(nsci_op_defs[i]->name, name) == 0) {
            return (nsc_op)i;
        }
    }
    return NSC_OP_COUNT;
}
