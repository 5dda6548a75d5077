// The one allocator: every nsc allocation passes here so tests can count live
// blocks and fail the n-th allocation, and tensor data can be recycled.
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "util_impl.h"

// Each block carries a 64-byte header (keeps the payload 64-byte aligned for
// SIMD loads) recording its payload size, its bucket and whether it is data.
enum { HEADER_BYTES = 64, HEADER_MAGIC = 0x6e736321 };

typedef struct block_header {
    size_t bytes;        // payload bytes asked for
    size_t bucket_bytes; // payload bytes actually held (>= bytes)
    uint32_t magic;
    uint32_t is_data;
    struct block_header *next_free; // link while cached
} block_header;

static atomic_llong g_live_blocks, g_live_bytes, g_peak_bytes;
static atomic_llong g_data_bytes, g_peak_data_bytes, g_n_allocs;
static atomic_llong g_fail_after, g_fail_countdown, g_failed_count;

// --- fail switch ---

void nsc_mem_fail_after(int64_t n) {
    atomic_store(&g_failed_count, 0);
    atomic_store(&g_fail_countdown, n);
    atomic_store(&g_fail_after, n);
}

int64_t nsc_mem_failed_count(void) {
    return atomic_load(&g_failed_count);
}

bool nsci_mem_should_fail(void) {
    if (atomic_load_explicit(&g_fail_after, memory_order_relaxed) <= 0) {
        return false;
    }
    if (atomic_fetch_sub(&g_fail_countdown, 1) <= 1) {
        atomic_fetch_add(&g_failed_count, 1);
        return true;
    }
    return false;
}

// --- counters ---

static void raise_peak(atomic_llong *peak, long long now) {
    long long old = atomic_load_explicit(peak, memory_order_relaxed);
    while (now > old && !atomic_compare_exchange_weak(peak, &old, now)) {
    }
}

static void count_alloc(size_t bytes, bool is_data) {
    atomic_fetch_add_explicit(&g_live_blocks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_n_allocs, 1, memory_order_relaxed);
    raise_peak(&g_peak_bytes, atomic_fetch_add(&g_live_bytes, (long long)bytes) + (long long)bytes);
    if (is_data) {
        long long now = atomic_fetch_add(&g_data_bytes, (long long)bytes) + (long long)bytes;
        raise_peak(&g_peak_data_bytes, now);
    }
}

static void count_free(size_t bytes, bool is_data) {
    atomic_fetch_sub_explicit(&g_live_blocks, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&g_live_bytes, (long long)bytes, memory_order_relaxed);
    if (is_data) {
        atomic_fetch_sub_explicit(&g_data_bytes, (long long)bytes, memory_order_relaxed);
    }
}

nsc_mem_stats nsc_mem_stats_get(void) {
    nsc_mem_stats s;
    s.live_blocks = atomic_load(&g_live_blocks);
    s.live_bytes = atomic_load(&g_live_bytes);
    s.peak_bytes = atomic_load(&g_peak_bytes);
    s.data_bytes = atomic_load(&g_data_bytes);
    s.peak_data_bytes = atomic_load(&g_peak_data_bytes);
    s.n_allocs = atomic_load(&g_n_allocs);
    return s;
}

void nsc_mem_reset_peak(void) {
    atomic_store(&g_peak_bytes, atomic_load(&g_live_bytes));
    atomic_store(&g_peak_data_bytes, atomic_load(&g_data_bytes));
}

// --- raw blocks ---

static block_header *raw_alloc(size_t payload) {
    if (payload > SIZE_MAX - 2 * HEADER_BYTES) {
        return NULL;
    }
    size_t total = (payload + HEADER_BYTES + 63) & ~(size_t)63;
    return aligned_alloc(64, total);
}

static void *publish(block_header *h, size_t bytes, size_t bucket_bytes, bool is_data) {
    h->bytes = bytes;
    h->bucket_bytes = bucket_bytes;
    h->magic = HEADER_MAGIC;
    h->is_data = is_data;
    h->next_free = NULL;
    count_alloc(bytes, is_data);
    return (char *)h + HEADER_BYTES;
}

static block_header *header_of(void *ptr) {
    block_header *h = (block_header *)((char *)ptr - HEADER_BYTES);
    NSCI_ASSERT(h->magic == HEADER_MAGIC);
    return h;
}

static void *oom(size_t bytes) {
    nsci_fail(NSC_ERR_OOM, "out of memory: allocating %zu bytes failed", bytes);
    return NULL;
}

void *nsci_malloc(size_t bytes) {
    if (nsci_mem_should_fail()) {
        return oom(bytes);
    }
    block_header *h = raw_alloc(bytes);
    if (!h) {
        return oom(bytes);
    }
    return publish(h, bytes, bytes, false);
}

void *nsci_calloc(size_t count, size_t size) {
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes)) {
        return oom(SIZE_MAX);
    }
    void *p = nsci_malloc(bytes);
    if (p) {
        memset(p, 0, bytes);
    }
    return p;
}

void *nsci_realloc(void *ptr, size_t bytes) {
    if (!ptr) {
        return nsci_malloc(bytes);
    }
    block_header *old = header_of(ptr);
    if (bytes <= old->bucket_bytes && !old->is_data) {
        long long delta = (long long)bytes - (long long)old->bytes;
        raise_peak(&g_peak_bytes, atomic_fetch_add(&g_live_bytes, delta) + delta);
        old->bytes = bytes;
        return ptr;
    }
    void *fresh = nsci_malloc(bytes);
    if (!fresh) {
        return NULL;
    }
    memcpy(fresh, ptr, NSCI_MIN(bytes, old->bytes));
    nsci_free(ptr);
    return fresh;
}

char *nsci_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = nsci_malloc(n);
    if (copy) {
        memcpy(copy, s, n);
    }
    return copy;
}

// --- data cache ---
// Storages are recycled by size bucket: four buckets per power of two above
// 4 KiB, so reuse wastes at most a quarter. A cached block is free (it counts
// in no live counter); only a storage whose last reference is gone arrives
// here, so nothing still referenced is ever handed out again.

enum { N_BUCKETS = 4 * 48, CACHE_MIN_BYTES = 4096 };
static const size_t CACHE_LIMIT_BYTES = (size_t)2 << 30;

static pthread_mutex_t g_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static block_header *g_cache[N_BUCKETS];
static size_t g_cache_bytes;
static int g_cache_enabled = -1;

static bool cache_enabled(void) {
    if (g_cache_enabled < 0) {
        const char *env = getenv("NSC_NO_CACHE");
        g_cache_enabled = !(env && env[0] && env[0] != '0');
    }
    return g_cache_enabled;
}

// Bucket index and the payload size every block of that bucket holds.
static int bucket_of(size_t bytes, size_t *bucket_bytes) {
    int exp = 63 - __builtin_clzll((unsigned long long)bytes);
    size_t base = (size_t)1 << exp;
    size_t quarter = base / 4;
    size_t steps = (bytes - base + quarter - 1) / quarter;
    size_t rounded = base + steps * quarter;
    if (rounded == 2 * base) {
        exp += 1;
        steps = 0;
        rounded = 2 * base;
    }
    *bucket_bytes = rounded;
    int index = (exp - 12) * 4 + (int)steps;
    return index < N_BUCKETS ? index : -1;
}

void *nsci_data_alloc(size_t bytes) {
    if (nsci_mem_should_fail()) {
        return oom(bytes);
    }
    size_t bucket_bytes = bytes;
    int bucket = -1;
    if (bytes >= CACHE_MIN_BYTES && cache_enabled()) {
        bucket = bucket_of(bytes, &bucket_bytes);
    }
    if (bucket >= 0) {
        pthread_mutex_lock(&g_cache_lock);
        block_header *h = g_cache[bucket];
        if (h) {
            g_cache[bucket] = h->next_free;
            g_cache_bytes -= h->bucket_bytes;
        }
        pthread_mutex_unlock(&g_cache_lock);
        if (h) {
            return publish(h, bytes, h->bucket_bytes, true);
        }
    } else {
        bucket_bytes = bytes;
    }
    block_header *h = raw_alloc(bucket_bytes);
    if (!h) {
        return oom(bytes);
    }
    return publish(h, bytes, bucket_bytes, true);
}

void nsci_data_free(void *ptr) {
    if (!ptr) {
        return;
    }
    block_header *h = header_of(ptr);
    count_free(h->bytes, true);
    size_t bucket_bytes = 0;
    int bucket = -1;
    if (h->bucket_bytes >= CACHE_MIN_BYTES && cache_enabled()) {
        bucket = bucket_of(h->bucket_bytes, &bucket_bytes);
    }
    if (bucket >= 0 && bucket_bytes == h->bucket_bytes) {
        pthread_mutex_lock(&g_cache_lock);
        if (g_cache_bytes + h->bucket_bytes <= CACHE_LIMIT_BYTES) {
            h->next_free = g_cache[bucket];
            g_cache[bucket] = h;
            g_cache_bytes += h->bucket_bytes;
            h = NULL;
        }
        pthread_mutex_unlock(&g_cache_lock);
    }
    if (h) {
        h->magic = 0;
        free(h);
    }
}

void nsc_mem_trim(void) {
    pthread_mutex_lock(&g_cache_lock);
    for (int i = 0; i < N_BUCKETS; i++) {
        while (g_cache[i]) {
            block_header *h = g_cache[i];
            g_cache[i] = h->next_free;
            h->magic = 0;
            free(h);
        }
    }
    g_cache_bytes = 0;
    pthread_mutex_unlock(&g_cache_lock);
}

void nsci_free(void *ptr) {
    if (!ptr) {
        return;
    }
    block_header *h = header_of(ptr);
    if (h->is_data) {
        nsci_data_free(ptr);
        return;
    }
    count_free(h->bytes, false);
    h->magic = 0;
    free(h);
}
