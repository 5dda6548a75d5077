// The GEMM layer under matmul and linear, shared by tensor/op_matmul.c (which
// alone calls OpenBLAS), tensor/gemm_portable.c (our own kernels, used by
// `make BLAS=none`, for i64 and for sizes OpenBLAS's int arguments cannot
// hold) and tensor/threads.c. Separate from tensor_impl.h: only these three
// files need it.
#ifndef NSC_TENSOR_GEMM_IMPL_H
#define NSC_TENSOR_GEMM_IMPL_H

#include "tensor/tensor_impl.h"

// A batch of products C = A·B (or C += A·B). Letters: A is [M, K], B is
// [K, N], C is [M, N]; batch dims lead. Strides are in elements. A and B may
// have any strides (0 included); C's columns are unit-stride.
typedef struct nsci_gemm {
    nsc_dtype dtype; // f32, f64 or i64 (all three operands)
    int64_t m, n, k;
    const char *a, *b; // element (0, 0) of batch 0
    char *c;
    int64_t a_rs, a_cs, b_rs, b_cs, c_rs;
    bool accumulate; // C += A·B: C was pre-filled (linear's bias)
    int n_batch_dims;
    int64_t n_batch;
    int64_t batch_shape[NSC_MAX_DIMS];
    int64_t a_bstride[NSC_MAX_DIMS]; // 0 where A is broadcast over the batch dim
    int64_t b_bstride[NSC_MAX_DIMS];
    int64_t c_bstride[NSC_MAX_DIMS];
} nsci_gemm;

// Pointers to batch idx's A, B and C (idx row-major over batch_shape).
void nsci_gemm_batch_ptrs(const nsci_gemm *g, int64_t idx, const char **a, const char **b,
                          char **c);

// Runs every product of g on the portable kernels (cache-blocked, packed,
// parallel over blocks or batches through nsci_parallel_for). Allocates one
// workspace block for the packed panels (none when M, N or K is 0, or for
// i64). Fails only with NSC_ERR_OOM, leaving C unchanged.
nsc_status nsci_gemm_portable(const nsci_gemm *g);

// Sets OpenBLAS's thread count (nothing without OpenBLAS).
void nsci_blas_set_threads(int n);

#endif
