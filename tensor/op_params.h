// The params structs of the op families whose kernels exist for more than
// one device: the CPU kernels in tensor/op_*.c and the CUDA launchers in
// cuda/ read the same layout, so each struct is defined once, here. Plain C
// PODs (no pointers), also compiled as C++ by nvcc; the reduction params are
// nsci_reduce_params in tensor/reduce.h.
#ifndef NSC_TENSOR_OP_PARAMS_H
#define NSC_TENSOR_OP_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsc/ops_optim.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- pointwise (op_scalar.c, op_compare.c, op_inplace.c, op_unary.c, op_unary_grad.c) ---

// tensor (op) scalar, comparisons with a scalar, masked_fill.
typedef struct scalar_params {
    double value;
} scalar_params;

// fill_.
typedef struct fill_params {
    double value;
} fill_params;

// clamp: -inf / inf mean no bound.
typedef struct clamp_params {
    double min, max;
} clamp_params;

// gelu: nsc_gelu_approx.
typedef struct gelu_params {
    int approximate;
} gelu_params;

// gelu_backward: nsc_gelu_approx.
typedef struct gelu_grad_params {
    int approximate;
} gelu_grad_params;

// --- copies (op_copy.c) ---

// to_dtype reads dtype, to_device reads device.
typedef struct to_params {
    nsc_dtype dtype;
    nsc_device device;
} to_params;

// --- indexing and joins (op_index.c, op_gather.c, op_index_more.c, op_join.c) ---

// index_select, index_add, gather, scatter_add.
typedef struct dim_params {
    int dim;
} dim_params;

typedef struct topk_params {
    int64_t k;
    int dim;
    bool largest;
} topk_params;

// -1: max(ids) + 1.
typedef struct one_hot_params {
    int64_t num_classes;
} one_hot_params;

// tril, triu.
typedef struct tri_params {
    int64_t diagonal;
} tri_params;

// cat, stack.
typedef struct join_params {
    int dim;
} join_params;

// --- losses and dropout (op_loss.c, op_loss_pointwise.c) ---

// cross_entropy, cross_entropy_backward, nll_loss.
typedef struct loss_params {
    int reduction; // nsc_reduction
    int64_t ignore_index;
} loss_params;

typedef struct mse_params {
    int reduction; // nsc_reduction
} mse_params;

typedef struct dropout_params {
    double p;
    int64_t seed; // the 64 seed bits
} dropout_params;

// --- normalization, softmax, attention, sum_to_size ---

// layer_norm, layer_norm_backward.
typedef struct layer_norm_params {
    int n_normalized;
    double eps;      // forward only
    bool has_weight; // inputs: x, then weight if present, then bias if present
    bool has_bias;   // forward only
} layer_norm_params;

// softmax, log_softmax and their gradients.
typedef struct softmax_params {
    int dim;
} softmax_params;

typedef struct attention_params {
    double scale;
    bool causal;
} attention_params;

typedef struct sum_to_size_params {
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
} sum_to_size_params;

// --- optimizer updates (op_optim.c) ---

// fused_sgd_ and fused_adamw_ take lists, role by role (torch's TensorList
// arguments): with n parameters, operand r of parameter j is input
// r * n + j. The roles are the ones named below, in that order.
enum { NSCI_OPTIM_ROLES = 5 }; // the most roles an update has

// fused_sgd_: inputs (params, grads[, momentum_buffers]).
typedef struct fused_sgd_params {
    nsc_sgd_config config;
    bool first_step;
} fused_sgd_params;

// fused_adamw_: inputs (params, grads, exp_avgs, exp_avg_sqs[, max_exp_avg_sqs]);
// every parameter of one call makes the same step count.
typedef struct fused_adamw_params {
    nsc_adamw_config config;
    int64_t step;
} fused_adamw_params;

static inline int nsci_sgd_roles(const nsc_sgd_config *c) {
    return c->momentum != 0 ? 3 : 2;
}

static inline int nsci_adamw_roles(const nsc_adamw_config *c) {
    return c->amsgrad ? 5 : 4;
}

// Finds two operands of an update's lists (n_in inputs, roles lists) that
// share storage where at least one is written (any but a gradient): *first <
// *second, the pair with the lowest first index; -1 in both when there is
// none. Gradients may share with each other: they are only read. NSC_ERR_OOM
// when the sort's scratch cannot be allocated (beyond
// NSCI_OPTIM_STACK_OPERANDS). nn/optim.c asks before it
// batches parameters into one call.
nsc_status nsci_optim_shared_operands(int n_in, int roles, nsc_tensor *const *in, int *first,
                                      int *second);

// clip_scale_: inputs (tensors...), each multiplied in place by coef rounded
// to its dtype.
typedef struct clip_scale_params {
    double coef;
} clip_scale_params;

// Gradient clipping's pieces over lists (tensor/op_clip.c): the sum of the
// squares of every element of tensors[0..n) in double, as a new 0-dim f64
// tensor on their device; and each tensor *= coef in place. n >= 1.
nsc_tensor *nsci_clip_sumsq(int64_t n, nsc_tensor *const *tensors);
nsc_status nsci_clip_scale_(int64_t n, nsc_tensor *const *tensors, double coef);

// Operands an update call checks without allocating (nsci_optim_shared_operands
// sorts them on the stack): nn/optim.c's batches stay within it.
enum { NSCI_OPTIM_STACK_OPERANDS = 1024 };

// Run fused_sgd_ or fused_adamw_ on n_in inputs laid out as above and
// advance the version of every written operand. nn/optim.c's step calls them
// with lists it keeps; they allocate nothing for up to
// NSCI_OPTIM_STACK_OPERANDS operands.
nsc_status nsci_fused_sgd_run(int n_in, nsc_tensor *const *in, const fused_sgd_params *p);
nsc_status nsci_fused_adamw_run(int n_in, nsc_tensor *const *in, const fused_adamw_params *p);

// AdamW's per-step scalars, computed once in double on the host and rounded
// to the parameter's dtype by each kernel (as torch rounds a Python float):
// p = p * decay; m = m * beta1 + one_minus_beta1 * g;
// v = v * beta2 + one_minus_beta2 * g * g;
// p += neg_step_size * m / (sqrt(vhat) / bc2_sqrt + eps).
// maximize (g -> -g) is one_minus_beta1's sign flipped: (1 - b1) * (-g) is
// exactly -(1 - b1) * g, and v's (1 - b2) * g * g does not see the sign.
typedef struct nsci_adamw_scalars {
    double decay, beta1, one_minus_beta1, beta2, one_minus_beta2;
    double bc2_sqrt, eps, neg_step_size;
    bool amsgrad;
} nsci_adamw_scalars;
nsci_adamw_scalars nsci_adamw_scalars_of(const fused_adamw_params *p);

// True, with why filled (a sentence without the op's name), when c cannot
// configure an update: a negative or NaN rate, betas outside [0, 1), nesterov
// without momentum or with dampening. nn/optim.c's constructors use them too.
bool nsci_sgd_config_problem(const nsc_sgd_config *c, char *why, size_t why_bytes);
bool nsci_adamw_config_problem(const nsc_adamw_config *c, char *why, size_t why_bytes);

#ifdef __cplusplus
}
#endif

#endif
