// Optional checks while a model runs (issue 12): a NaN/Inf check that names
// the first module whose output holds a non-finite value, as PyTorch users
// do by hand with forward hooks and torch.isfinite.
#ifndef NSC_CHECK_H
#define NSC_CHECK_H

#include <stdbool.h>

#include "nsc/base.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- non-finite values ---

// Turns the check on or off for module calls made on this thread (off by
// default); returns the previous setting. While on, every nsc_module_call
// checks its output, after the module's output hooks, and fails with
// NSC_ERR_STATE naming the module path, the call index, the first
// non-finite value and its position, e.g.
//   check_finite: output of h.1 (Block, call 0) holds nan at [0,2] (3 of 8
//   values are not finite; its inputs were finite)
// Modules nest, so the innermost module that produced the value fails
// first. META tensors (proxies, validation) and integer and bool tensors
// pass unchecked. Costs a pass over each module output while on, and one
// thread-local read per call while off.
bool nsc_set_check_finite(bool enabled);

// Whether module calls on this thread check their outputs.
bool nsc_check_finite_enabled(void);

// Checks one tensor: NSC_OK when every value is finite (or t is META,
// integer or bool), else NSC_ERR_STATE "check_finite: <what> holds <value>
// at [i,j] (<n> of <numel> values are not finite)". t borrowed; what may be
// NULL ("tensor").
nsc_status nsc_check_finite(nsc_tensor *t, const char *what);

#ifdef __cplusplus
}
#endif

#endif
