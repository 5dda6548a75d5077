// The params structs of the op families whose kernels exist for more than
// one device: the CPU kernels in tensor/op_*.c and the CUDA launchers in
// cuda/ read the same layout, so each struct is defined once, here. Plain C
// PODs (no pointers), also compiled as C++ by nvcc; the reduction params are
// nsci_reduce_params in tensor/reduce.h.
#ifndef NSC_TENSOR_OP_PARAMS_H
#define NSC_TENSOR_OP_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

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

#ifdef __cplusplus
}
#endif

#endif
