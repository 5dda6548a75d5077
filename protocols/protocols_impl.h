// The payload structs of the protocols (protocols/*.c), shared with the
// graph's text form (graph/text_*.c), which reads and writes them. Each
// protocol file keeps its behaviour; only the struct layouts live here.
#ifndef NSC_PROTOCOLS_PROTOCOLS_IMPL_H
#define NSC_PROTOCOLS_PROTOCOLS_IMPL_H

#include "graph/graph_impl.h"

// ApplyModule (protocols/apply_module.c): the module called and whether its
// hooks fire (nsc_module_call) or not (nsc_module_forward).
typedef struct nsci_apply_payload {
    nsc_module *module; // retained
    bool fire_hooks;
} nsci_apply_payload;

// Backward (protocols/backward.c): the pass it runs and retain_graph.
typedef struct nsci_backward_payload {
    int pass;
    bool retain_graph;
} nsci_backward_payload;

// Conditional (protocols/conditional.c): the condition's truth at run time.
typedef struct nsci_condition_payload {
    bool value;
} nsci_condition_payload;

// Grad (protocols/grad.c): the gradient of a value in backward pass `pass`.
typedef struct nsci_grad_payload {
    nsci_graph *graph;
    int32_t node;
    int pass;
    int32_t point; // >= 0: a hook-point read's gradient, sliced per invoke
    int invoke;
    nsc_tensor *target; // the hooked tensor (retained until the hook goes)
    int64_t handle;
} nsci_grad_payload;

// GradSwap (protocols/grad.c): the payload is the int32_t id of the Grad
// node whose gradient it replaces.

// Update (protocols/update.c): the session value it overwrites.
typedef struct nsci_update_payload {
    nsc_trace *target_graph;
    int32_t target;
} nsci_update_payload;

// Bridge: nsci_bridge_payload (graph/graph_impl.h). Log and Function: the
// label / function name as a string. EarlyStop: NULL for a stop at a point,
// a string for an iterator's exit. Lock: NULL, or the save's name (a string
// from nsc_save_as). LocalBackendExecute: the trace it runs (not owned).

#endif
