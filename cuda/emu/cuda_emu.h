// The subset of the CUDA runtime, device builtins and cuBLAS that cuda/*.cu
// use, for compiling them as plain C++ (make CUDA=emu) and running their
// kernels on the CPU: every thread of a block is a fiber, warp collectives
// and __syncthreads are the points where fibers wait for each other, and
// cuBLAS is a reference loop with cuBLAS's argument checks. It exists to run
// the GPU tests on a machine without a GPU: kernel logic, launch
// configurations, warp-collective misuse (a lane that exited, lanes at
// different collectives) and cuBLAS leading dimensions are checked; timing,
// memory coalescing and the memory model are not. docs/CUDA.md.
#ifndef NSC_CUDA_EMU_CUDA_EMU_H
#define NSC_CUDA_EMU_CUDA_EMU_H

#ifndef __cplusplus
#error "cuda/emu/cuda_emu.h is for cuda/*.cu compiled as C++"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __forceinline__ inline
// Blocks run one at a time, so one static instance per kernel is the
// block's. They live in one section, which each block starts by filling with
// garbage (as a GPU's shared memory holds): a kernel that reads shared
// memory it did not write in this block gets wrong results here too.
#define __shared__ static __attribute__((section("nsci_emu_shared")))

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {
    }
};

// --- runtime ---

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorLaunchFailure = 719,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
typedef struct nsci_emu_stream *cudaStream_t;

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
// Events: kernels run at launch here, so an event records the host's clock
// when it is recorded (the time the work queued before it took).
typedef struct nsci_emu_event *cudaEvent_t;
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);
const char *cudaGetErrorString(cudaError_t e);

// --- cuBLAS ---

enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
};
enum cublasOperation_t {
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,
    CUBLAS_OP_C = 2
};
enum cublasMath_t {
    CUBLAS_DEFAULT_MATH = 0,
    CUBLAS_TF32_TENSOR_OP_MATH = 3
};
typedef struct nsci_emu_blas *cublasHandle_t;

cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float *alpha, const float *a, int lda,
                                         long long stride_a, const float *b, int ldb,
                                         long long stride_b, const float *beta, float *c, int ldc,
                                         long long stride_c, int batch_count);
cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const double *alpha, const double *a, int lda,
                                         long long stride_a, const double *b, int ldb,
                                         long long stride_b, const double *beta, double *c, int ldc,
                                         long long stride_c, int batch_count);

// --- the emulator ---

namespace nsci_emu {

extern dim3 g_thread_idx, g_block_idx, g_block_dim, g_grid_dim;

enum collective_op {
    SHFL_IDX,
    SHFL_XOR,
    SHFL_DOWN,
    SHFL_UP,
    BALLOT,
    ANY,
    ALL,
    SYNCWARP
};

// Waits for the warp's lanes named in mask at the same collective; returns
// this lane's result (raw bits for shuffles, the combined value otherwise).
uint64_t collective(collective_op op, unsigned mask, uint64_t value, int arg, int width);
// __syncthreads: waits for every thread of the block that has not exited.
void block_barrier();
// The launch's dynamic shared memory (the smem argument's bytes).
void *dynamic_shared();
// Why the last failed launch or call failed (kernel, block, lanes), as
// printed on stderr; "" when none has.
const char *last_error_detail();

// Runs body(ctx) once per thread of grid x block; on a bad configuration or
// a kernel fault, sets the error cudaGetLastError returns.
void run_grid(const char *kernel, dim3 grid, dim3 block, size_t smem, void (*body)(void *),
              void *ctx);

template <typename F> struct launcher {
    const char *kernel;
    dim3 grid, block;
    size_t smem;
    F fn;
    template <typename... A> void operator()(A... args) {
        auto call = [&]() { fn(args...); };
        run_grid(
            kernel, grid, block, smem, [](void *c) { (*(decltype(call) *)c)(); }, &call);
    }
};
template <typename F>
launcher<F> launch(const char *kernel, dim3 grid, dim3 block, size_t smem, F fn) {
    return launcher<F>{ kernel, grid, block, smem, fn };
}

template <typename T> uint64_t bits_of(T v) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <typename T> T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

} // namespace nsci_emu

#define threadIdx (nsci_emu::g_thread_idx)
#define blockIdx  (nsci_emu::g_block_idx)
#define blockDim  (nsci_emu::g_block_dim)
#define gridDim   (nsci_emu::g_grid_dim)

// kernel<<<grid, block, smem>>>(args...) is written
// NSCI_LAUNCH((kernel), grid, block, smem, args...) (cuda/cuda_impl.h).
#define NSCI_UNPAREN(...) __VA_ARGS__
#define NSCI_LAUNCH(kernel, grid, block, smem, ...)                                                \
    do {                                                                                           \
        nsci_cuda_note_launch();                                                                   \
        nsci_emu::launch(#kernel, (grid), (block), (smem), [](auto &&...nsci_args_) {              \
            NSCI_UNPAREN kernel(nsci_args_...);                                                    \
        })(__VA_ARGS__);                                                                           \
    } while (0)
#define NSCI_DYNAMIC_SHARED(type, name) type *name = (type *)nsci_emu::dynamic_shared()

// --- device builtins ---

template <typename T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return nsci_emu::from_bits<T>(
        nsci_emu::collective(nsci_emu::SHFL_IDX, mask, nsci_emu::bits_of(v), src, width));
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return nsci_emu::from_bits<T>(
        nsci_emu::collective(nsci_emu::SHFL_XOR, mask, nsci_emu::bits_of(v), lane_mask, width));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return nsci_emu::from_bits<T>(
        nsci_emu::collective(nsci_emu::SHFL_DOWN, mask, nsci_emu::bits_of(v), (int)delta, width));
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return nsci_emu::from_bits<T>(
        nsci_emu::collective(nsci_emu::SHFL_UP, mask, nsci_emu::bits_of(v), (int)delta, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    return (unsigned)nsci_emu::collective(nsci_emu::BALLOT, mask, pred != 0, 0, 32);
}
inline int __any_sync(unsigned mask, int pred) {
    return (int)nsci_emu::collective(nsci_emu::ANY, mask, pred != 0, 0, 32);
}
inline int __all_sync(unsigned mask, int pred) {
    return (int)nsci_emu::collective(nsci_emu::ALL, mask, pred != 0, 0, 32);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    nsci_emu::collective(nsci_emu::SYNCWARP, mask, 0, 0, 32);
}
inline void __syncthreads() {
    nsci_emu::block_barrier();
}
inline int __popc(unsigned v) {
    return __builtin_popcount(v);
}
inline int __popcll(unsigned long long v) {
    return __builtin_popcountll(v);
}

// Fibers switch only at collectives and barriers, so a plain
// read-modify-write is atomic here.
template <typename T, typename F> inline T nsci_emu_rmw(T *p, F next) {
    T old = *p;
    *p = next(old);
    return old;
}
inline float atomicAdd(float *p, float v) {
    return nsci_emu_rmw(p, [v](float o) { return o + v; });
}
inline double atomicAdd(double *p, double v) {
    return nsci_emu_rmw(p, [v](double o) { return o + v; });
}
inline int atomicAdd(int *p, int v) {
    return nsci_emu_rmw(p, [v](int o) { return o + v; });
}
inline unsigned atomicAdd(unsigned *p, unsigned v) {
    return nsci_emu_rmw(p, [v](unsigned o) { return o + v; });
}
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    return nsci_emu_rmw(p, [v](unsigned long long o) { return o + v; });
}
inline unsigned atomicOr(unsigned *p, unsigned v) {
    return nsci_emu_rmw(p, [v](unsigned o) { return o | v; });
}
inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
    return nsci_emu_rmw(p, [v](unsigned long long o) { return v < o ? v : o; });
}
inline unsigned long long atomicMax(unsigned long long *p, unsigned long long v) {
    return nsci_emu_rmw(p, [v](unsigned long long o) { return v > o ? v : o; });
}

#endif
