// Intervention: read a hook point (module input or output, call index,
// invoke). Its value is delivered by the module-call hook (graph/run.c):
// the invoke's rows of the live activation, as a view, so in-place edits
// through it reach the model. Added by nsc_invoke_output / nsc_invoke_input.
#include "graph/graph_impl.h"

static nsc_status intervention_execute(nsci_graph *g, nsci_gnode *n) {
    (void)g;
    (void)n;
    return NSC_OK; // delivered, never executed
}

const nsci_protocol nsci_protocol_intervention = {
    .name = "Intervention",
    .execute = intervention_execute,
    .style = { "green4", "box", "Intervention" },
    .redirect = true,
    .condition = false, // hook-point reads are never gated
};
