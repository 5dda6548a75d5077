// Training: optimizers (SGD, AdamW) over a list of parameters, gradient
// clipping and a learning-rate schedule. Semantics and formulas follow
// torch.optim (1.13); docs/TRAINING.md walks through a training loop.
#ifndef NSC_OPTIM_H
#define NSC_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/module.h"
#include "nsc/ops_optim.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// An optimizer: its hyper-parameters, the parameters it updates (retained)
// and their per-parameter state. Opaque.
typedef struct nsc_optim nsc_optim;

// --- configurations ---
// nsc_sgd_config and nsc_adamw_config (the update each step makes) are in
// nsc/ops_optim.h, with the fused update ops that apply them to one tensor.

// torch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2.
nsc_adamw_config nsc_adamw_defaults(void);

// --- creation ---
// params: n_params float tensors (f32 or f64, on the CPU or CUDA) that are
// leaves requiring grad, with no duplicates; each is retained. Views of one
// buffer may be parameters, overlapping too: they are updated in list order,
// as torch does. The parameters that step alike are updated by one fused op
// over their lists on their device (nsc_fused_sgd_list_ /
// nsc_fused_adamw_list_), so a CUDA parameter's state stays on the GPU with
// it.
// Returns a new optimizer (caller nsc_optim_free()s) or NULL with an error:
// NSC_ERR_ARG for a NULL or empty list, a NULL entry, a duplicate, a bad
// hyper-parameter (negative lr, beta outside [0, 1), ...); NSC_ERR_STATE for
// a parameter that does not require grad or is not a leaf; NSC_ERR_DTYPE for
// a non-float one; NSC_ERR_DEVICE for a META tensor or a proxy.

nsc_optim *nsc_optim_sgd_new(int64_t n_params, nsc_tensor *const *params,
                             const nsc_sgd_config *config);
nsc_optim *nsc_optim_adamw_new(int64_t n_params, nsc_tensor *const *params,
                               const nsc_adamw_config *config);

// The same over every parameter of root's tree (nsc_module_param_at order, a
// tensor shared by several modules once); errors name the parameter's path.
nsc_optim *nsc_optim_sgd_new_module(nsc_module *root, const nsc_sgd_config *config);
nsc_optim *nsc_optim_adamw_new_module(nsc_module *root, const nsc_adamw_config *config);

// --- parameter groups (torch's param_groups) ---

// Appends n_params parameters (checked as a constructor checks its list;
// none may already belong to a group) as a new group with its own
// hyper-parameters, as torch's optimizer.add_param_group: group 0 is the
// constructor's list, later groups are numbered in the order added, and the
// parameter indices continue across groups (nsc_optim_param_at, state and
// saved files use them). The config must be the optimizer's kind. The usual
// use is AdamW without weight decay for biases and LayerNorm weights:
//   decay = params with 2 or more dims, other = the rest;
//   opt = nsc_optim_adamw_new(n_decay, decay, &c);        // weight_decay 0.1
//   c.weight_decay = 0; nsc_optim_add_param_group_adamw(opt, n_other, other, &c);
// Refusals leave the optimizer unchanged: NSC_ERR_ARG for a bad list, a
// duplicate, a bad hyper-parameter or another kind's config, and as the
// constructors NSC_ERR_STATE, NSC_ERR_DTYPE or NSC_ERR_DEVICE for a bad
// parameter; NSC_ERR_OOM.
nsc_status nsc_optim_add_param_group_sgd(nsc_optim *opt, int64_t n_params,
                                         nsc_tensor *const *params, const nsc_sgd_config *config);
nsc_status nsc_optim_add_param_group_adamw(nsc_optim *opt, int64_t n_params,
                                           nsc_tensor *const *params,
                                           const nsc_adamw_config *config);

// Number of groups (1 after construction), and the group parameter index
// belongs to (-1 out of range).
int nsc_optim_n_groups(const nsc_optim *opt);
int nsc_optim_group_of(const nsc_optim *opt, int64_t index);

// A group's learning rate (NaN for a bad group), and setting it: how a
// schedule drives groups whose rates differ (torch's LambdaLR scales each
// group's initial lr). NSC_ERR_ARG for a bad group or lr < 0.
double nsc_optim_group_get_lr(const nsc_optim *opt, int group);
nsc_status nsc_optim_group_set_lr(nsc_optim *opt, int group, double lr);

// Releases the optimizer, its state and its references to the parameters.
// Accepts NULL.
void nsc_optim_free(nsc_optim *opt);

// --- the training step ---

// Updates every parameter whose .grad is set, in place, under no_grad (the
// storage's version counter is bumped as by any in-place op); parameters
// without a gradient are skipped and their step count does not advance (as
// torch). State is created on a parameter's first step. Fails before
// changing anything with NSC_ERR_SHAPE / NSC_ERR_DTYPE when a gradient's
// shape, dtype or device differs from its parameter's, NSC_ERR_OOM when
// state cannot be allocated. The parameters with a gradient that share a
// group, a step count, a device and a dtype are updated by one fused op
// over their lists (at most 1024 operands a call; a parameter whose operands
// share memory with another's, such as views of one buffer, by a call of its
// own); once the state exists a step allocates nothing (nsc/ops_optim.h).
// Only a device fault can stop a step part-way: the step then returns
// NSC_ERR_DEVICE with the batches before the failing one stepped, the
// failing batch possibly partly written (its step counts not advanced) and
// the rest unchanged; nsc_optim_get_step tells which.
nsc_status nsc_optim_step(nsc_optim *opt);

// Clears the gradients of the optimizer's parameters: set_to_none drops them
// (.grad becomes NULL, the next backward allocates fresh ones), otherwise
// they are filled with zeros in place (torch.optim.Optimizer.zero_grad).
nsc_status nsc_optim_zero_grad(nsc_optim *opt, bool set_to_none);

// --- learning rate and state ---

// The learning rate the next step uses (group 0's); setting it sets every
// group's, which is how a schedule drives the optimizer (lr >= 0, else
// NSC_ERR_ARG).
double nsc_optim_get_lr(const nsc_optim *opt);
nsc_status nsc_optim_set_lr(nsc_optim *opt, double lr);

// "sgd" or "adamw". Static string.
const char *nsc_optim_name(const nsc_optim *opt);

// Number of parameters and the i-th one (borrowed; NULL when out of range).
int64_t nsc_optim_n_params(const nsc_optim *opt);
nsc_tensor *nsc_optim_param_at(const nsc_optim *opt, int64_t index);

// Steps taken by parameter index (0 before its first step; -1 out of range).
int64_t nsc_optim_get_step(const nsc_optim *opt, int64_t index);

// A named state tensor of parameter index, as in torch's optimizer.state[p]:
// "momentum_buffer" (SGD), "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (AdamW).
// Borrowed (contiguous, the parameter's shape and dtype); NULL when the
// parameter has no such state yet or the name is unknown.
nsc_tensor *nsc_optim_get_state(const nsc_optim *opt, int64_t index, const char *name);

// --- saving and resuming (torch.save(optimizer.state_dict()), load_state_dict) ---

// Writes the optimizer's state to a safetensors file at path: for each
// parameter that has stepped (index i, in the optimizer's order)
// "state.<i>.step" (0-dim i64) and its state tensors "state.<i>.exp_avg",
// "state.<i>.exp_avg_sq", "state.<i>.max_exp_avg_sq" (amsgrad) or
// "state.<i>.momentum_buffer"; metadata "optimizer" ("sgd"/"adamw"),
// "n_params", group 0's current "lr" and every hyper-parameter, "n_groups",
// each group's "group.<g>.n_params", and groups 1.. as "group.<g>.lr" and so
// on. The file is
// written beside path and renamed, so a failure leaves path as it was.
// NSC_ERR_ARG for NULL arguments, NSC_ERR_IO when the file cannot be written.
nsc_status nsc_optim_save(const nsc_optim *opt, const char *path);

// Loads a file written by nsc_optim_save into opt, an optimizer of the same
// kind over the same number of parameters in the same groups (build it as
// the saved one was, then load: the state tensors take each parameter's
// dtype and device). The step counts, state, each group's lr and
// hyper-parameters become the file's; a parameter the file holds no state
// for starts afresh. All or nothing: a missing, mistyped or mis-shaped
// entry (state without its step count too), another kind, parameter count,
// group structure, momentum on/off or
// amsgrad setting fails with NSC_ERR_FORMAT naming the file and the entry,
// and opt is unchanged; NSC_ERR_IO when the file cannot be read.
nsc_status nsc_optim_load(nsc_optim *opt, const char *path);

// --- gradient clipping ---

// torch.nn.utils.clip_grad_norm_ with norm_type 2: the L2 norm of all the
// gradients together (parameters without .grad are skipped) is written to
// *total_norm (may be NULL); when max_norm / (norm + 1e-6) < 1 (so also for
// a norm a hair under max_norm, as torch) every gradient is multiplied in
// place by that coefficient. A NaN norm scales every
// gradient to NaN; an infinite one multiplies by 0, so finite entries become
// 0 and infinite ones NaN (torch with error_if_nonfinite=False). The
// sum of squares is accumulated in f64 over fixed blocks, so the result does
// not depend on the thread count. CUDA gradients are summed on the GPU (in
// f64) and only their total is copied back. NSC_ERR_ARG for a NULL list or
// entry or max_norm < 0; NSC_ERR_DEVICE for a META gradient.
nsc_status nsc_clip_grad_norm_(int64_t n_params, nsc_tensor *const *params, double max_norm,
                               double *total_norm);
// The same over the optimizer's parameters.
nsc_status nsc_optim_clip_grad_norm(nsc_optim *opt, double max_norm, double *total_norm);

// --- learning-rate schedule ---

// Linear warmup then cosine decay to a floor, as in nanoGPT and llm.c:
//   step <  warmup_steps:  max_lr * (step + 1) / warmup_steps
//   step >= total_steps:   min_lr
//   otherwise:             min_lr + (max_lr - min_lr) * (1 + cos(pi * r)) / 2,
//                          r = (step - warmup_steps) / (total_steps - warmup_steps)
// The same schedule in PyTorch is LambdaLR(opt, lambda s: lr(s) / max_lr) on an
// optimizer built with lr=max_lr, with scheduler.step() after optimizer.step().
typedef struct nsc_lr_schedule {
    double max_lr;
    double min_lr;
    int64_t warmup_steps;
    int64_t total_steps;
} nsc_lr_schedule;

// The learning rate at step (0-based): a pure function. Returns NAN with
// NSC_ERR_ARG for a negative step or an invalid schedule (min_lr > max_lr,
// a negative lr or count, warmup_steps > total_steps).
double nsc_lr_schedule_at(const nsc_lr_schedule *schedule, int64_t step);

// Sets opt's learning rate (every group's) to nsc_lr_schedule_at(schedule, step).
nsc_status nsc_lr_schedule_apply(const nsc_lr_schedule *schedule, int64_t step, nsc_optim *opt);

#ifdef __cplusplus
}
#endif

#endif
