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

// Validation again (new input shapes): the op's shape rule on stand-ins.
static nsc_status op_compile(nsci_graph *g, nsci_gnode *n) {
    nsc_tensor *in[64] = { 0 };
    int n_in = 0;
    nsc_status status = NSC_OK;
    for (int i = 0; i < n->n_args && n_in < 64 && status == NSC_OK; i++) {
        if (n->args[i].output >= 0) {
            in[n_in] = nsci_arg_twin(g, n->args[i]);
            status = in[n_in++] ? NSC_OK : nsc_last_status();
        }
    }
    nsci_call c = { .op = n->op, .n_in = n_in, .in = in, .params = n->params };
    bool was = nsc_set_grad_enabled(false);
    if (status == NSC_OK) {
        status = nsci_dispatch(&c);
    }
    nsc_set_grad_enabled(was);
    bool inplace = (nsci_op_defs[n->op]->flags & NSCI_OP_INPLACE) != 0;
    for (int k = 0; status == NSC_OK && k < c.n_out; k++) {
        if (!(inplace && k == 0) && n->proxy[k]) {
            nsci_proxy_reshape(n->proxy[k], c.out[k]);
        }
    }
    for (int k = 0; k < NSCI_MAX_OUTPUTS; k++) {
        nsc_free(c.out[k]);
    }
    for (int i = 0; i < n_in; i++) {
        nsc_free(in[i]);
    }
    return status;
}
const nsci_protocol nsci_protocol_op = {
    .compile = op_compile,
    .name = "Op",
    .execute = op_execute,
    .style = { "black", "ellipse", NULL },
    .redirect = true,
    .condition = true,
};
