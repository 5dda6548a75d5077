// Backward: back-propagate from a one-element loss as a node (loss.backward()
// inside a trace). Pass n of the trace: the gradient nodes taken before it
// and after the previous backward get their values during it.
#include "protocols/protocols_impl.h"

typedef nsci_backward_payload backward_payload;

static nsc_status backward_execute(nsci_graph *g, nsci_gnode *n) {
    const backward_payload *p = n->payload;
    nsc_tensor *loss = nsci_arg_value(g, n->args[0]);
    if (!nsc_tensor_requires_grad(loss)) {
        return nsci_fail(NSC_ERR_STATE, "backward: the loss does not depend on any value the "
                                        "graph tracks for gradients");
    }
    // The gradient hooks run the nodes the gradients make ready; a node
    // created after this one (a later loss, a later backward) waits until
    // the pass is over, since recording is off during it.
    g->backward_pass = p->pass;
    int32_t below = g->run_below;
    g->run_below = n->id;
    bool was = nsc_set_grad_enabled(false);
    nsc_status status = nsc_backward(loss, NULL, p->retain_graph);
    nsc_set_grad_enabled(was);
    g->run_below = below;
    g->backward_pass = -1;
    if (status == NSC_OK) {
        nsci_node_deliver(g, n->id, 0, nsc_retain(loss));
    }
    return status;
}

nsc_tensor *nsc_trace_backward(nsc_tensor *loss, bool retain_graph) {
    nsci_graph *g = nsci_proxy_graph(loss, NULL, NULL);
    if (!g) {
        return loss ? nsci_fail_null(NSC_ERR_ARG, "trace_backward: the loss is not a proxy")
                    : NULL;
    }
    if (nsci_graph_check_building(g) != NSC_OK) {
        return NULL;
    }
    if (g->generate) {
        nsci_fail(NSC_ERR_STATE, "trace_backward: a generation trace records no gradients (it "
                                 "runs as nsc_generate, without recording): trace the forward");
        nsci_graph_fail(g, -1, NSC_ERR_STATE);
        return NULL;
    }
    if (nsc_tensor_numel(loss) != 1 || !nsci_is_float(nsc_tensor_dtype(loss))) {
        char buf[160];
        nsci_fail(NSC_ERR_SHAPE, "trace_backward: loss %s %s: expected one float element",
                  nsci_shape_str(buf, sizeof buf, nsc_tensor_ndim(loss), nsc_tensor_shape(loss)),
                  nsc_dtype_name(nsc_tensor_dtype(loss)));
        nsci_graph_fail(g, -1, NSC_ERR_SHAPE);
        return NULL;
    }
    nsci_arg arg;
    backward_payload *p = nsci_malloc(sizeof *p);
    int32_t id = p && nsci_arg_for(g, loss, &arg) == NSC_OK
                     ? nsci_node_add(g, NSCI_PROTO_backward, 1, &arg)
                     : -1;
    if (id < 0) {
        nsci_free(p);
        nsci_graph_fail(g, -1, nsc_last_status());
        return NULL;
    }
    *p = (backward_payload){ g->n_backward++, retain_graph };
    g->nodes[id].payload = p;
    g->needs_grad = true;
    nsci_meta m = { .dtype = nsc_tensor_dtype(loss), .ndim = nsc_tensor_ndim(loss) };
    for (int d = 0; d < m.ndim; d++) {
        m.shape[d] = 1;
        m.stride[d] = 1;
    }
    nsc_tensor *proxy = nsci_node_make_proxy(g, id, 0, &m, nsc_tensor_target_device(loss));
    if (!proxy || nsci_order_node(g, id) != NSC_OK) {
        nsci_graph_fail(g, id, nsc_last_status());
        return NULL;
    }
    return proxy;
}

const nsci_protocol nsci_protocol_backward = {
    .name = "Backward",
    .execute = backward_execute,
    .style = { "green4", "doubleoctagon", "Backward" },
    .redirect = true,
    .condition = true,
};
