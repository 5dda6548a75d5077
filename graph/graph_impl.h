// The intervention graph's internals: nodes in an integer-indexed arena,
// hook points learned from a META scan of the model, invokes, and the
// protocol table (protocols/protocols.def). graph/ and protocols/ are one layer.
#ifndef NSC_GRAPH_GRAPH_IMPL_H
#define NSC_GRAPH_GRAPH_IMPL_H

#include "nn/nn_impl.h"
#include "nsc/session.h"
#include "nsc/trace.h"

// --- protocols ---

typedef enum nsci_protocol_id {
#define NSCI_PROTOCOL(name) NSCI_PROTO_##name,
#include "protocols/protocols.def"
#undef NSCI_PROTOCOL
    NSCI_N_PROTOCOLS
} nsci_protocol_id;
typedef struct nsc_trace nsci_graph;
typedef struct nsci_gnode nsci_gnode;

// How a protocol's nodes are drawn (DOT), from the reference protocols.py.
typedef struct nsci_style {
    const char *color;
    const char *shape;
    const char *label; // the protocol's name as nnsight shows it
} nsci_style;

// A node kind (NNSIGHT.md §2): what it does at run time, how it re-registers
// after a copy or parse, how it is drawn, and two flags.
typedef struct nsci_protocol {
    const char *name;
    // Runs the node: its args have values. Sets its value(s) or the graph's
    // pending actions. Not called for nodes whose values are delivered
    // (hook-point reads) or given (values).
    nsc_status (*execute)(nsci_graph *g, nsci_gnode *n);
    // Re-registers what the node needs (its hook point) in a graph built by
    // copy or parse. May be NULL.
    nsc_status (*compile)(nsci_graph *g, nsci_gnode *n);
    nsci_style style;
    bool redirect;  // moves to the innermost session/iterator graph being built
    bool condition; // may be gated by an enclosing conditional
} nsci_protocol;

#define NSCI_PROTOCOL(name) extern const nsci_protocol nsci_protocol_##name;
#include "protocols/protocols.def"
#undef NSCI_PROTOCOL

extern const nsci_protocol *const nsci_protocols[NSCI_N_PROTOCOLS];

// --- nodes ---

typedef struct nsci_arg {
    int32_t node;   // producer
    int32_t output; // which of its outputs; -1: an ordering edge only (after a write)
} nsci_arg;

typedef enum nsci_node_state {
    NSCI_NODE_PENDING,
    NSCI_NODE_DONE,
    NSCI_NODE_SKIPPED, // never ran (point not reached, early stop, false condition)
    NSCI_NODE_WAITING, // executed, its value arrives later (a gradient in backward)
} nsci_node_state;

struct nsci_gnode {
    nsci_protocol_id protocol;
    int32_t id;
    nsc_op op; // op nodes
    void *params;
    int n_args;
    nsci_arg *args;
    int n_out;
    nsc_tensor *proxy[NSCI_MAX_OUTPUTS]; // pinned META tensors standing for the outputs
    nsc_tensor *value[NSCI_MAX_OUTPUTS]; // run-time values
    int32_t *consumers;                  // ids of nodes with an arg from this one
    int n_consumers, cap_consumers;
    int32_t remaining; // consumers yet to run (run time): the value is freed at 0
    int32_t missing;   // args without values yet (run time)
    nsci_node_state state;
    bool saved;          // Lock: kept after the run
    int32_t point;       // hook point (reads, swaps, stops), or -1
    int32_t invoke;      // invoke of a hook-point node, or -1
    int64_t ready_seq;   // hook firing after which all its inputs exist (0: at start)
    int32_t root;        // node whose value's storage this one's value views
    int32_t last_writer; // for roots: the latest in-place write into it, or -1
    int last_bridge_step;  // the last session step reading this value through a bridge (-1: none)
    int last_bridge_order; // the last reading trace of that step (creation order), or -1
    int32_t body_point;   // >= 0: runs at every call of that point (NSC_EVERY_CALL reads)
    bool kept_for_calls;  // run time: a per-call body reads it at every call
    int32_t consumers_total; // value consumers (run time: remaining restarts from it)
    int32_t gate;        // the conditional node gating this one, or -1
    bool gate_branch;    // the branch it belongs to (true: the if block)
    const char *file;    // user's source position (static strings from __FILE__)
    int line;
    void *payload;                     // protocol data
    void (*payload_free)(void *payload); // NULL: nsci_free
};

// --- hook points ---

// One (module, input/output, index, call index) the graph reads or writes.
typedef struct nsci_point {
    nsc_module *module;
    nsc_hook_kind kind;
    int index; // input index; 0 for outputs
    int64_t call_index;
    int64_t seq;    // firing order in the run (from the scan)
    nsci_meta meta; // full-batch shape, dtype and strides of the value
    int batch_dim;  // -1: shared by all invokes
    int32_t *nodes; // reads, swaps and stops at this point, in creation order
    int n_nodes, cap_nodes;
    nsc_tensor *live; // run time, gradient traces: the full value the model went on with
} nsci_point;

// What the META scan saw at one module call.
typedef struct nsci_scan_entry {
    nsc_module *module;
    int64_t call_index;
    int64_t seq_in, seq_out; // firing order of its input and output hooks
    int n_in;
    nsci_meta in[NSCI_MAX_MODULE_INPUTS];
    bool in_present[NSCI_MAX_MODULE_INPUTS];
    nsci_meta out;
    bool has_out;
} nsci_scan_entry;

struct nsc_invoke {
    nsc_trace *trace;
    int index;
    int n_inputs;
    nsc_tensor *inputs[NSCI_MAX_MODULE_INPUTS];
    int64_t batch_start, batch_size;
};

typedef enum nsci_trace_state {
    NSCI_TRACE_BUILDING,
    NSCI_TRACE_FAILED,
    NSCI_TRACE_RUNNING,
    NSCI_TRACE_RAN,
} nsci_trace_state;

struct nsc_trace {
    nsc_module *model;
    nsci_trace_state state;
    nsc_status first_status; // the build error that failed the trace
    char first_error[1024];
    nsci_gnode *nodes;
    int32_t n_nodes, cap_nodes;
    nsc_invoke *invokes[64];
    int n_invokes;
    int64_t total_batch;
    nsci_point *points;
    int n_points, cap_points;
    nsci_scan_entry *scan; // NULL until the first hook-point access
    int n_scan, cap_scan;
    int64_t scan_seq;
    // run time
    int32_t *ready; // min-heap of node ids
    int n_ready, cap_ready;
    int64_t held_bytes, peak_held_bytes;
    struct nsci_held *held; // storages referenced by graph values, with counts
    int n_held, cap_held;
    bool needs_grad; // the graph holds gradient or backward nodes
    FILE *log;       // where log nodes print (NULL: stderr)
    struct nsci_cache_entry *cache;
    int n_cache, cap_cache;
    bool stopped; // run time: an early stop fired
    int applying; // run time: applied module calls running (the trace's hooks let them pass)
    bool generate;                   // a generation trace
    nsc_generate_options gen_options;
    nsc_tensor *generated;           // run time: the tokens
    int n_backward;      // backward nodes built so far (passes)
    int backward_pass;   // run time: the pass running now
    int32_t run_below;   // run time: while a Backward runs, only nodes created before it run
    struct nsc_session *session;   // the session running this trace, or NULL
    struct nsc_iterator *iterator; // the iterator it belongs to, or NULL
    int order;                     // creation order within the session
    int step;                      // the session step that runs it
    bool exit_requested;           // run time: an exit node ran
    bool edits_applied;            // the model's persistent edits are nodes (or a text had them)
    int32_t blocks[32];  // open conditional blocks (node ids), innermost last
    bool block_branch[32];
    int n_blocks;
};

// One cached module value (nsc_trace_cache).
typedef struct nsci_cache_entry {
    int invoke;
    nsc_module *module;
    nsc_hook_kind kind;
    nsc_tensor *proxy;
} nsci_cache_entry;

// --- nodes (graph/node.c) ---

// Appends a node of protocol with n_args args, plus an ordering edge after
// the latest in-place write into each value arg's storage (and the gate of
// an open conditional block); returns its id or -1. The caller's source
// position is taken from nsc_source_mark.
int32_t nsci_node_add(nsci_graph *g, nsci_protocol_id protocol, int n_args,
                      const nsci_arg *args);
nsci_gnode *nsci_node(nsci_graph *g, int32_t id);
// n's value args in order (no ordering or gate edge); -1 when over max.
int nsci_value_args(const nsci_gnode *n, nsci_arg *out, int max);
// Gives node id output k a pinned META proxy with meta's geometry (target device dev).
nsc_tensor *nsci_node_make_proxy(nsci_graph *g, int32_t id, int k, const nsci_meta *meta,
                                 nsc_device dev);
// A Value node holding a copy of t (constants); returns its id or -1.
int32_t nsci_node_add_constant(nsci_graph *g, nsc_tensor *t);
// The arg for tensor t in graph g: its node if a proxy of g, a new constant
// node otherwise. Fails for a proxy of another trace.
nsc_status nsci_arg_for(nsci_graph *g, nsc_tensor *t, nsci_arg *arg);
// The graph and output a proxy stands for (NULL for other tensors).
nsci_graph *nsci_proxy_graph(const nsc_tensor *t, int32_t *node, int32_t *output);
// Records a build error: the message gets the source position and node
// context, the trace refuses to run. Returns the status.
nsc_status nsci_graph_fail(nsci_graph *g, int32_t node, nsc_status status);
// Fails if g cannot take new nodes (it ran, failed, or is running).
nsc_status nsci_graph_check_building(nsci_graph *g);
// "node 7 (main.c:12, transformer.h.0 output)": a node's description.
void nsci_node_describe(nsci_graph *g, int32_t id, char *buf, size_t buf_bytes);
// "h.1 output (call 2)" / "h.1 input 0": a hook point in messages.
const char *nsci_point_words(const nsci_graph *g, const nsci_point *p, char *buf, size_t n);
// m's dotted path from the traced model (borrowed), as nsc_invoke_output takes it.
const char *nsci_graph_path(const nsci_graph *g, const nsc_module *m);

// --- hook points (graph/points.c) ---

int32_t nsci_point_get( // finds or adds the point, scanning first if needed; -1 on error
    nsci_graph *g, nsc_module *m, nsc_hook_kind kind, int index, int64_t call_index);
// The per-invoke geometry of point p's value for invoke inv.
void nsci_point_invoke_meta(const nsci_graph *g, const nsci_point *p, const nsc_invoke *inv,
                            nsci_meta *out);
// Registers node id at its point (reads, swaps, stops).
nsc_status nsci_point_add_node(nsci_graph *g, int32_t point, int32_t node);

// A node at a hook point with one value arg (swap, skip) checked against the
// point's per-invoke shape; returns its id or -1 (graph failed).
int32_t nsci_point_write(nsc_invoke *inv, const char *path, nsc_hook_kind kind, int index,
                         int64_t call_index, nsc_tensor *value, nsci_protocol_id protocol);
// The same check for node n (a swap or skip) after shapes changed (compile).
nsc_status nsci_point_write_check(nsci_graph *g, nsci_gnode *n);

// --- the META scan (graph/scan.c) ---

// Runs the model once on META copies of the batched invoke inputs, recording
// every module call's input and output shapes and their firing order.
nsc_status nsci_scan(nsci_graph *g);
const nsci_scan_entry *nsci_scan_find(const nsci_graph *g, const nsc_module *m,
                                      int64_t call_index);
// Builds the batched inputs of all invokes on device (META for the scan).
nsc_status nsci_batch_inputs(nsci_graph *g, nsc_device device, int *n_inputs,
                             nsc_tensor **inputs);

// --- ordering checks (graph/order.c) ---

// Computes node id's ready_seq from its args, and checks a write into a
// hook-point value or an in-place write against earlier readers.
nsc_status nsci_order_node(nsci_graph *g, int32_t id);

// --- conditionals (protocols/conditional.c) ---

// Gates node id by the innermost open block (called by nsci_node_add).
nsc_status nsci_gate_node(nsci_graph *g, int32_t id);
// A gated node about to run: true when its block's branch was taken.
bool nsci_gate_open(nsci_graph *g, const nsci_gnode *n);

// --- gradients (protocols/grad.c) ---

// At a hook point of a gradient trace: the value joins the tape (a non-leaf).
nsc_status nsci_grad_track_point(nsci_graph *g, nsci_point *p, nsc_tensor **value);

// After a run, or before the node runs again: removes a Grad node's tensor
// hook if its gradient never came (its ctx is the node's payload).
void nsci_grad_release(nsci_gnode *n);

// --- sessions (graph/session.c) ---

typedef struct nsci_session_step {
    nsc_trace *trace;              // a trace step, or
    struct nsc_iterator *iterator; // an iterator step
} nsci_session_step;

struct nsc_session {
    nsc_trace *values;  // session graph: values, items, steps; first_error: a failed build
    nsc_trace *current; // the trace built last: ops on session values go there (redirect)
    nsci_session_step *steps;
    int n_steps, cap_steps;
    nsc_trace **traces; // every trace in creation order
    int n_traces, cap_traces;
};

struct nsc_iterator {
    nsc_session *session;
    int step;
    nsc_tensor **items;
    int n_items;
    int32_t item_node; // the Value node of the session graph holding the item
    nsc_trace **traces;
    int n_traces, cap_traces;
    int64_t iterations;
};

// A bridge node's source value.
typedef struct nsci_bridge_payload {
    nsc_trace *source;
    int32_t node, output;
} nsci_bridge_payload;

// Frees a trace whatever its owner (sessions free theirs with it).
void nsci_trace_destroy(nsc_trace *tr);
// Writes tr's nodes and edges into an open DOT digraph, names prefixed.
void nsci_dot_nodes(const nsc_trace *tr, FILE *out, const char *prefix, const char *indent);

// A graph without a model (the session graph).
nsc_trace *nsci_graph_new_empty(void);
// The arg for a proxy of another graph of g's session: a bridge node of g
// (made once per source value). Fails when the source is not earlier.
nsc_status nsci_bridge_arg(nsci_graph *g, nsci_graph *source, int32_t node, int32_t output,
                           nsci_arg *arg);
// The graph an op on these proxies belongs to: the latest trace among
// them; ops on session values alone go to the trace being built
// (protocols' redirect). NULL with an error for unrelated traces, or for
// session values alone before the session has a trace.
nsc_trace *nsci_graph_for(nsc_trace *a, nsc_trace *b);
// Whether n's value must outlive its consumers in this run (saved, read
// through a bridge by a later session step or a later trace of this step,
// an iterator's, or read at every call). Constants stay: a reset keeps them for
// the next iteration, and the caller's reference usually holds them anyway.
static inline bool nsci_bridged_later(const nsc_trace *g, const nsci_gnode *n) {
    return n->last_bridge_step > g->step ||
           (n->last_bridge_step == g->step && n->last_bridge_order > g->order);
}
static inline bool nsci_keep_value(const nsc_trace *g, const nsci_gnode *n) {
    return n->saved || nsci_bridged_later(g, n) || n->kept_for_calls ||
           n->protocol == NSCI_PROTO_value;
}

// Runs a trace (again, for session steps and iterations).
nsc_status nsci_trace_execute(nsc_trace *tr);
// Frees n's values (a session releasing what its last step read).
void nsci_node_drop_values(nsci_graph *g, nsci_gnode *n);
// Makes a trace that ran ready to run again (iterations).
void nsci_trace_reset(nsc_trace *tr);
// Re-locates point p from a new scan (graph/points.c).
nsc_status nsci_point_relocate(nsci_graph *g, nsci_point *p);
// A META stand-in (not a proxy) with the current geometry of arg a.
nsc_tensor *nsci_arg_twin(nsci_graph *g, nsci_arg a);
// Gives proxy the geometry (shape, strides, offset) of like.
void nsci_proxy_reshape(nsc_tensor *proxy, const nsc_tensor *like);

// Validates an iterator's traces again for a new item shape.
nsc_status nsci_graph_revalidate(nsc_trace *tr);
// The current value of an invoke input (a session proxy resolves to its value).
nsc_tensor *nsci_invoke_input_value(const nsc_invoke *inv, int i, nsc_device device);

// --- generation and every-call bodies (graph/generate.c) ---

// The META scan of a generation run: every step's shapes, then the generator.
nsc_status nsci_scan_generation(nsci_graph *g, int n_in, nsc_tensor **in);
// Runs the generation with the batched inputs (the trace's forward).
nsc_status nsci_run_generation(nsci_graph *g, int n_in, nsc_tensor **in);
// Before an every-call point fires again: its body starts afresh.
nsc_status nsci_body_reset(nsci_graph *g, int32_t point);
// Sets node id's body from its args (or its point); fails for two bodies.
nsc_status nsci_body_of(nsci_graph *g, int32_t id);

// --- running (graph/run.c) ---

// Marks n skipped (a false condition): its args are released at once, value
// consumers are skipped too, ordering consumers released.
nsc_status nsci_node_skip(nsci_graph *g, nsci_gnode *n);
// Wakes n's consumers after n got its values.
nsc_status nsci_wake_consumers(nsci_graph *g, nsci_gnode *n);

// Sets node id's output k to value (retained) and wakes its consumers.
void nsci_node_deliver(nsci_graph *g, int32_t id, int k, nsc_tensor *value);
// Queues n to run (if it is a node that executes).
nsc_status nsci_node_queue(nsci_graph *g, nsci_gnode *n);
// Runs every ready node in creation order.
nsc_status nsci_run_ready(nsci_graph *g);
// The value of arg a at run time (borrowed).
nsc_tensor *nsci_arg_value(nsci_graph *g, nsci_arg a);

// ApplyModule for module m on xs (protocols/apply_module.c).
nsc_tensor *nsci_graph_apply(nsc_trace *tr, nsc_module *m, int n, nsc_tensor *const *xs,
                             bool fire_hooks);
void nsci_apply_install(void);

// Builds the model's persistent edits for every invoke of g, once
// (graph/edit.c).
nsc_status nsci_apply_edits(nsci_graph *g);
// The shape scan, if it has not run, then the persistent edits: what the
// first hook-point access needs.
nsc_status nsci_scan_once(nsci_graph *g);

// Installs the dispatch hooks of graph/ (idempotent).
void nsci_graph_install(void);

#endif
