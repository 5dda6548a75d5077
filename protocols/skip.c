// Skip: a module's output given instead of running its forward. Registered
// on the module's output point (where it acts as a swap of this invoke's
// rows) and its input point (where, when every invoke skips the call, the
// forward is skipped altogether and the output assembled from the values).
#include "graph/graph_impl.h"

static nsc_status skip_execute(nsci_graph *g, nsci_gnode *n) {
    n->value[0] = nsc_retain(nsci_arg_value(g, n->args[0]));
    return n->value[0] ? NSC_OK : nsci_fail(NSC_ERR_STATE, "skip: its value was not computed");
}

nsc_status nsc_invoke_skip(nsc_invoke *inv, const char *path, int64_t call_index,
                           nsc_tensor *value) {
    int32_t id = nsci_point_write(inv, path, NSC_HOOK_OUTPUT, 0, call_index, value,
                                  NSCI_PROTO_skip);
    if (id < 0) {
        return nsc_last_status();
    }
    nsci_graph *g = inv->trace;
    nsci_gnode *n = &g->nodes[id];
    nsc_module *m = g->points[n->point].module;
    // Also on the input point: the forward can be skipped only if the value
    // exists when the module is about to run.
    int32_t in_point = nsci_point_get(g, m, NSC_HOOK_INPUT, 0, call_index);
    if (in_point < 0) {
        return nsci_graph_fail(g, id, nsc_last_status());
    }
    if (n->ready_seq > g->points[in_point].seq) {
        char what[512];
        nsci_node_describe(g, id, what, sizeof what);
        nsci_fail(NSC_ERR_STATE, "skip of %s: its value needs a point that fires after the "
                                 "module starts (%s)",
                  path, what);
        return nsci_graph_fail(g, id, NSC_ERR_STATE);
    }
    nsci_point *p = &g->points[in_point];
    if (p->n_nodes == p->cap_nodes) {
        int cap = p->cap_nodes ? p->cap_nodes * 2 : 4;
        int32_t *grown = nsci_realloc(p->nodes, (size_t)cap * sizeof *grown);
        if (!grown) {
            return nsci_graph_fail(g, id, NSC_ERR_OOM);
        }
        p->nodes = grown;
        p->cap_nodes = cap;
    }
    p->nodes[p->n_nodes++] = id; // listed on both points; its own point stays the output
    return NSC_OK;
}

const nsci_protocol nsci_protocol_skip = {
    .compile = nsci_point_write_check, // an iterator item of a new shape
    .name = "Skip",
    .execute = skip_execute,
    .style = { "green4", "octagon", "Skip" },
    .redirect = true,
    .condition = true,
};
