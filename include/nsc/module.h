// Modules: a tree of named modules with parameters, buffers and a forward
// function; one call entry point that counts calls and runs input/output
// hooks. The intervention graph attaches here. PyTorch's torch.nn.Module.
#ifndef NSC_MODULE_H
#define NSC_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nsc_module nsc_module;

// Every function here takes a NULL module (a failed call's result) without
// crashing: it returns NULL, 0, -1, false or an error status and records
// NSC_ERR_ARG, unless an earlier error is already recorded.
//
// Limits: a child, parameter or buffer name is 1 to 255 bytes without '.',
// '*' or spaces (add_child, replace_child, add_param and add_buffer refuse
// others); a tensor path ("transformer.h.0.attn.c_attn.weight") is at most
// 1023 bytes: _param_at / _buffer_at asked for a longer one's path,
// nsc_module_find_tensor, optimizers over a tree and GPT-2 checkpoints refuse
// it (NSC_ERR_ARG) rather than cut it. Module paths have no limit.

// A module's forward: in[0..n_in) are its inputs (entries may be NULL for
// absent optional inputs); state is the pointer given at creation. Returns
// the output (a new reference) or NULL with nsc_last_status() set: an error,
// or NSC_STOPPED when a hook asked to stop (NULL with nothing recorded is
// turned into NSC_ERR_STATE naming the module). A forward calls its children
// through nsc_module_call, frees its intermediates on every path, and never
// writes into a tensor after returning it.
typedef nsc_tensor *(*nsc_forward_fn)(nsc_module *m, int n_in, nsc_tensor *const *in,
                                      void *state);

// --- creation and the tree ---

// A module of the given type name ("Linear", "MyProbe") running forward on
// state. state_free (may be NULL) is called on state when the module is
// freed. Returns a new module (refcount 1) or NULL.
nsc_module *nsc_module_new(const char *type, nsc_forward_fn forward, void *state,
                           void (*state_free)(void *state));

nsc_module *nsc_module_retain(nsc_module *m);
// Drops a reference; the last frees the module, its children, parameters,
// buffers, hooks and slot. A child retained elsewhere lives on as a root
// (no parent, name "", paths from itself). Accepts NULL.
void nsc_module_free(nsc_module *m);

// Attaches child under name (a single path segment). Retains child. Fails if
// the name is taken, not a valid segment, child already has a parent, or child
// is parent or an ancestor of it (a cycle: NSC_ERR_ARG); nothing changes then.
nsc_status nsc_module_add_child(nsc_module *parent, const char *name, nsc_module *child);
// Replaces the child called name (retains the new one; the old one is
// released and, if retained elsewhere, becomes a root: no parent, name "").
// For attaching adapters over existing modules. Fails, changing nothing, if
// child has a parent or is parent or an ancestor of it.
nsc_status nsc_module_replace_child(nsc_module *parent, const char *name, nsc_module *child);

// Named parameter / buffer (retained). Parameters are trainable (they are
// marked requires_grad when the module is made trainable).
nsc_status nsc_module_add_param(nsc_module *m, const char *name, nsc_tensor *t);
nsc_status nsc_module_add_buffer(nsc_module *m, const char *name, nsc_tensor *t);
// Replaces a parameter or buffer's tensor (same shape and dtype), e.g. when
// loading weights. Retains t. A NULL name or tensor, or an unknown name, is
// NSC_ERR_ARG; another shape or dtype NSC_ERR_SHAPE; nothing changes then.
nsc_status nsc_module_set_tensor(nsc_module *m, const char *name, nsc_tensor *t);

// Borrowed accessors (NULL when absent, with no error; a NULL module or name
// records NSC_ERR_ARG).
const char *nsc_module_name(const nsc_module *m); // "" for a root
const char *nsc_module_type(const nsc_module *m);
nsc_module *nsc_module_parent(const nsc_module *m);
nsc_module *nsc_module_child(const nsc_module *m, const char *name);
nsc_tensor *nsc_module_param(const nsc_module *m, const char *name);
nsc_tensor *nsc_module_buffer(const nsc_module *m, const char *name);
void *nsc_module_state(const nsc_module *m);

// The dotted path from the root ("transformer.h.0.attn"; "" for the root).
// Borrowed, valid while m lives in its tree.
const char *nsc_module_path(const nsc_module *m);

// The module at a dotted path below root ("" is root), or NULL with an error
// naming the first segment that does not exist. An empty segment ("a..b",
// ".a", "a.") is NSC_ERR_ARG, as torch's get_submodule raises.
nsc_module *nsc_module_find(nsc_module *root, const char *path);

// --- iteration in a fixed order (pre-order; children and tensors in the
// order they were added) ---

// Number of modules in the tree (root included) / the i-th (borrowed; NULL
// with NSC_ERR_ARG naming the count for an index outside 0..n-1).
int64_t nsc_module_n_modules(nsc_module *root);
nsc_module *nsc_module_at(nsc_module *root, int64_t index);

// Parameters (or buffers) of the whole tree, with their dotted paths
// relative to root ("transformer.h.0.attn.c_attn.weight"). Borrowed; *path
// lives in a per-thread buffer that the next _param_at / _buffer_at call on
// the thread overwrites: copy it to keep it. An index outside 0..n-1 gives
// NULL with NSC_ERR_ARG naming the count.
int64_t nsc_module_n_params(nsc_module *root);
nsc_tensor *nsc_module_param_at(nsc_module *root, int64_t index, const char **path);
int64_t nsc_module_n_buffers(nsc_module *root);
nsc_tensor *nsc_module_buffer_at(nsc_module *root, int64_t index, const char **path);
// The parameter or buffer at a dotted path, or NULL with an error.
nsc_tensor *nsc_module_find_tensor(nsc_module *root, const char *path);
// Total number of parameter elements (shared tensors counted once).
int64_t nsc_module_param_count(nsc_module *root);

// --- modes ---

// Training (true) or evaluation mode for m and all its children.
void nsc_module_train(nsc_module *m, bool training);
bool nsc_module_is_training(const nsc_module *m);
// Marks every parameter of the tree as requiring grad (or not).
nsc_status nsc_module_requires_grad_(nsc_module *m, bool requires_grad);
// Clears the .grad of every parameter of the tree (torch's
// Module.zero_grad): set_to_none drops them, otherwise they are zeroed in
// place. A parameter shared by several modules is cleared once per slot,
// which changes nothing the second time.
nsc_status nsc_module_zero_grad(nsc_module *m, bool set_to_none);

// --- devices ---

// Moves every parameter and buffer of m's subtree to device (NSC_CPU or
// NSC_CUDA), as torch's model.to(device): a tensor already there is kept;
// the others are replaced by copies that are leaves with the original's
// requires_grad and its .grad moved along; a tensor held by several slots
// (tied weights) stays one tensor. The copies are new tensor objects, so
// build optimizers after moving (torch's advice for .cuda() too) and do not
// keep borrowed parameter pointers across the call. All or nothing: when a
// copy fails (no such device, out of memory) the module is left unchanged
// and the error names the tensor's path, shape and dtype.
nsc_status nsc_module_to(nsc_module *m, nsc_device device);

// --- calls and hooks ---

// Calls m: counts the call, runs input hooks (which may replace inputs),
// forward, then output hooks (which may replace the output). Returns a new
// reference, or NULL with an error or NSC_STOPPED (see nsc_forward_fn).
// n_in is 0..8; in may be NULL only when n_in is 0 (else NSC_ERR_ARG, the
// call not counted).
nsc_tensor *nsc_module_call(nsc_module *m, int n_in, nsc_tensor *const *in);

// Calls m's forward directly: no call counted, no hooks (ApplyModule's
// default, as forward() versus __call__ in PyTorch). Inputs as nsc_module_call.
nsc_tensor *nsc_module_forward(nsc_module *m, int n_in, nsc_tensor *const *in);

typedef enum nsc_hook_kind {
    NSC_HOOK_INPUT,  // before forward: values are the inputs
    NSC_HOOK_OUTPUT, // after forward: values[0] is the output
} nsc_hook_kind;

// A module-call hook. call_index is this call's index within the run (0 for
// the first call since nsc_module_reset_calls). A hook may write new
// references into replace[i] to substitute values[i] (the old value is
// released by the caller). Returning NSC_STOPPED ends the forward pass
// (an early stop); any other non-OK status is an error that aborts it.
typedef nsc_status (*nsc_module_hook_fn)(nsc_module *m, nsc_hook_kind kind, int64_t call_index,
                                         int n, nsc_tensor *const *values,
                                         nsc_tensor **replace, void *ctx);

// Adds a hook (run in the order added; one added by a running hook runs
// from the next call on, as torch). ctx_free (may be NULL) is called on
// ctx when the hook is removed or the module freed. Returns a handle > 0, or
// -1 with an error.
int64_t nsc_module_add_hook(nsc_module *m, nsc_hook_kind kind, nsc_module_hook_fn fn, void *ctx,
                            void (*ctx_free)(void *ctx));
// Removes a hook by handle (also from inside a hook: it will not run again).
// Unlike torch, which runs a snapshot of the hooks, a hook removed by an
// earlier hook of the same call does not run in that call either: removal
// calls ctx_free at once, so running it would use a freed ctx.
nsc_status nsc_module_remove_hook(nsc_module *m, int64_t handle);

// Calls of m since the last reset (the next call's index).
int64_t nsc_module_call_count(const nsc_module *m);
// Resets the call counters of m and its whole tree (the start of a run).
void nsc_module_reset_calls(nsc_module *m);
// Hook invocations on m since it was created (0 for a module without hooks).
int64_t nsc_module_hook_dispatches(const nsc_module *m);

// The batch dimension of the module's input i (kind INPUT) or of its output
// (kind OUTPUT, index 0): where invokes are sliced. -1: the value has no
// batch dimension and is shared whole. Default: 0 for every value. An
// unknown kind, an input outside 0..7, an output index other than 0 or a
// dim outside -1..7 is NSC_ERR_ARG (set changes nothing; get returns -1).
nsc_status nsc_module_set_batch_dim(nsc_module *m, nsc_hook_kind kind, int index, int dim);
int nsc_module_batch_dim(const nsc_module *m, nsc_hook_kind kind, int index);

// --- the graph layer's slot ---

// An opaque pointer the intervention graph keeps on a module (persistent
// edits). Setting a new one frees the old with its destructor.
void nsc_module_set_slot(nsc_module *m, void *slot, void (*slot_free)(void *slot));
void *nsc_module_get_slot(const nsc_module *m);

#ifdef __cplusplus
}
#endif

#endif
