// Internal view of optimizers, shared by nn/optim*.c: the struct, and the
// per-kind update kernels the common step driver calls.
#ifndef NSC_NN_OPTIM_IMPL_H
#define NSC_NN_OPTIM_IMPL_H

#include "nn/nn_impl.h"
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

struct nsc_optim {
    nsci_optim_kind kind;
    double lr;
    nsc_sgd_config sgd;
    nsc_adamw_config adamw;
    int64_t n_params;
    nsc_tensor **params; // retained
    char **names;        // parameter paths (module constructors) or NULL
    int64_t *steps;      // per parameter
    nsc_tensor **state;  // [n_params * NSCI_OPTIM_MAX_STATE], NULL until the first step
};

// Number of state slots the optimizer keeps per parameter.
int nsci_optim_n_state(const nsc_optim *opt);

// The update of parameter i in place from grad (same shape and dtype as the
// parameter, any layout), with its state already allocated and its step
// count already advanced. Runs under no_grad on the CPU; cannot fail.
void nsci_sgd_update(const nsc_optim *opt, int64_t i, nsc_tensor *grad, bool first_step);
void nsci_adamw_update(const nsc_optim *opt, int64_t i, nsc_tensor *grad);

#endif
