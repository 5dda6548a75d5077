// The graph's text form (docs/GRAPH_TEXT.md): a versioned JSON document
// holding a trace (or a session of traces) with its invokes and every node,
// written from a graph built in C and read back against a model, so an
// intervention can be written once and run by the `nsc` tool. Reading
// rebuilds the graph through the same calls user code makes, so every node
// passes the same shape rules and gets the same id. Also: named tensor sets
// (the named inputs of a graph text and the results of a run) and names for
// saved values.
#ifndef NSC_GRAPH_TEXT_H
#define NSC_GRAPH_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nsc/generate.h"
#include "nsc/module.h"
#include "nsc/session.h"
#include "nsc/tensor.h"
#include "nsc/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

// The version of the text form this library writes and reads.
#define NSC_GRAPH_TEXT_VERSION 1

// --- named tensor sets ---

// Tensors by name, in the order they were put: a graph text's named inputs
// ("prompt", a steering vector) and the saved values of a run.
typedef struct nsc_tensor_set nsc_tensor_set;

// A new, empty set (caller nsc_tensor_set_free()s) or NULL.
nsc_tensor_set *nsc_tensor_set_new(void);
// Frees the set and drops its references. Accepts NULL.
void nsc_tensor_set_free(nsc_tensor_set *set);
// Puts t under name (retains t; a tensor already under name is released).
// Fails with NSC_ERR_ARG for a NULL set, an empty name or a NULL tensor.
nsc_status nsc_tensor_set_put(nsc_tensor_set *set, const char *name, nsc_tensor *t);
// The tensor under name (borrowed), or NULL (no error recorded).
nsc_tensor *nsc_tensor_set_get(const nsc_tensor_set *set, const char *name);
// Number of tensors; the name and tensor of entry i (borrowed; NULL when
// i is out of range).
int64_t nsc_tensor_set_count(const nsc_tensor_set *set);
const char *nsc_tensor_set_name(const nsc_tensor_set *set, int64_t i);
nsc_tensor *nsc_tensor_set_at(const nsc_tensor_set *set, int64_t i);
// Every tensor of a safetensors file, in header order. Returns a new set or
// NULL with the reader's error (the path, the tensor, the byte offset).
nsc_tensor_set *nsc_tensor_set_load(const char *path);
// Writes the set as a safetensors file (PyTorch and numpy read it).
nsc_status nsc_tensor_set_save(const nsc_tensor_set *set, const char *path);

// --- names of saved values ---

// nsc_save with a name: the name the text form writes and a run's results
// use (an unnamed save is "n<id>", "t<trace>.n<id>" in a session). name is
// copied. A name another save has, or one of those automatic forms (also
// "cache.*", "t<trace>.cache.*", "session.*" and "generated"), is refused. Returns proxy, or NULL
// with an error (as nsc_save).
nsc_tensor *nsc_save_as(nsc_tensor *proxy, const char *name);

// --- writing ---

typedef struct nsc_graph_text_options {
    // Tensors with more elements than this are written by name instead of
    // inline (0: 1024). Names are "n<id>" for constants, "invoke<i>.input<k>"
    // for inputs, "session.<id>" for session values (trace-prefixed in
    // sessions); the tensors go into `external`.
    int64_t inline_max;
    // Written by name whatever their size: an invoke input that is one of
    // these tensors, and a constant equal to one of them (dtype, shape and
    // bits). May be NULL.
    const nsc_tensor_set *names;
    // Receives the tensors written by name that `names` does not hold. May
    // be NULL, in which case a tensor over inline_max is written inline.
    nsc_tensor_set *external;
} nsc_graph_text_options;

// The text of a trace (not run yet, or already run: only the graph is
// written). Returns a NUL-terminated string (caller nsc_text_free()s) or
// NULL with an error: a node that cannot be written (an ApplyModule of a
// module outside the traced model, a persistent edit's nodes).
// options may be NULL (defaults).
char *nsc_trace_to_text(const nsc_trace *tr, const nsc_graph_text_options *options);
// The same for a session: its values, iterators and traces in creation order.
char *nsc_session_to_text(const nsc_session *s, const nsc_graph_text_options *options);
// Frees a string returned above. Accepts NULL.
void nsc_text_free(char *text);

// --- reading ---

// A graph read from text: it owns its trace (or session) and the strings
// its nodes' source positions point at.
typedef struct nsc_graph nsc_graph;

typedef struct nsc_graph_load_options {
    int n_models;                  // the models traces name ("model": i); at least 1
    nsc_module *const *models;     // borrowed; each trace retains its own
    const nsc_tensor_set *tensors; // named tensors the text refers to; may be NULL
    // Non-NULL: the (single) trace is a generation trace with these options,
    // whatever the text says (the `nsc generate` tool's flags).
    const nsc_generate_options *generate;
    size_t max_bytes;  // text size limit (0: 64 MiB)
    int max_depth;     // JSON nesting limit (0: 32)
    int64_t max_nodes; // nodes per trace (0: 1 << 20)
    // Where the text's literal tensors ({"dtype", "shape", "data"}) are made:
    // the models' device (0 is NSC_CPU). Named tensors are used as given.
    nsc_device device;
} nsc_graph_load_options;

// Parses text (len bytes, not necessarily NUL-terminated; name labels
// errors, NULL: "<graph text>") and builds its graph against the models.
// Errors: NSC_ERR_FORMAT for bad JSON, an unknown version, protocol, op,
// parameter or key, a wrong type, a dangling node reference or an
// out-of-range value ("<name>: line L, column C: ..."); a node the graph
// refuses (a shape error) fails with the graph's message naming the node's
// position ("at", else <name>:L:C). Returns a graph (caller
// nsc_graph_free()s) or NULL; a failed parse leaves nothing allocated.
nsc_graph *nsc_graph_parse(const char *text, size_t len, const char *name,
                           const nsc_graph_load_options *options);
// Reads and parses the file at path (named by its path in errors).
nsc_graph *nsc_graph_load(const char *path, const nsc_graph_load_options *options);
// Frees the graph, its traces or session and their values. Accepts NULL.
void nsc_graph_free(nsc_graph *g);

// The graph's traces in order (a single trace is trace 0); borrowed, owned
// by g. NULL when i is out of range.
int nsc_graph_n_traces(const nsc_graph *g);
nsc_trace *nsc_graph_trace(const nsc_graph *g, int i);
// The session, or NULL for a single trace.
nsc_session *nsc_graph_session(const nsc_graph *g);
// Whether the text read the named tensor name ({"name": name}) anywhere, an
// invoke's inputs or a node's arguments (false for g NULL): the `nsc` tool
// refuses a --prompt that a graph holding its own inputs would ignore.
bool nsc_graph_uses_tensor(const nsc_graph *g, const char *name);

// Runs the trace (nsc_trace_run) or the session (nsc_session_run).
nsc_status nsc_graph_run(nsc_graph *g);
// After the run: every saved value by its name, every cached value
// ("cache.<invoke>.<path>.<output|input>"), every session value
// ("session.<id>") and, for a generation trace, the tokens ("generated").
// Values never computed are left out. Returns a new set or NULL.
nsc_tensor_set *nsc_graph_results(nsc_graph *g);
// Writes one line per node: id, protocol, what it does, shape and dtype of
// its value, source position (the `nsc scan` listing).
nsc_status nsc_graph_print(const nsc_graph *g, FILE *out);
// The text of g again: named tensors by their names, everything else
// inline; for a canonical text, the same bytes it was read from.
char *nsc_graph_to_text(const nsc_graph *g);

#ifdef __cplusplus
}
#endif

// Through nsc.h, nsc_save_as records the caller's file:line as the
// nsc/source.h macros do (the library itself compiles without them).
#if defined(NSC_H) && !defined(NSC_NO_SOURCE_MACROS)
#define nsc_save_as(...) (nsc_source_mark(__FILE__, __LINE__), nsc_save_as(__VA_ARGS__))
#endif

#endif
