// The CUDA device: explicit start-up, availability, and counters that tests
// and benchmarks read (host<->device copies, device allocations). Tensors
// reach the GPU with nsc_to(t, NSC_CUDA) once nsc_cuda_init() succeeded;
// every op then runs there. In a build without CUDA (make without CUDA=1)
// these functions exist and report that the library was built without it.
#ifndef NSC_CUDA_H
#define NSC_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/base.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- start-up ---

// Selects device 0, creates the cuBLAS handle and fills the CUDA memory and
// kernel tables. Call once before any CUDA tensor (later calls return NSC_OK
// at once); thread-safe. Fails with NSC_ERR_UNSUPPORTED ("built without
// CUDA") in CPU-only builds and NSC_ERR_DEVICE when no GPU is visible.
nsc_status nsc_cuda_init(void);

// True when nsc_cuda_init() succeeded (or would: a GPU is visible in a CUDA
// build). Never fails.
bool nsc_cuda_available(void);

// Number of visible CUDA devices (0 without CUDA or without a GPU).
int nsc_cuda_device_count(void);

// Waits for every kernel launched so far; NSC_ERR_DEVICE naming the CUDA
// error when one of them failed.
nsc_status nsc_cuda_synchronize(void);

// --- counters ---

typedef struct nsc_cuda_stats {
    int64_t transfers;      // host<->device tensor copies (to_device, reads of values)
    int64_t transfer_bytes; // bytes they moved
    int64_t device_mallocs; // cudaMalloc calls of the caching allocator
    int64_t live_bytes;     // device bytes held by tensors
    int64_t cached_bytes;   // device bytes kept for reuse
    int64_t kernel_launches; // nsc's own kernel launches (cuBLAS's are not counted)
} nsc_cuda_stats;

// The counters since start-up (all zero without CUDA).
nsc_cuda_stats nsc_cuda_stats_get(void);

// Returns every cached block to the driver (cudaFree); live tensors stay.
void nsc_cuda_empty_cache(void);

#ifdef __cplusplus
}
#endif

#endif
