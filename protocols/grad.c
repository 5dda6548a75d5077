// Grad: the gradient of a value in the n-th backward pass traced after it
// was taken. When its value exists, a tensor hook is registered on it (on
// the module's full value for a hook-point read); in backward pass n the
// hook hands this invoke's rows of the gradient to the node, runs the nodes
// that became ready (reads, in-place edits, a replacement), sends the
// (possibly edited or replaced) gradient on, and removes itself.
#include <string.h>

#include "protocols/protocols_impl.h"

typedef nsci_grad_payload grad_payload;

// Takes the node's hook off the tensor it watches, if it is still there (the
// gradient never came: the loss did not use the value, or no backward ran).
static void unhook(grad_payload *p) {
    if (p->target) {
        nsci_error_saved saved; // cleanup after a failed run keeps the run's error
        nsci_error_save(&saved);
        nsc_tensor_remove_hook(p->target, p->handle);
        nsci_error_restore(&saved);
        nsc_free(p->target);
        p->target = NULL;
    }
}

static void grad_payload_free(void *payload) {
    unhook(payload); // the hook's ctx is this payload
    nsci_free(payload);
}

void nsci_grad_release(nsci_gnode *n) {
    if (n->protocol == NSCI_PROTO_grad && n->payload) {
        unhook(n->payload);
    }
}

static nsc_tensor *rows_of(nsci_graph *g, const grad_payload *p, nsc_tensor *full) {
    if (p->point < 0 || g->points[p->point].batch_dim < 0) {
        return nsc_retain(full);
    }
    const nsc_invoke *inv = g->invokes[p->invoke];
    return nsc_narrow(full, g->points[p->point].batch_dim, inv->batch_start, inv->batch_size);
}

static nsci_gnode *replacement_of(nsci_graph *g, int32_t grad_node) {
    for (int32_t i = grad_node + 1; i < g->n_nodes; i++) {
        nsci_gnode *n = &g->nodes[i];
        if (n->protocol == NSCI_PROTO_grad_swap && *(int32_t *)n->payload == grad_node &&
            n->state == NSCI_NODE_DONE) {
            return n;
        }
    }
    return NULL;
}

// The gradient that flows on: the incoming one with this invoke's rows
// replaced by the node's value (edited in place) or by a replacement.
static nsc_status flow_on(nsci_graph *g, grad_payload *p, nsc_tensor *grad, nsc_tensor *mine,
                          nsc_tensor **out) {
    nsci_gnode *swap = replacement_of(g, p->node);
    nsc_tensor *rows_value = swap && swap->value[0] ? swap->value[0] : mine;
    nsc_tensor *full = nsc_clone(grad);
    nsc_tensor *rows = full ? rows_of(g, p, full) : NULL;
    nsc_status status = rows ? nsc_copy_(rows, rows_value) : nsc_last_status();
    nsc_free(rows);
    if (status != NSC_OK) {
        nsc_free(full);
        return status;
    }
    *out = full;
    return NSC_OK;
}

static nsc_status on_gradient(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    grad_payload *p = ctx;
    nsci_graph *g = p->graph;
    nsci_gnode *n = &g->nodes[p->node];
    if (g->backward_pass != p->pass || n->state != NSCI_NODE_WAITING) {
        return NSC_OK; // another pass's gradient
    }
    nsc_tensor *rows = rows_of(g, p, grad);
    nsc_tensor *mine = rows ? nsc_clone(rows) : NULL; // edits must not touch shared gradients
    nsc_free(rows);
    if (!mine) {
        return nsc_last_status();
    }
    // The node's value may be released by its last consumer (an in-place
    // edit): keep our own reference to send it on.
    nsci_node_deliver(g, n->id, 0, nsc_retain(mine));
    nsc_status status = nsci_wake_consumers(g, n);
    if (status == NSC_OK) {
        status = nsci_run_ready(g);
    }
    if (status == NSC_OK) {
        status = flow_on(g, p, grad, mine, replacement);
    }
    nsc_free(mine);
    nsci_gnode *swap = replacement_of(g, p->node);
    if (swap && swap->value[0]) { // applied: release it now
        nsc_free(swap->value[0]);
        swap->value[0] = NULL;
    }
    nsc_tensor *target = p->target;
    p->target = NULL;
    nsc_tensor_remove_hook(target, p->handle); // once per pass: it removes itself
    nsc_free(target);
    return status;
}

static nsc_status grad_execute(nsci_graph *g, nsci_gnode *n) {
    grad_payload *p = n->payload;
    nsc_tensor *target = p->point >= 0 ? g->points[p->point].live
                                       : nsci_arg_value(g, n->args[0]);
    if (!target || !nsc_tensor_requires_grad(target)) {
        return nsci_fail(NSC_ERR_STATE, "grad: the value does not require grad, so no gradient "
                                        "will reach it: is it used by the loss?");
    }
    unhook(p); // an earlier iteration's, if its gradient never came
    p->handle = nsc_tensor_register_hook(target, on_gradient, p, NULL);
    if (p->handle < 0) {
        return nsc_last_status();
    }
    p->target = nsc_retain(target);
    n->state = NSCI_NODE_WAITING;
    return NSC_OK;
}

// A Grad node for proxy in the next backward pass; its id or -1.
static int32_t grad_node(nsc_tensor *proxy, nsci_graph **graph) {
    int32_t src, output;
    nsci_graph *g = nsci_proxy_graph(proxy, &src, &output);
    *graph = g;
    if (!g) {
        nsci_fail(NSC_ERR_ARG, "grad: the tensor is not a proxy");
        return -1;
    }
    if (nsci_graph_check_building(g) != NSC_OK) {
        return -1;
    }
    if (!nsci_is_float(nsc_tensor_dtype(proxy))) {
        nsci_fail(NSC_ERR_DTYPE, "grad: a %s value has no gradient",
                  nsc_dtype_name(nsc_tensor_dtype(proxy)));
        return nsci_graph_fail(g, src, NSC_ERR_DTYPE), -1;
    }
    const char *refused = g->generate ? "a generation trace records no gradients (it runs as "
                                        "nsc_generate, without recording): trace the forward"
                          : g->nodes[src].body_point >= 0
                              ? "a value of an every-call body has no one gradient (each call "
                                "has its own): read a fixed call index"
                              : NULL;
    if (refused) {
        nsci_fail(NSC_ERR_STATE, "grad: %s", refused);
        return nsci_graph_fail(g, src, NSC_ERR_STATE), -1;
    }
    nsci_arg arg = { src, output };
    grad_payload *p = nsci_calloc(1, sizeof *p);
    int32_t id = p ? nsci_node_add(g, NSCI_PROTO_grad, 1, &arg) : -1;
    if (id < 0) {
        nsci_free(p);
        return nsci_graph_fail(g, -1, nsc_last_status()), -1;
    }
    const nsci_gnode *s = &g->nodes[src];
    bool is_read = s->protocol == NSCI_PROTO_intervention;
    *p = (grad_payload){ g, id, g->n_backward, is_read ? s->point : -1, s->invoke, NULL, 0 };
    g->nodes[id].payload = p;
    g->nodes[id].payload_free = grad_payload_free;
    g->needs_grad = true;
    nsci_meta m = { .dtype = nsc_tensor_dtype(proxy), .ndim = nsc_tensor_ndim(proxy) };
    memcpy(m.shape, nsc_tensor_shape(proxy), sizeof m.shape);
    nsci_contiguous_strides(m.ndim, m.shape, m.stride);
    if (!nsci_node_make_proxy(g, id, 0, &m, nsc_tensor_target_device(proxy))) {
        return nsci_graph_fail(g, id, nsc_last_status()), -1;
    }
    g->nodes[id].ready_seq = INT64_MAX / 2; // exists only during a backward
    return id;
}

nsc_tensor *nsc_proxy_grad(nsc_tensor *proxy) {
    nsci_graph *g;
    int32_t id = grad_node(proxy, &g);
    return id >= 0 ? g->nodes[id].proxy[0] : NULL;
}

static nsc_status grad_swap_execute(nsci_graph *g, nsci_gnode *n) {
    n->value[0] = nsc_retain(nsci_arg_value(g, n->args[0]));
    return NSC_OK;
}

// A Grad node of pass `pass` that the value of node `from` depends on and
// whose gradient arrives after the one at point seq `seq` (gradients arrive
// from the last point to the first), or -1.
static int32_t later_gradient(nsci_graph *g, int32_t from, int pass, int64_t seq) {
    bool *seen = nsci_calloc((size_t)g->n_nodes, sizeof *seen);
    int32_t *todo = seen ? nsci_malloc((size_t)g->n_nodes * sizeof *todo) : NULL;
    int32_t n_todo = 0, found = -1;
    if (todo) {
        todo[n_todo++] = from;
        seen[from] = true;
    }
    while (n_todo > 0 && found < 0) {
        const nsci_gnode *n = &g->nodes[todo[--n_todo]];
        const grad_payload *p = n->protocol == NSCI_PROTO_grad ? n->payload : NULL;
        if (p && p->pass == pass && p->point >= 0 && g->points[p->point].seq < seq) {
            found = n->id;
        }
        for (int i = 0; i < n->n_args; i++) {
            int32_t a = n->args[i].node;
            if (n->args[i].output >= 0 && !seen[a]) {
                seen[a] = true;
                todo[n_todo++] = a;
            }
        }
    }
    nsci_free(todo);
    nsci_free(seen);
    return found;
}

// set_grad's value must exist when the gradient it replaces arrives: not
// from a gradient arriving later in the same pass (refused as a forward
// replacement needing a later point is).
static nsc_status check_arrival(nsci_graph *g, int32_t target, int32_t value_node) {
    const grad_payload *t = g->nodes[target].payload;
    if (t->point < 0) {
        return NSC_OK; // the gradient of an op's value: no point order to check
    }
    int32_t later = later_gradient(g, value_node, t->pass, g->points[t->point].seq);
    if (later < 0) {
        return NSC_OK;
    }
    char here[256], there[256];
    const grad_payload *l = g->nodes[later].payload;
    nsci_point_words(g, &g->points[t->point], here, sizeof here);
    nsci_point_words(g, &g->points[l->point], there, sizeof there);
    return nsci_fail(NSC_ERR_STATE,
                     "set_grad of %s needs the gradient of %s, which arrives later in the "
                     "backward pass: gradients arrive from the last point to the first",
                     here, there);
}

nsc_status nsc_proxy_set_grad(nsc_tensor *proxy, nsc_tensor *value) {
    nsci_graph *g;
    if (!value) {
        return nsc_last_status() != NSC_OK ? nsc_last_status()
                                           : nsci_fail(NSC_ERR_ARG, "set_grad: value is NULL");
    }
    int32_t target = grad_node(proxy, &g);
    if (target < 0) {
        return nsc_last_status();
    }
    const nsc_tensor *want = g->nodes[target].proxy[0];
    if (nsc_tensor_ndim(value) != want->ndim ||
        memcmp(nsc_tensor_shape(value), want->shape, (size_t)want->ndim * 8) != 0) {
        char a[160], b[160];
        nsci_fail(NSC_ERR_SHAPE, "set_grad: value %s for a gradient of shape %s",
                  nsci_shape_str(a, sizeof a, nsc_tensor_ndim(value), nsc_tensor_shape(value)),
                  nsci_shape_str(b, sizeof b, want->ndim, want->shape));
        return nsci_graph_fail(g, target, NSC_ERR_SHAPE);
    }
    nsci_arg args[2] = { { 0, 0 }, { target, -1 } }; // after the gradient arrives
    int32_t *payload = nsci_malloc(sizeof *payload);
    int32_t id = payload && nsci_arg_for(g, value, &args[0]) == NSC_OK
                     ? nsci_node_add(g, NSCI_PROTO_grad_swap, 2, args)
                     : -1;
    if (id < 0) {
        nsci_free(payload);
        return nsci_graph_fail(g, -1, nsc_last_status());
    }
    *payload = target;
    g->nodes[id].payload = payload;
    if (check_arrival(g, target, args[0].node) != NSC_OK || nsci_order_node(g, id) != NSC_OK) {
        return nsci_graph_fail(g, id, nsc_last_status());
    }
    return NSC_OK;
}

nsc_status nsci_grad_track_point(nsci_graph *g, nsci_point *p, nsc_tensor **value) {
    (void)g;
    nsc_tensor *v = *value;
    if (!nsc_tensor_requires_grad(v) && nsci_is_float(nsc_tensor_dtype(v))) {
        // The first tracked value becomes the tape's root: a leaf requiring
        // grad, seen by the model through one recorded op so that it is not
        // a leaf (in-place edits of leaves are refused).
        nsc_tensor *leaf = nsc_detach(v);
        nsc_tensor *tracked = NULL;
        if (leaf && nsc_requires_grad_(leaf, true) == NSC_OK) {
            tracked = nsc_add_scalar(leaf, 0.0);
        }
        nsc_free(leaf);
        if (!tracked) {
            return nsc_last_status();
        }
        *value = tracked; // a new reference the caller releases
    }
    nsc_free(p->live);
    p->live = nsc_retain(*value);
    return NSC_OK;
}

static nsc_status grad_compile(nsci_graph *g, nsci_gnode *n) {
    nsc_tensor *like = nsci_arg_twin(g, n->args[0]);
    if (!like) {
        return nsc_last_status();
    }
    nsci_contiguous_strides(like->ndim, like->shape, like->stride);
    like->offset = 0;
    nsci_proxy_reshape(n->proxy[0], like);
    nsc_free(like);
    return NSC_OK;
}
const nsci_protocol nsci_protocol_grad = {
    .compile = grad_compile,
    .name = "Grad",
    .execute = grad_execute,
    .style = { "green4", "box", "Grad" },
    .redirect = true,
    .condition = true,
};

const nsci_protocol nsci_protocol_grad_swap = {
    .name = "GradSwap",
    .execute = grad_swap_execute,
    .style = { "green4", "ellipse", "Swap" },
    .redirect = true,
    .condition = true,
};
