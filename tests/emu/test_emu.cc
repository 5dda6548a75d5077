// The CUDA emulator itself (make CUDA=emu only): warp collectives and block
// barriers give what a GPU gives, and the misuses that hang or read garbage
// on a GPU fail the launch with a message naming the lanes. cuBLAS's
// argument checks and products. docs/CUDA.md.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <vector>

#include "cuda/cuda_impl.h"

namespace {

template <typename T> struct device_buf {
    T *p = nullptr;
    explicit device_buf(size_t n) {
        cudaMalloc((void **)&p, n * sizeof(T));
        memset(p, 0, n * sizeof(T));
    }
    ~device_buf() {
        cudaFree(p);
    }
};

__global__ void collectives(int *out) {
    int lane = threadIdx.x & 31;
    int *o = out + threadIdx.x * 8;
    int v = lane;
    for (int s = 16; s > 0; s >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, s);
    }
    o[0] = v;                                          // 0 + ... + 31
    o[1] = __shfl_down_sync(0xffffffffu, lane, 3);     // lane + 3, or lane at the top
    o[2] = __shfl_up_sync(0xffffffffu, lane, 2);       // lane - 2, or lane at the bottom
    o[3] = __shfl_sync(0xffffffffu, lane * 10, 5, 16); // lane 5 of each half
    o[4] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
    o[5] = __any_sync(0xffffffffu, lane == 31);
    o[6] = __all_sync(0xffffffffu, lane < 31);
    o[7] = __shfl_xor_sync(0xffffffffu, (double)lane * 0.5, 1) == (double)(lane ^ 1) * 0.5;
}

__global__ void block_sum(const int *x, int *out) {
    __shared__ int part[256];
    part[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            part[threadIdx.x] += part[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[blockIdx.x] = part[0];
    }
}

// Every thread reads its neighbour's slot; with_barrier false drops the
// __syncthreads between the write and the read (a race on a GPU).
__global__ void neighbour(int *out, bool with_barrier) {
    __shared__ int slot[256];
    slot[threadIdx.x] = (int)threadIdx.x + 1;
    if (with_barrier) {
        __syncthreads();
    }
    out[threadIdx.x] = slot[(threadIdx.x + 1) % blockDim.x];
    if (with_barrier) {
        __syncthreads();
    }
    slot[threadIdx.x] = 0;
}

// Reads what this block finds in shared memory before writing it.
__global__ void stale_shared(int *out) {
    __shared__ int s;
    if (threadIdx.x == 0) {
        out[blockIdx.x] = s;
        s = 7;
    }
}

__global__ void shuffle_after_half_returned(int *out) {
    if ((threadIdx.x & 31) >= 16) {
        return;
    }
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 16);
}

// Legal since sm_70: the upper half shuffles among itself first, then the
// whole warp; and the lane operands' edge cases.
__global__ void half_then_whole(int *out) {
    int lane = threadIdx.x & 31, v = lane;
    if (lane >= 16) {
        v = __shfl_sync(0xffff0000u, v, 16);
    }
    out[threadIdx.x * 4] = __shfl_sync(0xffffffffu, v, 20);
    out[threadIdx.x * 4 + 1] = __shfl_xor_sync(0xffffffffu, lane, 16, 16); // a later group: own
    out[threadIdx.x * 4 + 2] = __shfl_xor_sync(0xffffffffu, lane, 32);     // low 5 bits: 0
    out[threadIdx.x * 4 + 3] = __shfl_down_sync(0xffffffffu, lane, 33);    // low 5 bits: 1
}

__global__ void barrier_in_one_thread(int *out) {
    if (threadIdx.x == 0) {
        __syncthreads();
    } else {
        out[0] = __shfl_sync(0xffffffffu, 1, 0);
    }
}

__global__ void different_collectives(int *out) {
    if (threadIdx.x & 1) {
        out[threadIdx.x] = __any_sync(0xffffffffu, 1);
    } else {
        out[threadIdx.x] = (int)__ballot_sync(0xffffffffu, 1);
    }
}

__global__ void nothing(int *out) {
    out[0] = 1;
}

void expect_failure(const char *what, cudaError_t want, const char *detail) {
    cudaError_t e = cudaGetLastError();
    cr_expect_eq(e, want, "%s: got %s", what, cudaGetErrorString(e));
    cr_expect(strstr(nsci_emu::last_error_detail(), detail), "%s: detail '%s' lacks '%s'", what,
              nsci_emu::last_error_detail(), detail);
}

} // namespace

Test(cuda_emu, warp_collectives_give_what_a_gpu_gives) {
    device_buf<int> out(64 * 8);
    NSCI_LAUNCH((collectives), 1, 64, 0, out.p);
    cr_assert_eq(cudaGetLastError(), cudaSuccess, "%s", nsci_emu::last_error_detail());
    unsigned ballot = 0;
    for (int l = 0; l < 32; l += 3) {
        ballot |= 1u << l;
    }
    for (int t = 0; t < 64; t++) {
        const int *o = out.p + t * 8;
        int lane = t & 31;
        cr_expect_eq(o[0], 496, "thread %d: xor sum %d", t, o[0]);
        cr_expect_eq(o[1], lane + 3 < 32 ? lane + 3 : lane, "thread %d: down %d", t, o[1]);
        cr_expect_eq(o[2], lane >= 2 ? lane - 2 : lane, "thread %d: up %d", t, o[2]);
        cr_expect_eq(o[3], (lane < 16 ? 5 : 21) * 10, "thread %d: idx %d", t, o[3]);
        cr_expect_eq((unsigned)o[4], ballot, "thread %d: ballot %x", t, (unsigned)o[4]);
        cr_expect_eq(o[5], 1, "thread %d: any", t);
        cr_expect_eq(o[6], 0, "thread %d: all", t);
        cr_expect_eq(o[7], 1, "thread %d: a double shuffled", t);
    }
}

Test(cuda_emu, barriers_order_shared_memory) {
    const int blocks = 3, n = blocks * 256;
    device_buf<int> x(n), sums(blocks);
    int want[blocks] = { 0, 0, 0 };
    for (int i = 0; i < n; i++) {
        x.p[i] = i % 7 - 3;
        want[i / 256] += x.p[i];
    }
    NSCI_LAUNCH((block_sum), blocks, 256, 0, x.p, sums.p);
    cr_assert_eq(cudaGetLastError(), cudaSuccess, "%s", nsci_emu::last_error_detail());
    for (int b = 0; b < blocks; b++) {
        cr_expect_eq(sums.p[b], want[b], "block %d: %d, want %d", b, sums.p[b], want[b]);
    }
}

// Threads run in a shuffled order between barriers, so a read that a
// missing __syncthreads leaves unordered sees the other thread's old value.
Test(cuda_emu, a_missing_barrier_shows_as_a_wrong_result) {
    device_buf<int> out(256);
    NSCI_LAUNCH((neighbour), 1, 256, 0, out.p, true);
    cr_assert_eq(cudaGetLastError(), cudaSuccess);
    int wrong_with = 0, wrong_without = 0;
    for (int t = 0; t < 256; t++) {
        wrong_with += out.p[t] != (t + 1) % 256 + 1;
    }
    NSCI_LAUNCH((neighbour), 1, 256, 0, out.p, false);
    cr_assert_eq(cudaGetLastError(), cudaSuccess);
    for (int t = 0; t < 256; t++) {
        wrong_without += out.p[t] != (t + 1) % 256 + 1;
    }
    cr_expect_eq(wrong_with, 0);
    cr_expect_gt(wrong_without, 0, "every read saw its neighbour's write without a barrier");
}

// Every block starts with garbage in its shared memory, static and dynamic,
// as on a GPU: nothing is zero, and nothing is left from the block before.
Test(cuda_emu, shared_memory_starts_as_garbage_in_every_block) {
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("under ASan the __shared__ section holds redzones and is not scribbled");
#endif
    device_buf<int> out(2);
    NSCI_LAUNCH((stale_shared), 2, 32, 0, out.p);
    cr_assert_eq(cudaGetLastError(), cudaSuccess);
    for (int b = 0; b < 2; b++) {
        cr_expect_eq((unsigned)out.p[b], 0xCDCDCDCDu, "block %d found %d", b, out.p[b]);
    }
}

Test(cuda_emu, lanes_follow_the_ptx_rules) {
    device_buf<int> out(32 * 4);
    NSCI_LAUNCH((half_then_whole), 1, 32, 0, out.p);
    cr_assert_eq(cudaGetLastError(), cudaSuccess, "%s", nsci_emu::last_error_detail());
    for (int t = 0; t < 32; t++) {
        const int *o = out.p + t * 4;
        cr_expect_eq(o[0], 16, "thread %d: lane 20 holds lane 16's value, got %d", t, o[0]);
        cr_expect_eq(o[1], t < 16 ? t : t ^ 16, "thread %d: xor 16 in groups of 16: %d", t, o[1]);
        cr_expect_eq(o[2], t, "thread %d: xor 32 is xor 0: %d", t, o[2]);
        cr_expect_eq(o[3], t < 31 ? t + 1 : t, "thread %d: down 33 is down 1: %d", t, o[3]);
    }
}

// A lane that exited gives an undefined value (garbage here, and a note).
Test(cuda_emu, reading_an_exited_lane_gives_garbage_and_a_note) {
    device_buf<int> out(32);
    NSCI_LAUNCH((shuffle_after_half_returned), 1, 32, 0, out.p);
    cr_assert_eq(cudaGetLastError(), cudaSuccess);
    for (int t = 0; t < 16; t++) {
        cr_expect_eq((unsigned)out.p[t], 0xCDCDCDCDu, "thread %d read %d", t, out.p[t]);
    }
    cr_expect(strstr(nsci_emu::last_error_detail(),
                     "reads lane 16 with __shfl_xor_sync, which is not taking part"),
              "%s", nsci_emu::last_error_detail());
}

Test(cuda_emu, collective_misuse_fails_the_launch_naming_the_lanes) {
    device_buf<int> out(64);
    NSCI_LAUNCH((barrier_in_one_thread), 1, 64, 0, out.p);
    expect_failure("__syncthreads in one thread", cudaErrorLaunchFailure, "cannot go on");
    NSCI_LAUNCH((different_collectives), 1, 32, 0, out.p);
    expect_failure("two collectives in one warp", cudaErrorLaunchFailure, "__ballot_sync");
    NSCI_LAUNCH((nothing), 1, 1, 0, out.p);
    cr_expect_eq(cudaGetLastError(), cudaSuccess, "a good launch after the faults");
}

Test(cuda_emu, bad_launch_configurations_fail_as_on_a_gpu) {
    device_buf<int> out(1);
    NSCI_LAUNCH((nothing), 0, 32, 0, out.p);
    expect_failure("0 blocks", cudaErrorInvalidConfiguration, "grid (0, 1, 1)");
    NSCI_LAUNCH((nothing), 1, 2048, 0, out.p);
    expect_failure("2048 threads", cudaErrorInvalidConfiguration, "block (2048, 1, 1)");
    NSCI_LAUNCH((nothing), dim3(1, 70000), 32, 0, out.p);
    expect_failure("gridDim.y 70000", cudaErrorInvalidConfiguration, "grid (1, 70000, 1)");
    NSCI_LAUNCH((nothing), 1, 32, 64 * 1024, out.p);
    expect_failure("64 KiB of dynamic shared memory", cudaErrorInvalidValue, "65536 bytes");
    NSCI_LAUNCH((nothing), 1, 32, 48 * 1024, out.p);
    expect_failure("48 KiB dynamic beside static", cudaErrorInvalidValue, "over 48 KiB");
    cr_expect_eq(out.p[0], 0, "no bad launch ran");
}

// Column-major C = A^T B (+ C) against a loop, and cuBLAS's ld checks.
Test(cuda_emu, gemm_checks_leading_dimensions_and_multiplies) {
    cublasHandle_t h;
    cr_assert_eq(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    const int m = 3, n = 2, k = 4, lda = 5, ldb = 4, ldc = 3;
    std::vector<float> a(lda * m), b(ldb * n), c(ldc * n, 1.0f);
    for (size_t i = 0; i < a.size(); i++) {
        a[i] = (float)i * 0.5f - 2.0f;
    }
    for (size_t i = 0; i < b.size(); i++) {
        b[i] = (float)(i % 5) - 1.0f;
    }
    const float one = 1.0f;
    cr_assert_eq(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a.data(),
                                           lda, 0, b.data(), ldb, 0, &one, c.data(), ldc, 0, 1),
                 CUBLAS_STATUS_SUCCESS);
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            float want = 1.0f;
            for (int p = 0; p < k; p++) {
                want += a[p + i * lda] * b[p + j * ldb];
            }
            cr_expect_float_eq(c[i + j * ldc], want, 1e-5, "C[%d, %d]", i, j);
        }
    }
    // alpha 0 reads neither A nor B (a NaN there does not reach C), as BLAS.
    std::vector<float> before = c;
    a[0] = NAN;
    const float zero = 0.0f;
    cr_assert_eq(cublasSgemmStridedBatched(h, CUBLAS_OP_C, CUBLAS_OP_N, m, n, k, &zero, a.data(),
                                           lda, 0, b.data(), ldb, 0, &one, c.data(), ldc, 0, 1),
                 CUBLAS_STATUS_SUCCESS, "OP_C is OP_T for real types");
    for (size_t i = 0; i < c.size(); i++) {
        cr_expect_eq(c[i], before[i], "C[%zu] changed under alpha 0", i);
    }
    // op(A) = A^T reads A as k x m: lda must be at least k.
    cr_expect_eq(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a.data(),
                                           k - 1, 0, b.data(), ldb, 0, &one, c.data(), ldc, 0, 1),
                 CUBLAS_STATUS_INVALID_VALUE);
    cr_expect_eq(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, a.data(),
                                           lda, 0, b.data(), ldb, 0, &one, c.data(), m - 1, 0, 1),
                 CUBLAS_STATUS_INVALID_VALUE);
}
