// Intervention: read a hook point (module input or output, call index,
// invoke). Its value is delivered by the module-call hook (graph/run.c):
// the invoke's rows of the live activation, as a view, so in-place edits
// through it reach the model. Added by nsc_invoke_output / nsc_invoke_input.
#include <string.h>

#include "graph/graph_impl.h"

static nsc_status intervention_execute(nsci_graph *g, nsci_gnode *n) {
    (void)g;
    (void)n;
    return NSC_OK; // delivered, never executed
}

// Validation again: the point's new per-invoke geometry.
static nsc_status intervention_compile(nsci_graph *g, nsci_gnode *n) {
    nsci_meta m;
    nsci_point_invoke_meta(g, &g->points[n->point], g->invokes[n->invoke], &m);
    nsc_tensor *like = nsci_tensor_header(m.dtype, NSC_META, m.ndim, m.shape);
    if (!like) {
        return nsc_last_status();
    }
    memcpy(like->stride, m.stride, sizeof m.stride);
    like->offset = m.offset;
    nsci_proxy_reshape(n->proxy[0], like);
    nsc_free(like);
    return NSC_OK;
}
const nsci_protocol nsci_protocol_intervention = {
    .compile = intervention_compile,
    .name = "Intervention",
    .execute = intervention_execute,
    .style = { "green4", "box", "Intervention" },
    .redirect = true,
    .condition = false, // hook-point reads are never gated
};
