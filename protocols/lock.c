// Lock: keeps its argument's value alive: the run never releases a value
// whose consumers include a lock (it never lets go). nsc_save is a lock plus
// the right to take the value with nsc_trace_get.
#include "graph/graph_impl.h"

static nsc_status lock_execute(nsci_graph *g, nsci_gnode *n) {
    (void)g;
    (void)n;
    return NSC_OK;
}

const nsci_protocol nsci_protocol_lock = {
    .name = "Lock",
    .execute = lock_execute,
    .style = { "brown", "ellipse", "Lock" },
    .redirect = false,
    .condition = true,
};
