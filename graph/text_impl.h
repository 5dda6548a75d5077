// Internals of the graph's text form (graph/text_*.c): tensor literals, op
// parameters through their nsci_param_desc tables, the writer's context and
// the reader's error reporting. docs/GRAPH_TEXT.md describes the format.
#ifndef NSC_GRAPH_TEXT_IMPL_H
#define NSC_GRAPH_TEXT_IMPL_H

#include "nsc/graph_text.h"
#include "protocols/protocols_impl.h"

// --- writing (graph/text_write.c, text_tensor.c) ---

// Where a tensor written by name gets its name when nobody gave one: the
// location key ("n5", "invoke0.input0", "t1.n5", "session.3.item2").
typedef const char *(*nsci_text_hint_fn)(void *ctx, const char *key);

typedef struct nsci_text_writer {
    nsci_buf *b;
    int64_t inline_max;
    const nsc_tensor_set *names;
    nsc_tensor_set *external;
    nsci_text_hint_fn hint; // names a reader recorded (nsc_graph_to_text), or NULL
    void *hint_ctx;
    const nsc_session *session; // NULL: a single trace
    nsc_module *models[64];     // models in order of first use ("model": i)
    int n_models;
    int depth; // indentation level of the line being written
} nsci_text_writer;

// Writes a tensor where the format takes one: by name (a hint for key, an
// entry of names, or, over inline_max, into external under key) or inline.
// input: t is an invoke input (compared with names by identity, else by value).
nsc_status nsci_text_write_tensor(nsci_text_writer *w, nsc_tensor *t, const char *key, bool input);
// Writes {"dtype": ..., "shape": [...], "data": [...]} (no "data" on META).
nsc_status nsci_text_write_literal(nsci_buf *b, nsc_tensor *t);
// Writes an op's params as a JSON object through its desc table.
void nsci_text_write_params(nsci_buf *b, const nsci_op_def *def, const void *params);
// Writes a float as the shortest text that reads back to the same f32 /
// the same double (plain decimals for moderate exponents).
void nsci_text_write_f32(nsci_buf *b, float v);
void nsci_text_write_f64(nsci_buf *b, double v);
// The text of a session (s) or a single trace (tr), naming tensors through
// hint first (may be NULL). Returns the text or NULL (graph/text_write.c).
char *nsci_text_write_hinted(const nsc_session *s, const nsc_trace *tr,
                             const nsc_graph_text_options *options, nsci_text_hint_fn hint,
                             void *hint_ctx);
// Shared by the writers: the indentation of the line, the refusal of a trace
// that ran or failed, the end of a text (NULL after an error or OOM), and a
// session's entries (graph/text_session.c).
void nsci_text_indent(nsci_text_writer *w);
nsc_status nsci_text_check_unrun(const nsc_trace *tr);
char *nsci_text_finish(nsci_buf *b, nsc_status status);
char *nsci_text_write_session(nsci_text_writer *w, const nsc_session *s);
// Writes one trace object's members (model, generate, invokes, nodes).
nsc_status nsci_text_write_trace(nsci_text_writer *w, const nsc_trace *tr, const char *prefix);

// --- reading (graph/text_read.c, text_node.c, text_tensor.c) ---

// Fails with NSC_ERR_FORMAT "<what>: line L, column C: <message>" at v.
nsc_status nsci_text_fail(const char *what, const nsci_json *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Checks that every key of object v is one of keys (NULL-terminated) and
// appears once; fails naming the first other key.
nsc_status nsci_text_check_keys(const char *what, const nsci_json *v, const char *const *keys);
// An integer member in [lo, hi] (absent: *out = dflt, unless required).
nsc_status nsci_text_get_int(const char *what, const nsci_json *obj, const char *key, int64_t lo,
                             int64_t hi, bool required, int64_t dflt, int64_t *out);
// A string member (absent: NULL, unless required).
nsc_status nsci_text_get_string(const char *what, const nsci_json *obj, const char *key,
                                bool required, const char **out);
// A bool member (absent: dflt).
nsc_status nsci_text_get_bool(const char *what, const nsci_json *obj, const char *key, bool dflt,
                              bool *out);
// A tensor literal as a new CPU (or META) tensor, at most max_numel elements.
nsc_tensor *nsci_text_read_literal(const char *what, const nsci_json *v, int64_t max_numel);
// Fills params (params_size bytes, zeroed by the caller) from a JSON object
// through def's desc table; unknown keys and wrong types fail.
nsc_status nsci_text_read_params(const char *what, const nsci_json *v, const nsci_op_def *def,
                                 void *params);

// --- the graph object (graph/text_graph.c) ---

// A tensor the text named: where it was used (location key) and the name.
typedef struct nsci_text_named {
    char *key;
    char *name;
} nsci_text_named;

struct nsc_graph {
    nsc_trace **traces; // a single trace, or the session's traces in order
    int n_traces;
    nsc_session *session;
    nsc_trace *single; // owned when not in a session
    char **strings;    // source positions the nodes point at
    int n_strings, cap_strings;
    nsci_text_named *named;
    int n_named, cap_named;
};

// Keeps a copy of s for as long as g lives; returns it (NULL on OOM).
const char *nsci_text_keep(nsc_graph *g, const char *s);
// Records that the tensor at location key came from the name `name`.
nsc_status nsci_text_remember(nsc_graph *g, const char *key, const char *name);
// The name recorded for key, or NULL (an nsci_text_hint_fn over a graph).
const char *nsci_text_hint(void *graph, const char *key);

// What a node id of the text stands for while the graph is read.
typedef enum nsci_text_kind {
    NSCI_TEXT_NODE,   // a node made by its line: out[] are its proxies (borrowed)
    NSCI_TEXT_CONST,  // a Value line: out[0] is the tensor (owned), made a node by its consumer
    NSCI_TEXT_BRIDGE, // a Bridge line: out[0] is the source's proxy (borrowed)
    NSCI_TEXT_GRAD,   // a Grad line a GradSwap replaces: out[0] is the proxy whose gradient
    NSCI_TEXT_COND,   // a Conditional: node is its id; gate/branch its own block
    NSCI_TEXT_NONE,   // a line without a value (a save, a stop, a cache)
} nsci_text_kind;

typedef struct nsci_text_label {
    int64_t label; // the "id" the text gave
    nsci_text_kind kind;
    int32_t node; // the node made (NODE, COND), or -1
    int n_out;
    nsc_tensor *out[NSCI_MAX_OUTPUTS];
    int64_t gate; // COND: the label of the block it sits in (-1: none)
    bool branch;
    nsc_iterator *iterator; // session "iterate" entries
} nsci_text_label;

// The labels of one graph, in increasing order.
typedef struct nsci_text_labels {
    nsci_text_label *items;
    int64_t n, cap;
} nsci_text_labels;

// The entry for label, or NULL.
nsci_text_label *nsci_text_find(nsci_text_labels *t, int64_t label);
// Appends an entry for label (greater than every earlier one); NULL on OOM.
nsci_text_label *nsci_text_labels_add(nsci_text_labels *t, int64_t label);
void nsci_text_labels_free(nsci_text_labels *t);

// Reader state shared by the document and node readers.
typedef struct nsci_text_reader {
    const char *what; // the text's name in errors
    nsc_graph *graph;
    const nsc_graph_load_options *options;
    int64_t max_nodes;
    nsc_session *session;            // NULL for a single trace
    nsci_text_labels session_labels; // session entries: out[0] is a value's or item's proxy
    nsci_text_labels *traces;        // per trace, its labels (bridges look back)
    int n_traces;
    char **save_names; // names given to saves so far (unique across the text)
    int n_save_names, cap_save_names;
} nsci_text_reader;

// Builds the trace object v into tr (made, no invokes yet): invokes, then
// one node per line; index is the trace's number, prefix its location-key
// prefix ("" or "t1.").
nsc_status nsci_text_read_trace(nsci_text_reader *r, nsc_trace *tr, int index, const nsci_json *v,
                                const char *prefix);

// One node line being read (graph/text_node.c, text_line.c).
typedef struct nsci_text_line {
    nsci_text_reader *r;
    nsc_trace *tr;
    int index; // the trace's number
    nsci_text_labels *labels;
    const nsci_json *v; // the line
    const char *prefix;
    int64_t label;
    const int64_t *swapped; // labels of Grad lines a GradSwap replaces, sorted
    int64_t n_swapped;
} nsci_text_line;

// Fails with "<text>: line L, column C: ..." at `at` (NULL: the line).
#define NSCI_TEXT_FAIL(c, at, ...) nsci_text_fail((c)->r->what, (at) ? (at) : (c)->v, __VA_ARGS__)

// The line's "args": between lo and hi node ids resolved to tensors.
nsc_status nsci_text_line_args(nsci_text_line *c, int lo, int hi, nsc_tensor **out, int *n);
// A label's entry by an "id" member (NULL after an error).
nsci_text_label *nsci_text_line_ref(nsci_text_line *c, const char *key, nsci_text_labels *in);

// One protocol's reader: makes the line's node(s) and fills e.
typedef nsc_status (*nsci_text_line_fn)(nsci_text_line *c, nsci_text_label *e);
typedef struct nsci_text_protocol {
    const char *name;        // "Op", "Intervention", ..., "Cache"
    const char *const *keys; // the keys a line may have besides id, protocol, args, if, else, at
    nsci_text_line_fn read;
    bool gated;  // the node may sit in a conditional block
    bool defers; // Value, Bridge: made later by the node that uses it
} nsci_text_protocol;

// The reader of protocol name, or NULL (graph/text_line.c).
const nsci_text_protocol *nsci_text_protocol_find(const char *name);

// A tensor the text refers to: {"name": ...}, a literal, or (invoke inputs
// of session traces) {"session": id}. Returns a new reference or NULL.
nsc_tensor *nsci_text_read_tensor(nsci_text_reader *r, const nsci_json *v, const char *key,
                                  bool allow_session);

#endif
