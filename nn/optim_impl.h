// Internal view of optimizers, shared by nn/optim*.c: the struct, its checks
// and clipping's device pieces. The updates are the ops of tensor/op_optim.c.
#ifndef NSC_NN_OPTIM_IMPL_H
#define NSC_NN_OPTIM_IMPL_H

#include "nn/nn_impl.h"
#include "nsc/io.h"
#include "nsc/optim.h"

typedef enum nsci_optim_kind {
    NSCI_OPTIM_SGD,
    NSCI_OPTIM_ADAMW,
} nsci_optim_kind;

// State slots per parameter: SGD uses slot 0 (momentum_buffer); AdamW
// uses 0, 1 (exp_avg, exp_avg_sq) and 2 (max_exp_avg_sq, amsgrad only).
enum {
    NSCI_OPTIM_MAX_STATE = 3
};

// A parameter group (torch's param_groups entry): a run of the parameter
// list and its hyper-parameters. Only the config of the optimizer's kind is
// used; its lr is the group's current learning rate.
typedef struct nsci_optim_group {
    int64_t first, count; // params[first, first + count)
    nsc_sgd_config sgd;
    nsc_adamw_config adamw;
} nsci_optim_group;

struct nsc_optim {
    nsci_optim_kind kind;
    int n_groups;
    nsci_optim_group *groups; // in the order added; group 0 is the constructor's
    int64_t n_params;
    nsc_tensor **params; // retained
    char **names;        // parameter paths (NULL where none was given) or NULL
    int64_t *steps;      // per parameter
    nsc_tensor **state;  // [n_params * NSCI_OPTIM_MAX_STATE], NULL until the first step
    // The step's scratch, sized with the parameter list so that a step
    // allocates nothing once the state exists: parameter indices
    // [2 * n_params] and one batch's operand lists [NSCI_OPTIM_OPERANDS * n_params].
    int64_t *scratch_index;
    nsc_tensor **scratch_operands;
};

// Operands of one parameter's update at most: param, grad and the state.
enum {
    NSCI_OPTIM_OPERANDS = 2 + NSCI_OPTIM_MAX_STATE
};

// The constructors' checks of a configuration (NSC_ERR_ARG naming the bad
// hyper-parameter); nn/optim_state.c runs them on loaded ones too.
nsc_status nsci_optim_check_sgd(const nsc_sgd_config *c);
nsc_status nsci_optim_check_adamw(const nsc_adamw_config *c);

// nsc_optim_load on an open file (path labels the errors); the fuzz target
// feeds it files held in memory.
nsc_status nsci_optim_load_from(nsc_optim *opt, const nsc_safetensors *st, const char *path);

// The first dim of t that repeats one memory location (stride 0, size > 1),
// or -1: parameters and gradients are written in place.
int nsci_optim_repeated_dim(const nsc_tensor *t);

// The group parameter i belongs to (i in range).
const nsci_optim_group *nsci_optim_group_of(const nsc_optim *opt, int64_t i);

// Number of state slots a group's parameters keep (its momentum or amsgrad).
int nsci_optim_n_state(const nsc_optim *opt, const nsci_optim_group *g);

// Gradient clipping's pieces as tensor ops (nn/optim_clip_device.c), for
// gradients on a device: the sum of the squares of grads[0..n) in f64 (one
// scalar read back to the host for all of them), and every grad *= coef in
// place.
nsc_status nsci_grads_sumsq_ops(int64_t n, nsc_tensor *const *grads, double *sumsq);
nsc_status nsci_grads_scale_ops(int64_t n, nsc_tensor *const *grads, double coef);

#endif
