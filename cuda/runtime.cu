// The CUDA runtime side of the device table: device selection, the cuBLAS
// handle, the caching allocator and host<->device copies with their
// counters. One default stream: every kernel and copy is ordered on it, so a
// block freed to the cache can be handed out again at once (any kernel still
// reading it runs before any later kernel that writes it).
#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "cuda/cuda_impl.h"

// On the emulator under ASan (make MODE=asan CUDA=emu) device memory is host
// memory ASan watches: a block's bytes past the request and a cached block
// are poisoned, so a kernel that reads past its tensor or a freed one is
// reported. Poison starts at an 8-byte boundary: the bool index_add's
// 32-bit atomicOr may touch the rest of the word holding its last byte.
#if defined(NSCI_CUDA_EMU) && defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
static void poison_block(void *p, size_t from, size_t to) {
    from = (from + 7) / 8 * 8;
    ASAN_UNPOISON_MEMORY_REGION(p, to);
    if (from < to) {
        ASAN_POISON_MEMORY_REGION((char *)p + from, to - from);
    }
}
#else
static void poison_block(void *, size_t, size_t) {}
#endif

namespace {

// Size buckets: 512-byte granules up to 1 MiB, then powers of two split in
// four (1.25x steps), so a steady-state forward finds every size it freed.
size_t bucket_of(size_t bytes) {
    if (bytes <= 512) {
        return 512;
    }
    if (bytes <= (1u << 20)) {
        return (bytes + 511) / 512 * 512;
    }
    size_t p = 1u << 20;
    while (p < bytes) {
        p <<= 1;
    }
    size_t quarter = p / 8;
    size_t b = p / 2;
    while (b < bytes) {
        b += quarter;
    }
    return b;
}

struct allocator {
    std::mutex lock;
    std::map<size_t, std::vector<void *>> cache; // bucket -> free blocks
    std::map<void *, size_t> live;               // block -> bucket
    int64_t mallocs = 0, live_bytes = 0, cached_bytes = 0;
    int64_t transfers = 0, transfer_bytes = 0;
};

// Never destroyed: exit must not free the map under blocks still cached
// (and on the emulator, LeakSanitizer runs after static destructors).
allocator &g_alloc = *new allocator; // guarded by g_alloc.lock
cublasHandle_t g_blas;  // set once by nsci_cuda_runtime_init
std::atomic<int64_t> g_launches{ 0 }; // NSCI_LAUNCH's count (nsc_cuda_stats)

void release_cache_locked() {
    for (auto &kv : g_alloc.cache) {
        for (void *p : kv.second) {
            poison_block(p, kv.first, kv.first); // back to cudaFree whole
            cudaFree(p);
        }
        g_alloc.cached_bytes -= (int64_t)(kv.first * kv.second.size());
    }
    g_alloc.cache.clear();
}

} // namespace

cublasHandle_t nsci_cuda_blas(void) {
    return g_blas;
}

extern "C" {

int nsci_cuda_count_devices(const char **why) {
    int n = 0;
    cudaError_t status = cudaGetDeviceCount(&n);
    if (status != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no device" error
        if (why) {
            *why = cudaGetErrorString(status);
        }
        return 0;
    }
    if (why) {
        *why = n == 0 ? "it counts 0 devices" : NULL;
    }
    return n;
}

nsc_status nsci_cuda_runtime_init(void) {
    NSCI_CUDA_TRY(cudaSetDevice(0));
    NSCI_CUDA_TRY(cublasCreate(&g_blas));
    // Full f32 products, as PyTorch's default (allow_tf32 = False).
    NSCI_CUDA_TRY(cublasSetMathMode(g_blas, CUBLAS_DEFAULT_MATH));
    return NSC_OK;
}

void *nsci_cuda_alloc(size_t bytes) {
    size_t b = bucket_of(bytes);
    std::lock_guard<std::mutex> guard(g_alloc.lock);
    void *p = nullptr;
    auto it = g_alloc.cache.find(b);
    if (it != g_alloc.cache.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        g_alloc.cached_bytes -= (int64_t)b;
    } else {
        cudaError_t e = cudaMalloc(&p, b);
        if (e == cudaErrorMemoryAllocation) { // full: give the cache back and try once more
            cudaGetLastError();
            release_cache_locked();
            e = cudaMalloc(&p, b);
        }
        if (e != cudaSuccess) {
            // Anything but a full device (an earlier kernel's fault is sticky) is not OOM.
            bool full = e == cudaErrorMemoryAllocation;
            cudaGetLastError();
            nsci_fail(full ? NSC_ERR_OOM : NSC_ERR_DEVICE, "cuda: %s allocating %zu bytes (%s)",
                      full ? "out of device memory" : "cudaMalloc failed", bytes,
                      cudaGetErrorString(e));
            return nullptr;
        }
        g_alloc.mallocs++;
    }
    g_alloc.live[p] = b;
    g_alloc.live_bytes += (int64_t)b;
    poison_block(p, bytes, b);
    return p;
}

void nsci_cuda_free(void *ptr) {
    if (!ptr) {
        return;
    }
    std::lock_guard<std::mutex> guard(g_alloc.lock);
    auto it = g_alloc.live.find(ptr);
    if (it == g_alloc.live.end()) {
        return; // not ours: an invariant broken elsewhere; never free twice
    }
    size_t b = it->second;
    g_alloc.live.erase(it);
    g_alloc.live_bytes -= (int64_t)b;
    g_alloc.cache[b].push_back(ptr);
    g_alloc.cached_bytes += (int64_t)b;
    poison_block(ptr, 0, b);
}

static void count_transfer(size_t bytes) {
    std::lock_guard<std::mutex> guard(g_alloc.lock);
    g_alloc.transfers++;
    g_alloc.transfer_bytes += (int64_t)bytes;
}

nsc_status nsci_cuda_to_host(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) {
        return NSC_OK;
    }
    count_transfer(bytes);
    NSCI_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return NSC_OK;
}

nsc_status nsci_cuda_from_host(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) {
        return NSC_OK;
    }
    count_transfer(bytes);
    NSCI_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return NSC_OK;
}

nsc_status nsci_cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) {
        return NSC_OK;
    }
    NSCI_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
    return NSC_OK;
}

nsc_status nsci_cuda_read(void *dst, const void *src, size_t bytes) {
    NSCI_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return NSC_OK;
}

nsc_status nsci_cuda_sync(void) {
    NSCI_CUDA_TRY(cudaDeviceSynchronize());
    return NSC_OK;
}

void *nsci_cuda_mark(void) {
    cudaEvent_t e;
    if (cudaEventCreate(&e) != cudaSuccess) {
        cudaGetLastError(); // not sticky: clear it, the op runs untimed
        return NULL;
    }
    if (cudaEventRecord(e, 0) != cudaSuccess) {
        cudaEventDestroy(e);
        cudaGetLastError();
        return NULL;
    }
    return (void *)e;
}

nsc_status nsci_cuda_mark_elapsed(void *from, void *to, float *ms) {
    NSCI_CUDA_TRY(cudaEventSynchronize((cudaEvent_t)to));
    NSCI_CUDA_TRY(cudaEventElapsedTime(ms, (cudaEvent_t)from, (cudaEvent_t)to));
    return NSC_OK;
}

void nsci_cuda_mark_free(void *mark) {
    cudaEventDestroy((cudaEvent_t)mark);
}

nsc_status nsci_cuda_check_launch(const char *kernel) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        return nsci_cuda_error(kernel, cudaGetErrorString(e), __FILE__, __LINE__);
    }
    return NSC_OK;
}

void nsci_cuda_note_launch(void) {
    g_launches.fetch_add(1, std::memory_order_relaxed);
}

nsc_cuda_stats nsci_cuda_stats(void) {
    std::lock_guard<std::mutex> guard(g_alloc.lock);
    nsc_cuda_stats s;
    s.kernel_launches = g_launches.load(std::memory_order_relaxed);
    s.transfers = g_alloc.transfers;
    s.transfer_bytes = g_alloc.transfer_bytes;
    s.device_mallocs = g_alloc.mallocs;
    s.live_bytes = g_alloc.live_bytes;
    s.cached_bytes = g_alloc.cached_bytes;
    return s;
}

void nsci_cuda_release_cache(void) {
    std::lock_guard<std::mutex> guard(g_alloc.lock);
    cudaDeviceSynchronize(); // no kernel may still use a block we hand back
    release_cache_locked();
}

} // extern "C"
