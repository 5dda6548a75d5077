// The public CUDA calls of a build without CUDA (make without CUDA=1): they
// link, report "built without CUDA" and count nothing. A CUDA build compiles
// cuda/init.c instead.
#ifndef NSC_HAVE_CUDA
#include "nsc/cuda.h"
#include "util/util_impl.h"

nsc_status nsc_cuda_init(void) {
    return nsci_fail(NSC_ERR_UNSUPPORTED,
                     "cuda_init: nsc was built without CUDA (rebuild with make CUDA=1)");
}

bool nsc_cuda_available(void) {
    return false;
}

int nsc_cuda_device_count(void) {
    return 0;
}

nsc_status nsc_cuda_synchronize(void) {
    return nsci_fail(NSC_ERR_UNSUPPORTED,
                     "cuda_synchronize: nsc was built without CUDA (rebuild with make CUDA=1)");
}

nsc_cuda_stats nsc_cuda_stats_get(void) {
    return (nsc_cuda_stats){ 0 };
}

void nsc_cuda_empty_cache(void) {
}
#endif
