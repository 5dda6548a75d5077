// The emulator's CUDA runtime and cuBLAS: device memory is host memory, one
// device, synchronous everything; the products are reference loops that
// check their arguments as cuBLAS does (a wrong leading dimension is
// CUBLAS_STATUS_INVALID_VALUE here as there). docs/CUDA.md.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <new>
#include <string>

#include "cuda/emu/cuda_emu.h"
#include "cuda/emu/emu_impl.h"

namespace nsci_emu {

namespace {
// Per host thread, as the CUDA runtime keeps it.
thread_local cudaError_t g_last_error = cudaSuccess;
thread_local std::string g_last_detail;
struct nsci_emu_blas_handle {
    int unused;
} g_blas_handle;
} // namespace

void emu_set_error(cudaError_t e, const std::string &why) {
    fprintf(stderr, "cuda emulator: %s: %s\n", cudaGetErrorString(e), why.c_str());
    g_last_error = e;
    g_last_detail = why;
}

void emu_note(const std::string &what) {
    fprintf(stderr, "cuda emulator: note: %s\n", what.c_str());
    g_last_detail = what;
}

const char *last_error_detail() {
    return g_last_detail.c_str();
}

} // namespace nsci_emu

cudaError_t cudaGetDeviceCount(int *count) {
    *count = getenv("NSC_EMU_NO_DEVICE") ? 0 : 1;
    return *count ? cudaSuccess : cudaErrorNoDevice;
}

cudaError_t cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    *ptr = aligned_alloc(256, (bytes + 255) / 256 * 256);
    return *ptr ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFree(void *ptr) {
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    (void)kind;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
    (void)stream;
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream) {
    (void)stream;
    memset(ptr, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    return cudaSuccess;
}

struct nsci_emu_event {
    double ms;
    bool recorded;
};

cudaError_t cudaEventCreate(cudaEvent_t *event) {
    *event = new (std::nothrow) nsci_emu_event{ 0.0, false };
    return *event ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    (void)stream;
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    event->ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    event->recorded = true;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    return event->recorded ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start->recorded || !end->recorded) {
        return cudaErrorInvalidValue;
    }
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    delete event;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = nsci_emu::g_last_error;
    nsci_emu::g_last_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess:
            return "no error";
        case cudaErrorInvalidValue:
            return "invalid argument";
        case cudaErrorMemoryAllocation:
            return "out of memory";
        case cudaErrorInvalidConfiguration:
            return "invalid configuration argument";
        case cudaErrorInvalidDevice:
            return "invalid device ordinal";
        case cudaErrorNoDevice:
            return "no CUDA-capable device is detected";
        case cudaErrorLaunchFailure:
            return "unspecified launch failure";
    }
    return "unknown error";
}

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    *handle = (cublasHandle_t)&nsci_emu::g_blas_handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    (void)mode;
    return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS:
            return "the operation completed successfully";
        case CUBLAS_STATUS_NOT_INITIALIZED:
            return "the library was not initialized";
        case CUBLAS_STATUS_INVALID_VALUE:
            return "an invalid numeric value was used as an argument";
    }
    return "unknown error";
}

namespace {

// Column-major C = alpha op(A) op(B) + beta C per batch, as cuBLAS defines
// it: C is not read when beta is 0.
template <typename T>
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, const T *alpha, const T *a, int lda, long long sa, const T *b, int ldb,
                    long long sb, const T *beta, T *c, int ldc, long long sc, int count) {
    if (!h) {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    // OP_C is OP_T for real types.
    ta = ta == CUBLAS_OP_C ? CUBLAS_OP_T : ta;
    tb = tb == CUBLAS_OP_C ? CUBLAS_OP_T : tb;
    int a_rows = ta == CUBLAS_OP_N ? m : k, b_rows = tb == CUBLAS_OP_N ? k : n;
    bool ok = m >= 0 && n >= 0 && k >= 0 && count >= 0 && lda >= (a_rows > 1 ? a_rows : 1) &&
              ldb >= (b_rows > 1 ? b_rows : 1) && ldc >= (m > 1 ? m : 1) &&
              (ta == CUBLAS_OP_N || ta == CUBLAS_OP_T) && (tb == CUBLAS_OP_N || tb == CUBLAS_OP_T);
    if (!ok) {
        fprintf(stderr, "cuda emulator: gemm: m %d n %d k %d lda %d ldb %d ldc %d: invalid value\n",
                m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    for (int q = 0; q < count; q++) {
        const T *aq = a + q * sa, *bq = b + q * sb;
        T *cq = c + q * sc;
        for (int j = 0; j < n; j++) {
            for (int i = 0; i < m; i++) {
                T acc = T(0);
                for (int p = 0; *alpha != T(0) && p < k; p++) { // alpha 0 reads no A, B
                    T av =
                        ta == CUBLAS_OP_N ? aq[i + (long long)p * lda] : aq[p + (long long)i * lda];
                    T bv =
                        tb == CUBLAS_OP_N ? bq[p + (long long)j * ldb] : bq[j + (long long)p * ldb];
                    acc += av * bv;
                }
                T &dst = cq[i + (long long)j * ldc];
                dst = *beta == T(0) ? *alpha * acc : *alpha * acc + *beta * dst;
            }
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float *alpha, const float *a, int lda,
                                         long long stride_a, const float *b, int ldb,
                                         long long stride_b, const float *beta, float *c, int ldc,
                                         long long stride_c, int batch_count) {
    return gemm(h, transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                stride_c, batch_count);
}

cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const double *alpha, const double *a, int lda,
                                         long long stride_a, const double *b, int ldb,
                                         long long stride_b, const double *beta, double *c, int ldc,
                                         long long stride_c, int batch_count) {
    return gemm(h, transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                stride_c, batch_count);
}
