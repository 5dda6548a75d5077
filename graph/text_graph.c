// A graph read from text (nsc_graph): its traces or session, the strings
// its nodes' positions point at, the names its tensors came from; running
// it, collecting its results by name, listing its nodes, writing it again.
#include <string.h>

#include "graph/text_impl.h"

const char *nsci_text_keep(nsc_graph *g, const char *s) {
    if (g->n_strings > 0 && strcmp(g->strings[g->n_strings - 1], s) == 0) {
        return g->strings[g->n_strings - 1]; // consecutive lines share a file
    }
    if (g->n_strings == g->cap_strings) {
        int cap = g->cap_strings ? g->cap_strings * 2 : 16;
        char **grown = nsci_realloc(g->strings, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NULL;
        }
        g->strings = grown;
        g->cap_strings = cap;
    }
    char *copy = nsci_strdup(s);
    if (copy) {
        g->strings[g->n_strings++] = copy;
    }
    return copy;
}

nsc_status nsci_text_remember(nsc_graph *g, const char *key, const char *name) {
    if (g->n_named == g->cap_named) {
        int cap = g->cap_named ? g->cap_named * 2 : 8;
        nsci_text_named *grown = nsci_realloc(g->named, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        g->named = grown;
        g->cap_named = cap;
    }
    char *k = nsci_strdup(key), *n = nsci_strdup(name);
    if (!k || !n) {
        nsci_free(k);
        nsci_free(n);
        return NSC_ERR_OOM;
    }
    g->named[g->n_named++] = (nsci_text_named){ k, n };
    return NSC_OK;
}

const char *nsci_text_hint(void *graph, const char *key) {
    const nsc_graph *g = graph;
    for (int i = 0; i < g->n_named; i++) {
        if (strcmp(g->named[i].key, key) == 0) {
            return g->named[i].name;
        }
    }
    return NULL;
}

void nsc_graph_free(nsc_graph *g) {
    if (!g) {
        return;
    }
    nsc_session_free(g->session);
    nsc_trace_free(g->single);
    for (int i = 0; i < g->n_strings; i++) {
        nsci_free(g->strings[i]);
    }
    for (int i = 0; i < g->n_named; i++) {
        nsci_free(g->named[i].key);
        nsci_free(g->named[i].name);
    }
    nsci_free(g->strings);
    nsci_free(g->named);
    nsci_free(g->traces);
    nsci_free(g);
}

int nsc_graph_n_traces(const nsc_graph *g) {
    return g ? g->n_traces : 0;
}

nsc_trace *nsc_graph_trace(const nsc_graph *g, int i) {
    return g && i >= 0 && i < g->n_traces ? g->traces[i] : NULL;
}

nsc_session *nsc_graph_session(const nsc_graph *g) {
    return g ? g->session : NULL;
}

bool nsc_graph_uses_tensor(const nsc_graph *g, const char *name) {
    for (int i = 0; g && name && i < g->n_named; i++) {
        if (strcmp(g->named[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

nsc_status nsc_graph_run(nsc_graph *g) {
    if (!g) {
        return nsci_fail(NSC_ERR_ARG, "graph_run: graph is NULL");
    }
    return g->session ? nsc_session_run(g->session) : nsc_trace_run(g->single);
}

// --- results ---

static bool is_cached(const nsc_trace *tr, int32_t node) {
    for (int i = 0; i < tr->n_cache; i++) {
        int32_t id;
        nsci_proxy_graph(tr->cache[i].proxy, &id, NULL);
        if (id == node) {
            return true;
        }
    }
    return false;
}

// Puts value under name unless a value is there (an unnamed second save of
// a node is the same value; a named clash is an error).
static nsc_status put_result(nsc_tensor_set *set, const char *name, nsc_tensor *v, bool named) {
    if (nsc_tensor_set_get(set, name)) {
        return named ? nsci_fail(NSC_ERR_STATE, "graph results: two values are named \"%s\"", name)
                     : NSC_OK;
    }
    return nsc_tensor_set_put(set, name, v);
}

static nsc_status trace_results(nsc_graph *g, int t, nsc_tensor_set *set) {
    nsc_trace *tr = g->traces[t];
    char prefix[32] = "", name[600];
    if (g->session) {
        snprintf(prefix, sizeof prefix, "t%d.", t);
    }
    nsc_status status = NSC_OK;
    for (int32_t i = 0; i < tr->n_nodes && status == NSC_OK; i++) {
        const nsci_gnode *n = &tr->nodes[i];
        if (n->protocol != NSCI_PROTO_lock || is_cached(tr, n->args[0].node)) {
            continue;
        }
        nsci_arg a = n->args[0];
        nsc_tensor *v = tr->nodes[a.node].value[a.output];
        if (!v || tr->nodes[a.node].state != NSCI_NODE_DONE) {
            continue; // never computed (a point not reached): left out
        }
        if (n->payload) {
            snprintf(name, sizeof name, "%s", (const char *)n->payload);
        } else {
            snprintf(name, sizeof name, a.output ? "%sn%d.%d" : "%sn%d", prefix, a.node, a.output);
        }
        status = put_result(set, name, v, n->payload != NULL);
    }
    for (int i = 0; i < tr->n_cache && status == NSC_OK; i++) {
        const nsci_cache_entry *e = &tr->cache[i];
        int32_t id;
        nsci_proxy_graph(e->proxy, &id, NULL);
        nsc_tensor *v = tr->nodes[id].state == NSCI_NODE_DONE ? tr->nodes[id].value[0] : NULL;
        snprintf(name, sizeof name, "%scache.%d.%s.%s", prefix, e->invoke,
                 nsci_graph_path(tr, e->module), e->kind == NSC_HOOK_OUTPUT ? "output" : "input");
        status = v ? put_result(set, name, v, true) : NSC_OK;
    }
    if (status == NSC_OK && tr->generate && tr->generated) {
        status = put_result(set, "generated", tr->generated, true);
    }
    return status;
}

nsc_tensor_set *nsc_graph_results(nsc_graph *g) {
    if (!g) {
        return nsci_fail_null(NSC_ERR_ARG, "graph_results: graph is NULL");
    }
    nsc_tensor_set *set = nsc_tensor_set_new();
    nsc_status status = set ? NSC_OK : NSC_ERR_OOM;
    for (int t = 0; t < g->n_traces && status == NSC_OK; t++) {
        status = trace_results(g, t, set);
    }
    const nsc_trace *values = g->session ? g->session->values : NULL;
    for (int32_t i = 0; values && i < values->n_nodes && status == NSC_OK; i++) {
        const nsci_gnode *n = &values->nodes[i];
        bool item = false;
        for (int k = 0; k < g->session->n_steps; k++) {
            item |= g->session->steps[k].iterator && g->session->steps[k].iterator->item_node == i;
        }
        if (n->protocol == NSCI_PROTO_value && !item && n->value[0]) {
            char name[64];
            snprintf(name, sizeof name, "session.%d", i);
            status = put_result(set, name, n->value[0], true);
        }
    }
    if (status != NSC_OK) {
        nsc_tensor_set_free(set);
        return NULL;
    }
    return set;
}

// --- listing and writing ---

static void describe(const nsc_trace *tr, const nsci_gnode *n, nsci_buf *b) {
    if (n->protocol == NSCI_PROTO_op) {
        nsci_buf_printf(b, "%s ", nsci_op_defs[n->op]->name);
        if (nsci_op_defs[n->op]->params) {
            nsci_text_write_params(b, nsci_op_defs[n->op], n->params);
        }
    } else if (n->point >= 0) {
        const nsci_point *p = &tr->points[n->point];
        const char *path = nsci_graph_path(tr, p->module);
        nsci_buf_printf(b, "%s %s", *path ? path : "(model)",
                        p->kind == NSC_HOOK_OUTPUT ? "output" : "input");
        if (p->kind == NSC_HOOK_INPUT) {
            nsci_buf_printf(b, " %d", p->index);
        }
        nsci_buf_printf(b, p->call_index == NSC_EVERY_CALL ? " every call" : " call %lld",
                        (long long)p->call_index);
        nsci_buf_printf(b, n->invoke >= 0 ? ", invoke %d" : "", n->invoke);
    } else if (n->protocol == NSCI_PROTO_apply_module) {
        nsci_buf_puts(b, nsci_graph_path(tr, ((const nsci_apply_payload *)n->payload)->module));
    } else if ((n->protocol == NSCI_PROTO_lock || n->protocol == NSCI_PROTO_log ||
                n->protocol == NSCI_PROTO_function) &&
               n->payload) {
        nsci_buf_puts(b, n->payload);
    }
    for (int i = 0; i < n->n_args; i++) {
        if (n->args[i].output >= 0) {
            nsci_buf_printf(b, i ? ", %d" : " <- %d", n->args[i].node);
            nsci_buf_printf(b, n->args[i].output ? ".%d" : "", n->args[i].output);
        }
    }
}

static void print_trace(const nsc_trace *tr, int t, FILE *out) {
    fprintf(out, "trace %d: model %s, %d invoke(s), %d node(s)\n", t, nsc_module_type(tr->model),
            tr->n_invokes, tr->n_nodes);
    for (int32_t i = 0; i < tr->n_nodes; i++) {
        const nsci_gnode *n = &tr->nodes[i];
        const nsc_tensor *v = n->proxy[0] ? n->proxy[0] : n->value[0];
        char shape[200] = "-";
        if (v) {
            char dims[160];
            snprintf(shape, sizeof shape, "%s %s",
                     nsci_shape_str(dims, sizeof dims, v->ndim, v->shape),
                     nsc_dtype_name((nsc_dtype)v->dtype));
        }
        nsci_buf b;
        nsci_buf_init(&b);
        describe(tr, n, &b);
        fprintf(out, "  %4d  %-12s %-20s %s", i, nsci_protocols[n->protocol]->name, shape,
                b.data ? b.data : "");
        fprintf(out, n->file ? "  (%s:%d)\n" : "\n", n->file, n->line);
        nsci_buf_free(&b);
    }
}

nsc_status nsc_graph_print(const nsc_graph *g, FILE *out) {
    if (!g || !out) {
        return nsci_fail(NSC_ERR_ARG, "graph_print: graph or stream is NULL");
    }
    for (int t = 0; t < g->n_traces; t++) {
        print_trace(g->traces[t], t, out);
    }
    return ferror(out) ? nsci_fail(NSC_ERR_IO, "graph_print: writing failed") : NSC_OK;
}

char *nsc_graph_to_text(const nsc_graph *g) {
    if (!g) {
        return nsci_fail_null(NSC_ERR_ARG, "graph_to_text: graph is NULL");
    }
    nsc_graph_text_options o = { .inline_max = INT64_MAX };
    return nsci_text_write_hinted(g->session, g->single, &o, nsci_text_hint, (void *)g);
}
