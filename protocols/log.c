// Log: print a value when it is computed (nnsight's log), to the trace's
// log stream. The value is printed as nsc_tensor_print renders it.
#include <string.h>

#include "graph/graph_impl.h"

static nsc_status log_execute(nsci_graph *g, nsci_gnode *n) {
    FILE *out = g->log ? g->log : stderr;
    fprintf(out, "%s: ", (const char *)n->payload);
    nsc_tensor_print(nsci_arg_value(g, n->args[0]), out);
    fflush(out);
    return NSC_OK;
}

nsc_status nsc_trace_log(nsc_trace *tr, const char *label, nsc_tensor *proxy) {
    if (!tr || !label || !proxy) {
        return nsc_last_status() != NSC_OK && !proxy
                   ? nsc_last_status()
                   : nsci_fail(NSC_ERR_ARG, "trace_log: trace, label or value is NULL");
    }
    if (nsci_graph_check_building(tr) != NSC_OK) {
        return nsc_last_status();
    }
    nsci_arg arg;
    char *copy = nsci_strdup(label);
    int32_t id = copy && nsci_arg_for(tr, proxy, &arg) == NSC_OK
                     ? nsci_node_add(tr, NSCI_PROTO_log, 1, &arg)
                     : -1;
    if (id < 0) {
        nsci_free(copy);
        return nsci_graph_fail(tr, -1, nsc_last_status());
    }
    tr->nodes[id].payload = copy;
    return nsci_order_node(tr, id) == NSC_OK ? NSC_OK : nsci_graph_fail(tr, id, nsc_last_status());
}

void nsc_trace_set_log(nsc_trace *tr, FILE *stream) {
    if (tr) {
        tr->log = stream;
    }
}

const nsci_protocol nsci_protocol_log = {
    .name = "Log",
    .execute = log_execute,
    .style = { "gray40", "note", "Log" },
    .redirect = true,
    .condition = true,
};
