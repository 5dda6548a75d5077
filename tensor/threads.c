// The public thread count: one number for our pool (util/parallel.c) and
// OpenBLAS's, so the two never put more threads than that on the cores.
// Separate from op_matmul.c because it is not an op; the OpenBLAS call itself
// stays there (the only file that includes cblas.h).
#include "tensor/gemm_impl.h"

void nsc_set_num_threads(int n) {
    nsci_pool_set_threads(n); // clamps to [1, 256]
    nsci_blas_set_threads(nsci_pool_threads());
}

int nsc_get_num_threads(void) {
    return nsci_pool_threads();
}
