// Swap: replace a hook point's value for one invoke. Recorded on its point
// (not one slot per graph, nnsight 0.3's bug); the hook applies it after the
// point's ready nodes ran. Added by nsc_invoke_set_output / _set_input.
#include "graph/graph_impl.h"

static nsc_status swap_execute(nsci_graph *g, nsci_gnode *n) {
    n->value[0] = nsc_retain(nsci_arg_value(g, n->args[0]));
    return n->value[0] ? NSC_OK : nsci_fail(NSC_ERR_STATE, "swap: its value was not computed");
}

const nsci_protocol nsci_protocol_swap = {
    .compile = nsci_point_write_check, // an iterator item of a new shape
    .name = "Swap",
    .execute = swap_execute,
    .style = { "green4", "ellipse", "Swap" },
    .redirect = true,
    .condition = true,
};
