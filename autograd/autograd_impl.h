// The tape: per-tensor autograd state, backward nodes and their edges.
//
// Ownership (no cycles): a tensor owns its nsci_autograd, which retains the
// node that produced it (grad_fn) and a grad slot. A node retains the nodes
// its inputs came from (edges) and the grad slots of its outputs and of the
// leaves it feeds; slots retain only gradients and hooks. So a graph lives
// exactly as long as some tensor it produced.
#ifndef NSC_AUTOGRAD_AUTOGRAD_IMPL_H
#define NSC_AUTOGRAD_AUTOGRAD_IMPL_H

#include "nsc/autograd.h"
#include "tensor/tensor_impl.h"

// --- grad slots: where a tensor's gradient, retain flag and hooks live ---

typedef struct nsci_hook {
    int64_t handle;
    nsc_grad_hook_fn fn;
    void *ctx;
    void (*ctx_free)(void *ctx);
    bool removed;
} nsci_hook;

typedef struct nsci_grad_slot {
    atomic_int refcount;
    nsc_tensor *grad;  // accumulated gradient (leaves, retained non-leaves)
    bool retain_grad;  // non-leaf asked to keep .grad
    bool is_leaf;      // gradients accumulate here during backward
    uint8_t device;    // the tensor's (a gradient from elsewhere is refused)
    int n_hooks, cap_hooks;
    nsci_hook *hooks;
    int running_hooks; // >0 while hooks run: removal only marks
} nsci_grad_slot;

nsci_grad_slot *nsci_slot_new(bool is_leaf, nsc_device device);
nsci_grad_slot *nsci_slot_retain(nsci_grad_slot *slot);
void nsci_slot_release(nsci_grad_slot *slot);
// Runs the slot's hooks on *grad in order; a replacement takes its place
// (the old reference is dropped). Returns the first failing status.
nsc_status nsci_slot_run_hooks(nsci_grad_slot *slot, nsc_tensor **grad);

// --- nodes ---

typedef enum nsci_node_kind {
    NSCI_NODE_OP,          // an op-table row's backward rule
    NSCI_NODE_BASE_VIEW,   // a view of a base regenerated after an in-place write
    NSCI_NODE_COPY_SLICES, // a base whose view was written in place
} nsci_node_kind;

typedef struct nsci_node nsci_node;

// Where the gradient of one input goes: into a node's output, or into a leaf.
typedef struct nsci_edge {
    nsci_node *node;      // retained; NULL for a leaf or no gradient
    int output_index;     // which output of node
    nsci_grad_slot *leaf; // retained; the leaf's slot
} nsci_edge;

// Geometry of a view relative to its base (elements; offset from the base's).
typedef struct nsci_view_geometry {
    int ndim;
    int64_t shape[NSC_MAX_DIMS], stride[NSC_MAX_DIMS];
    int64_t offset;
    nsci_meta base; // the base's shape, dtype and strides
} nsci_view_geometry;

struct nsci_node {
    atomic_int refcount;
    nsci_node_kind kind;
    uint64_t sequence; // creation order: later nodes run first on ties
    const nsci_op_def *def;
    void *params; // a copy of the forward's params
    int n_in, n_out;
    nsci_meta *in_meta;    // [n_in]
    bool *needs_grad;      // [n_in]
    nsci_edge *next;       // [n_in]
    nsc_tensor **saved_in; // [n_in]: detached aliases of saved inputs, or NULL
    int64_t *saved_in_version;
    nsci_meta out_meta[NSCI_MAX_OUTPUTS];
    nsc_tensor *saved_out[NSCI_MAX_OUTPUTS];
    int64_t saved_out_version[NSCI_MAX_OUTPUTS];
    nsci_grad_slot *out_slot[NSCI_MAX_OUTPUTS]; // retained; hooks and retain_grad of outputs
    bool released;                              // saved tensors freed by a backward
    nsci_view_geometry *view;                   // BASE_VIEW and COPY_SLICES
    nsci_node *inner;                           // COPY_SLICES: the in-place op's node
};

nsci_node *nsci_node_new(nsci_node_kind kind, int n_in);
nsci_node *nsci_node_retain(nsci_node *node);
void nsci_node_release(nsci_node *node);
// Frees saved tensors after a backward without retain_graph (edges stay).
void nsci_node_release_saved(nsci_node *node);
// Name for messages: the op's name, "view_of_base" or "copy_slices(<op>)".
const char *nsci_node_name(const nsci_node *node);

// Runs the node's backward: grad_out[n_out] in (zeros or NULL where nothing
// flowed), grad_in[n_in] out (new references, NULL for no gradient).
nsc_status nsci_node_backward(nsci_node *node, nsc_tensor **grad_out, nsc_tensor **grad_in);
// t requires grad: marked so, or a float view of a base that does (a view
// taken before its base required grad follows it, as in torch).
static inline bool nsci_requires_grad(const nsc_tensor *t) {
    return nsci_is_float((nsc_dtype)t->dtype) &&
           (t->requires_grad || (t->base && t->base->requires_grad));
}
// on_stack (16 slots, zeroed) when n fits, else a zeroed array the caller
// frees with nsci_free; NULL with an error on OOM.
nsc_tensor **nsci_grad_array(nsc_tensor **on_stack, int n);

// --- per-tensor state ---

struct nsci_autograd {
    bool requires_grad;
    nsci_node *grad_fn; // retained; NULL for leaves
    int output_index;
    int64_t fn_version; // storage version when grad_fn was set (views regenerate after writes)
    nsci_grad_slot *slot;
};

// The tensor's state, created on demand (NULL on allocation failure).
struct nsci_autograd *nsci_autograd_of(nsc_tensor *t);
void nsci_autograd_free(struct nsci_autograd *ag);

// The edge a gradient for t must follow (regenerating a stale view's
// history first). An empty edge when t does not require grad.
nsc_status nsci_edge_of(nsc_tensor *t, nsci_edge *edge);
void nsci_edge_clear(nsci_edge *edge);

// Sets t's history to (node, output_index), with a fresh grad slot that takes
// over the old one's .grad and retain_grad (not its hooks).
nsc_status nsci_set_history(nsc_tensor *t, nsci_node *node, int output_index);

// A detached alias of t: same storage and geometry, no autograd state.
nsc_tensor *nsci_alias(nsc_tensor *t);

// The dispatch hooks (autograd/record.c).
nsc_status nsci_autograd_check(nsci_call *c);
nsc_status nsci_autograd_record(nsci_call *c);

// Installs the dispatch hooks (idempotent, thread-safe).
void nsci_autograd_install(void);

// Monotonic node counter for sequence numbers.
uint64_t nsci_next_sequence(void);

#endif
