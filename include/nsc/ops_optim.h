// The optimizer updates as in-place ops: one pass over a parameter, its
// gradient and its state (torch._fused_sgd_ and torch._fused_adamw_), for
// one parameter or for lists of them in one call (on a GPU a few launches
// for all of them). nsc_optim_step (nsc/optim.h) runs the list forms on
// every device; call them directly to drive an update loop of your own. See
// nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_OPTIM_H
#define NSC_OPS_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// torch.optim.SGD. Per parameter p with gradient g (-g when maximize), on
// each step:
//   d = g + weight_decay * p
//   buf = d on the first step, else momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf        (when momentum != 0)
//   p = p - lr * d
// nesterov needs momentum > 0 and dampening == 0, as in torch.
typedef struct nsc_sgd_config {
    double lr;
    double momentum;
    double dampening;
    double weight_decay;
    bool nesterov;
    bool maximize; // ascend the objective (torch's maximize): the gradient's sign flips
} nsc_sgd_config;

// torch.optim.AdamW (decoupled weight decay). Per parameter, with t its step
// count and g its gradient (-g when maximize):
//   p = p * (1 - lr * weight_decay)
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
//   vhat = amsgrad ? (vmax = max(vmax, v)) : v
//   p = p - lr / (1 - beta1^t) * m / (sqrt(vhat) / sqrt(1 - beta2^t) + eps)
typedef struct nsc_adamw_config {
    double lr;
    double beta1, beta2;
    double eps;
    double weight_decay;
    bool amsgrad;
    bool maximize; // ascend the objective (torch's maximize): the gradient's sign flips
} nsc_adamw_config;

// One SGD step of param (f32 or f64) from grad, in place. momentum_buffer
// is written too; it is required when config->momentum != 0 and must be NULL
// otherwise. first_step: the buffer holds nothing yet and takes d (torch's
// momentum_buffer is None). grad, momentum_buffer: param's shape, dtype and
// device; grad may have any layout, the written tensors may not repeat an
// element (stride 0), no two operands may share memory, and the state may
// not require grad. Every element repeats torch.optim's op sequence above in
// its order, each scalar rounded to the dtype first as torch rounds a Python
// float, and each product and sum rounded on its own (torch's CPU kernels
// fuse some multiply-adds: results agree within 2 ulp, docs/TRAINING.md);
// the CPU and the GPU give the same bits. A leaf that requires grad is
// refused outside no_grad, as torch does.
// Not recorded in intervention graphs (a graph tracks writes into an op's
// first input only): a proxy operand fails with NSC_ERR_UNSUPPORTED; step
// from a registered function (nsc_function_register) or after the trace.
nsc_status nsc_fused_sgd_(nsc_tensor *param, nsc_tensor *grad, nsc_tensor *momentum_buffer,
                          const nsc_sgd_config *config, bool first_step);

// One AdamW step of param from grad, in place, writing exp_avg, exp_avg_sq
// and (config->amsgrad only; NULL otherwise) max_exp_avg_sq. step: t, the
// step count this update makes (torch's state['step'] after it), >= 1. The
// same rules as nsc_fused_sgd_ for shapes, dtypes, layouts and roundings.
nsc_status nsc_fused_adamw_(nsc_tensor *param, nsc_tensor *grad, nsc_tensor *exp_avg,
                            nsc_tensor *exp_avg_sq, nsc_tensor *max_exp_avg_sq,
                            const nsc_adamw_config *config, int64_t step);

// torch._fused_sgd_ over lists: the update of nsc_fused_sgd_ for params[j]
// from grads[j] (and momentum_buffers[j]) for every j < n, in one op call.
// Each parameter's operands follow nsc_fused_sgd_'s rules; every operand
// has params[0]'s dtype and device; no operand that is written (all but the
// gradients) shares memory with any other operand of the call (gradients
// may share with each other). momentum_buffers is NULL when momentum is 0.
// The bits equal n separate calls. n 0 does nothing (the lists may be
// NULL). Refused calls change nothing; a device fault during the call may
// leave it partly written.
nsc_status nsc_fused_sgd_list_(int64_t n, nsc_tensor *const *params, nsc_tensor *const *grads,
                               nsc_tensor *const *momentum_buffers, const nsc_sgd_config *config,
                               bool first_step);

// torch._fused_adamw_ over lists, every parameter making the same step
// count: nsc_fused_adamw_'s update for each j < n, under nsc_fused_sgd_list_'s
// rules. max_exp_avg_sqs is NULL unless config->amsgrad.
nsc_status nsc_fused_adamw_list_(int64_t n, nsc_tensor *const *params, nsc_tensor *const *grads,
                                 nsc_tensor *const *exp_avgs, nsc_tensor *const *exp_avg_sqs,
                                 nsc_tensor *const *max_exp_avg_sqs,
                                 const nsc_adamw_config *config, int64_t step);

#ifdef __cplusplus
}
#endif

#endif
