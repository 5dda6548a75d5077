// Reverse-mode autograd: requires_grad, backward, .grad, grad mode, tensor
// gradient hooks. Semantics follow PyTorch's (torch.autograd).
#ifndef NSC_AUTOGRAD_H
#define NSC_AUTOGRAD_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- requires_grad and .grad ---

// Marks a leaf (a tensor no recorded op produced) as requiring grad, or not.
// Float dtypes only. Fails on a non-leaf (use nsc_detach first). t borrowed.
nsc_status nsc_requires_grad_(nsc_tensor *t, bool requires_grad);

// True when ops on t are recorded for backward (a leaf marked so, the
// result of a recorded op, or a float view of a base that requires grad,
// even one taken before the base did: views follow their base, as in torch;
// nsc_detach's result is not a view for this).
bool nsc_tensor_requires_grad(const nsc_tensor *t);

// True when t was not produced by a recorded op (every tensor that does not
// require grad is a leaf, as in PyTorch).
bool nsc_tensor_is_leaf(const nsc_tensor *t);

// The gradient accumulated into t by backward (leaves, and non-leaves after
// nsc_retain_grad), or NULL. Borrowed: valid until t's grad is replaced,
// cleared or t is freed (nsc_retain it to keep it). A later backward adds
// into this same tensor in place, as torch does.
nsc_tensor *nsc_tensor_get_grad(nsc_tensor *t);

// Replaces t's gradient with grad (retained; NULL clears it, as
// optimizer.zero_grad(set_to_none=True)). grad must have t's shape, dtype
// and device (torch's .grad setter refuses the others too), and must not be
// t itself (NSC_ERR_ARG, as torch's "can't assign Variable as its own grad").
nsc_status nsc_tensor_set_grad(nsc_tensor *t, nsc_tensor *grad);

// Makes a non-leaf keep its gradient in .grad during backward (a no-op on
// leaves). t must require grad (nsc_tensor_requires_grad), else NSC_ERR_STATE.
// The flag and a .grad t holds stay with t across in-place writes into it.
nsc_status nsc_retain_grad(nsc_tensor *t);

// --- backward ---

// Back-propagates from loss through the recorded ops, accumulating into the
// .grad of every leaf that requires grad (and of retained non-leaves).
// grad: the gradient of loss (same shape and device; another float dtype is
// cast to loss's, as torch's engine does), or NULL for a one-element loss
// (ones). Without retain_graph the saved tensors are freed on the way, and a
// second backward through an op that saved some fails with NSC_ERR_STATE;
// ops that saved none (views, transposes, sums) can run again. A tensor
// saved for backward that was modified in place since fails the call naming
// the op. An in-place op that reads what it writes (y.mul_(y), or a view of
// its destination) saves the values from before the write. A gradient
// reaching a tensor on another device (a loss computed from META tensors
// into a CPU leaf) fails. Runs with grad mode off. loss and grad borrowed.
nsc_status nsc_backward(nsc_tensor *loss, nsc_tensor *grad, bool retain_graph);

// --- grad mode (per thread; on by default) ---

// Grad mode is one per-thread flag, as torch's GradMode.

// Whether ops are recorded on this thread.
bool nsc_grad_enabled(void);
// Switches recording on or off, also inside a no_grad scope (as torch's
// set_grad_enabled(True) or enable_grad there); returns the previous setting.
bool nsc_set_grad_enabled(bool enabled);
// A nestable no_grad scope (torch.no_grad): begin saves the flag and turns
// recording off, the matching end restores what begin saved. Every begin
// must be matched by an end; an end without a begin does nothing.
void nsc_no_grad_begin(void);
void nsc_no_grad_end(void);

// --- gradient hooks (torch.Tensor.register_hook) ---

// Called with the gradient of the tensor it is registered on when backward
// computes it: once per backward, on the total (a leaf used several times
// sums its gradients first, as torch's AccumulateGrad). May write a new reference into *replacement
// to substitute the gradient for everything downstream, including .grad; the replacement must keep
// the gradient's shape, dtype and device (else NSC_ERR_SHAPE naming the hook, as torch's "hook has
// changed the size of value"). A status other than NSC_OK stops the backward with that status, and
// with "gradient hook N returned ..." when the hook recorded no message. grad is borrowed.
typedef nsc_status (*nsc_grad_hook_fn)(nsc_tensor *grad, nsc_tensor **replacement, void *ctx);

// Registers fn on t (which must require grad: nsc_tensor_requires_grad).
// Hooks run in registration order. A hook registered before an in-place
// write into t sees the gradient of t's value before the write (torch 2's
// rule). ctx_free (may be NULL) is called on ctx when the hook is removed or
// its tensor's history is freed. Returns a handle > 0, or -1 with an error.
int64_t nsc_tensor_register_hook(nsc_tensor *t, nsc_grad_hook_fn fn, void *ctx,
                                 void (*ctx_free)(void *ctx));

// Removes a hook by handle; allowed from inside the hook itself (it will not
// run again). Fails with NSC_ERR_ARG for an unknown handle.
nsc_status nsc_tensor_remove_hook(nsc_tensor *t, int64_t handle);

#ifdef __cplusplus
}
#endif

#endif
