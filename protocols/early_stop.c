// EarlyStop: end the model's forward right after a hook point (stop). The
// hook returns NSC_STOPPED, which every module passes up; the run treats it
// as the end of the pass, not an error. Inside a conditional block it stops
// only when its branch is taken, so its condition must exist by then. (In
// sessions and iterators the same node kind leaves the loop: exit.)
#include "graph/graph_impl.h"

static nsc_status early_stop_execute(nsci_graph *g, nsci_gnode *n) {
    if (n->payload) {
        g->exit_requested = true; // exit: the iterator ends after this iteration
    }
    return NSC_OK; // a stop at a point is acted on by the point's hook (graph/run.c)
}

nsc_status nsc_trace_stop(nsc_trace *tr, const char *path, int64_t call_index) {
    if (!tr) { // NULL from a failed call flows on with its error
        return nsci_fail_keep(NSC_ERR_ARG, "trace_stop: trace is NULL");
    }
    if (!path) {
        return nsci_fail(NSC_ERR_ARG, "trace_stop: path is NULL");
    }
    if (nsci_graph_check_building(tr) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_module *m = nsc_module_find(tr->model, path);
    int32_t point = m ? nsci_point_get(tr, m, NSC_HOOK_OUTPUT, 0, call_index) : -1;
    int32_t id = point >= 0 ? nsci_node_add(tr, NSCI_PROTO_early_stop, 0, NULL) : -1;
    if (id < 0 || nsci_point_add_node(tr, point, id) != NSC_OK) {
        return nsci_graph_fail(tr, -1, nsc_last_status());
    }
    return nsci_order_node(tr, id) == NSC_OK ? NSC_OK : nsci_graph_fail(tr, id, nsc_last_status());
}

const nsci_protocol nsci_protocol_early_stop = {
    .name = "EarlyStop",
    .execute = early_stop_execute,
    .style = { "red", "polygon", "EarlyStop" },
    .redirect = true,
    .condition = true,
};
