// Reading a graph text: the document (format, version, a trace or a
// session), the session's values, iterators and traces (made first, in
// order, then each trace's nodes), the tensors it refers to, and checked
// accessors. Untrusted input: JSON limits, checked types and ranges, errors
// with line and column.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graph/text_impl.h"

enum {
    MAX_LITERAL = 1 << 24
}; // elements in one inline tensor

// --- errors and checked members ---

nsc_status nsci_text_fail(const char *what, const nsci_json *v, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!v) {
        return nsci_fail(NSC_ERR_FORMAT, "%s: %s", what, msg);
    }
    return nsci_fail(NSC_ERR_FORMAT, "%s: line %d, column %d: %s", what, v->line, v->column, msg);
}

static const char *type_word(const nsci_json *v) {
    static const char *const words[] = { "null",     "a bool",   "a number",
                                         "a string", "an array", "an object" };
    return words[v->type];
}

nsc_status nsci_text_check_keys(const char *what, const nsci_json *v, const char *const *keys) {
    if (!v || v->type != NSCI_JSON_OBJECT) {
        return nsci_text_fail(what, v, "expected an object, got %s", v ? type_word(v) : "nothing");
    }
    for (int64_t i = 0; i < v->n_items; i++) {
        bool known = false;
        for (int k = 0; keys[k] && !known; k++) {
            known = strcmp(keys[k], v->keys[i]) == 0;
        }
        if (!known) {
            return nsci_text_fail(what, v->items[i], "unknown key \"%.60s\" here", v->keys[i]);
        }
        for (int64_t j = 0; j < i; j++) {
            if (strcmp(v->keys[j], v->keys[i]) == 0) {
                return nsci_text_fail(what, v->items[i], "key \"%.60s\" appears twice", v->keys[i]);
            }
        }
    }
    return NSC_OK;
}

nsc_status nsci_text_get_int(const char *what, const nsci_json *obj, const char *key, int64_t lo,
                             int64_t hi, bool required, int64_t dflt, int64_t *out) {
    const nsci_json *v = nsci_json_get(obj, key);
    if (!v) {
        *out = dflt;
        return required ? nsci_text_fail(what, obj, "missing \"%s\"", key) : NSC_OK;
    }
    if (v->type != NSCI_JSON_NUMBER || !v->is_int) {
        return nsci_text_fail(what, v, "\"%s\": expected an integer, got %s", key, type_word(v));
    }
    if (v->integer < lo || v->integer > hi) {
        return nsci_text_fail(what, v, "\"%s\": %lld is out of range [%lld, %lld]", key,
                              (long long)v->integer, (long long)lo, (long long)hi);
    }
    *out = v->integer;
    return NSC_OK;
}

nsc_status nsci_text_get_string(const char *what, const nsci_json *obj, const char *key,
                                bool required, const char **out) {
    const nsci_json *v = nsci_json_get(obj, key);
    *out = NULL;
    if (!v) {
        return required ? nsci_text_fail(what, obj, "missing \"%s\"", key) : NSC_OK;
    }
    if (v->type != NSCI_JSON_STRING || strlen(v->string) != v->string_len) {
        return nsci_text_fail(what, v, "\"%s\": expected a string without NUL, got %s", key,
                              type_word(v));
    }
    *out = v->string;
    return NSC_OK;
}

nsc_status nsci_text_get_bool(const char *what, const nsci_json *obj, const char *key, bool dflt,
                              bool *out) {
    const nsci_json *v = nsci_json_get(obj, key);
    *out = dflt;
    if (!v) {
        return NSC_OK;
    }
    if (v->type != NSCI_JSON_BOOL) {
        return nsci_text_fail(what, v, "\"%s\": expected true or false, got %s", key, type_word(v));
    }
    *out = v->boolean;
    return NSC_OK;
}

nsc_tensor *nsci_text_read_tensor(nsci_text_reader *r, const nsci_json *v, const char *key,
                                  bool allow_session) {
    const nsci_json *name = nsci_json_get(v, "name"), *session = nsci_json_get(v, "session");
    if (v->type == NSCI_JSON_OBJECT && (name || session) && v->n_items != 1) {
        return nsci_text_fail(r->what, v,
                              "a tensor is {\"name\": ...}, {\"session\": id} or "
                              "{\"dtype\", \"shape\", \"data\"}"),
               NULL;
    }
    if (name) {
        const char *s;
        if (nsci_text_get_string(r->what, v, "name", true, &s) != NSC_OK) {
            return NULL;
        }
        nsc_tensor *t = nsc_tensor_set_get(r->options->tensors, s);
        if (!t) {
            return nsci_text_fail(r->what, name,
                                  "no tensor named \"%.80s\" was given (%lld named "
                                  "tensors)",
                                  s, (long long)nsc_tensor_set_count(r->options->tensors)),
                   NULL;
        }
        return nsci_text_remember(r->graph, key, s) == NSC_OK ? nsc_retain(t) : NULL;
    }
    if (session) {
        int64_t label;
        nsci_text_label *e = NULL;
        if (!allow_session ||
            nsci_text_get_int(r->what, v, "session", 0, INT32_MAX, true, 0, &label) != NSC_OK) {
            return allow_session ? NULL
                                 : (nsci_text_fail(r->what, v,
                                                   "a session value is an input of "
                                                   "a session trace's invoke only"),
                                    NULL);
        }
        e = nsci_text_find(&r->session_labels, label);
        if (!e || !e->out[0]) {
            return nsci_text_fail(r->what, session, "no session value or iterator %lld",
                                  (long long)label),
                   NULL;
        }
        return nsc_retain(e->out[0]);
    }
    nsc_tensor *t = nsci_text_read_literal(r->what, v, MAX_LITERAL);
    nsc_device device = r->options->device;
    if (t && device != NSC_CPU && nsc_tensor_device(t) == NSC_CPU) {
        nsc_tensor *moved = nsc_to(t, device);
        nsc_free(t);
        t = moved;
        if (!moved) {
            char why[512]; // the error record is about to be rewritten
            snprintf(why, sizeof why, "%s", nsc_last_error());
            nsci_text_fail(r->what, v, "a literal tensor to %s: %s", nsc_device_name(device), why);
        }
    }
    return t;
}

// --- traces ---

static nsc_status read_generate(nsci_text_reader *r, const nsci_json *v, nsc_generate_options *o) {
    static const char *const keys[] = { "max_new_tokens", "sample",     "temperature", "top_k",
                                        "seed",           "stop_token", "use_cache",   NULL };
    const char *w = r->what;
    int64_t seed;
    *o = nsc_generate_options_default();
    const nsci_json *t = nsci_json_get(v, "temperature");
    if (nsci_text_check_keys(w, v, keys) ||
        nsci_text_get_int(w, v, "max_new_tokens", 0, 1 << 20, false, o->max_new_tokens,
                          &o->max_new_tokens) ||
        nsci_text_get_bool(w, v, "sample", o->sample, &o->sample) ||
        nsci_text_get_int(w, v, "top_k", 0, INT32_MAX, false, o->top_k, &o->top_k) ||
        nsci_text_get_int(w, v, "seed", INT64_MIN, INT64_MAX, false, 0, &seed) ||
        nsci_text_get_int(w, v, "stop_token", -1, INT32_MAX, false, o->stop_token,
                          &o->stop_token) ||
        nsci_text_get_bool(w, v, "use_cache", o->use_cache, &o->use_cache)) {
        return NSC_ERR_FORMAT;
    }
    if (t && (t->type != NSCI_JSON_NUMBER || !(t->number > 0))) {
        return nsci_text_fail(w, t, "\"temperature\": expected a number > 0");
    }
    o->temperature = t ? t->number : o->temperature;
    o->seed = (uint64_t)seed;
    return NSC_OK;
}

// The model a trace names ("model": i, default 0).
static nsc_module *model_of(nsci_text_reader *r, const nsci_json *v) {
    int64_t i;
    if (nsci_text_get_int(r->what, v, "model", 0, r->options->n_models - 1, false, 0, &i)) {
        return NULL;
    }
    return r->options->models[i];
}

static nsc_status add_trace(nsci_text_reader *r, nsc_trace *tr) {
    // The text is the whole graph: the nodes of the persistent edits of the
    // model it was written from are in it, and the reading model's are not
    // added (docs/GRAPH_TEXT.md).
    tr->edits_applied = true;
    nsci_text_labels *grown = nsci_realloc(r->traces, (size_t)(r->n_traces + 1) * sizeof *grown);
    nsc_trace **list =
        grown ? nsci_realloc(r->graph->traces, (size_t)(r->n_traces + 1) * sizeof *list) : NULL;
    if (grown) {
        r->traces = grown;
        memset(&r->traces[r->n_traces], 0, sizeof *grown);
    }
    if (!list) {
        return NSC_ERR_OOM;
    }
    r->graph->traces = list;
    list[r->n_traces++] = tr;
    r->graph->n_traces = r->n_traces;
    return NSC_OK;
}

static nsc_status read_single(nsci_text_reader *r, const nsci_json *v) {
    static const char *const keys[] = { "model", "generate", "invokes", "nodes", NULL };
    nsc_generate_options gen;
    const nsci_json *g = nsci_json_get(v, "generate");
    nsc_module *model = nsci_text_check_keys(r->what, v, keys) ? NULL : model_of(r, v);
    if (!model || (g && read_generate(r, g, &gen) != NSC_OK)) {
        return nsc_last_status();
    }
    const nsc_generate_options *o = r->options->generate ? r->options->generate : g ? &gen : NULL;
    nsc_trace *tr = o ? nsc_trace_new_generate(model, o) : nsc_trace_new(model);
    if (!tr) {
        return nsc_last_status();
    }
    r->graph->single = tr;
    if (add_trace(r, tr) != NSC_OK) {
        return NSC_ERR_OOM;
    }
    return nsci_text_read_trace(r, tr, 0, v, "");
}

// --- sessions ---

static nsc_status read_items(nsci_text_reader *r, const nsci_json *v, int64_t id,
                             nsci_text_label *e) {
    if (v->type != NSCI_JSON_ARRAY || v->n_items < 1 || v->n_items > 1 << 20) {
        return nsci_text_fail(r->what, v, "\"iterate\": expected an array of items");
    }
    nsc_tensor **items = nsci_calloc((size_t)v->n_items, sizeof *items);
    nsc_status status = items ? NSC_OK : NSC_ERR_OOM;
    for (int64_t i = 0; i < v->n_items && status == NSC_OK; i++) {
        char key[64];
        snprintf(key, sizeof key, "session.%lld.item%lld", (long long)id, (long long)i);
        items[i] = nsci_text_read_tensor(r, v->items[i], key, false);
        status = items[i] ? NSC_OK : nsc_last_status();
    }
    if (status == NSC_OK) {
        e->iterator = nsc_session_iterate(r->session, (int)v->n_items, items);
        e->out[0] = e->iterator ? nsc_iterator_item(e->iterator) : NULL;
        status = e->out[0] ? NSC_OK : nsc_last_status();
    }
    for (int64_t i = 0; items && i < v->n_items; i++) {
        nsc_free(items[i]);
    }
    nsci_free(items);
    return status;
}

// A value or an iterator entry: {"id": ..., "value": T} / {"id": ..., "iterate": [T...]}.
static nsc_status read_entry(nsci_text_reader *r, const nsci_json *v, int64_t *previous) {
    static const char *const keys[] = { "id", "value", "iterate", NULL };
    int64_t id;
    const nsci_json *value = nsci_json_get(v, "value"), *items = nsci_json_get(v, "iterate");
    if (nsci_text_check_keys(r->what, v, keys) ||
        nsci_text_get_int(r->what, v, "id", *previous + 1, INT32_MAX, true, 0, &id)) {
        return NSC_ERR_FORMAT;
    }
    if (!value == !items) {
        return nsci_text_fail(r->what, v, "a session entry is a value, an iterator or a trace");
    }
    *previous = id;
    nsci_text_label *e = nsci_text_labels_add(&r->session_labels, id);
    if (!e) {
        return NSC_ERR_OOM;
    }
    e->kind = NSCI_TEXT_NODE;
    e->n_out = 1;
    if (items) {
        return read_items(r, items, id, e);
    }
    char key[64];
    snprintf(key, sizeof key, "session.%lld", (long long)id);
    nsc_tensor *t = nsci_text_read_tensor(r, value, key, false);
    e->out[0] = t ? nsc_session_value(r->session, t) : NULL;
    nsc_free(t);
    return e->out[0] ? NSC_OK : nsc_last_status();
}

// A trace entry's shell: its step (or iterator) and its place among the traces.
static nsc_status read_trace_shell(nsci_text_reader *r, const nsci_json *v, int64_t *previous) {
    static const char *const keys[] = { "trace",    "id",      "iterator", "model",
                                        "generate", "invokes", "nodes",    NULL };
    int64_t index, id, it_label;
    nsc_module *model = nsci_text_check_keys(r->what, v, keys) ? NULL : model_of(r, v);
    if (!model ||
        nsci_text_get_int(r->what, v, "trace", r->n_traces, r->n_traces, true, 0, &index)) {
        return nsci_json_get(v, "trace") ? nsc_last_status()
                                         : nsci_text_fail(r->what, v, "missing \"trace\"");
    }
    if (nsci_json_get(v, "generate")) {
        return nsci_text_fail(r->what, nsci_json_get(v, "generate"),
                              "a session's traces are not generation traces");
    }
    bool step = nsci_json_get(v, "id") != NULL;
    if (step == (nsci_json_get(v, "iterator") != NULL)) {
        return nsci_text_fail(r->what, v,
                              "a session trace has an \"id\" (a step) or an "
                              "\"iterator\" (the id of its iterate entry)");
    }
    nsc_trace *tr = NULL;
    if (step) {
        if (nsci_text_get_int(r->what, v, "id", *previous + 1, INT32_MAX, true, 0, &id)) {
            return NSC_ERR_FORMAT;
        }
        *previous = id;
        tr = nsc_session_trace(r->session, model);
    } else {
        if (nsci_text_get_int(r->what, v, "iterator", 0, *previous, true, 0, &it_label)) {
            return NSC_ERR_FORMAT;
        }
        nsci_text_label *e = nsci_text_find(&r->session_labels, it_label);
        if (!e || !e->iterator) {
            return nsci_text_fail(r->what, nsci_json_get(v, "iterator"),
                                  "\"iterator\": no "
                                  "iterate entry has id %lld",
                                  (long long)it_label);
        }
        tr = nsc_iterator_trace(e->iterator, model);
    }
    return tr ? add_trace(r, tr) : nsc_last_status();
}

static nsc_status read_session(nsci_text_reader *r, const nsci_json *v) {
    if (v->type != NSCI_JSON_ARRAY) {
        return nsci_text_fail(r->what, v, "\"session\": expected an array of entries");
    }
    if (!(r->session = r->graph->session = nsc_session_new())) {
        return nsc_last_status();
    }
    int64_t previous = -1;
    for (int64_t i = 0; i < v->n_items; i++) { // the shells, in creation order
        const nsci_json *e = v->items[i];
        nsc_status status = nsci_json_get(e, "trace") ? read_trace_shell(r, e, &previous)
                                                      : read_entry(r, e, &previous);
        if (status != NSC_OK) {
            return status;
        }
    }
    for (int64_t i = 0, t = 0; i < v->n_items; i++) { // then each trace's nodes
        const nsci_json *e = v->items[i];
        if (!nsci_json_get(e, "trace")) {
            continue;
        }
        char prefix[32];
        snprintf(prefix, sizeof prefix, "t%d.", (int)t);
        r->session->current = r->graph->traces[t];
        if (nsci_text_read_trace(r, r->graph->traces[t], (int)t, e, prefix) != NSC_OK) {
            return nsc_last_status();
        }
        t++;
    }
    return NSC_OK;
}

// --- the document ---

static nsc_status read_document(nsci_text_reader *r, const nsci_json *root) {
    static const char *const keys[] = { "format", "version", "trace", "session", NULL };
    const char *format;
    int64_t version;
    if (nsci_text_check_keys(r->what, root, keys) ||
        nsci_text_get_string(r->what, root, "format", true, &format)) {
        return NSC_ERR_FORMAT;
    }
    if (strcmp(format, "nsc-graph") != 0) {
        return nsci_text_fail(r->what, nsci_json_get(root, "format"),
                              "\"format\": expected "
                              "\"nsc-graph\"");
    }
    if (nsci_text_get_int(r->what, root, "version", 1, INT32_MAX, true, 0, &version)) {
        return NSC_ERR_FORMAT;
    }
    if (version != NSC_GRAPH_TEXT_VERSION) {
        return nsci_text_fail(r->what, nsci_json_get(root, "version"),
                              "version %lld: this "
                              "library reads version %d",
                              (long long)version, NSC_GRAPH_TEXT_VERSION);
    }
    const nsci_json *trace = nsci_json_get(root, "trace"),
                    *session = nsci_json_get(root, "session");
    if (!trace == !session) {
        return nsci_text_fail(r->what, root, "expected one of \"trace\" and \"session\"");
    }
    if (session && r->options->generate) {
        return nsci_text_fail(r->what, session, "a session cannot be a generation trace");
    }
    return trace ? read_single(r, trace) : read_session(r, session);
}

static void reader_free(nsci_text_reader *r) {
    for (int i = 0; i < r->n_traces; i++) {
        nsci_text_labels_free(&r->traces[i]);
    }
    nsci_free(r->traces);
    nsci_text_labels_free(&r->session_labels);
    for (int i = 0; i < r->n_save_names; i++) {
        nsci_free(r->save_names[i]);
    }
    nsci_free(r->save_names);
}

nsc_graph *nsc_graph_parse(const char *text, size_t len, const char *name,
                           const nsc_graph_load_options *options) {
    if (!text || !options || options->n_models < 1 || !options->models) {
        return nsci_fail_null(NSC_ERR_ARG, "graph_parse: text, options or models missing");
    }
    for (int i = 0; i < options->n_models; i++) {
        if (!options->models[i]) {
            return nsci_fail_null(NSC_ERR_ARG, "graph_parse: model %d is NULL", i);
        }
    }
    const char *what = name ? name : "<graph text>";
    nsci_json_limits limits = { options->max_bytes ? options->max_bytes : 64u << 20,
                                options->max_depth ? options->max_depth : 32, NULL };
    nsci_json_doc *doc = nsci_json_parse(text, len, &limits, what);
    nsc_graph *g = doc ? nsci_calloc(1, sizeof *g) : NULL;
    if (!g) {
        nsci_json_doc_free(doc);
        return NULL;
    }
    const char *mark_file = nsci_source_file(); // the caller's mark, restored after
    int mark_line = nsci_source_line();
    nsci_text_reader r = { .graph = g,
                           .options = options,
                           .max_nodes = options->max_nodes > 0 ? options->max_nodes : 1 << 20 };
    r.what = nsci_text_keep(g, what);
    nsc_status status = r.what ? read_document(&r, nsci_json_root(doc)) : NSC_ERR_OOM;
    nsc_source_mark(mark_file, mark_line);
    reader_free(&r);
    nsci_json_doc_free(doc);
    if (status != NSC_OK) {
        nsci_error_saved saved;
        nsci_error_save(&saved);
        nsc_graph_free(g);
        nsci_error_restore(&saved);
        return NULL;
    }
    return g;
}

nsc_graph *nsc_graph_load(const char *path, const nsc_graph_load_options *options) {
    if (!path) {
        return nsci_fail_null(NSC_ERR_ARG, "graph_load: path is NULL");
    }
    size_t max = options && options->max_bytes ? options->max_bytes : 64u << 20, len;
    char *text = nsci_read_file(path, max, &len);
    nsc_graph *g = text ? nsc_graph_parse(text, len, path, options) : NULL;
    nsci_free(text);
    return g;
}
