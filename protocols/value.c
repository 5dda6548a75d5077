// Value: a value given to the graph rather than computed by it: constants
// (copied when the node is made) and, in iterators, a slot rebound per item.
#include "graph/graph_impl.h"

// Values are set when the node is made (or rebound); they never execute.
static nsc_status value_execute(nsci_graph *g, nsci_gnode *n) {
    (void)g;
    (void)n;
    return NSC_OK;
}

const nsci_protocol nsci_protocol_value = {
    .name = "Value",
    .execute = value_execute,
    .style = { "blue", "box", "Value" },
    .redirect = true,
    .condition = true,
};
