// Bridge: a value of an earlier trace (or a session value) used in a later
// trace of the same session without saving. The source keeps the value
// until the last step that bridges it has run; the bridge takes it when its
// trace starts. A source that did not compute it is an error naming it.
#include <string.h>

#include "graph/graph_impl.h"

typedef nsci_bridge_payload bridge_payload;

static nsc_status bridge_execute(nsci_graph *g, nsci_gnode *n) {
    const bridge_payload *p = n->payload;
    nsci_gnode *src = nsci_node(p->source, p->node);
    nsc_tensor *v = src ? src->value[p->output] : NULL;
    if (!v || src->state != NSCI_NODE_DONE) {
        char what[512];
        nsci_node_describe(p->source, p->node, what, sizeof what);
        return nsci_fail(NSC_ERR_STATE, "bridge: %s of session step %d is not ready at step "
                                        "%d's turn (it was not computed)",
                         what, p->source->step, g->step);
    }
    const nsc_tensor *want = n->proxy[0];
    if (want && (v->ndim != want->ndim || v->dtype != want->dtype ||
                 memcmp(v->shape, want->shape, sizeof(int64_t) * (size_t)v->ndim) != 0)) {
        // An iterator's items of several shapes: its last iteration's value
        // is not the shape the later trace was checked with.
        char what[512], got[160], built[160];
        nsci_node_describe(p->source, p->node, what, sizeof what);
        return nsci_fail(NSC_ERR_SHAPE,
                         "bridge: %s of session step %d is %s %s at step %d's turn, but step %d "
                         "was checked with %s %s: an iterator's items change shape, so use the "
                         "value inside the iterator or read it with nsc_session_get",
                         what, p->source->step, nsci_shape_str(got, sizeof got, v->ndim, v->shape),
                         nsc_dtype_name((nsc_dtype)v->dtype), g->step, g->step,
                         nsci_shape_str(built, sizeof built, want->ndim, want->shape),
                         nsc_dtype_name((nsc_dtype)want->dtype));
    }
    nsci_node_deliver(g, n->id, 0, nsc_retain(v));
    return NSC_OK;
}

nsc_status nsci_bridge_arg(nsci_graph *g, nsci_graph *source, int32_t node, int32_t output,
                           nsci_arg *arg) {
    bool earlier = source == g->session->values || source->order < g->order;
    if (!earlier) {
        return nsci_fail(NSC_ERR_STATE, "a proxy of a later trace of the session (node %d) "
                                        "cannot be used: traces run in creation order",
                         node);
    }
    for (int32_t i = 0; i < g->n_nodes; i++) { // one bridge per source value
        const bridge_payload *p = g->nodes[i].payload;
        if (g->nodes[i].protocol == NSCI_PROTO_bridge && p->source == source &&
            p->node == node && p->output == output) {
            *arg = (nsci_arg){ i, 0 };
            return NSC_OK;
        }
    }
    bridge_payload *p = nsci_malloc(sizeof *p);
    int32_t id = p ? nsci_node_add(g, NSCI_PROTO_bridge, 0, NULL) : -1;
    if (id < 0) {
        nsci_free(p);
        return nsc_last_status();
    }
    *p = (bridge_payload){ source, node, output };
    g->nodes[id].payload = p;
    const nsc_tensor *src = source->nodes[node].proxy[output];
    nsci_meta m = { .dtype = (nsc_dtype)src->dtype, .ndim = src->ndim, .offset = src->offset };
    memcpy(m.shape, src->shape, sizeof src->shape);
    memcpy(m.stride, src->stride, sizeof src->stride);
    if (!nsci_node_make_proxy(g, id, 0, &m, (nsc_device)src->target_device)) {
        return nsc_last_status();
    }
    *arg = (nsci_arg){ id, 0 };
    return NSC_OK;
}

static nsc_status bridge_compile(nsci_graph *g, nsci_gnode *n) {
    (void)g;
    const bridge_payload *p = n->payload;
    nsci_proxy_reshape(n->proxy[0], p->source->nodes[p->node].proxy[p->output]);
    return NSC_OK;
}
const nsci_protocol nsci_protocol_bridge = {
    .compile = bridge_compile,
    .name = "Bridge",
    .execute = bridge_execute,
    .style = { "purple", "box", "Bridge" },
    .redirect = true,
    .condition = false, // bridges are never gated: their values exist either way
};
