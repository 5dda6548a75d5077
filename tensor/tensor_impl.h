// Internal view of tensors: the struct, storage, per-device memory and kernel
// tables, the op table and its one dispatch function, and the hook slots that
// autograd/ and graph/ fill. Only tensor/ and the layers above include this.
#ifndef NSC_TENSOR_TENSOR_IMPL_H
#define NSC_TENSOR_TENSOR_IMPL_H

#include <stdatomic.h>

#include "nsc/ops.h"
#include "nsc/tensor.h"
#include "tensor/convert.h"
#include "util/util_impl.h"

// --- storage and tensors ---

typedef struct nsci_storage {
    atomic_int refcount;
    nsc_device device;
    void *data;
    size_t bytes;
    // Bumped by every in-place kernel; autograd compares it with the value
    // recorded when a tensor was saved (PyTorch's version counter).
    atomic_llong version;
    // External memory (an mmap'd checkpoint): released through this instead
    // of the device allocator.
    void (*release)(void *ctx);
    void *release_ctx;
} nsci_storage;

struct nsci_autograd; // defined in autograd/
struct nsci_proxy;    // defined in graph/

struct nsc_tensor {
    atomic_int refcount;
    uint8_t dtype;         // nsc_dtype
    uint8_t device;        // nsc_device
    uint8_t target_device; // device of the value at run time (== device unless META)
    uint8_t requires_grad; // mirror of autograd->requires_grad for a fast check
    uint8_t pinned;        // owned by an intervention graph: nsc_free leaves it alone
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
    int64_t stride[NSC_MAX_DIMS]; // elements
    int64_t offset;               // elements into storage
    nsci_storage *storage;        // NULL on META
    nsc_tensor *base;             // for views: the root tensor viewed (retained)
    struct nsci_autograd *autograd;
    struct nsci_proxy *proxy;
};

// Frees a pinned tensor (the graph's own release of its proxies).
void nsci_free_pinned(nsc_tensor *t);

// A tensor header without data: shape, contiguous strides, no storage.
nsc_tensor *nsci_tensor_header(nsc_dtype dtype, nsc_device device, int ndim,
                               const int64_t *shape);
// Allocates storage for a header made by nsci_tensor_header (contiguous).
nsc_status nsci_tensor_alloc_data(nsc_tensor *t);
// A new header viewing t's storage with the given geometry (base set, storage retained).
nsc_tensor *nsci_tensor_view(nsc_tensor *t, int ndim, const int64_t *shape,
                             const int64_t *stride, int64_t offset);
// Wraps external memory (kept alive by release(ctx) when the last view goes).
nsc_tensor *nsci_tensor_wrap(nsc_dtype dtype, nsc_device device, int ndim, const int64_t *shape,
                             void *data, size_t bytes, void (*release)(void *), void *ctx);

int64_t nsci_numel(int ndim, const int64_t *shape);
void nsci_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
bool nsci_is_contiguous(const nsc_tensor *t);
// Address of the element at offset t->offset (CPU/CUDA); NULL on META.
static inline char *nsci_data_ptr(const nsc_tensor *t) {
    return t->storage ? (char *)t->storage->data + t->offset * (int64_t)nsc_dtype_size(t->dtype)
                      : NULL;
}
// Normalizes a dim against ndim (negative counts from the end); -1 if out of range.
int nsci_wrap_dim(int dim, int ndim);
// Checks shape sizes are >= 0 and their product fits int64 (message names op).
nsc_status nsci_check_shape(const char *op, int ndim, const int64_t *shape);

// --- devices ---

typedef struct nsci_device_ops {
    void *(*alloc)(size_t bytes); // NULL + error on failure
    void (*free)(void *ptr);
    nsc_status (*to_host)(void *dst, const void *src, size_t bytes);
    nsc_status (*from_host)(void *dst, const void *src, size_t bytes);
    nsc_status (*copy)(void *dst, const void *src, size_t bytes); // same device
    void *(*mark)(void); // op timing (tensor/profile.c) of asynchronous devices; NULL on the CPU
    nsc_status (*mark_elapsed)(void *from, void *to, float *ms);
    void (*mark_free)(void *mark);
} nsci_device_ops;

// Per-device memory functions: CPU filled at compile time, CUDA by nsc_cuda_init().
extern nsci_device_ops nsci_device_table[NSC_N_DEVICES];

// --- the op table ---

typedef enum nsc_op {
#define NSC_OP(name) NSC_OP_##name,
#include "tensor/ops.def"
#undef NSC_OP
    NSC_OP_COUNT
} nsc_op;

enum { NSCI_MAX_OUTPUTS = 4 };

// Shape, dtype and (for views) geometry of one output, as an op's infer rule decides.
typedef struct nsci_meta {
    nsc_dtype dtype;
    nsc_device device; // target device (to_device changes it)
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
    int64_t stride[NSC_MAX_DIMS]; // views only
    int64_t offset;               // views only: element offset into the input's storage
    bool is_view;                 // output aliases input 0's storage
} nsci_meta;

typedef struct nsci_op_def nsci_op_def;

// One op call as it moves through dispatch.
typedef struct nsci_call {
    nsc_op op;
    const nsci_op_def *def;
    int n_in;
    nsc_tensor *const *in; // borrowed
    const void *params;    // the op's POD params struct (no pointers), or NULL
    int n_out;
    nsci_meta meta[NSCI_MAX_OUTPUTS];
    nsc_tensor *out[NSCI_MAX_OUTPUTS]; // references owned by the call until published
    nsc_device device;                 // where the kernel runs (NSC_META: shape only)
    nsc_device target;                 // the inputs' common run-time device
} nsci_call;

// What a backward rule sees of its forward call.
typedef struct nsci_grad_ctx {
    const nsci_op_def *def;
    const void *params;
    int n_in;
    const nsci_meta *in_meta; // inputs' shapes and dtypes at forward time
    nsc_tensor *const *in;    // saved inputs (NULL where the op saves none)
    int n_out;
    const nsci_meta *out_meta;
    nsc_tensor *const *out;  // saved outputs (NULL where not saved)
    const bool *needs_grad;  // per input
} nsci_grad_ctx;

typedef nsc_status (*nsci_infer_fn)(nsci_call *c);
typedef nsc_status (*nsci_kernel_fn)(nsci_call *c);
// grad_out[i] is the gradient of output i (zeros when nothing flowed into a
// float output, NULL for non-float outputs). Writes a new reference into
// grad_in[j] for every j with needs_grad[j] (NULL = zero gradient); the
// engine reduces broadcast gradients to the input's shape.
typedef nsc_status (*nsci_backward_fn)(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                       nsc_tensor **grad_in);

// Op flags.
enum {
    NSCI_OP_VIEW = 1u << 0,         // output 0 may alias input 0 (meta.is_view decides)
    NSCI_OP_INPLACE = 1u << 1,      // writes into input 0 and returns it
    NSCI_OP_BROADCAST = 1u << 2,    // inputs broadcast against each other
    NSCI_OP_CROSS_DEVICE = 1u << 3, // to_device: kernel chosen by source or target device
    NSCI_OP_RANDOM = 1u << 4,       // draws from a generator
};

// Layout flags of test-case rows; the registry test requires a row for each
// flag that applies to an op unless the op states why it does not apply.
typedef enum nsci_case_flag {
    NSCI_CASE_BROADCAST,  // inputs of different shapes broadcast
    NSCI_CASE_TRANSPOSED, // an input is a transposed (non-contiguous) view
    NSCI_CASE_STEPPED,    // an input is a slice with step > 1
    NSCI_CASE_EXPANDED,   // an input has a stride-0 dim from expand
    NSCI_CASE_RANK0,      // a 0-dim input
    NSCI_CASE_EMPTY,      // a size-0 dim
    NSCI_N_CASE_FLAGS
} nsci_case_flag;

// Describes one field of a params struct, for printing and serialization.
typedef enum nsci_param_type {
    NSCI_PARAM_END,
    NSCI_PARAM_I64,
    NSCI_PARAM_INT,
    NSCI_PARAM_F64,
    NSCI_PARAM_BOOL,
    NSCI_PARAM_DTYPE,
    NSCI_PARAM_DEVICE,
    NSCI_PARAM_I64_ARRAY, // int64_t[NSC_MAX_DIMS]; its count is the int at count_offset
    NSCI_PARAM_INT_ARRAY, // int[NSC_MAX_DIMS]; its count is the int at count_offset
} nsci_param_type;

typedef struct nsci_param_desc {
    const char *name;
    nsci_param_type type;
    size_t offset;
    size_t count_offset; // arrays only
} nsci_param_desc;

struct nsci_op_def {
    const char *name; // PyTorch's name
    int arity;        // tensor inputs; -1: one or more (cat, stack)
    int n_outputs;
    size_t params_size;
    const nsci_param_desc *params; // terminated by NSCI_PARAM_END; NULL if none
    nsci_infer_fn infer;
    nsci_kernel_fn cpu; // NULL only for pure views (they never run a kernel)
    nsci_backward_fn backward;
    const char *no_grad; // why there is no backward rule
    uint32_t flags;
    uint32_t save_inputs;  // bit i: the backward rule needs input i (none past 31)
    uint32_t save_outputs; // bit i: the backward rule needs output i
    uint32_t nondiff_outputs; // bit i: output i carries no gradient (layer_norm's mean, rstd)
    const char *exempt[NSCI_N_CASE_FLAGS]; // why a layout flag does not apply
    // Why the output's shape depends on the input's values (nonzero): such an
    // op fails on META inputs with NSC_ERR_UNSUPPORTED; NULL for other ops.
    const char *data_dependent_shape;
    // Why the op cannot be a node of an intervention graph (the optimizer
    // updates); it fails on proxy inputs with NSC_ERR_UNSUPPORTED. NULL: it can.
    const char *no_graph;
};

#define NSC_OP(name) extern const nsci_op_def nsci_op_##name;
#include "tensor/ops.def"
#undef NSC_OP

// All op definitions, indexed by nsc_op.
extern const nsci_op_def *const nsci_op_defs[NSC_OP_COUNT];

// Kernels of devices filled at run time (CUDA), indexed by op.
extern nsci_kernel_fn nsci_device_kernels[NSC_N_DEVICES][NSC_OP_COUNT];

// Looks an op up by its name; NSC_OP_COUNT when unknown.
nsc_op nsci_op_by_name(const char *name);

// --- dispatch ---

// Runs c->op on c->in: infer (the only validation), then either the proxy
// hook or the device kernel, then the tape hook. On success c->out holds new
// references. On failure nothing is allocated and no input changed.
nsc_status nsci_dispatch(nsci_call *c);

// Single-output convenience: returns the output (caller owns) or NULL.
nsc_tensor *nsci_run(nsc_op op, int n_in, nsc_tensor *const *in, const void *params);

// In-place convenience: returns the status; the input is updated.
nsc_status nsci_run_inplace(nsc_op op, int n_in, nsc_tensor *const *in, const void *params);

// Multi-output: writes n_outputs new references into out (all or none).
nsc_status nsci_run_multi(nsc_op op, int n_in, nsc_tensor *const *in, const void *params,
                          nsc_tensor **out);

// Fails the call with "<op>: <input shapes>: <message>" and returns status.
nsc_status nsci_call_fail(const nsci_call *c, nsc_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Number of kernels run since the process started (META and proxy calls run none).
int64_t nsci_kernel_count(void);

// --- hooks installed by the layers above (set once, before use) ---

typedef struct nsci_hooks {
    // graph/: called instead of the kernel when an input is a proxy. Outputs in
    // c->out are already created as META tensors; the hook attaches nodes.
    nsc_status (*proxy_op)(nsci_call *c);
    // graph/: an op with a proxy input failed its shape rule; adds context
    // (source line, nodes, module paths) and marks the trace as failed.
    void (*proxy_error)(nsci_call *c);
    // autograd/: records a tape node after a kernel ran; called when grad
    // mode is on and an input requires grad.
    nsc_status (*record)(nsci_call *c);
    // autograd/: called before the kernel when record will be; refuses calls
    // that would break the tape (an in-place write to a leaf that requires grad).
    nsc_status (*check)(nsci_call *c);
    // autograd/: whether grad recording is on for this thread.
    bool (*grad_enabled)(void);
    // Release the per-tensor state of the layers above.
    void (*free_autograd)(struct nsci_autograd *ag);
    void (*free_proxy)(struct nsci_proxy *proxy);
} nsci_hooks;

extern nsci_hooks nsci_hook_table;

// --- helpers for infer rules and kernels ---

// PyTorch type promotion over tensors: category bool < integer < float; a
// 0-dim tensor only raises the category, never the width within it.
nsc_dtype nsci_result_type(int n, nsc_tensor *const *in);
nsc_dtype nsci_promote(nsc_dtype a, nsc_dtype b);
static inline bool nsci_is_float(nsc_dtype d) {
    return d == NSC_F32 || d == NSC_F64;
}
// Result dtype of tensor (op) scalar: a float scalar makes an integer or bool
// tensor f32; an integral one keeps the tensor's dtype (bool becomes i64).
nsc_dtype nsci_scalar_result_type(nsc_dtype t, double scalar);

// Broadcasts the shapes of the inputs into meta (failing the call with a
// message naming the dims that disagree).
nsc_status nsci_broadcast_meta(nsci_call *c, int n, nsc_tensor *const *in, nsci_meta *meta);

// Strides of t broadcast to the (ndim, shape) target: 0 where t is broadcast.
void nsci_broadcast_strides(const nsc_tensor *t, int ndim, const int64_t *shape,
                            int64_t *stride);

// --- elementwise iteration (tensor/iter.c) ---

enum { NSCI_ITER_MAX_OPERANDS = 6 };

// Walks the elements of operand 0's shape; every other operand is broadcast
// to it. Dims are coalesced where all operands allow, so contiguous tensors
// give one long inner loop.
typedef struct nsci_iter {
    int ndim;
    int n_operands;
    int64_t shape[NSC_MAX_DIMS];
    char *data[NSCI_ITER_MAX_OPERANDS];
    int64_t stride[NSCI_ITER_MAX_OPERANDS][NSC_MAX_DIMS]; // bytes
    int64_t numel;
} nsci_iter;

// inner(n, ptrs, strides, ctx): n elements; ptrs[k] points at operand k's
// first one and advances by strides[k] bytes.
typedef void (*nsci_inner_fn)(int64_t n, char **ptrs, const int64_t *strides, void *ctx);

void nsci_iter_init(nsci_iter *it, int n_operands, nsc_tensor *const *operands);
// Runs inner over every element, split across threads when numel >= grain.
void nsci_iter_run(const nsci_iter *it, nsci_inner_fn inner, void *ctx, int64_t grain);

enum { NSCI_GRAIN = 32768 }; // elements per task below which kernels stay serial

// CPU copy of src into dst: src broadcast to dst's shape and converted to
// its dtype. Both must be CPU tensors; dst must not overlap src.
nsc_status nsci_copy_into(nsc_tensor *dst, nsc_tensor *src);

// A new contiguous CPU tensor with x's values in dtype; runs no dispatch (for
// kernels that need their inputs in one dtype).
nsc_tensor *nsci_cpu_convert(nsc_tensor *x, nsc_dtype dtype);

// The CPU kernel of add, sub, mul, div, pow, maximum, minimum (and add_,
// mul_): out = a (op) b with broadcasting; out's dtype is the compute dtype.
nsc_status nsci_binary_cpu(nsc_op op, nsc_tensor *out, nsc_tensor *a, nsc_tensor *b);

// --- fused pointwise gradients (tensor/op_unary_grad.c), for backward rules ---

// g * (1 - y^2) for y = tanh(x).
nsc_tensor *nsci_tanh_backward(nsc_tensor *g, nsc_tensor *y);
// g * y * (1 - y) for y = sigmoid(x).
nsc_tensor *nsci_sigmoid_backward(nsc_tensor *g, nsc_tensor *y);
// g where y > 0, else 0, for y = relu(x).
nsc_tensor *nsci_relu_backward(nsc_tensor *g, nsc_tensor *y);
// g * gelu'(x) for approx (nsc_gelu_approx).
nsc_tensor *nsci_gelu_backward(nsc_tensor *g, nsc_tensor *x, int approx);

// --- fused reduction gradients (tensor/op_softmax.c, op_norm.c), for backward rules ---

// grad_x of y = softmax(x, dim): y * (grad_y - sum(grad_y * y, dim)).
nsc_tensor *nsci_softmax_backward(nsc_tensor *grad_y, nsc_tensor *y, int dim);
// grad_x of y = log_softmax(x, dim): grad_y - exp(y) * sum(grad_y, dim).
nsc_tensor *nsci_log_softmax_backward(nsc_tensor *grad_y, nsc_tensor *y, int dim);
// layer_norm's three outputs into out[0..3): y, mean, rstd (mean and rstd
// shaped like x with the normalized dims set to 1, as torch.native_layer_norm).
// weight and bias may be NULL (absent). All or nothing is written.
nsc_status nsci_layer_norm_full(nsc_tensor *x, int n_normalized, nsc_tensor *weight,
                                nsc_tensor *bias, double eps, nsc_tensor **out);
// grad_x, grad_weight, grad_bias of layer_norm into out[0..3) from grad_y
// and the forward's x, mean, rstd and weight (NULL: absent).
nsc_status nsci_layer_norm_backward(nsc_tensor *grad_y, nsc_tensor *x, nsc_tensor *mean,
                                    nsc_tensor *rstd, nsc_tensor *weight, int n_normalized,
                                    nsc_tensor **out);

// --- pointwise helpers (tensor/pointwise.c) ---

// Runs loop over (out, in...) after converting inputs to dtype `compute`
// where they differ (no dispatch: kernels must not record on the tape).
nsc_status nsci_pointwise_run(nsc_tensor *out, int n_in, nsc_tensor *const *in,
                              nsc_dtype compute, nsci_inner_fn loop, void *ctx);

// out meta = in[0]'s shape with dtype.
void nsci_meta_same_shape(nsci_meta *m, const nsc_tensor *x, nsc_dtype dtype);

// x itself (a new reference) when contiguous, else a contiguous CPU copy
// (tensor/op_index.c).
nsc_tensor *nsci_cpu_contiguous(nsc_tensor *x);

// --- the fused cross-entropy gradient (tensor/op_loss.c), for backward rules ---

// The gradient of nsc_cross_entropy with respect to logits (one fused op:
// softmax minus one-hot, scaled by grad, zero on ignored rows); grad has the
// loss's shape. Returns a new reference or NULL (tensor/op_loss.c).
nsc_tensor *nsci_cross_entropy_backward(nsc_tensor *grad, nsc_tensor *logits, nsc_tensor *target,
                                        nsc_reduction reduction, int64_t ignore_index);

// Reads element i of a contiguous buffer of dtype as double / writes one.
double nsci_load(const void *p, nsc_dtype dtype);
void nsci_store(void *p, nsc_dtype dtype, double v);

#endif
