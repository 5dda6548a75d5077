// The default node kind: a tensor op applied to proxies, run through the
// same dispatch as eager code once its arguments have values.
#include "graph/graph_impl.h"

static nsc_status op_execute(nsci_graph *g, nsci_gnode *n) {
    nsc_tensor *in[64];
    int n_in = 0;
    for (int i = 0; i < n->n_args && n_in < 64; i++) {
        if (n->args[i].output < 0) {
            continue; // an ordering edge
        }
        in[n_in] = nsci_arg_value(g, n->args[i]);
        if (!in[n_in]) {
            char what[512];
            nsci_node_describe(g, n->args[i].node, what, sizeof what);
            return nsci_fail(NSC_ERR_STATE, "%s: its input %s has no value", nsci_op_defs[n->op]->name,
                             what);
        }
        n_in++;
    }
    nsci_call c = { .op = n->op, .n_in = n_in, .in = in, .params = n->params };
    nsc_status status = nsci_dispatch(&c);
    for (int k = 0; status == NSC_OK && k < c.n_out; k++) {
        nsci_node_deliver(g, n->id, k, c.out[k]);
    }
    return status;
}

const nsci_protocol nsci_protocol_op = {
    .name = "Op",
    .execute = op_execute,
    .style = { "black", "ellipse", NULL },
    .redirect = true,
    .condition = true,
};
