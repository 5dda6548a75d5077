// Validating a built graph again for new input shapes (an iterator's item
// changed shape): the invokes' batch, a new shape scan, every point re-
// located, then each node's protocol recomputes its proxy's shape from its
// arguments (compile), failing on the first node that no longer fits.
#include "graph/graph_impl.h"

static void rebatch(nsc_trace *tr) {
    int dim = nsc_module_batch_dim(tr->model, NSC_HOOK_INPUT, 0);
    tr->total_batch = 0;
    for (int i = 0; i < tr->n_invokes; i++) {
        nsc_invoke *inv = tr->invokes[i];
        const nsc_tensor *in0 = inv->inputs[0];
        inv->batch_size = dim >= 0 && dim < in0->ndim ? in0->shape[dim] : 1;
        inv->batch_start = tr->total_batch;
        tr->total_batch += inv->batch_size;
    }
}

nsc_status nsci_graph_revalidate(nsc_trace *tr) {
    rebatch(tr);
    nsci_free(tr->scan);
    tr->scan = NULL;
    tr->n_scan = tr->cap_scan = 0;
    tr->scan_seq = 0;
    if (nsci_scan(tr) != NSC_OK) {
        return nsc_last_status();
    }
    for (int i = 0; i < tr->n_points; i++) {
        if (nsci_point_relocate(tr, &tr->points[i]) != NSC_OK) {
            return nsc_last_status();
        }
    }
    for (int32_t id = 0; id < tr->n_nodes; id++) {
        nsci_gnode *n = &tr->nodes[id];
        const nsci_protocol *p = nsci_protocols[n->protocol];
        if (p->compile && p->compile(tr, n) != NSC_OK) {
            char what[512];
            nsci_node_describe(tr, id, what, sizeof what);
            nsci_error_context("validating %s again", what);
            return nsc_last_status();
        }
    }
    return NSC_OK;
}
