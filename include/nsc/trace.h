// Traces: nnsight's intervention graph over a model run (NNSIGHT.md). Build
// a graph of proxies against a model and its inputs (invokes), then run the
// model once; each node computes when its data exists.
//
// Ownership: a trace retains its model and the inputs of its invokes.
// Proxies (tensors standing for nodes, on the META device) and invoke handles
// belong to the trace: never free them (nsc_free on a proxy does nothing).
// Constant tensors used in a graph are copied when the node is made, so a
// later change to the caller's tensor is not seen.
// Errors: a bad call returns NULL (or a status) at once with a message that
// names the caller's file:line (through the same-named macros of
// nsc/source.h), the op, the shapes and the module path; the trace then
// refuses to run. One trace is used from one thread; different traces on
// different threads are fine.
#ifndef NSC_TRACE_H
#define NSC_TRACE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nsc/generate.h"
#include "nsc/module.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nsc_trace nsc_trace;
typedef struct nsc_invoke nsc_invoke;

// --- traces and invokes ---

// A new trace over model (retained). Caller frees with nsc_trace_free.
nsc_trace *nsc_trace_new(nsc_module *model);
// Frees the trace, its nodes, proxies and saved values. Accepts NULL.
void nsc_trace_free(nsc_trace *tr);

// Adds an invoke: one input batch for the model (its inputs, in the model's
// order; inputs are retained). Invokes run together as one batch,
// concatenated along each input's batch dim; token-id inputs ([B, T] i64 as
// input 0) of different lengths are left-padded with an attention mask
// (input 1) and position ids (input 2) as Hugging Face does. Add every
// invoke before reading hook points. The handle belongs to tr. With one
// invoke the model is called with the input tensors themselves (as
// model(x) in PyTorch), so an in-place edit of a model input point writes
// into them; with several it writes into their batched copy. Clone an
// input that must stay as it is.
nsc_invoke *nsc_trace_invoke(nsc_trace *tr, int n_inputs, nsc_tensor *const *inputs);
// Number of rows the invoke contributes to the batch.
int64_t nsc_invoke_batch_size(const nsc_invoke *inv);

// --- generation traces ---

// A trace over a generation run (nsc/generate.h) of a GPT-2: call index k
// of every module is generation step k; the final tokens are the output of
// the "generator" module (call 0). options is copied and checked as
// nsc_generate checks them (max_new_tokens at most n_positions - 1; against
// the prompt's length at the shape scan): NULL and NSC_ERR_ARG. A NULL model
// keeps the error already recorded. Caller frees.
nsc_trace *nsc_trace_new_generate(nsc_module *model, const nsc_generate_options *options);
// After the run: the tokens generated ([B, T + n] i64), a new reference.
nsc_tensor *nsc_trace_generated(nsc_trace *tr);

// --- hook points (nnsight's .output / .input, call index = .next()) ---

// A call index meaning every call of the point (every generation step):
// nodes that depend on such a read form a body run at each call without
// unrolling, their values freed per call (a saved one keeps the last call's).
// Its proxy has the first call's shape; the body must fit every call's.
#define NSC_EVERY_CALL (-1)

// A proxy for the output of the module at path (the model itself for "") at
// its call_index-th call in this run, for this invoke's rows only.
nsc_tensor *nsc_invoke_output(nsc_invoke *inv, const char *path, int64_t call_index);
// The same for the module's input_index-th input.
nsc_tensor *nsc_invoke_input(nsc_invoke *inv, const char *path, int input_index,
                             int64_t call_index);
// Replaces this invoke's rows of a hook point's value with value (a proxy or
// a tensor of the point's per-invoke shape, broadcast to it). Later reads of
// the point see the replacement; earlier ones the original.
nsc_status nsc_invoke_set_output(nsc_invoke *inv, const char *path, int64_t call_index,
                                 nsc_tensor *value);
nsc_status nsc_invoke_set_input(nsc_invoke *inv, const char *path, int input_index,
                                int64_t call_index, nsc_tensor *value);

// In-place edits of a hook point need no call of their own: write into the
// proxy or a view of it with nsc_copy_, nsc_zero_, nsc_add_, ... (slice
// assignment), which edits only this invoke's rows of the live activation.

// --- values ---

// Keeps the proxy's value after the run (nnsight's .save()). Returns proxy.
nsc_tensor *nsc_save(nsc_tensor *proxy);

// The value of a saved proxy after a run: a new reference to a real tensor
// that outlives the trace. Fails naming the node when the proxy was not
// saved, or its value was never computed (a point not reached).
nsc_tensor *nsc_trace_get(nsc_trace *tr, nsc_tensor *proxy);

// Runs the model once with every invoke and executes the graph. A trace runs
// once; a second run, or a run of a trace with build errors, is refused.
// Returns NSC_OK, or the first error (nothing of the run is kept but saved
// values computed before it; the model's weights are never changed).
nsc_status nsc_trace_run(nsc_trace *tr);

// --- sub-modules and functions inside the graph ---

// Calls the module at path on x as one node (ApplyModule: `lm_head(ln_f(h))`
// for a logit lens), validated by a META forward. Its hooks do not fire.
// The call runs apart from the model's own: without the model's KV cache
// (neither read nor extended), counting no call, and firing no hook point
// of the trace, so the model's later calls keep their indices.
nsc_tensor *nsc_trace_apply(nsc_trace *tr, const char *path, nsc_tensor *x);
// The same with several inputs; fire_hooks runs the hooks added with
// nsc_module_add_hook too (still no hook point of the trace).
nsc_tensor *nsc_trace_apply_n(nsc_trace *tr, const char *path, int n, nsc_tensor *const *xs,
                              bool fire_hooks);

// A C function usable as a graph node (nnsight's apply), by name so graphs
// stay serializable. It receives real tensors at run time and META tensors
// during validation, so it should be written with nsc ops. Returns a new
// reference or NULL with an error.
typedef nsc_tensor *(*nsc_graph_fn)(int n, nsc_tensor *const *args, void *ctx);
// Registers fn under name (process-wide; register before building graphs).
nsc_status nsc_function_register(const char *name, nsc_graph_fn fn, void *ctx);
// A node calling the registered function name on args.
nsc_tensor *nsc_trace_call(nsc_trace *tr, const char *name, int n, nsc_tensor *const *args);

// --- control ---

// Stops the model's forward right after the call_index-th call of the
// module at path returns (nnsight's .stop()): modules after it are not
// called, values saved before it are kept, nodes that needed later points
// are skipped (reading them is an error).
nsc_status nsc_trace_stop(nsc_trace *tr, const char *path, int64_t call_index);

// Skips a module: its forward is not run at its call_index-th call and this
// invoke's rows of its output are value. The forward is skipped when every
// invoke skips the call; otherwise it runs and the rows are replaced.
nsc_status nsc_invoke_skip(nsc_invoke *inv, const char *path, int64_t call_index,
                           nsc_tensor *value);

// Prints "<label>: <value>" when the value is computed (nnsight's log), to
// the trace's log stream (stderr unless set with nsc_trace_set_log).
nsc_status nsc_trace_log(nsc_trace *tr, const char *label, nsc_tensor *proxy);
void nsc_trace_set_log(nsc_trace *tr, FILE *stream);

// Saves the output (and input 0 when inputs) of the first call of every
// module whose path matches pattern, per dot-separated segment with shell
// wildcards ("transformer.h.*.attn"; "*" alone matches every module, "" the root).
// Returns the number of modules matched, or -1 with an error.
int64_t nsc_trace_cache(nsc_trace *tr, nsc_invoke *inv, const char *pattern, bool inputs);
// After the run: the cached value of path for inv (kind OUTPUT or INPUT), a
// new reference; an error naming the path when it was not cached.
nsc_tensor *nsc_trace_cache_get(nsc_trace *tr, nsc_invoke *inv, const char *path,
                                nsc_hook_kind kind);

// Scan: the graph is validated while it is built (every proxy has its shape
// from the moment it exists). Returns NSC_OK when the graph so far is valid,
// else the first build error; runs the shape scan if no point was read yet.
nsc_status nsc_trace_check(nsc_trace *tr);

// --- persistent edits (nnsight's model.edit()) ---

// Adds interventions to every invoke of every later trace of model (plain,
// session and iterator traces): fn is called for each invoke at the trace's
// first hook-point access (or at its run, if it reads none) and builds its
// nodes as user code would, before the user's, so the user's reads see the
// edited model. A graph read from text gets no edits added. Kept in the
// model's graph slot until cleared. ctx_free (may be NULL) is called on ctx
// when the edit is cleared or the model freed.
typedef nsc_status (*nsc_edit_fn)(nsc_trace *tr, nsc_invoke *inv, void *ctx);
nsc_status nsc_model_edit(nsc_module *model, nsc_edit_fn fn, void *ctx,
                          void (*ctx_free)(void *ctx));
// Removes every edit of model.
void nsc_model_edit_clear(nsc_module *model);

// --- export ---

// Writes the graph in Graphviz DOT, each node styled by its protocol (the
// reference protocols.py styles). Returns NSC_OK or an I/O error.
nsc_status nsc_trace_dot(const nsc_trace *tr, FILE *out);

// --- gradients (issue 8; nnsight's .grad and loss.backward()) ---

// Back-propagates from loss (a one-element proxy) as a node; one backward
// covers the whole batch of every invoke. The forward records the tape only
// when the graph holds gradient or backward nodes. Returns a proxy of loss
// itself that exists after the backward (later nodes that depend on it run
// after it, e.g. an optimizer step). During the pass only nodes created
// before it run. Refused in a generation trace (it records nothing).
nsc_tensor *nsc_trace_backward(nsc_tensor *loss, bool retain_graph);

// A proxy for the gradient of proxy's value in the next backward traced
// after this call (g1 from pass 0, then g2 from pass 1 with retain_graph).
// For a hook-point read it is the gradient with respect to the module's
// value (this invoke's rows); for a read made after set_output, the
// replacement's. Read it, save it, or edit it in place: the edit flows on
// to earlier layers and leaves. Refused for every-call reads and in a
// generation trace.
nsc_tensor *nsc_proxy_grad(nsc_tensor *proxy);
// Replaces that gradient with value (same shape) for everything upstream.
// value may not need a gradient arriving later in the pass (that of an
// earlier hook point): refused.
nsc_status nsc_proxy_set_grad(nsc_tensor *proxy, nsc_tensor *value);

// --- conditionals ---

// Nodes created until the matching nsc_trace_end run only if cond (a
// one-element proxy or tensor; reduce with nsc_all/nsc_any) is true at run
// time; nsc_trace_else switches to the false branch. Nestable. A block that
// does not run releases everything it would have consumed; hook-point reads
// inside a block are not gated (their values exist either way).
nsc_status nsc_trace_if(nsc_trace *tr, nsc_tensor *cond);
nsc_status nsc_trace_else(nsc_trace *tr);
nsc_status nsc_trace_end(nsc_trace *tr);

// --- inspection ---

// Number of nodes in the trace's graph.
int64_t nsc_trace_n_nodes(const nsc_trace *tr);
// The node id of a proxy (-1 if it is not one of tr's).
int64_t nsc_trace_node_id(const nsc_trace *tr, const nsc_tensor *proxy);
// Bytes of tensor data the graph holds now (values waiting for consumers,
// saved values); for memory tests.
int64_t nsc_trace_held_bytes(const nsc_trace *tr);
// The largest nsc_trace_held_bytes seen during the last run.
int64_t nsc_trace_peak_held_bytes(const nsc_trace *tr);

#ifdef __cplusplus
}
#endif

#endif
