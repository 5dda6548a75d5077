// Our own GEMM: what `make BLAS=none` runs, and what the OpenBLAS build runs
// for i64 and for sizes OpenBLAS's int arguments cannot hold. BLIS-style
// blocking: C is computed in NC-wide column blocks and KC-deep slices; each
// slice of B is packed once into NR-wide panels that all threads share, each
// MC-row block of A into MR-tall panels per task, and an MR x NR register
// tile accumulates kc products per kernel call. Packing reads any strides
// (transposed, stepped, stride 0), so no operand is ever copied first.
// Letters: A [M, K], B [K, N], C [M, N]; MR x NR the register tile.
#include <stdatomic.h>
#include <string.h>

#include "tensor/gemm_impl.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NSCI_GEMM_X86 1
#endif

// kc is at most KC: a B micro-panel (KC x NR) stays in L1, an A block
// (MC x KC) in L2, a B block (KC x NC) in L3.
enum {
    KC = 256,
    MR = 6,
    NR_F32 = 16,
    NR_F64 = 8
};

// Products with at most this many multiply-adds run on one thread: a fork
// costs more than they do (OpenBLAS uses the same threshold).
static const int64_t SMALL_MNK = 64 * 64 * 64;

typedef void (*kernel_fn)(int64_t kc, const void *a, const void *b, char *c, int64_t ldc, int rows,
                          int cols, bool acc);
// Packs a rows x cols strided matrix into ceil(rows / panel) panels, each
// stored column by column (panel values per column), zero-padded.
typedef void (*pack_fn)(char *dst, const char *src, int64_t rs, int64_t cs, int64_t rows,
                        int64_t cols, int panel);

typedef struct kind {
    int mr, nr;
    int64_t mc, nc;
    size_t elem;
    pack_fn pack;
    kernel_fn kernel;
} kind;

// --- packing and the portable tile kernels (any C compiler) ---

#define DEFINE_PACK(NAME, T)                                                                       \
    static void NAME(char *dst_bytes, const char *src_bytes, int64_t rs, int64_t cs, int64_t rows, \
                     int64_t cols, int panel) {                                                    \
        T *dst = (T *)dst_bytes;                                                                   \
        const T *src = (const T *)src_bytes;                                                       \
        for (int64_t r0 = 0; r0 < rows; r0 += panel, dst += cols * panel) {                        \
            int64_t h = NSCI_MIN(rows - r0, (int64_t)panel);                                       \
            const T *s = src + r0 * rs;                                                            \
            for (int64_t p = 0; p < cols; p++) {                                                   \
                T *d = dst + p * panel;                                                            \
                const T *col = s + p * cs;                                                         \
                for (int64_t i = 0; i < h; i++) {                                                  \
                    d[i] = col[i * rs];                                                            \
                }                                                                                  \
                for (int64_t i = h; i < panel; i++) {                                              \
                    d[i] = 0;                                                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

// Writes the valid rows x cols corner of a row-major tile (NR columns) to C.
#define DEFINE_WRITE_TILE(NAME, T, NR)                                                             \
    static void NAME(const T *tile, char *c_bytes, int64_t ldc, int rows, int cols, bool acc) {    \
        for (int i = 0; i < rows; i++) {                                                           \
            T *c = (T *)c_bytes + i * ldc;                                                         \
            for (int j = 0; j < cols; j++) {                                                       \
                c[j] = acc ? c[j] + tile[i * NR + j] : tile[i * NR + j];                           \
            }                                                                                      \
        }                                                                                          \
    }

// Plain C: the compiler vectorizes the j loop; used where AVX2 is missing.
#define DEFINE_GENERIC_KERNEL(NAME, T, NR, WRITE)                                                  \
    static void NAME(int64_t kc, const void *pa, const void *pb, char *c, int64_t ldc, int rows,   \
                     int cols, bool acc) {                                                         \
        const T *a = pa, *b = pb;                                                                  \
        T tile[MR * NR] = { 0 };                                                                   \
        for (int64_t p = 0; p < kc; p++, a += MR, b += NR) {                                       \
            for (int i = 0; i < MR; i++) {                                                         \
                for (int j = 0; j < NR; j++) {                                                     \
                    tile[i * NR + j] += a[i] * b[j];                                               \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        WRITE(tile, c, ldc, rows, cols, acc);                                                      \
    }

DEFINE_PACK(pack_f32, float)
DEFINE_PACK(pack_f64, double)
DEFINE_WRITE_TILE(write_tile_f32, float, NR_F32)
DEFINE_WRITE_TILE(write_tile_f64, double, NR_F64)
DEFINE_GENERIC_KERNEL(kernel_f32_generic, float, NR_F32, write_tile_f32)
DEFINE_GENERIC_KERNEL(kernel_f64_generic, double, NR_F64, write_tile_f64)

// --- AVX2 + FMA tile kernels (x86-64, chosen at run time) ---
// 6 x 16 floats (6 x 8 doubles): 12 accumulator registers, 2 for the B row,
// 1 for the broadcast A value. One FMA rounding per product, as OpenBLAS.
#ifdef NSCI_GEMM_X86

#define X86_ROW(i, SET1, FMA)                                                                      \
    {                                                                                              \
        ai = SET1(a + (i));                                                                        \
        c##i##0 = FMA(ai, b0, c##i##0);                                                            \
        c##i##1 = FMA(ai, b1, c##i##1);                                                            \
    }
#define X86_STORE(i, LOADU, STOREU, ADD, W)                                                        \
    {                                                                                              \
        T_ *ci = (T_ *)c + (i)*ldc;                                                                \
        if (acc) {                                                                                 \
            c##i##0 = ADD(LOADU(ci), c##i##0);                                                     \
            c##i##1 = ADD(LOADU(ci + (W)), c##i##1);                                               \
        }                                                                                          \
        STOREU(ci, c##i##0);                                                                       \
        STOREU(ci + (W), c##i##1);                                                                 \
    }
#define X86_SPILL(i, STORE, W)                                                                     \
    {                                                                                              \
        STORE(tile + (i)*2 * (W), c##i##0);                                                        \
        STORE(tile + (i)*2 * (W) + (W), c##i##1);                                                  \
    }

// One kernel body for both precisions; V is the vector type, W its width.
#define DEFINE_X86_KERNEL(NAME, T, V, W, ZERO, SET1, LOAD, LOADU, STORE, STOREU, ADD, FMA, WRITE)  \
    __attribute__((target("avx2,fma"))) static void NAME(int64_t kc, const void *pa,               \
                                                         const void *pb, char *c, int64_t ldc,     \
                                                         int rows, int cols, bool acc) {           \
        typedef T T_;                                                                              \
        const T *a = pa, *b = pb;                                                                  \
        V c00 = ZERO(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;                     \
        V c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;                        \
        for (int64_t p = 0; p < kc; p++, a += MR, b += 2 * (W)) {                                  \
            V b0 = LOAD(b), b1 = LOAD(b + (W)), ai;                                                \
            X86_ROW(0, SET1, FMA)                                                                  \
            X86_ROW(1, SET1, FMA)                                                                  \
            X86_ROW(2, SET1, FMA)                                                                  \
            X86_ROW(3, SET1, FMA)                                                                  \
            X86_ROW(4, SET1, FMA)                                                                  \
            X86_ROW(5, SET1, FMA)                                                                  \
        }                                                                                          \
        if (rows == MR && cols == 2 * (W)) {                                                       \
            X86_STORE(0, LOADU, STOREU, ADD, W)                                                    \
            X86_STORE(1, LOADU, STOREU, ADD, W)                                                    \
            X86_STORE(2, LOADU, STOREU, ADD, W)                                                    \
            X86_STORE(3, LOADU, STOREU, ADD, W)                                                    \
            X86_STORE(4, LOADU, STOREU, ADD, W)                                                    \
            X86_STORE(5, LOADU, STOREU, ADD, W)                                                    \
            return;                                                                                \
        }                                                                                          \
        T tile[MR * 2 * (W)] __attribute__((aligned(32)));                                         \
        X86_SPILL(0, STORE, W)                                                                     \
        X86_SPILL(1, STORE, W)                                                                     \
        X86_SPILL(2, STORE, W)                                                                     \
        X86_SPILL(3, STORE, W)                                                                     \
        X86_SPILL(4, STORE, W)                                                                     \
        X86_SPILL(5, STORE, W)                                                                     \
        WRITE(tile, c, ldc, rows, cols, acc);                                                      \
    }

DEFINE_X86_KERNEL(kernel_f32_avx2, float, __m256, 8, _mm256_setzero_ps, _mm256_broadcast_ss,
                  _mm256_load_ps, _mm256_loadu_ps, _mm256_store_ps, _mm256_storeu_ps, _mm256_add_ps,
                  _mm256_fmadd_ps, write_tile_f32)
DEFINE_X86_KERNEL(kernel_f64_avx2, double, __m256d, 4, _mm256_setzero_pd, _mm256_broadcast_sd,
                  _mm256_load_pd, _mm256_loadu_pd, _mm256_store_pd, _mm256_storeu_pd, _mm256_add_pd,
                  _mm256_fmadd_pd, write_tile_f64)

static bool has_avx2_fma(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

// Blocking per dtype. MC is a multiple of MR, NC of NR.
static const kind *kind_of(nsc_dtype dtype) {
    static const kind f32 = { MR, NR_F32, 144, 4080, sizeof(float), pack_f32, kernel_f32_generic };
    static const kind f64 = { MR, NR_F64, 72, 4080, sizeof(double), pack_f64, kernel_f64_generic };
#ifdef NSCI_GEMM_X86
    static const kind f32_avx2 = {
        MR, NR_F32, 144, 4080, sizeof(float), pack_f32, kernel_f32_avx2
    };
    static const kind f64_avx2 = {
        MR, NR_F64, 72, 4080, sizeof(double), pack_f64, kernel_f64_avx2
    };
    if (has_avx2_fma()) {
        return dtype == NSC_F64 ? &f64_avx2 : &f32_avx2;
    }
#endif
    return dtype == NSC_F64 ? &f64 : &f32;
}

// --- one product, blocked ---

// The state of one product while it runs; tasks read it, the caller moves it
// from block to block.
typedef struct block {
    const kind *kd;
    const nsci_gemm *g;
    const char *a, *b; // this product's operands
    char *c;
    char *bpack;  // the packed KC x NC slice of B, shared by all tasks
    char *apacks; // one packed MC x KC block of A per slot
    size_t apack_bytes;
    int64_t jc, nc, pc, kc; // the current block of C's columns and slice of K
    bool acc;               // add to C (a later K slice, or a pre-filled C)
    int64_t n_chunks, chunk_cols, n_tasks;
    atomic_llong next; // next task to take
} block;

static void pack_b_range(void *ctx, int64_t begin, int64_t end) {
    block *x = ctx;
    const kind *kd = x->kd;
    const nsci_gemm *g = x->g;
    int64_t e = (int64_t)kd->elem;
    for (int64_t panel = begin; panel < end; panel++) {
        int64_t j = panel * kd->nr;
        const char *src = x->b + (x->pc * g->b_rs + (x->jc + j) * g->b_cs) * e;
        // B's columns are the packed rows: pack Bᵀ.
        kd->pack(x->bpack + j * x->kc * e, src, g->b_cs, g->b_rs, NSCI_MIN(kd->nr, x->nc - j),
                 x->kc, kd->nr);
    }
}

// Task t: one MC-row block of A times one chunk of the packed B panels.
static void run_task(const block *x, int64_t t, char *apack) {
    const kind *kd = x->kd;
    const nsci_gemm *g = x->g;
    int64_t e = (int64_t)kd->elem;
    int64_t i0 = (t / x->n_chunks) * kd->mc, mc = NSCI_MIN(kd->mc, g->m - i0);
    int64_t j0 = (t % x->n_chunks) * x->chunk_cols, j1 = NSCI_MIN(x->nc, j0 + x->chunk_cols);
    kd->pack(apack, x->a + (i0 * g->a_rs + x->pc * g->a_cs) * e, g->a_rs, g->a_cs, mc, x->kc,
             kd->mr);
    for (int64_t jr = j0; jr < j1; jr += kd->nr) {
        const char *bp = x->bpack + jr * x->kc * e;
        int cols = (int)NSCI_MIN(kd->nr, j1 - jr);
        for (int64_t ir = 0; ir < mc; ir += kd->mr) {
            char *c = x->c + ((i0 + ir) * g->c_rs + x->jc + jr) * e;
            kd->kernel(x->kc, apack + ir * x->kc * e, bp, c, g->c_rs,
                       (int)NSCI_MIN(kd->mr, mc - ir), cols, x->acc);
        }
    }
}

// Each index is a workspace slot: whoever holds it takes tasks until none
// are left, so a slot is never used by two threads at once.
static void task_range(void *ctx, int64_t begin, int64_t end) {
    block *x = ctx;
    for (int64_t slot = begin; slot < end; slot++) {
        char *apack = x->apacks + (size_t)slot * x->apack_bytes;
        for (int64_t t; (t = atomic_fetch_add(&x->next, 1)) < x->n_tasks;) {
            run_task(x, t, apack);
        }
    }
}

// Splits the columns into chunks when there are too few row blocks to keep
// n_slots threads busy (few tokens); each chunk keeps >= 4 panels, so the
// A block a task repacks costs under 2% of its multiply-adds.
static void plan_tasks(block *x, int n_slots) {
    const kind *kd = x->kd;
    int64_t n_ic = (x->g->m + kd->mc - 1) / kd->mc;
    int64_t n_panels = (x->nc + kd->nr - 1) / kd->nr;
    int64_t n_chunks = 1;
    if (n_slots > 1) {
        int64_t want = (4 * (int64_t)n_slots + n_ic - 1) / n_ic;
        n_chunks = NSCI_MAX(1, NSCI_MIN(want, n_panels / 4));
    }
    int64_t per_chunk = (n_panels + n_chunks - 1) / n_chunks;
    x->chunk_cols = per_chunk * kd->nr;
    x->n_chunks = (n_panels + per_chunk - 1) / per_chunk;
    x->n_tasks = n_ic * x->n_chunks;
}

// C = A·B (+ C) for x->a, x->b, x->c, on n_slots threads.
static void run_product(block *x, int n_slots) {
    const kind *kd = x->kd;
    const nsci_gemm *g = x->g;
    for (x->jc = 0; x->jc < g->n; x->jc += kd->nc) {
        x->nc = NSCI_MIN(kd->nc, g->n - x->jc);
        int64_t n_panels = (x->nc + kd->nr - 1) / kd->nr;
        for (x->pc = 0; x->pc < g->k; x->pc += KC) {
            x->kc = NSCI_MIN((int64_t)KC, g->k - x->pc);
            x->acc = g->accumulate || x->pc > 0;
            plan_tasks(x, n_slots);
            atomic_store(&x->next, 0);
            if (n_slots > 1) {
                nsci_parallel_for(n_panels, 8, pack_b_range, x);
                nsci_parallel_for(n_slots, 1, task_range, x);
            } else {
                pack_b_range(x, 0, n_panels);
                task_range(x, 0, 1);
            }
        }
    }
}

// --- batches ---

void nsci_gemm_batch_ptrs(const nsci_gemm *g, int64_t idx, const char **a, const char **b,
                          char **c) {
    int64_t ao = 0, bo = 0, co = 0;
    for (int d = g->n_batch_dims - 1; d >= 0; d--) {
        int64_t i = idx % g->batch_shape[d];
        idx /= g->batch_shape[d];
        ao += i * g->a_bstride[d];
        bo += i * g->b_bstride[d];
        co += i * g->c_bstride[d];
    }
    int64_t e = (int64_t)nsc_dtype_size(g->dtype);
    *a = g->a + ao * e;
    *b = g->b + bo * e;
    *c = g->c + co * e;
}

// Many small products: one thread per product, each with its own slot (an
// A block and a B slice).
typedef struct batch_job {
    const kind *kd;
    const nsci_gemm *g;
    char *ws;
    size_t slot_bytes, apack_bytes;
    atomic_llong next;
} batch_job;

static void batch_range(void *ctx, int64_t begin, int64_t end) {
    batch_job *job = ctx;
    for (int64_t slot = begin; slot < end; slot++) {
        char *base = job->ws + (size_t)slot * job->slot_bytes;
        block x = { .kd = job->kd, .g = job->g, .apacks = base, .apack_bytes = job->apack_bytes };
        x.bpack = base + job->apack_bytes;
        for (int64_t t; (t = atomic_fetch_add(&job->next, 1)) < job->g->n_batch;) {
            nsci_gemm_batch_ptrs(job->g, t, &x.a, &x.b, &x.c);
            run_product(&x, 1);
        }
    }
}

// --- i64 and K = 0 ---

static void zero_rows(const nsci_gemm *g, char *c) {
    size_t e = nsc_dtype_size(g->dtype);
    for (int64_t i = 0; i < g->m; i++) {
        memset(c + (size_t)(i * g->c_rs) * e, 0, (size_t)g->n * e);
    }
}

// i64 wraps on overflow, as PyTorch's does: unsigned arithmetic avoids C's UB.
static void gemm_i64(const nsci_gemm *g, const char *pa, const char *pb, char *pc) {
    const int64_t *a = (const int64_t *)pa, *b = (const int64_t *)pb;
    for (int64_t i = 0; i < g->m; i++) {
        uint64_t *c = (uint64_t *)pc + i * g->c_rs;
        for (int64_t p = 0; p < g->k; p++) {
            uint64_t av = (uint64_t)a[i * g->a_rs + p * g->a_cs];
            const int64_t *row = b + p * g->b_rs;
            for (int64_t j = 0; j < g->n; j++) {
                c[j] += av * (uint64_t)row[j * g->b_cs];
            }
        }
    }
}

static void run_simple(const nsci_gemm *g) {
    for (int64_t t = 0; t < g->n_batch; t++) {
        const char *a, *b;
        char *c;
        nsci_gemm_batch_ptrs(g, t, &a, &b, &c);
        if (!g->accumulate) {
            zero_rows(g, c);
        }
        if (g->dtype == NSC_I64) {
            gemm_i64(g, a, b, c);
        }
    }
}

// --- entry ---

static size_t round_up(size_t bytes) {
    return (bytes + 63) & ~(size_t)63; // keeps every panel 64-byte aligned
}

nsc_status nsci_gemm_portable(const nsci_gemm *g) {
    if (g->n_batch == 0 || g->m == 0 || g->n == 0) {
        return NSC_OK;
    }
    if (g->k == 0 || g->dtype == NSC_I64) {
        run_simple(g);
        return NSC_OK;
    }
    const kind *kd = kind_of(g->dtype);
    int threads = nsci_pool_threads();
    bool small = (double)g->m * (double)g->n * (double)g->k <= (double)SMALL_MNK;
    bool per_batch = g->n_batch > 1 && threads > 1 && (small || g->n_batch >= 4 * threads);
    int n_slots = per_batch ? (int)NSCI_MIN((int64_t)threads, g->n_batch) : (small ? 1 : threads);
    int64_t kc = NSCI_MIN((int64_t)KC, g->k);
    int64_t mc = NSCI_MIN(kd->mc, (g->m + kd->mr - 1) / kd->mr * kd->mr);
    int64_t nc = NSCI_MIN(kd->nc, (g->n + kd->nr - 1) / kd->nr * kd->nr);
    size_t apack_bytes = round_up((size_t)(mc * kc) * kd->elem);
    size_t bpack_bytes = round_up((size_t)(kc * nc) * kd->elem);
    size_t n_b = per_batch ? (size_t)n_slots : 1;
    char *ws = nsci_malloc((size_t)n_slots * apack_bytes + n_b * bpack_bytes);
    if (!ws) {
        return nsc_last_status();
    }
    if (per_batch) {
        batch_job job = { .kd = kd, .g = g, .ws = ws, .apack_bytes = apack_bytes };
        job.slot_bytes = apack_bytes + bpack_bytes;
        atomic_store(&job.next, 0);
        nsci_parallel_for(n_slots, 1, batch_range, &job);
    } else {
        block x = { .kd = kd, .g = g, .bpack = ws, .apacks = ws + bpack_bytes };
        x.apack_bytes = apack_bytes;
        for (int64_t t = 0; t < g->n_batch; t++) {
            nsci_gemm_batch_ptrs(g, t, &x.a, &x.b, &x.c);
            run_product(&x, n_slots);
        }
    }
    nsci_free(ws);
    return NSC_OK;
}
