// LocalBackendExecute: a whole trace as one step of its session (or of an
// iterator): the session graph holds one such node per step, and running
// the session executes them in order.
#include "graph/graph_impl.h"

static nsc_status lbe_execute(nsci_graph *g, nsci_gnode *n) {
    (void)g;
    nsc_trace *tr = n->payload;
    return nsci_trace_execute(tr);
}

const nsci_protocol nsci_protocol_local_backend_execute = {
    .name = "LocalBackendExecute",
    .execute = lbe_execute,
    .style = { "purple", "polygon", "LocalBackendExecute" },
    .redirect = false,
    .condition = true,
};
