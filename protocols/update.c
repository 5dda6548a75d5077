// Update: overwrite a session value with a new one when this node runs,
// without re-running the value's consumers: loop-carried state (a running
// sum across an iterator's items).
#include <string.h>

#include "protocols/protocols_impl.h"

typedef nsci_update_payload update_payload;

static nsc_status update_execute(nsci_graph *g, nsci_gnode *n) {
    const update_payload *p = n->payload;
    nsci_gnode *target = nsci_node(p->target_graph, p->target);
    nsc_tensor *v = nsci_arg_value(g, n->args[0]);
    // A copy: the value may be a view of something the next step overwrites.
    bool was = nsc_set_grad_enabled(false);
    nsc_tensor *copy = nsc_clone(v);
    nsc_set_grad_enabled(was);
    if (!copy) {
        return nsc_last_status();
    }
    nsc_free(target->value[0]);
    target->value[0] = copy;
    return NSC_OK;
}

// A session value keeps its declared shape and dtype.
static nsc_status check_fits(const nsc_tensor *target, const nsc_tensor *value) {
    if (target->ndim == value->ndim && target->dtype == value->dtype &&
        memcmp(target->shape, value->shape, 8 * (size_t)value->ndim) == 0) {
        return NSC_OK;
    }
    char a[160], b[160];
    return nsci_fail(NSC_ERR_SHAPE, "update: value %s %s for a session value %s %s",
                     nsci_shape_str(a, sizeof a, value->ndim, value->shape),
                     nsc_dtype_name((nsc_dtype)value->dtype),
                     nsci_shape_str(b, sizeof b, target->ndim, target->shape),
                     nsc_dtype_name((nsc_dtype)target->dtype));
}

// Again after an iterator item changed shape: the value's new geometry.
static nsc_status update_compile(nsci_graph *g, nsci_gnode *n) {
    const update_payload *p = n->payload;
    nsc_tensor *value = nsci_arg_twin(g, n->args[0]);
    nsc_status status =
        value ? check_fits(p->target_graph->nodes[p->target].proxy[0], value) : nsc_last_status();
    nsc_free(value);
    return status;
}

nsc_status nsc_update(nsc_tensor *target, nsc_tensor *value) {
    int32_t node;
    nsci_graph *tg = nsci_proxy_graph(target, &node, NULL);
    nsci_graph *g = nsci_proxy_graph(value, NULL, NULL);
    if (!target || !value) { // NULL from a failed call flows on with its error
        return nsci_fail_keep(NSC_ERR_ARG, "update: target or value is NULL");
    }
    if (!tg || !tg->session || tg != tg->session->values) {
        return nsci_fail(NSC_ERR_ARG, "update: the target is not a session value");
    }
    if (!g || g->session != tg->session) {
        return nsci_fail(NSC_ERR_ARG, "update: the value is not a proxy of a trace of the "
                                      "target's session");
    }
    if (nsci_graph_check_building(g) != NSC_OK) {
        return nsc_last_status();
    }
    if (check_fits(target, value) != NSC_OK) {
        return nsci_graph_fail(g, -1, NSC_ERR_SHAPE);
    }
    nsci_arg arg;
    update_payload *p = nsci_malloc(sizeof *p);
    int32_t id = p && nsci_arg_for(g, value, &arg) == NSC_OK
                     ? nsci_node_add(g, NSCI_PROTO_update, 1, &arg)
                     : -1;
    if (id < 0) {
        nsci_free(p);
        return nsci_graph_fail(g, -1, nsc_last_status());
    }
    *p = (update_payload){ tg, node };
    g->nodes[id].payload = p;
    return nsci_order_node(g, id) == NSC_OK ? NSC_OK : nsci_graph_fail(g, id, nsc_last_status());
}

const nsci_protocol nsci_protocol_update = {
    .compile = update_compile,
    .name = "Update",
    .execute = update_execute,
    .style = { "blue", "ellipse", "Update" },
    .redirect = true,
    .condition = true,
};
