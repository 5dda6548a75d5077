// Tensor ops, PyTorch names and semantics. Every op:
// - returns a new reference (caller nsc_free()s; views included) or NULL with
//   nsc_last_error() set, and changes no input on failure;
// - accepts NULL inputs and returns NULL without overwriting the first error,
//   so nested calls like nsc_mul(nsc_add(a, b), c) report the first failure
//   (the intermediate leaks on success: free what you name);
// - on a proxy or META input computes only the shape (see nsc/trace.h);
// - records a tape node when grad mode is on and an input requires grad.
// In-place ops (trailing underscore) return a status and update their first
// argument, as PyTorch's do. With grad mode on they refuse (NSC_ERR_STATE,
// nothing written) a leaf that requires grad and a view requiring grad whose
// base is a leaf (a view of a view made a leaf with nsc_requires_grad_ too).
#ifndef NSC_OPS_H
#define NSC_OPS_H

#include "nsc/ops_index.h"
#include "nsc/ops_linalg.h"
#include "nsc/ops_loss.h"
#include "nsc/ops_optim.h"
#include "nsc/ops_pointwise.h"
#include "nsc/ops_reduce.h"
#include "nsc/ops_view.h"

#endif
