// Layers as modules (torch.nn): linear, GPT-2's Conv1D, embedding,
// layer_norm, activations, dropout, identity, sequential and a multi-layer
// perceptron. Each is an nsc_module (nsc/module.h) with a C forward and named
// parameters, called through nsc_module_call like any module, so hooks and
// call counters apply. Initializations are PyTorch's defaults, drawn from an
// explicit generator (NULL: the calling thread's default generator).
#ifndef NSC_NN_H
#define NSC_NN_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/module.h"
#include "nsc/ops.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// Activation functions a layer can name.
typedef enum nsc_activation {
    NSC_ACTIVATION_NONE,      // identity
    NSC_ACTIVATION_RELU,      // torch.nn.ReLU
    NSC_ACTIVATION_GELU,      // torch.nn.GELU(approximate='none') ("gelu")
    NSC_ACTIVATION_GELU_TANH, // torch.nn.GELU(approximate='tanh'), GPT-2's "gelu_new"
    NSC_ACTIVATION_TANH,      // torch.nn.Tanh
} nsc_activation;

// Name of an activation as Hugging Face configs spell it ("relu", "gelu",
// "gelu_new", "tanh", "identity"). Static string.
const char *nsc_activation_name(nsc_activation activation);

// --- layers ---
// Each constructor returns a new module (refcount 1; caller
// nsc_module_free()s) or NULL with an error naming the bad argument. Every
// module takes its input as in[0] and declares batch dim 0 for it and its
// output. Parameters are f32 on the CPU.

// torch.nn.Linear: y = x W^T + b. x: [..., in]; weight [out, in]; bias [out]
// (when bias). Kaiming-uniform weight and uniform bias in +-1/sqrt(in), as
// PyTorch. Type "Linear".
nsc_module *nsc_linear_new(int64_t in, int64_t out, bool bias, nsc_generator *gen);

// Hugging Face's Conv1D (GPT-2): y = x W + b with weight stored [in, out]
// and bias [out]; the forward passes the transposed view to nsc_linear (no
// copy). Weight normal(0, 0.02), bias zeros, as GPT-2's initialization.
// Type "Conv1D".
nsc_module *nsc_conv1d_new(int64_t in, int64_t out, nsc_generator *gen);

// torch.nn.Embedding: rows of weight [num, dim] picked by i64 ids of any
// shape. Weight normal(0, 1). An id outside [0, num) fails naming it and its
// position. Type "Embedding".
nsc_module *nsc_embedding_new(int64_t num, int64_t dim, nsc_generator *gen);

// torch.nn.LayerNorm over the last dim of size dim: weight ones, bias zeros.
// Type "LayerNorm".
nsc_module *nsc_layer_norm_new(int64_t dim, double eps);

// Activation modules, no parameters: "GELU" (approximate as given), "ReLU",
// "Tanh"; nsc_activation_new picks by enum (NONE gives an "Identity").
nsc_module *nsc_gelu_new(nsc_gelu_approx approx);
nsc_module *nsc_relu_new(void);
nsc_module *nsc_activation_new(nsc_activation activation);

// torch.nn.Dropout(p): zeroes elements with probability p and scales the
// rest by 1/(1-p) while the module is training (nsc_module_train); the
// identity in evaluation mode. Draws from the calling thread's default
// generator (nsc_manual_seed) until nsc_dropout_set_seed gives it its own.
// p in [0, 1). Type "Dropout".
nsc_module *nsc_dropout_new(double p);
// Gives a dropout module its own Philox generator seeded with seed, so its
// masks repeat run to run whatever else draws numbers.
nsc_status nsc_dropout_set_seed(nsc_module *dropout, uint64_t seed);

// A module returning its input unchanged (a new reference to it): a hook
// point. type names it ("Identity" when NULL).
nsc_module *nsc_identity_new(const char *type);

// --- containers ---

// torch.nn.Sequential: children "0", "1", ... called in order, each on the
// previous one's output. Type "Sequential"; empty at first.
nsc_module *nsc_sequential_new(void);
// Appends child under the next index name. Retains child.
nsc_status nsc_sequential_append(nsc_module *seq, nsc_module *child);

// A multi-layer perceptron over sizes[0..n_sizes): Linear(sizes[i],
// sizes[i+1]) followed by the activation, except after the last Linear.
// Children are named as in a Sequential ("0" Linear, "1" activation, ...).
// n_sizes >= 2. Type "MLP".
nsc_module *nsc_mlp_new(int n_sizes, const int64_t *sizes, nsc_activation activation,
                        nsc_generator *gen);

#ifdef __cplusplus
}
#endif

#endif
