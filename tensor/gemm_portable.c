// Our own GEMM: what `make BLAS=none` runs, and what the OpenBLAS build runs
// for i64 and for sizes OpenBLAS's int arguments cannot hold. BLIS-style
// blocking: C is computed in NC-wide column blocks and KC-deep slices; each
// slice of B is packed into NR-wide panels, each MC-row block of A into
// MR-tall panels, and an MR x NR register tile accumulates kc products per
// kernel call. Threads each take whole tiles of C (a stripe of one product,
// or whole small products). Packing reads any strides (transposed, stepped,
// stride 0), so no operand is ever copied first.
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

// Rows contiguous (cs == 1): each row is read once, front to back, and
// scattered into the panel, which stays in L1; otherwise each column's
// values are gathered and written contiguously.
#define DEFINE_PACK(NAME, T)                                                                       \
    static void NAME(char *dst_bytes, const char *src_bytes, int64_t rs, int64_t cs, int64_t rows, \
                     int64_t cols, int panel) {                                                    \
        T *dst = (T *)dst_bytes;                                                                   \
        const T *src = (const T *)src_bytes;                                                       \
        for (int64_t r0 = 0; r0 < rows; r0 += panel, dst += cols * panel) {                        \
            int64_t h = NSCI_MIN(rows - r0, (int64_t)panel);                                       \
            const T *s = src + r0 * rs;                                                            \
            for (int64_t i = 0; cs == 1 && rs != 1 && i < panel; i++) {                            \
                for (int64_t p = 0; p < cols; p++) {                                               \
                    dst[p * panel + i] = i < h ? s[i * rs + p] : 0;                                \
                }                                                                                  \
            }                                                                                      \
            for (int64_t p = 0; !(cs == 1 && rs != 1) && p < cols; p++) {                          \
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
        for (int i = 0; i < rows; i++) { /* C rows are far apart: fetch them during the loop */    \
            _mm_prefetch(c + i * ldc * (int64_t)sizeof(T), _MM_HINT_T0);                           \
            _mm_prefetch(c + (i * ldc + 2 * (W)-1) * (int64_t)sizeof(T), _MM_HINT_T0);             \
        }                                                                                          \
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

// The first n lanes of v to d (n <= W). Masked stores are slow on AMD
// cores, so partial panels (MR = 6) go through a spill instead.
__attribute__((target("avx2"))) static inline void store_f32(float *d, __m256 v, int64_t n) {
    if (n >= 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    for (int64_t i = 0; i < n; i++) {
        d[i] = tmp[i];
    }
}
__attribute__((target("avx2"))) static inline void store_f64(double *d, __m256d v, int64_t n) {
    if (n >= 4) {
        _mm256_storeu_pd(d, v);
        return;
    }
    double tmp[4];
    _mm256_storeu_pd(tmp, v);
    for (int64_t i = 0; i < n; i++) {
        d[i] = tmp[i];
    }
}

// Transposes the block of up to W rows (h of them; the others read as 0)
// and W columns at s into W rows of n values at d, ds apart.
__attribute__((target("avx2"))) static inline void block_f32(float *d, int64_t ds, const float *s,
                                                             int64_t rs, int64_t h, int64_t n) {
    __m256 z = _mm256_setzero_ps();
    __m256 r0 = _mm256_loadu_ps(s), r1 = h > 1 ? _mm256_loadu_ps(s + rs) : z;
    __m256 r2 = h > 2 ? _mm256_loadu_ps(s + 2 * rs) : z,
           r3 = h > 3 ? _mm256_loadu_ps(s + 3 * rs) : z;
    __m256 r4 = h > 4 ? _mm256_loadu_ps(s + 4 * rs) : z,
           r5 = h > 5 ? _mm256_loadu_ps(s + 5 * rs) : z;
    __m256 r6 = h > 6 ? _mm256_loadu_ps(s + 6 * rs) : z,
           r7 = h > 7 ? _mm256_loadu_ps(s + 7 * rs) : z;
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    store_f32(d, _mm256_permute2f128_ps(u0, u4, 0x20), n);
    store_f32(d + ds, _mm256_permute2f128_ps(u1, u5, 0x20), n);
    store_f32(d + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20), n);
    store_f32(d + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20), n);
    store_f32(d + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31), n);
    store_f32(d + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31), n);
    store_f32(d + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31), n);
    store_f32(d + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31), n);
}
__attribute__((target("avx2"))) static inline void block_f64(double *d, int64_t ds, const double *s,
                                                             int64_t rs, int64_t h, int64_t n) {
    __m256d z = _mm256_setzero_pd();
    __m256d r0 = _mm256_loadu_pd(s), r1 = h > 1 ? _mm256_loadu_pd(s + rs) : z;
    __m256d r2 = h > 2 ? _mm256_loadu_pd(s + 2 * rs) : z;
    __m256d r3 = h > 3 ? _mm256_loadu_pd(s + 3 * rs) : z;
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    store_f64(d, _mm256_permute2f128_pd(t0, t2, 0x20), n);
    store_f64(d + ds, _mm256_permute2f128_pd(t1, t3, 0x20), n);
    store_f64(d + 2 * ds, _mm256_permute2f128_pd(t0, t2, 0x31), n);
    store_f64(d + 3 * ds, _mm256_permute2f128_pd(t1, t3, 0x31), n);
}

// Packing with whole vectors where the source allows: rows contiguous (x,
// or a weight read transposed) through W x W register transposes, full
// panels of contiguous columns through plain copies; the rest goes to the
// scalar pack.
#define DEFINE_X86_PACK(NAME, T, W, SCALAR, STORE, LOADU, ZERO, BLOCK)                             \
    __attribute__((target("avx2"))) static void NAME(char *dst_bytes, const char *src_bytes,       \
                                                     int64_t rs, int64_t cs, int64_t rows,         \
                                                     int64_t cols, int panel) {                    \
        bool by_columns = rs == 1 && panel % (W) == 0 && rows % panel == 0;                        \
        if (!(cs == 1 && rs != 1) && !by_columns) {                                                \
            SCALAR(dst_bytes, src_bytes, rs, cs, rows, cols, panel);                               \
            return;                                                                                \
        }                                                                                          \
        T *dst = (T *)dst_bytes;                                                                   \
        for (int64_t r0 = 0; r0 < rows; r0 += panel, dst += cols * panel) {                        \
            int64_t h = NSCI_MIN(rows - r0, (int64_t)panel), p = 0;                                \
            const T *s = (const T *)src_bytes + r0 * rs;                                           \
            for (; by_columns && p < cols; p++) {                                                  \
                for (int i0 = 0; i0 < panel; i0 += (W)) {                                          \
                    STORE(dst + p * panel + i0, LOADU(s + p * cs + i0), W);                        \
                }                                                                                  \
            }                                                                                      \
            for (; p + (W) <= cols; p += (W)) {                                                    \
                for (int i0 = 0; i0 < panel; i0 += (W)) {                                          \
                    T *d = dst + p * panel + i0;                                                   \
                    if (i0 < h) {                                                                  \
                        BLOCK(d, panel, s + i0 * rs + p, rs, h - i0, panel - i0);                  \
                        continue;                                                                  \
                    }                                                                              \
                    for (int q = 0; q < (W); q++) {                                                \
                        STORE(d + q * panel, ZERO(), panel - i0);                                  \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            for (; p < cols; p++) {                                                                \
                for (int64_t i = 0; i < panel; i++) {                                              \
                    dst[p * panel + i] = i < h ? s[i * rs + p] : 0;                                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_X86_PACK(pack_f32_avx2, float, 8, pack_f32, store_f32, _mm256_loadu_ps, _mm256_setzero_ps,
                block_f32)
DEFINE_X86_PACK(pack_f64_avx2, double, 4, pack_f64, store_f64, _mm256_loadu_pd, _mm256_setzero_pd,
                block_f64)

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
        MR, NR_F32, 144, 4080, sizeof(float), pack_f32_avx2, kernel_f32_avx2
    };
    static const kind f64_avx2 = {
        MR, NR_F64, 72, 4080, sizeof(double), pack_f64_avx2, kernel_f64_avx2
    };
    if (has_avx2_fma()) {
        return dtype == NSC_F64 ? &f64_avx2 : &f32_avx2;
    }
#endif
    return dtype == NSC_F64 ? &f64 : &f32;
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

// --- tiles: the unit of work of one thread ---

// A task is one tile of C (rows [i0, i1), columns [j0, j1)) of one product,
// computed start to finish by one thread with its own packed panels: one
// fork-join per call, however many K slices, and a thread that the system
// deschedules delays nobody (the others take the remaining tasks).
typedef struct tile_job {
    const kind *kd;
    const nsci_gemm *g;
    char *ws;
    size_t slot_bytes, apack_bytes;
    int64_t tiles_m, tiles_n, tile_rows, tile_cols, n_tasks;
    atomic_llong next;
} tile_job;

typedef struct tile {
    const char *a, *b;
    char *c;
    int64_t i0, i1, j0, j1;
} tile;

// Blocked loops over one tile: for each NC block of columns and KC slice of
// K, pack the B slice (NR-wide panels, L3), then each MC block of A (MR-tall
// panels, L2), then run the register tiles.
static void run_tile(const kind *kd, const nsci_gemm *g, const tile *t, char *apack, char *bpack) {
    int64_t e = (int64_t)kd->elem;
    for (int64_t jc = t->j0; jc < t->j1; jc += kd->nc) {
        int64_t nc = NSCI_MIN(kd->nc, t->j1 - jc);
        for (int64_t pc = 0; pc < g->k; pc += KC) {
            int64_t kc = NSCI_MIN((int64_t)KC, g->k - pc);
            bool acc = g->accumulate || pc > 0;
            // B's columns are the packed rows: pack Bᵀ.
            kd->pack(bpack, t->b + (pc * g->b_rs + jc * g->b_cs) * e, g->b_cs, g->b_rs, nc, kc,
                     kd->nr);
            for (int64_t ic = t->i0; ic < t->i1; ic += kd->mc) {
                int64_t mc = NSCI_MIN(kd->mc, t->i1 - ic);
                kd->pack(apack, t->a + (ic * g->a_rs + pc * g->a_cs) * e, g->a_rs, g->a_cs, mc, kc,
                         kd->mr);
                for (int64_t jr = 0; jr < nc; jr += kd->nr) {
                    for (int64_t ir = 0; ir < mc; ir += kd->mr) {
                        char *c = t->c + ((ic + ir) * g->c_rs + jc + jr) * e;
                        kd->kernel(kc, apack + ir * kc * e, bpack + jr * kc * e, c, g->c_rs,
                                   (int)NSCI_MIN(kd->mr, mc - ir), (int)NSCI_MIN(kd->nr, nc - jr),
                                   acc);
                    }
                }
            }
        }
    }
}

// Each index is a workspace slot: whoever holds it takes tasks until none
// are left, so a slot is never used by two threads at once.
static void tile_range(void *ctx, int64_t begin, int64_t end) {
    tile_job *job = ctx;
    const nsci_gemm *g = job->g;
    int64_t per_product = job->tiles_m * job->tiles_n;
    for (int64_t slot = begin; slot < end; slot++) {
        char *apack = job->ws + (size_t)slot * job->slot_bytes;
        for (int64_t task; (task = atomic_fetch_add(&job->next, 1)) < job->n_tasks;) {
            tile t;
            int64_t index = task % per_product;
            nsci_gemm_batch_ptrs(g, task / per_product, &t.a, &t.b, &t.c);
            t.i0 = index / job->tiles_n * job->tile_rows;
            t.i1 = NSCI_MIN(g->m, t.i0 + job->tile_rows);
            t.j0 = index % job->tiles_n * job->tile_cols;
            t.j1 = NSCI_MIN(g->n, t.j0 + job->tile_cols);
            run_tile(job->kd, g, &t, apack, apack + job->apack_bytes);
        }
    }
}

// Splits each product into `parts` stripes along its longer side, in whole
// register tiles: the other operand is packed once per stripe, which costs
// about parts / (its length) of the multiply-adds.
static void plan_tiles(tile_job *job, int64_t parts) {
    const kind *kd = job->kd;
    const nsci_gemm *g = job->g;
    job->tiles_m = job->tiles_n = 1;
    job->tile_rows = g->m;
    job->tile_cols = g->n;
    if (parts > 1 && g->n >= g->m) {
        int64_t panels = (g->n + kd->nr - 1) / kd->nr;
        job->tile_cols = (panels + parts - 1) / parts * kd->nr;
        job->tiles_n = (g->n + job->tile_cols - 1) / job->tile_cols;
    } else if (parts > 1) {
        int64_t panels = (g->m + kd->mr - 1) / kd->mr;
        job->tile_rows = (panels + parts - 1) / parts * kd->mr;
        job->tiles_m = (g->m + job->tile_rows - 1) / job->tile_rows;
    }
    job->n_tasks = g->n_batch * job->tiles_m * job->tiles_n;
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
    tile_job job = { .kd = kind_of(g->dtype), .g = g };
    const kind *kd = job.kd;
    int threads = nsci_pool_threads();
    // One tile per product when products are small or outnumber the threads.
    bool small = (double)g->m * (double)g->n * (double)g->k <= (double)SMALL_MNK;
    bool whole = threads == 1 || small || g->n_batch >= 4 * (int64_t)threads;
    plan_tiles(&job, whole ? 1 : threads);
    int n_slots = (int)NSCI_MIN((int64_t)threads, job.n_tasks);
    int64_t kc = NSCI_MIN((int64_t)KC, g->k);
    int64_t mc = NSCI_MIN(kd->mc, (job.tile_rows + kd->mr - 1) / kd->mr * kd->mr);
    int64_t nc = NSCI_MIN(kd->nc, (job.tile_cols + kd->nr - 1) / kd->nr * kd->nr);
    job.apack_bytes = round_up((size_t)(mc * kc) * kd->elem);
    job.slot_bytes = job.apack_bytes + round_up((size_t)(kc * nc) * kd->elem);
    job.ws = nsci_malloc((size_t)n_slots * job.slot_bytes);
    if (!job.ws) {
        return nsc_last_status();
    }
    atomic_store(&job.next, 0);
    nsci_parallel_for(n_slots, 1, tile_range, &job);
    nsci_free(job.ws);
    return NSC_OK;
}
