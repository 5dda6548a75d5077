// What cuda/*.c (the op glue, compiled by cc) and cuda/*.cu (kernels and
// launchers, compiled by nvcc as C++) share: plain-C descriptions of strided
// operands, the __host__ __device__ index helpers (CPU-tested in
// tests/test_cuda.c), the launchers' signatures and NSCI_CUDA_TRY. The .cu
// files never see tensor_impl.h (C11 atomics do not compile as C++): the
// glue turns an nsci_call into these descriptions. docs/CUDA.md.
#ifndef NSC_CUDA_CUDA_IMPL_H
#define NSC_CUDA_CUDA_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsc/base.h"
#include "nsc/cuda.h"
#include "nsc/tensor.h"

#ifdef __CUDACC__
#include <cublas_v2.h>
#include <cuda_runtime.h>
#define NSCI_HD           __host__ __device__
#define NSCI_UNPAREN(...) __VA_ARGS__
// Launches spelled so that make CUDA=emu can run them on the CPU
// (cuda/emu/cuda_emu.h): kernel<<<grid, block, smem>>>(args...) is
// NSCI_LAUNCH((kernel), grid, block, smem, args...); the parentheses keep a
// template's commas (attention_kernel<T, 1>) in one macro argument.
#define NSCI_LAUNCH(kernel, grid, block, smem, ...)                                                \
    do {                                                                                           \
        nsci_cuda_note_launch();                                                                   \
        NSCI_UNPAREN kernel<<<grid, block, smem>>>(__VA_ARGS__);                                   \
    } while (0)
#define NSCI_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#elif defined(NSCI_CUDA_EMU) && defined(__cplusplus)
#include "cuda/emu/cuda_emu.h"
#define NSCI_HD
#else
#define NSCI_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

// --- strided index helpers (host and device) ---

// Offset in elements of row-major position i of shape, under stride.
static inline NSCI_HD int64_t nsci_cuda_unravel(int ndim, const int64_t *shape,
                                                const int64_t *stride, int64_t i) {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t q = i / shape[d];
        off += (i - q * shape[d]) * stride[d];
        i = q;
    }
    return off;
}

// The same with 32-bit division (GPU integer division by 64 bits is slow);
// valid when every size and i are below 2^31.
static inline NSCI_HD int64_t nsci_cuda_unravel32(int ndim, const int64_t *shape,
                                                  const int64_t *stride, uint32_t i) {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        uint32_t size = (uint32_t)shape[d];
        uint32_t q = i / size;
        off += (int64_t)(i - q * size) * stride[d];
        i = q;
    }
    return off;
}

enum { NSCI_CUDA_MAX_OPERANDS = 5 }; // AdamW with amsgrad: param, grad and three states

// An elementwise launch: operand 0 is the output, the others are read and
// broadcast to its shape (stride 0). Each operand has its own dtype; the
// kernel converts on load to the compute dtype.
typedef struct nsci_cuda_ew {
    int ndim;
    int n_operands;
    int64_t numel;
    int64_t shape[NSC_MAX_DIMS];
    char *data[NSCI_CUDA_MAX_OPERANDS]; // element 0 of each operand (device)
    int dtype[NSCI_CUDA_MAX_OPERANDS];  // nsc_dtype
    int64_t stride[NSCI_CUDA_MAX_OPERANDS][NSC_MAX_DIMS]; // elements
} nsci_cuda_ew;

// Drops size-1 dims and merges neighbours that every operand walks at one
// stride, so contiguous operands become one flat run (as tensor/iter.c).
static inline NSCI_HD void nsci_cuda_ew_coalesce(nsci_cuda_ew *e) {
    int nd = 0;
    for (int d = 0; d < e->ndim; d++) {
        if (e->shape[d] == 1) {
            continue;
        }
        bool merge = nd > 0;
        for (int k = 0; merge && k < e->n_operands; k++) {
            merge = e->stride[k][nd - 1] == e->stride[k][d] * e->shape[d];
        }
        if (merge) {
            e->shape[nd - 1] *= e->shape[d];
            for (int k = 0; k < e->n_operands; k++) {
                e->stride[k][nd - 1] = e->stride[k][d];
            }
            continue;
        }
        e->shape[nd] = e->shape[d];
        for (int k = 0; k < e->n_operands; k++) {
            e->stride[k][nd] = e->stride[k][d];
        }
        nd++;
    }
    e->ndim = nd;
}

// True when every operand is one unit-stride run (offset = position).
static inline NSCI_HD bool nsci_cuda_ew_flat(const nsci_cuda_ew *e) {
    for (int k = 0; k < e->n_operands; k++) {
        if (e->ndim > 1 || (e->ndim == 1 && e->stride[k][0] != 1)) {
            return false;
        }
    }
    return true;
}

// True when 32-bit index math is exact for e.
static inline NSCI_HD bool nsci_cuda_ew_small(const nsci_cuda_ew *e) {
    return e->numel < ((int64_t)1 << 31);
}

// Offset in elements of operand k at row-major position i.
static inline NSCI_HD int64_t nsci_cuda_ew_offset(const nsci_cuda_ew *e, int k, int64_t i) {
    return nsci_cuda_unravel(e->ndim, e->shape, e->stride[k], i);
}

// --- errors ---

// Records "<call>: <what> (<file>:<line>)" as NSC_ERR_DEVICE and returns it.
nsc_status nsci_cuda_error(const char *call, const char *what, const char *file, int line);

// --- runtime (cuda/runtime.cu) ---

// Device count (0 on any error); why (may be NULL) receives the runtime's
// reason when there is none (a driver older than the runtime, no device...).
int nsci_cuda_count_devices(const char **why);
// Selects device 0 and creates cuBLAS.
nsc_status nsci_cuda_runtime_init(void);
// The caching allocator (size buckets; cudaMalloc only on a miss): NULL
// with NSC_ERR_OOM when the device is full even after emptying the cache.
void *nsci_cuda_alloc(size_t bytes);
void nsci_cuda_free(void *ptr);
// Counted host<->device tensor copies, and a device->device copy.
nsc_status nsci_cuda_to_host(void *dst, const void *src, size_t bytes);
nsc_status nsci_cuda_from_host(void *dst, const void *src, size_t bytes);
nsc_status nsci_cuda_copy(void *dst, const void *src, size_t bytes);
// An uncounted small read (index-check results, flags).
nsc_status nsci_cuda_read(void *dst, const void *src, size_t bytes);
nsc_status nsci_cuda_sync(void);
// Op timing marks (nsc_profile): an event recorded on the stream now (NULL
// when one cannot be made: that op goes untimed), the milliseconds between
// two once the later is reached, and its release.
void *nsci_cuda_mark(void);
nsc_status nsci_cuda_mark_elapsed(void *from, void *to, float *ms);
void nsci_cuda_mark_free(void *mark);
nsc_cuda_stats nsci_cuda_stats(void);
void nsci_cuda_note_launch(void); // NSCI_LAUNCH counts its launches here
void nsci_cuda_release_cache(void);
// Checks the last launch (cudaGetLastError) under the kernel's name.
nsc_status nsci_cuda_check_launch(const char *kernel);

// --- elementwise (cuda/op_pointwise.cu) ---

typedef enum nsci_cuda_ew_fn {
    NSCI_EW_COPY, // out = in0 (converted)
    NSCI_EW_FILL, // out = scalar
    NSCI_EW_ADD, NSCI_EW_SUB, NSCI_EW_MUL, NSCI_EW_DIV, NSCI_EW_POW,
    NSCI_EW_MAXIMUM, NSCI_EW_MINIMUM,
    NSCI_EW_ADD_S, NSCI_EW_SUB_S, NSCI_EW_MUL_S, NSCI_EW_DIV_S, NSCI_EW_POW_S,
    NSCI_EW_NEG, NSCI_EW_ABS, NSCI_EW_EXP, NSCI_EW_LOG, NSCI_EW_SQRT, NSCI_EW_RSQRT,
    NSCI_EW_SIN, NSCI_EW_COS, NSCI_EW_TANH, NSCI_EW_SIGMOID, NSCI_EW_RELU,
    NSCI_EW_GELU_ERF, NSCI_EW_GELU_TANH, NSCI_EW_CLAMP,
    NSCI_EW_TANH_GRAD, NSCI_EW_SIGMOID_GRAD, NSCI_EW_RELU_GRAD,
    NSCI_EW_GELU_ERF_GRAD, NSCI_EW_GELU_TANH_GRAD,
    NSCI_EW_EQ, NSCI_EW_NE, NSCI_EW_LT, NSCI_EW_LE, NSCI_EW_GT, NSCI_EW_GE,
    NSCI_EW_EQ_S, NSCI_EW_NE_S, NSCI_EW_LT_S, NSCI_EW_LE_S, NSCI_EW_GT_S, NSCI_EW_GE_S,
    NSCI_EW_AND, NSCI_EW_OR, NSCI_EW_NOT,
    NSCI_EW_WHERE,       // out = in0 ? in1 : in2
    NSCI_EW_MASKED_FILL, // out = in1 ? scalar : in0
    NSCI_EW_SQUARE_DIFF, // out = (in0 - in1)^2
    NSCI_EW_N_FNS
} nsci_cuda_ew_fn;

// Runs fn over e (coalesced by the caller or not) computing in dtype
// `compute`; scalars a, b: the op's scalar (clamp: min, max). Empty e: no-op.
nsc_status nsci_cuda_ew_run(nsci_cuda_ew_fn fn, nsc_dtype compute, const nsci_cuda_ew *e,
                            double a, double b);

// dropout: mask[i] = Philox word of i >= threshold (as tensor/op_loss_pointwise.c),
// out = x * (mask ? scale : 0). e: operands (out, x) over the contiguous
// output; mask: n contiguous bytes.
nsc_status nsci_cuda_dropout(const nsci_cuda_ew *e, uint8_t *mask, uint64_t seed,
                             uint64_t threshold, double scale, bool keep_all);

// tril (lower) / triu: out (contiguous [..., R, C]) = x (strided, x_stride)
// where j - i <= diagonal (lower) or >= diagonal, else 0.
nsc_status nsci_cuda_tri(const nsci_cuda_ew *e, int64_t rows, int64_t cols, int64_t diagonal,
                         bool lower);

// --- reductions (cuda/op_reduce.cu) ---

typedef enum nsci_cuda_red_kind {
    NSCI_RED_SUM, NSCI_RED_MEAN, NSCI_RED_MAX, NSCI_RED_MIN, NSCI_RED_VAR, NSCI_RED_STD,
    NSCI_RED_LSE, NSCI_RED_ALL, NSCI_RED_ANY,
    NSCI_RED_NORM, // sum of norm_term(x, ord), then norm_finish
    NSCI_RED_AMAX, NSCI_RED_AMIN // max / min |x| (norm's ord +inf / -inf)
} nsci_cuda_red_kind;

// x reduced over its reduced dims (row-major positions) into n_out outputs
// (row-major over the kept dims, contiguous). MAX/MIN write values into out
// (if not NULL) and i64 positions of the first best (NaN first) into index.
typedef struct nsci_cuda_red {
    const char *x;
    int x_dtype;
    int n_kept, n_red;
    int64_t kept_shape[NSC_MAX_DIMS], kept_stride[NSC_MAX_DIMS];
    int64_t red_shape[NSC_MAX_DIMS], red_stride[NSC_MAX_DIMS];
    int64_t n_out, n_red_elems;
    char *out;
    int out_dtype;
    int64_t *index;
    int kind;          // nsci_cuda_red_kind
    double correction; // var, std: 1 when unbiased
    double ord;        // norm kinds: torch.linalg.vector_norm's ord
} nsci_cuda_red;

nsc_status nsci_cuda_reduce(const nsci_cuda_red *r);

// softmax family over [outer, k, inner] (contiguous x, y, out of one float dtype).
typedef enum nsci_cuda_softmax_kind {
    NSCI_SOFTMAX, NSCI_LOG_SOFTMAX, NSCI_SOFTMAX_GRAD, NSCI_LOG_SOFTMAX_GRAD
} nsci_cuda_softmax_kind;
nsc_status nsci_cuda_softmax(int kind, nsc_dtype dtype, const void *a, const void *b, void *out,
                             int64_t outer, int64_t k, int64_t inner);

// layer_norm over rows of n (contiguous); w, b may be NULL.
nsc_status nsci_cuda_layer_norm(nsc_dtype dtype, const void *x, const void *w, const void *b,
                                void *y, void *mean, void *rstd, int64_t rows, int64_t n,
                                double eps);
// Its gradient: dx; dw and db summed over rows (w may be NULL: ones).
nsc_status nsci_cuda_layer_norm_grad(nsc_dtype dtype, const void *dy, const void *x,
                                     const void *mean, const void *rstd, const void *w, void *dx,
                                     void *dw, void *db, int64_t rows, int64_t n);

// Class losses over rows [n, classes] (contiguous scores, i64 target).
// rows_out: per-row losses in double (n of them; ignored rows 0).
nsc_status nsci_cuda_class_loss(bool cross_entropy, nsc_dtype dtype, const void *scores,
                                const int64_t *target, int64_t n, int64_t classes,
                                int64_t ignore_index, double *rows_out);
// out (0-dim, dtype) = sum of rows[0..n) * scale; or with none: out[i] = rows[i].
nsc_status nsci_cuda_rows_store(const double *rows, int64_t n, double scale, bool none,
                                nsc_dtype dtype, void *out);
// grad_logits = g_i * (softmax - onehot); grad: the loss gradient (n values
// when per_row, else 1), divided by divisor; 0 on ignored rows.
nsc_status nsci_cuda_cross_entropy_grad(nsc_dtype dtype, const void *grad, nsc_dtype grad_dtype,
                                        bool per_row, double divisor, const void *logits,
                                        const int64_t *target, int64_t n, int64_t classes,
                                        int64_t ignore_index, void *out);

// --- indexing (cuda/op_index.cu) ---

// First position in idx[0..n) (contiguous i64) outside [0, size) that is
// not `ignore` (when has_ignore), or -1, with its value; kept: the others.
nsc_status nsci_cuda_index_check(const int64_t *idx, int64_t n, int64_t size, bool has_ignore,
                                 int64_t ignore, int64_t *bad_pos, int64_t *bad_value,
                                 int64_t *kept);

// out[o, j, i] = x[o, idx[j], i] (contiguous x [outer, size, inner], out
// [outer, n_idx, inner]; elem bytes per element).
nsc_status nsci_cuda_take(const void *x, const int64_t *idx, void *out, int64_t outer,
                          int64_t size, int64_t inner, int64_t n_idx, size_t elem);
// out[o, idx[j], i] += src[o, j, i] (contiguous; atomics).
nsc_status nsci_cuda_index_add(nsc_dtype dtype, void *out, const int64_t *idx, const void *src,
                               int64_t outer, int64_t size, int64_t inner, int64_t n_idx);

// gather / scatter_add over the index's shape (ndim, shape, contiguous idx):
// e.data/stride: 0 out (gather) or src (scatter), 1 x (gather) or out (scatter).
// gather: out[p] = x[p with coordinate dim = idx[p]];
// scatter: out[p with coordinate dim = idx[p]] += src[p].
nsc_status nsci_cuda_gather(bool scatter, nsc_dtype dtype, const nsci_cuda_ew *e,
                            const int64_t *idx, int dim);

// topk along lines of [outer, n, inner] (contiguous x; values, indices [outer, k, inner]).
nsc_status nsci_cuda_topk(nsc_dtype dtype, const void *x, void *values, int64_t *indices,
                          int64_t outer, int64_t n, int64_t inner, int64_t k, bool largest);
// Coordinates of the nonzero elements of e (operand 0: x, strided) into out [count, ndim].
nsc_status nsci_cuda_nonzero(const nsci_cuda_ew *e, int ndim, const int64_t *shape,
                             int64_t *out);
// out[i, j] = (ids[i] == j) for n ids (contiguous), classes columns.
nsc_status nsci_cuda_one_hot(const int64_t *ids, int64_t n, int64_t classes, int64_t *out);

// --- matrix products (cuda/op_matmul.cu) ---

// C = A·B (+ beta C) per batch; strides in elements; batch dims lead.
typedef struct nsci_cuda_gemm {
    nsc_dtype dtype;
    int64_t m, n, k;
    const char *a, *b;
    char *c;
    int64_t a_rs, a_cs, b_rs, b_cs, c_rs;
    double beta;
    int n_batch_dims;
    int64_t n_batch;
    int64_t batch_shape[NSC_MAX_DIMS];
    int64_t a_bstride[NSC_MAX_DIMS], b_bstride[NSC_MAX_DIMS], c_bstride[NSC_MAX_DIMS];
} nsci_cuda_gemm;

// cuBLAS (strided batched) for f32/f64 operands with a unit-stride dim,
// a plain kernel otherwise (i64, odd strides).
nsc_status nsci_cuda_gemm_run(const nsci_cuda_gemm *g);

// --- attention (cuda/op_attention.cu) ---

typedef struct nsci_cuda_attention {
    nsc_dtype dtype;
    const char *q, *k, *v;
    char *out;
    const uint8_t *keep; // [B, S] contiguous, 1 = attend; NULL: all
    int64_t b, h, t, s, d, dv;
    int64_t q_stride[4], k_stride[4], v_stride[4], out_stride[4]; // out: [B, T, H, Dv]
    double scale;
    bool causal;
} nsci_cuda_attention;

nsc_status nsci_cuda_attention_run(const nsci_cuda_attention *a);

// Optimizer updates: cuda/op_optim.h.

// --- the op glue (cuda/*.c only: C11, sees tensor_impl.h) ---

#ifndef __cplusplus
#include "tensor/tensor_impl.h"

// Operands (out, in...) over out's shape, inputs broadcast, dims coalesced.
void nsci_cuda_ew_make(nsci_cuda_ew *e, nsc_tensor *out, int n_in, nsc_tensor *const *in);
// A contiguous CUDA tensor without dispatch (no tape, no proxy): empty.
nsc_tensor *nsci_cuda_empty(nsc_dtype dtype, int ndim, const int64_t *shape);
// t itself (retained) when contiguous in dtype, else a contiguous copy.
nsc_tensor *nsci_cuda_contig(nsc_tensor *t, nsc_dtype dtype);
// dst = src broadcast and converted (CUDA tensors; dst may be strided).
nsc_status nsci_cuda_copy_into(nsc_tensor *dst, nsc_tensor *src);
// The kernels of each family into table (indexed by nsc_op); no GPU needed.
void nsci_cuda_fill_pointwise(nsci_kernel_fn *table);
void nsci_cuda_fill_reduce(nsci_kernel_fn *table);
void nsci_cuda_fill_index(nsci_kernel_fn *table);
void nsci_cuda_fill_products(nsci_kernel_fn *table);
void nsci_cuda_fill_optim(nsci_kernel_fn *table);
void nsci_cuda_fill_clip(nsci_kernel_fn *table);
// Every CUDA kernel into table: what nsc_cuda_init installs (tests read it
// without a GPU to check that every op with a CPU kernel has one).
void nsci_cuda_fill_kernels(nsci_kernel_fn *table);
#endif

#ifdef __cplusplus
}
#endif

#if defined(__CUDACC__) || (defined(NSCI_CUDA_EMU) && defined(__cplusplus))
// util/util_impl.h's recorder (that header is C only).
extern "C" nsc_status nsci_fail(nsc_status status, const char *fmt, ...);
// The handle made by nsci_cuda_runtime_init (cuda/runtime.cu).
cublasHandle_t nsci_cuda_blas(void);
static inline const char *nsci_cuda_what(cudaError_t e) {
    return cudaGetErrorString(e);
}
static inline const char *nsci_cuda_what(cublasStatus_t s) {
    return cublasGetStatusString(s);
}
static inline bool nsci_cuda_ok(cudaError_t e) {
    return e == cudaSuccess;
}
static inline bool nsci_cuda_ok(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS;
}
// Runs a CUDA runtime or cuBLAS call; on failure records the call, its
// error string, file and line and returns NSC_ERR_DEVICE from the caller.
#define NSCI_CUDA_TRY(expr)                                                                        \
    do {                                                                                           \
        auto nsci_try_ = (expr);                                                                   \
        if (!nsci_cuda_ok(nsci_try_)) {                                                            \
            return nsci_cuda_error(#expr, nsci_cuda_what(nsci_try_), __FILE__, __LINE__);          \
        }                                                                                          \
    } while (0)
#endif

#endif
