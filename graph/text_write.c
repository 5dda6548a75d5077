// Writing a graph as text (docs/GRAPH_TEXT.md): a trace's invokes and one
// line per node, in id order, each with its protocol, payload, value args
// (ordering and gate edges are derived again when the text is read), gate
// and source position. Canonical: fixed key order and indentation,
// shortest round-trip numbers.
#include <string.h>

#include "graph/text_impl.h"

void nsci_text_indent(nsci_text_writer *w) {
    for (int i = 0; i < w->depth; i++) {
        nsci_buf_puts(w->b, "  ");
    }
}

static void write_ref(nsci_buf *b, nsci_arg a) {
    if (a.output == 0) {
        nsci_buf_printf(b, "%d", a.node);
    } else {
        nsci_buf_printf(b, "[%d, %d]", a.node, a.output);
    }
}

// The value args (ordering and gate edges are not written: reading derives them).
static void write_args(nsci_buf *b, const nsci_gnode *n) {
    bool first = true;
    for (int i = 0; i < n->n_args; i++) {
        if (n->args[i].output >= 0) {
            nsci_buf_puts(b, first ? ", \"args\": [" : ", ");
            write_ref(b, n->args[i]);
            first = false;
        }
    }
    nsci_buf_puts(b, first ? "" : "]");
}

static void write_string(nsci_buf *b, const char *key, const char *s) {
    nsci_buf_printf(b, ", \"%s\": ", key);
    nsci_buf_json_string(b, s, strlen(s));
}

static void write_call(nsci_buf *b, int64_t call) {
    if (call == NSC_EVERY_CALL) {
        nsci_buf_puts(b, ", \"call\": \"every\"");
    } else {
        nsci_buf_printf(b, ", \"call\": %lld", (long long)call);
    }
}

// "module", "kind", "index" (inputs), "call" of a hook point.
static void write_point(nsci_buf *b, const nsc_trace *tr, int32_t point, bool with_kind) {
    const nsci_point *p = &tr->points[point];
    write_string(b, "module", nsci_graph_path(tr, p->module));
    if (with_kind) {
        nsci_buf_printf(b, ", \"kind\": \"%s\"", p->kind == NSC_HOOK_OUTPUT ? "output" : "input");
        if (p->kind == NSC_HOOK_INPUT) {
            nsci_buf_printf(b, ", \"index\": %d", p->index);
        }
    }
    write_call(b, p->call_index);
}

static nsc_status write_value_node(nsci_text_writer *w, const nsc_trace *tr, const nsci_gnode *n,
                                   const char *prefix) {
    (void)tr;
    if (!n->value[0]) {
        return nsci_fail(NSC_ERR_STATE,
                         "graph text: the constant of node %d was released by the "
                         "run: write the text before running",
                         n->id);
    }
    char key[96];
    snprintf(key, sizeof key, "%sn%d", prefix, n->id);
    nsci_buf_puts(w->b, ", \"tensor\": ");
    return nsci_text_write_tensor(w, n->value[0], key, false);
}

static nsc_status write_apply(nsci_text_writer *w, const nsc_trace *tr, const nsci_gnode *n) {
    const nsci_apply_payload *p = n->payload;
    const char *path = nsci_graph_path(tr, p->module);
    nsci_error_saved saved;
    nsci_error_save(&saved);
    nsc_module *found = nsc_module_find(tr->model, path);
    nsci_error_restore(&saved);
    if (found != p->module) {
        return nsci_fail(NSC_ERR_UNSUPPORTED,
                         "graph text: node %d applies a module (%s) that is "
                         "not part of the traced model",
                         n->id, nsc_module_type(p->module));
    }
    write_string(w->b, "module", path);
    nsci_buf_printf(w->b, ", \"hooks\": %s", p->fire_hooks ? "true" : "false");
    return NSC_OK;
}

static nsc_status write_bridge(nsci_text_writer *w, const nsci_gnode *n) {
    const nsci_bridge_payload *p = n->payload;
    if (p->source == w->session->values) {
        nsci_buf_printf(w->b, ", \"from\": {\"session\": %d}", p->node);
    } else {
        nsci_buf_printf(w->b, ", \"from\": {\"trace\": %d, \"node\": %d", p->source->order,
                        p->node);
        nsci_buf_printf(w->b, p->output ? ", \"output\": %d}" : "}", p->output);
    }
    return NSC_OK;
}

static void write_op(nsci_buf *b, const nsci_gnode *n) {
    nsci_buf_printf(b, ", \"op\": \"%s\"", nsci_op_defs[n->op]->name);
    if (nsci_op_defs[n->op]->params) {
        nsci_buf_puts(b, ", \"params\": ");
        nsci_text_write_params(b, nsci_op_defs[n->op], n->params);
    }
}

// Members of the nodes tied to a hook point: reads, swaps, skips, stops.
static void write_point_node(nsci_buf *b, const nsc_trace *tr, const nsci_gnode *n) {
    if (n->protocol == NSCI_PROTO_early_stop && n->payload) {
        nsci_buf_puts(b, ", \"exit\": true"); // an iterator's exit has no point
        return;
    }
    bool with_kind = n->protocol == NSCI_PROTO_intervention || n->protocol == NSCI_PROTO_swap;
    write_point(b, tr, n->point, with_kind);
    if (n->protocol != NSCI_PROTO_early_stop) {
        nsci_buf_printf(b, ", \"invoke\": %d", n->invoke);
    }
}

// Members held in a small payload: a name or label, a flag, a node id.
static void write_small_payload(nsci_buf *b, const nsci_gnode *n) {
    switch (n->protocol) {
        case NSCI_PROTO_lock:
        case NSCI_PROTO_function:
        case NSCI_PROTO_log:
            if (n->payload) { // a save's name, a function's name, a log's label
                write_string(b,
                             n->protocol == NSCI_PROTO_lock       ? "name"
                             : n->protocol == NSCI_PROTO_function ? "function"
                                                                  : "label",
                             n->payload);
            }
            break;
        case NSCI_PROTO_backward:
            nsci_buf_printf(b, ", \"retain_graph\": %s",
                            ((const nsci_backward_payload *)n->payload)->retain_graph ? "true"
                                                                                      : "false");
            break;
        case NSCI_PROTO_grad_swap:
            nsci_buf_printf(b, ", \"grad\": %d", *(const int32_t *)n->payload);
            break;
        default: // update
            nsci_buf_printf(b, ", \"target\": %d",
                            ((const nsci_update_payload *)n->payload)->target);
            break;
    }
}

// The protocol-specific members of node n (between "protocol" and "args").
static nsc_status write_payload(nsci_text_writer *w, const nsc_trace *tr, const nsci_gnode *n,
                                const char *prefix) {
    switch (n->protocol) {
        case NSCI_PROTO_op:
            write_op(w->b, n);
            return NSC_OK;
        case NSCI_PROTO_value:
            return write_value_node(w, tr, n, prefix);
        case NSCI_PROTO_intervention:
        case NSCI_PROTO_swap:
        case NSCI_PROTO_skip:
        case NSCI_PROTO_early_stop:
            write_point_node(w->b, tr, n);
            return NSC_OK;
        case NSCI_PROTO_lock:
        case NSCI_PROTO_function:
        case NSCI_PROTO_log:
        case NSCI_PROTO_backward:
        case NSCI_PROTO_grad_swap:
        case NSCI_PROTO_update:
            write_small_payload(w->b, n);
            return NSC_OK;
        case NSCI_PROTO_apply_module:
            return write_apply(w, tr, n);
        case NSCI_PROTO_bridge:
            return write_bridge(w, n);
        case NSCI_PROTO_grad:
        case NSCI_PROTO_conditional:
            return NSC_OK;
        default:
            return nsci_fail(NSC_ERR_UNSUPPORTED,
                             "graph text: node %d: a %s node cannot be written inside a trace",
                             n->id, nsci_protocols[n->protocol]->name);
    }
}

// The value args of args_of (NULL: none), the gate of gate_of and the source
// position of pos_of.
static void write_tail(nsci_buf *b, const nsci_gnode *args_of, const nsci_gnode *gate_of,
                       const nsci_gnode *pos_of) {
    if (args_of) {
        write_args(b, args_of);
    }
    if (gate_of->gate >= 0) {
        nsci_buf_printf(b, ", \"%s\": %d", gate_of->gate_branch ? "if" : "else", gate_of->gate);
    }
    if (pos_of->file) {
        char at[600];
        snprintf(at, sizeof at, "%s:%d", pos_of->file, pos_of->line);
        write_string(b, "at", at);
    }
}

// A cache entry's nodes: the read of the output and its save, then (with
// inputs) the read of input 0 and its save. Returns how many nodes it spans.
static int cache_span(const nsc_trace *tr, int32_t id, int *entry) {
    for (int i = 0; i < tr->n_cache; i++) {
        int32_t node;
        nsci_proxy_graph(tr->cache[i].proxy, &node, NULL);
        if (node == id && tr->cache[i].kind == NSC_HOOK_OUTPUT) {
            *entry = i;
            bool inputs = i + 1 < tr->n_cache && tr->cache[i + 1].kind == NSC_HOOK_INPUT &&
                          tr->cache[i + 1].module == tr->cache[i].module;
            return inputs ? 4 : 2;
        }
    }
    return 0;
}

static void write_cache_line(nsci_text_writer *w, const nsc_trace *tr, int32_t id, int entry,
                             int span) {
    const nsci_cache_entry *e = &tr->cache[entry];
    nsci_buf_printf(w->b, "{\"id\": %d, \"protocol\": \"Cache\"", id);
    write_string(w->b, "module", nsci_graph_path(tr, e->module));
    nsci_buf_printf(w->b, ", \"invoke\": %d, \"inputs\": %s", e->invoke,
                    span == 4 ? "true" : "false");
    write_tail(w->b, NULL, &tr->nodes[id + 1], &tr->nodes[id]); // the saves' gate
    nsci_buf_puts(w->b, "}");
}

static nsc_status write_nodes(nsci_text_writer *w, const nsc_trace *tr, const char *prefix) {
    nsci_text_indent(w);
    nsci_buf_puts(w->b, tr->n_nodes ? "\"nodes\": [\n" : "\"nodes\": []\n");
    w->depth++;
    for (int32_t id = 0; id < tr->n_nodes;) {
        const nsci_gnode *n = &tr->nodes[id];
        int entry, span = cache_span(tr, id, &entry);
        nsci_text_indent(w);
        if (span) {
            write_cache_line(w, tr, id, entry, span);
        } else {
            nsci_buf_printf(w->b, "{\"id\": %d, \"protocol\": \"%s\"", id,
                            nsci_protocols[n->protocol]->name);
            if (write_payload(w, tr, n, prefix) != NSC_OK) {
                return nsc_last_status();
            }
            write_tail(w->b, n, n, n);
            nsci_buf_puts(w->b, "}");
        }
        id += span ? span : 1;
        nsci_buf_puts(w->b, id < tr->n_nodes ? ",\n" : "\n");
    }
    w->depth--;
    if (tr->n_nodes) {
        nsci_text_indent(w);
        nsci_buf_puts(w->b, "]\n");
    }
    return NSC_OK;
}

static nsc_status write_invokes(nsci_text_writer *w, const nsc_trace *tr, const char *prefix) {
    nsci_text_indent(w);
    nsci_buf_puts(w->b, tr->n_invokes ? "\"invokes\": [\n" : "\"invokes\": [],\n");
    w->depth++;
    for (int i = 0; i < tr->n_invokes; i++) {
        const nsc_invoke *inv = tr->invokes[i];
        nsci_text_indent(w);
        nsci_buf_puts(w->b, "{\"inputs\": [");
        for (int k = 0; k < inv->n_inputs; k++) {
            nsci_buf_puts(w->b, k ? ", " : "");
            char key[96];
            snprintf(key, sizeof key, "%sinvoke%d.input%d", prefix, i, k);
            if (!inv->inputs[k]) {
                nsci_buf_puts(w->b, "null");
            } else if (nsci_text_write_tensor(w, inv->inputs[k], key, true) != NSC_OK) {
                return nsc_last_status();
            }
        }
        nsci_buf_puts(w->b, i + 1 < tr->n_invokes ? "]},\n" : "]}\n");
    }
    w->depth--;
    if (tr->n_invokes) {
        nsci_text_indent(w);
        nsci_buf_puts(w->b, "],\n");
    }
    return NSC_OK;
}

static void write_generate(nsci_text_writer *w, const nsc_generate_options *o) {
    nsci_text_indent(w);
    nsci_buf_printf(w->b,
                    "\"generate\": {\"max_new_tokens\": %lld, \"sample\": %s, "
                    "\"temperature\": ",
                    (long long)o->max_new_tokens, o->sample ? "true" : "false");
    nsci_text_write_f64(w->b, o->temperature);
    // The seed's 64 bits as a signed integer (JSON readers keep int64 exact).
    nsci_buf_printf(w->b,
                    ", \"top_k\": %lld, \"seed\": %lld, \"stop_token\": %lld, "
                    "\"use_cache\": %s},\n",
                    (long long)o->top_k, (long long)o->seed, (long long)o->stop_token,
                    o->use_cache ? "true" : "false");
}

static int model_index(nsci_text_writer *w, nsc_module *m) {
    for (int i = 0; i < w->n_models; i++) {
        if (w->models[i] == m) {
            return i;
        }
    }
    if (w->n_models == NSCI_ARRAY_LEN(w->models)) {
        return -1;
    }
    w->models[w->n_models] = m;
    return w->n_models++;
}

nsc_status nsci_text_write_trace(nsci_text_writer *w, const nsc_trace *tr, const char *prefix) {
    int model = model_index(w, tr->model);
    if (model < 0) {
        return nsci_fail(NSC_ERR_UNSUPPORTED, "graph text: more than 64 models");
    }
    if (model > 0) {
        nsci_text_indent(w);
        nsci_buf_printf(w->b, "\"model\": %d,\n", model);
    }
    if (tr->generate) {
        write_generate(w, &tr->gen_options);
    }
    if (write_invokes(w, tr, prefix) != NSC_OK) {
        return nsc_last_status();
    }
    return write_nodes(w, tr, prefix);
}

char *nsci_text_finish(nsci_buf *b, nsc_status status) {
    if (status == NSC_OK && b->failed) {
        status = nsci_fail(NSC_ERR_OOM, "graph text: out of memory writing the text");
    }
    if (status != NSC_OK) {
        nsci_buf_free(b);
        return NULL;
    }
    return b->data; // the caller frees it with nsc_text_free
}

static void writer_init(nsci_text_writer *w, nsci_buf *b, const nsc_graph_text_options *o) {
    memset(w, 0, sizeof *w);
    w->b = b;
    w->inline_max = o && o->inline_max > 0 ? o->inline_max : 1024;
    w->names = o ? o->names : NULL;
    w->external = o ? o->external : NULL;
}

nsc_status nsci_text_check_unrun(const nsc_trace *tr) {
    if (tr->state == NSCI_TRACE_BUILDING) {
        return NSC_OK;
    }
    if (tr->state == NSCI_TRACE_FAILED) {
        return nsci_fail(tr->first_status, "graph text: the trace has build errors: %s",
                         tr->first_error);
    }
    return nsci_fail(NSC_ERR_STATE, "graph text: the trace ran: write it before running (a run "
                                    "adds persistent edits and releases constants)");
}

static char *write_single(const nsc_trace *tr, nsci_text_writer *w) {
    nsci_buf_puts(w->b, "{\n  \"format\": \"nsc-graph\",\n  \"version\": 1,\n  \"trace\": {\n");
    w->depth = 2;
    nsc_status status = nsci_text_check_unrun(tr);
    if (status == NSC_OK) {
        status = nsci_text_write_trace(w, tr, "");
    }
    nsci_buf_puts(w->b, "  }\n}\n");
    return nsci_text_finish(w->b, status);
}

char *nsc_trace_to_text(const nsc_trace *tr, const nsc_graph_text_options *options) {
    if (!tr) {
        return nsci_fail_keep_null(NSC_ERR_ARG, "trace_to_text: trace is NULL");
    }
    if (tr->session) {
        return nsci_fail_null(NSC_ERR_ARG, "trace_to_text: the trace belongs to a session: "
                                           "write the session (nsc_session_to_text)");
    }
    return nsci_text_write_hinted(NULL, tr, options, NULL, NULL);
}

char *nsci_text_write_hinted(const nsc_session *s, const nsc_trace *tr,
                             const nsc_graph_text_options *options, nsci_text_hint_fn hint,
                             void *hint_ctx) {
    nsci_buf b;
    nsci_buf_init(&b);
    nsci_text_writer w;
    writer_init(&w, &b, options);
    w.hint = hint;
    w.hint_ctx = hint_ctx;
    return s ? nsci_text_write_session(&w, s) : write_single(tr, &w);
}
