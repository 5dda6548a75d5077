// Batched products C = A·B (+ beta C) on cuBLAS: row-major C is computed as
// the column-major Cᵀ = Bᵀ·Aᵀ, each operand read through a transpose flag
// and leading dimension when it has a unit-stride dim; batch dims become
// one strided batch (stride 0 for a broadcast operand) or a host loop over
// the outer ones. i64, operands without a unit-stride dim, k = 0 and sizes
// beyond cuBLAS's int arguments take a tiled kernel. Full f32 math (no TF32).
#include <limits.h>

#include "cuda/cuda_impl.h"

namespace {

// How cuBLAS reads a rows x cols matrix with strides (rs, cs) as the
// transposed (column-major) operand: op N with ld = rs when rows are
// contiguous, op T with ld = cs when columns are. False: neither.
bool pick(int64_t rows, int64_t cols, int64_t rs, int64_t cs, cublasOperation_t *op, int *ld) {
    int64_t l;
    if ((cols == 1 || cs == 1) && (rows == 1 || rs >= (cols > 1 ? cols : 1))) {
        *op = CUBLAS_OP_N;
        l = rows == 1 ? (cols > 1 ? cols : 1) : rs;
    } else if ((rows == 1 || rs == 1) && (cols == 1 || cs >= (rows > 1 ? rows : 1))) {
        *op = CUBLAS_OP_T;
        l = cols == 1 ? (rows > 1 ? rows : 1) : cs;
    } else {
        return false;
    }
    *ld = (int)l;
    return l > 0 && l <= INT_MAX;
}

bool fits_int(int64_t v) {
    return v >= 0 && v <= INT_MAX;
}

// The batch dims from first on as one stride per operand; false if they do not merge.
bool merge_batches(const nsci_cuda_gemm *g, int first, int64_t *count, int64_t *sa, int64_t *sb,
                   int64_t *sc) {
    *count = 1;
    *sa = *sb = *sc = 0;
    bool started = false;
    for (int d = g->n_batch_dims - 1; d >= first; d--) {
        int64_t s = g->batch_shape[d];
        if (s == 1) {
            continue;
        }
        if (!started) {
            *sa = g->a_bstride[d];
            *sb = g->b_bstride[d];
            *sc = g->c_bstride[d];
            started = true;
        } else if (g->a_bstride[d] != *sa * *count || g->b_bstride[d] != *sb * *count ||
                   g->c_bstride[d] != *sc * *count) {
            return false;
        }
        *count *= s;
    }
    return true;
}

template <typename T>
cublasStatus_t gemm_batched(cublasOperation_t opb, cublasOperation_t opa, int n, int m, int k,
                            const T *alpha, const T *b, int ldb, long long sb, const T *a, int lda,
                            long long sa, const T *beta, T *c, int ldc, long long sc, int count);
template <>
cublasStatus_t gemm_batched<float>(cublasOperation_t opb, cublasOperation_t opa, int n, int m,
                                   int k, const float *alpha, const float *b, int ldb,
                                   long long sb, const float *a, int lda, long long sa,
                                   const float *beta, float *c, int ldc, long long sc, int count) {
    return cublasSgemmStridedBatched(nsci_cuda_blas(), opb, opa, n, m, k, alpha, b, ldb, sb, a,
                                     lda, sa, beta, c, ldc, sc, count);
}
template <>
cublasStatus_t gemm_batched<double>(cublasOperation_t opb, cublasOperation_t opa, int n, int m,
                                    int k, const double *alpha, const double *b, int ldb,
                                    long long sb, const double *a, int lda, long long sa,
                                    const double *beta, double *c, int ldc, long long sc,
                                    int count) {
    return cublasDgemmStridedBatched(nsci_cuda_blas(), opb, opa, n, m, k, alpha, b, ldb, sb, a,
                                     lda, sa, beta, c, ldc, sc, count);
}

// cuBLAS for every batch; NSC_ERR_UNSUPPORTED (nothing recorded) when the
// layout or sizes do not suit it.
template <typename T> nsc_status blas_run(const nsci_cuda_gemm *g) {
    cublasOperation_t opa, opb;
    int lda, ldb;
    if (!pick(g->m, g->k, g->a_rs, g->a_cs, &opa, &lda) ||
        !pick(g->k, g->n, g->b_rs, g->b_cs, &opb, &ldb) || !fits_int(g->m) || !fits_int(g->n) ||
        !fits_int(g->k) || g->k == 0 || !fits_int(g->c_rs)) {
        return NSC_ERR_UNSUPPORTED;
    }
    int outer_dims = 0;
    int64_t count, sa, sb, sc;
    while (!merge_batches(g, outer_dims, &count, &sa, &sb, &sc)) {
        outer_dims++;
    }
    if (!fits_int(count)) {
        return NSC_ERR_UNSUPPORTED;
    }
    int64_t n_outer = 1;
    for (int d = 0; d < outer_dims; d++) {
        n_outer *= g->batch_shape[d];
    }
    const T alpha = T(1), beta = (T)g->beta;
    int ldc = (int)(g->c_rs > 0 ? g->c_rs : 1);
    for (int64_t o = 0; o < n_outer; o++) {
        int64_t oa = nsci_cuda_unravel(outer_dims, g->batch_shape, g->a_bstride, o);
        int64_t ob = nsci_cuda_unravel(outer_dims, g->batch_shape, g->b_bstride, o);
        int64_t oc = nsci_cuda_unravel(outer_dims, g->batch_shape, g->c_bstride, o);
        NSCI_CUDA_TRY(gemm_batched<T>(opb, opa, (int)g->n, (int)g->m, (int)g->k, &alpha,
                                      (const T *)g->b + ob, ldb, sb, (const T *)g->a + oa, lda,
                                      sa, &beta, (T *)g->c + oc, ldc, sc, (int)count));
    }
    return NSC_OK;
}

__device__ int64_t mul_acc(int64_t acc, int64_t a, int64_t b) {
    return (int64_t)((uint64_t)acc + (uint64_t)a * (uint64_t)b);
}
__device__ float mul_acc(float acc, float a, float b) {
    return acc + a * b;
}
__device__ double mul_acc(double acc, double a, double b) {
    return acc + a * b;
}

// C in 16 x 16 tiles (a block each, looping over tiles and batches): A's
// and B's tiles pass through shared memory, so each element is read once
// per tile instead of once per product; any strides. The sum runs over k in
// order, as the untiled loop did (padding adds exact zeros).
const int TILE = 16;

template <typename T> __global__ void gemm_tiled(nsci_cuda_gemm g) {
    __shared__ T as[TILE][TILE + 1];
    __shared__ T bs[TILE][TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t tiles_m = (g.m + TILE - 1) / TILE, tiles_n = (g.n + TILE - 1) / TILE;
    for (int64_t t = blockIdx.x; t < g.n_batch * tiles_m * tiles_n; t += gridDim.x) {
        int64_t tn = t % tiles_n, tm = (t / tiles_n) % tiles_m, bi = t / (tiles_n * tiles_m);
        const T *a =
            (const T *)g.a + nsci_cuda_unravel(g.n_batch_dims, g.batch_shape, g.a_bstride, bi);
        const T *b =
            (const T *)g.b + nsci_cuda_unravel(g.n_batch_dims, g.batch_shape, g.b_bstride, bi);
        T *c = (T *)g.c + nsci_cuda_unravel(g.n_batch_dims, g.batch_shape, g.c_bstride, bi);
        int64_t i = tm * TILE + ty, j = tn * TILE + tx;
        T acc = T(0);
        for (int64_t k0 = 0; k0 < g.k; k0 += TILE) {
            as[ty][tx] = i < g.m && k0 + tx < g.k ? a[i * g.a_rs + (k0 + tx) * g.a_cs] : T(0);
            bs[ty][tx] = k0 + ty < g.k && j < g.n ? b[(k0 + ty) * g.b_rs + j * g.b_cs] : T(0);
            __syncthreads();
            for (int q = 0; q < TILE && k0 + q < g.k; q++) {
                acc = mul_acc(acc, as[ty][q], bs[q][tx]);
            }
            __syncthreads(); // the next tile overwrites what others still read
        }
        if (i < g.m && j < g.n) {
            T *dst = c + i * g.c_rs + j;
            *dst = g.beta != 0.0 ? mul_acc(acc, *dst, T(1)) : acc;
        }
    }
}

template <typename T> nsc_status tiled_run(const nsci_cuda_gemm *g) {
    int64_t tiles = g->n_batch * ((g->m + TILE - 1) / TILE) * ((g->n + TILE - 1) / TILE);
    NSCI_LAUNCH((gemm_tiled<T>), (unsigned)(tiles < (1 << 20) ? tiles : (1 << 20)),
                dim3(TILE, TILE), 0, *g);
    return nsci_cuda_check_launch("matmul (tiled kernel)");
}

} // namespace

extern "C" nsc_status nsci_cuda_gemm_run(const nsci_cuda_gemm *g) {
    if (g->n_batch == 0 || g->m == 0 || g->n == 0) {
        return NSC_OK;
    }
    nsc_status s = NSC_ERR_UNSUPPORTED;
    if (g->dtype == NSC_F32) {
        s = blas_run<float>(g);
    } else if (g->dtype == NSC_F64) {
        s = blas_run<double>(g);
    }
    if (s != NSC_ERR_UNSUPPORTED) {
        return s;
    }
    switch (g->dtype) {
        case NSC_F32:
            return tiled_run<float>(g);
        case NSC_F64:
            return tiled_run<double>(g);
        default:
            return tiled_run<int64_t>(g);
    }
}
