// Tensors: dtypes, devices, creation, reference counting, accessors and the
// seeded random generator. Ops on tensors are in nsc/ops.h.
#ifndef NSC_TENSOR_H
#define NSC_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nsc/base.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- types ---

#define NSC_MAX_DIMS 8

typedef enum nsc_dtype {
    NSC_F32,
    NSC_F64,
    NSC_I64,
    NSC_BOOL,
    NSC_N_DTYPES,
} nsc_dtype;

// META tensors have a shape, dtype and strides but no data: every op on them
// runs only its shape rule. Proxies of the intervention graph are META tensors.
typedef enum nsc_device {
    NSC_CPU,
    NSC_META,
    NSC_CUDA,
    NSC_N_DEVICES,
} nsc_device;

// A strided view of a reference-counted storage. Opaque.
typedef struct nsc_tensor nsc_tensor;

// Seeded counter-based generator (Philox4x32-10). Opaque.
typedef struct nsc_generator nsc_generator;

// Two arguments, a count and an int64_t array: nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3)).
#define NSC_SHAPE(...)                                                                             \
    (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), (int64_t[]) {                     \
        __VA_ARGS__                                                                                \
    }

// Two arguments, a count and an int array of dims: nsc_sum(x, NSC_DIMS(0, 2), false).
#define NSC_DIMS(...)                                                                              \
    (int)(sizeof((int[]){ __VA_ARGS__ }) / sizeof(int)), (int[]) {                                 \
        __VA_ARGS__                                                                                \
    }

// Name of a dtype ("f32") or device ("cpu"). Static strings.
const char *nsc_dtype_name(nsc_dtype dtype);
const char *nsc_device_name(nsc_device device);

// Bytes per element of dtype (bool is one byte).
size_t nsc_dtype_size(nsc_dtype dtype);

// --- creation ---
// Each returns a new tensor (caller nsc_free()s) or NULL with nsc_last_error()
// set. shape is borrowed; ndim is 0..NSC_MAX_DIMS; sizes are >= 0. A value
// written into an i64 tensor must fit it (NaN, infinities and values outside
// [-2^63, 2^63) are NSC_ERR_ARG, as torch); it is truncated toward zero.

// Uninitialised contents (on META, no data at all).
nsc_tensor *nsc_empty(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape);
nsc_tensor *nsc_zeros(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape);
nsc_tensor *nsc_ones(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape);
nsc_tensor *nsc_full(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape,
                     double value);

// A CPU tensor holding a copy of data (row-major, numel * nsc_dtype_size bytes).
nsc_tensor *nsc_from_data(nsc_dtype dtype, int ndim, const int64_t *shape, const void *data);

// A 0-dim CPU tensor.
nsc_tensor *nsc_scalar(nsc_dtype dtype, double value);

// torch.arange(start, end, step): ceil((end - start) / step) values on the CPU.
// For i64, start, end and step must be integral (torch 1.13 and 2.x give
// different values for a fractional one) and fit int64: else NSC_ERR_ARG.
nsc_tensor *nsc_arange(double start, double end, double step, nsc_dtype dtype);

// torch.linspace(start, end, steps) on the CPU.
nsc_tensor *nsc_linspace(double start, double end, int64_t steps, nsc_dtype dtype);

// torch.eye(n, m): ones on the diagonal, on the CPU.
nsc_tensor *nsc_eye(int64_t n, int64_t m, nsc_dtype dtype);

// Same shape, dtype and device as like (contiguous); like is borrowed.
nsc_tensor *nsc_empty_like(nsc_tensor *like);
nsc_tensor *nsc_zeros_like(nsc_tensor *like);
nsc_tensor *nsc_ones_like(nsc_tensor *like);
nsc_tensor *nsc_full_like(nsc_tensor *like, double value);

// --- references ---

// Adds a reference and returns t (NULL passes through).
nsc_tensor *nsc_retain(nsc_tensor *t);

// Drops a reference; the last one frees the tensor. Accepts NULL.
void nsc_free(nsc_tensor *t);

// --- accessors (t borrowed) ---
// A NULL t (a failed call's result) gives -1 (sizes, counts, offset), NULL
// (arrays), false, NSC_N_DTYPES or NSC_N_DEVICES, and records NSC_ERR_ARG
// unless an earlier error is already recorded.

int nsc_tensor_ndim(const nsc_tensor *t);
// Size of dim (negative counts from the end); -1 with NSC_ERR_ARG recorded
// for a dim outside -ndim..ndim-1 (a 0-dim tensor has none).
int64_t nsc_tensor_size(const nsc_tensor *t, int dim);
// The shape array (ndim entries), borrowed from t.
const int64_t *nsc_tensor_shape(const nsc_tensor *t);
// Stride of dim in elements; -1 with NSC_ERR_ARG for a bad dim (as size).
int64_t nsc_tensor_stride(const nsc_tensor *t, int dim);
const int64_t *nsc_tensor_strides(const nsc_tensor *t);
int64_t nsc_tensor_offset(const nsc_tensor *t);
int64_t nsc_tensor_numel(const nsc_tensor *t);
nsc_dtype nsc_tensor_dtype(const nsc_tensor *t);
// The device the tensor lives on (NSC_META for proxies).
nsc_device nsc_tensor_device(const nsc_tensor *t);
// The device its value will have when computed (a proxy's run-time device).
nsc_device nsc_tensor_target_device(const nsc_tensor *t);
bool nsc_tensor_is_contiguous(const nsc_tensor *t);
// True when a and b view the same storage.
bool nsc_tensor_shares_storage(const nsc_tensor *a, const nsc_tensor *b);
// True for a proxy: a tensor standing for an intervention-graph node.
bool nsc_tensor_is_proxy(const nsc_tensor *t);

// Pointer to the first element of a CPU tensor (borrowed; follow its strides).
// NULL with an error on other devices.
void *nsc_tensor_data(nsc_tensor *t);

// Value of a one-element tensor of any dtype and device, as a double. Returns
// NAN with an error when t has more than one element or no data.
double nsc_tensor_item(nsc_tensor *t);

// Copies t's values, row-major and converted to dtype as nsc_to_dtype does
// (i64 to i64 exactly), into dst (capacity dst_bytes). Works on any layout
// and device with data.
nsc_status nsc_tensor_copy_to(nsc_tensor *t, nsc_dtype dtype, void *dst, size_t dst_bytes);

// Writes a readable rendering (shape, dtype, device, values; long dims
// abbreviated; floats with 4 decimals, i64 exactly) to f.
void nsc_tensor_print(nsc_tensor *t, FILE *f);

// True when a and b have the same shape and every pair is close as in
// torch.allclose: equal, or |a-b| <= atol + rtol*|b| with a finite |a-b| (so
// an infinity is close only to an equal one); NaNs equal when equal_nan;
// integers compare exactly. Sets an error describing the first mismatch.
bool nsc_allclose(nsc_tensor *a, nsc_tensor *b, double rtol, double atol, bool equal_nan);

// --- random ---

// A generator seeded with seed; the first raw words are identical on every
// machine. Caller frees with nsc_generator_free.
nsc_generator *nsc_generator_new(uint64_t seed);
void nsc_generator_free(nsc_generator *gen);
// Next raw 32-bit word (gen NULL: the calling thread's default generator).
uint32_t nsc_generator_next_u32(nsc_generator *gen);
// The calling thread's default generator (seed 0 until nsc_manual_seed). Borrowed.
nsc_generator *nsc_generator_default(void);
// Reseeds the calling thread's default generator.
void nsc_manual_seed(uint64_t seed);

// Uniform [0, 1), standard normal, and integers in [low, high) (i64) on the
// CPU; gen NULL uses the default generator.
nsc_tensor *nsc_rand(nsc_generator *gen, nsc_dtype dtype, int ndim, const int64_t *shape);
nsc_tensor *nsc_randn(nsc_generator *gen, nsc_dtype dtype, int ndim, const int64_t *shape);
nsc_tensor *nsc_randint(nsc_generator *gen, int64_t low, int64_t high, int ndim,
                        const int64_t *shape);

#ifdef __cplusplus
}
#endif

#endif
