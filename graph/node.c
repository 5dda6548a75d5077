// The node arena: adding nodes and their proxies, constants, args, and the
// build-error record that names the user's source line and the node.
#include <string.h>

#include "graph/graph_impl.h"

const nsci_protocol *const nsci_protocols[NSCI_N_PROTOCOLS] = {
#define NSCI_PROTOCOL(name) [NSCI_PROTO_##name] = &nsci_protocol_##name,
#include "protocols/protocols.def"
#undef NSCI_PROTOCOL
};

// A proxy's link to its node. Freed with the proxy tensor.
struct nsci_proxy {
    nsci_graph *graph;
    int32_t node;
    int32_t output;
};

nsci_gnode *nsci_node(nsci_graph *g, int32_t id) {
    return (id >= 0 && id < g->n_nodes) ? &g->nodes[id] : NULL;
}

nsci_graph *nsci_proxy_graph(const nsc_tensor *t, int32_t *node, int32_t *output) {
    if (!t || !t->proxy) {
        return NULL;
    }
    if (node) {
        *node = t->proxy->node;
    }
    if (output) {
        *output = t->proxy->output;
    }
    return t->proxy->graph;
}

nsc_status nsci_graph_check_building(nsci_graph *g) {
    switch (g->state) {
        case NSCI_TRACE_BUILDING:
            return NSC_OK;
        case NSCI_TRACE_FAILED:
            return nsci_fail(g->first_status, "%s", g->first_error);
        case NSCI_TRACE_RUNNING:
            return nsci_fail(NSC_ERR_STATE, "trace: nodes cannot be added while it runs");
        default:
            return nsci_fail(NSC_ERR_STATE, "trace: it already ran: a proxy of a finished trace "
                                            "cannot be used (save it and take its value with "
                                            "nsc_trace_get)");
    }
}

static nsc_status add_consumer(nsci_gnode *producer, int32_t consumer) {
    if (producer->n_consumers == producer->cap_consumers) {
        int cap = producer->cap_consumers ? producer->cap_consumers * 2 : 4;
        int32_t *grown = nsci_realloc(producer->consumers, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        producer->consumers = grown;
        producer->cap_consumers = cap;
    }
    producer->consumers[producer->n_consumers++] = consumer;
    return NSC_OK;
}

static nsc_status grow_nodes(nsci_graph *g) {
    if (g->n_nodes < g->cap_nodes) {
        return NSC_OK;
    }
    int32_t cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
    nsci_gnode *grown = nsci_realloc(g->nodes, (size_t)cap * sizeof *grown);
    if (!grown) {
        return NSC_ERR_OOM;
    }
    // Proxies point at (graph, id), never at node addresses, so moving is safe.
    g->nodes = grown;
    g->cap_nodes = cap;
    return NSC_OK;
}

// Ordering edges after the latest in-place write into the storage of each
// value arg, so that a node of any protocol sees the edits made before it
// was created (NNSIGHT.md §1, order); appended to args[0, n), returns the
// new count.
static int add_writer_edges(nsci_graph *g, nsci_arg *args, int n) {
    int n_value = n;
    for (int i = 0; i < n_value; i++) {
        if (args[i].output < 0) {
            continue;
        }
        int32_t writer = g->nodes[g->nodes[args[i].node].root].last_writer;
        bool known = writer < 0 || writer == args[i].node;
        for (int k = 0; k < n && !known; k++) {
            known = args[k].node == writer;
        }
        if (!known) {
            args[n++] = (nsci_arg){ writer, -1 };
        }
    }
    return n;
}

static void drop_consumer(nsci_gnode *producer, int32_t consumer) {
    if (producer->n_consumers > 0 && producer->consumers[producer->n_consumers - 1] == consumer) {
        producer->n_consumers--;
    }
}

int32_t nsci_node_add(nsci_graph *g, nsci_protocol_id protocol, int n_args,
                      const nsci_arg *args) {
    if (grow_nodes(g) != NSC_OK) {
        return -1;
    }
    nsci_arg *copy = NULL;
    if (n_args > 0 && !(copy = nsci_malloc((size_t)(2 * n_args) * sizeof *copy))) {
        return -1;
    }
    if (n_args > 0) {
        memcpy(copy, args, (size_t)n_args * sizeof *copy);
        n_args = add_writer_edges(g, copy, n_args);
    }
    int32_t id = g->n_nodes;
    nsci_gnode *n = &g->nodes[id];
    memset(n, 0, sizeof *n);
    n->protocol = protocol;
    n->id = id;
    n->point = n->invoke = -1;
    n->root = id;
    n->last_writer = -1;
    n->gate = -1;
    n->last_bridge_step = n->last_bridge_order = -1;
    n->body_point = -1;
    n->file = nsci_source_file();
    n->line = nsci_source_line();
    n->n_args = n_args;
    n->args = copy;
    int added = 0;
    while (added < n_args && add_consumer(&g->nodes[copy[added].node], id) == NSC_OK) {
        added++;
    }
    bool gated = g->n_blocks > 0 && nsci_protocols[protocol]->condition;
    if (added == n_args && (!gated || nsci_gate_node(g, id) == NSC_OK)) {
        g->n_nodes++;
        return id;
    }
    while (added-- > 0) { // undo: the node never existed
        drop_consumer(&g->nodes[n->args[added].node], id);
    }
    nsci_free(n->args);
    return -1;
}

int nsci_value_args(const nsci_gnode *n, nsci_arg *out, int max) {
    int k = 0;
    for (int i = 0; i < n->n_args; i++) {
        if (n->args[i].output >= 0) {
            if (k == max) {
                return -1;
            }
            out[k++] = n->args[i];
        }
    }
    return k;
}

nsc_tensor *nsci_node_make_proxy(nsci_graph *g, int32_t id, int k, const nsci_meta *meta,
                                 nsc_device dev) {
    nsc_tensor *t = nsci_tensor_header(meta->dtype, NSC_META, meta->ndim, meta->shape);
    struct nsci_proxy *link = t ? nsci_malloc(sizeof *link) : NULL;
    if (!link) {
        nsc_free(t);
        return NULL;
    }
    memcpy(t->stride, meta->stride, sizeof meta->stride);
    t->offset = meta->offset;
    t->target_device = (uint8_t)dev;
    *link = (struct nsci_proxy){ g, id, k };
    t->proxy = link;
    t->pinned = 1;
    g->nodes[id].proxy[k] = t;
    if (g->nodes[id].n_out <= k) {
        g->nodes[id].n_out = k + 1;
    }
    return t;
}

int32_t nsci_node_add_constant(nsci_graph *g, nsc_tensor *t) {
    // A copy: a later change to the caller's tensor must not be seen.
    bool was = nsc_set_grad_enabled(false);
    nsc_tensor *copy = t->device == NSC_META ? nsc_retain(t) : nsc_clone(t);
    nsc_set_grad_enabled(was);
    int32_t id = copy ? nsci_node_add(g, NSCI_PROTO_value, 0, NULL) : -1;
    if (id < 0) {
        nsc_free(copy);
        return -1;
    }
    g->nodes[id].payload = NULL;
    g->nodes[id].value[0] = copy;
    g->nodes[id].n_out = 1;
    g->nodes[id].state = NSCI_NODE_DONE;
    return id;
}

nsc_status nsci_arg_for(nsci_graph *g, nsc_tensor *t, nsci_arg *arg) {
    int32_t node, output;
    nsci_graph *owner = nsci_proxy_graph(t, &node, &output);
    if (owner == g) {
        *arg = (nsci_arg){ node, output };
        return NSC_OK;
    }
    if (owner && g->session && owner->session == g->session) {
        return nsci_bridge_arg(g, owner, node, output, arg);
    }
    if (owner) {
        return nsci_fail(NSC_ERR_STATE, "a proxy of another trace (node %d) cannot be used "
                                        "here: save it there and pass its value, or build both "
                                        "traces in one session",
                         node);
    }
    int32_t id = nsci_node_add_constant(g, t);
    if (id < 0) {
        return nsc_last_status();
    }
    *arg = (nsci_arg){ id, 0 };
    return NSC_OK;
}

// --- describing nodes and failing the build ---

const char *nsci_graph_path(const nsci_graph *g, const nsc_module *m) {
    const char *path = nsc_module_path(m), *root = nsc_module_path(g->model);
    size_t n = strlen(root);
    if (n == 0) {
        return path; // the traced model is a root: the paths agree
    }
    if (strncmp(path, root, n) == 0 && (path[n] == '.' || path[n] == '\0')) {
        return path[n] == '.' ? path + n + 1 : "";
    }
    return path; // not below the traced model (an applied outside module)
}

const char *nsci_point_words(const nsci_graph *g, const nsci_point *p, char *buf, size_t n) {
    const char *path = nsci_graph_path(g, p->module);
    if (p->kind == NSC_HOOK_OUTPUT) {
        snprintf(buf, n, "%s output", *path ? path : "(model)");
    } else {
        snprintf(buf, n, "%s input %d", *path ? path : "(model)", p->index);
    }
    if (p->call_index > 0) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, " (call %lld)", (long long)p->call_index);
    }
    return buf;
}

// The hook point a node's value comes from: its own, or its first arg's.
static const nsci_point *origin(nsci_graph *g, int32_t id, int depth) {
    nsci_gnode *n = nsci_node(g, id);
    if (!n || depth > 64) {
        return NULL;
    }
    if (n->point >= 0) {
        return &g->points[n->point];
    }
    for (int i = 0; i < n->n_args; i++) {
        const nsci_point *p = origin(g, n->args[i].node, depth + 1);
        if (p) {
            return p;
        }
    }
    return NULL;
}

void nsci_node_describe(nsci_graph *g, int32_t id, char *buf, size_t buf_bytes) {
    nsci_gnode *n = nsci_node(g, id);
    char where[256] = "", pos[300] = "";
    // A gradient node is named by the value whose gradient it is (a
    // replacement's first arg is its new value: its target comes second).
    const char *lead = "";
    int32_t from = id;
    if (n && n->protocol == NSCI_PROTO_grad) {
        lead = "the gradient of ";
    } else if (n && n->protocol == NSCI_PROTO_grad_swap && n->n_args > 1) {
        lead = "the new gradient of ";
        from = n->args[1].node;
    }
    const nsci_point *p = n && n->protocol != NSCI_PROTO_backward ? origin(g, from, 0) : NULL;
    if (p) {
        size_t used = (size_t)snprintf(where, sizeof where, "%s", lead);
        nsci_point_words(g, p, where + used, sizeof where - used);
    } else if (n && n->protocol == NSCI_PROTO_backward) {
        snprintf(where, sizeof where, "a backward pass");
    }
    if (n && n->file) {
        snprintf(pos, sizeof pos, ", %s:%d", n->file, n->line);
    }
    snprintf(buf, buf_bytes, "node %d%s%s%s", id, pos, *where ? ", " : "", where);
}

nsc_status nsci_graph_fail(nsci_graph *g, int32_t node, nsc_status status) {
    const char *file = nsci_source_file();
    if (node >= 0) {
        char what[512];
        nsci_node_describe(g, node, what, sizeof what);
        nsci_error_context("%s", what);
    }
    if (file) {
        nsci_error_prefix("%s:%d", file, nsci_source_line());
    }
    if (g->state == NSCI_TRACE_BUILDING) {
        g->state = NSCI_TRACE_FAILED;
        g->first_status = status;
        snprintf(g->first_error, sizeof g->first_error, "%s", nsc_last_error());
    }
    return status;
}

nsc_tensor *nsci_arg_twin(nsci_graph *g, nsci_arg a) {
    const nsci_gnode *n = &g->nodes[a.node];
    const nsc_tensor *src = n->proxy[a.output] ? n->proxy[a.output] : n->value[a.output];
    if (!src) {
        return nsci_fail_null(NSC_ERR_STATE, "node %d output %d has no geometry", a.node,
                              a.output);
    }
    nsc_tensor *t = nsci_tensor_header((nsc_dtype)src->dtype, NSC_META, src->ndim, src->shape);
    if (t) {
        memcpy(t->stride, src->stride, sizeof src->stride);
        t->offset = src->offset;
        t->target_device = src->target_device;
    }
    return t;
}

void nsci_proxy_reshape(nsc_tensor *proxy, const nsc_tensor *like) {
    proxy->dtype = like->dtype;
    proxy->ndim = like->ndim;
    memcpy(proxy->shape, like->shape, sizeof like->shape);
    memcpy(proxy->stride, like->stride, sizeof like->stride);
    proxy->offset = like->offset;
}
