// Internal view of optimizers, shared by nn/optim*.c: the struct, and the
// per-kind update kernels the common step driver calls.
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
    bool ops_on_cpu;     // tests: take nn/optim_ops.c's path for CPU parameters too
};

// The constructors' checks of a configuration (NSC_ERR_ARG naming the bad
// hyper-parameter); nn/optim_state.c runs them on loaded ones too.
nsc_status nsci_optim_check_sgd(const nsc_sgd_config *c);
nsc_status nsci_optim_check_adamw(const nsc_adamw_config *c);

// nsc_optim_load on an open file (path labels the errors); the fuzz target
// feeds it files held in memory.
nsc_status nsci_optim_load_from(nsc_optim *opt, const nsc_safetensors *st, const char *path);

// Number of state slots the optimizer keeps per parameter.
int nsci_optim_n_state(const nsc_optim *opt);

// The update of parameter i in place from grad (same shape and dtype as the
// parameter, any layout), with its state already allocated and its step
// count already advanced. Runs under no_grad on the CPU; cannot fail.
void nsci_sgd_update(const nsc_optim *opt, int64_t i, nsc_tensor *grad, bool first_step);
void nsci_adamw_update(const nsc_optim *opt, int64_t i, nsc_tensor *grad);

// AdamW's per-step scalars for parameter i (its step count already advanced).
typedef struct nsci_adamw_scalars {
    double decay, beta1, one_minus_beta1, beta2, one_minus_beta2;
    double bc2_sqrt, eps, neg_step_size;
    bool amsgrad;
} nsci_adamw_scalars;
nsci_adamw_scalars nsci_adamw_scalars_of(const nsc_optim *opt, int64_t i);

// The same updates as tensor ops (nn/optim_ops.c), for parameters on any
// device; the same bits as the fused loops on the CPU. Fail with the op's
// error (a device out of memory) leaving parameter i and its state unchanged.
nsc_status nsci_sgd_update_ops(const nsc_optim *opt, int64_t i, nsc_tensor *grad, bool first_step);
nsc_status nsci_adamw_update_ops(const nsc_optim *opt, int64_t i, nsc_tensor *grad);

// Gradient clipping's pieces as tensor ops: the sum of squares of grad
// accumulated in f64 (read back to the host), and grad *= coef in place.
nsc_status nsci_grad_sumsq_ops(nsc_tensor *grad, double *sumsq);
nsc_status nsci_grad_scale_ops(nsc_tensor *grad, double coef);

#endif
