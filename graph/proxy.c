// The dispatch hooks of graph/: an op with a proxy argument becomes a node
// (its shape rule already checked by dispatch), and a failed shape rule on
// proxies fails the trace with the user's source line and the module path.
#include <pthread.h>
#include <string.h>

#include "graph/graph_impl.h"

// The graph of the proxies among c's inputs (the latest trace of a session
// when they span several); fails for unrelated traces.
static nsci_graph *graph_of(nsci_call *c) {
    nsci_graph *g = NULL;
    for (int i = 0; i < c->n_in; i++) {
        nsci_graph *other = nsci_proxy_graph(c->in[i], NULL, NULL);
        if (!other) {
            continue;
        }
        nsci_graph *joined = nsci_graph_for(g, other);
        if (!joined) {
            nsci_error_prefix("%s: input %d", c->def->name, i);
            if (g) {
                nsci_graph_fail(g, -1, NSC_ERR_STATE);
            }
            return NULL;
        }
        g = joined;
    }
    return g;
}

// Args for c's inputs (nsci_node_add adds the ordering edges after writes).
static int collect_args(nsci_graph *g, nsci_call *c, nsci_arg *args, int cap) {
    for (int i = 0; i < c->n_in; i++) {
        if (i >= cap || nsci_arg_for(g, c->in[i], &args[i]) != NSC_OK) {
            return -1;
        }
    }
    return c->n_in;
}

static nsc_status adopt_outputs(nsci_graph *g, int32_t id, nsci_call *c) {
    nsci_gnode *n = nsci_node(g, id);
    n->n_out = c->n_out;
    for (int k = 0; k < c->n_out; k++) {
        nsc_tensor *t = c->out[k];
        if (k == 0 && (c->def->flags & NSCI_OP_INPLACE)) {
            continue; // the written proxy stays the input's: no new proxy
        }
        nsci_meta m = { .dtype = (nsc_dtype)t->dtype, .ndim = t->ndim, .offset = t->offset };
        memcpy(m.shape, t->shape, sizeof t->shape);
        memcpy(m.stride, t->stride, sizeof t->stride);
        nsc_tensor *proxy = nsci_node_make_proxy(g, id, k, &m, (nsc_device)t->target_device);
        if (!proxy) {
            return nsc_last_status();
        }
        nsc_free(c->out[k]);
        c->out[k] = proxy; // the caller receives the pinned, trace-owned proxy
    }
    return NSC_OK;
}

static nsc_status proxy_op(nsci_call *c) {
    nsci_graph *g = graph_of(c);
    if (!g || nsci_graph_check_building(g) != NSC_OK) {
        return nsc_last_status();
    }
    nsci_arg args[2 * NSCI_ITER_MAX_OPERANDS + 16];
    int n_args = collect_args(g, c, args, NSCI_ARRAY_LEN(args));
    int32_t id = n_args >= 0 ? nsci_node_add(g, NSCI_PROTO_op, n_args, args) : -1;
    if (id < 0) {
        if (n_args < 0 && nsc_last_status() == NSC_OK) {
            nsci_call_fail(c, NSC_ERR_UNSUPPORTED, "too many inputs for a graph node");
        }
        return nsci_graph_fail(g, -1, nsc_last_status());
    }
    nsci_gnode *n = nsci_node(g, id);
    n->op = c->op;
    if (c->def->params_size) {
        if (!(n->params = nsci_malloc(c->def->params_size))) {
            return nsci_graph_fail(g, id, NSC_ERR_OOM);
        }
        memcpy(n->params, c->params, c->def->params_size);
    }
    if (c->def->flags & NSCI_OP_INPLACE) {
        n->root = nsci_node(g, n->args[0].node)->root;
        nsci_node(g, n->root)->last_writer = id;
    } else if ((c->def->flags & NSCI_OP_VIEW) && c->meta[0].is_view) {
        n->root = nsci_node(g, n->args[0].node)->root;
    }
    if (adopt_outputs(g, id, c) != NSC_OK || nsci_order_node(g, id) != NSC_OK) {
        return nsci_graph_fail(g, id, nsc_last_status());
    }
    return NSC_OK;
}

static void proxy_error(nsci_call *c) {
    for (int i = 0; i < c->n_in; i++) {
        int32_t node;
        nsci_graph *g = nsci_proxy_graph(c->in[i], &node, NULL);
        if (g) {
            nsci_graph_fail(g, node, nsc_last_status());
            return;
        }
    }
}

static void free_proxy(struct nsci_proxy *link) {
    nsci_free(link);
}

static void install(void) {
    nsci_hook_table.proxy_op = proxy_op;
    nsci_hook_table.proxy_error = proxy_error;
    nsci_hook_table.free_proxy = free_proxy;
    nsci_apply_install();
}

void nsci_graph_install(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install);
}
