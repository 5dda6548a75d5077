// Conditional: a block of nodes that runs only if a one-element boolean is
// true at run time (if/else as two branches of one block; nestable). Gated
// nodes wait for the condition; a branch not taken is skipped, releasing
// at once everything it would have consumed. Hook-point reads and bridges
// are never gated (their protocols' condition flag is false).
#include "protocols/protocols_impl.h"

typedef nsci_condition_payload condition_payload;

static nsc_status conditional_execute(nsci_graph *g, nsci_gnode *n) {
    nsc_tensor *cond = nsci_arg_value(g, n->args[0]);
    if (nsc_tensor_numel(cond) != 1) {
        return nsci_fail(NSC_ERR_SHAPE, "condition: %lld elements: expected one",
                         (long long)nsc_tensor_numel(cond));
    }
    double v = nsc_tensor_item(cond);
    ((condition_payload *)n->payload)->value = v != 0.0;
    nsci_node_deliver(g, n->id, 0, nsc_retain(cond));
    return NSC_OK;
}

nsc_status nsci_gate_node(nsci_graph *g, int32_t id) {
    nsci_gnode *n = &g->nodes[id];
    int32_t block = g->blocks[g->n_blocks - 1];
    if (block == id) {
        return NSC_OK;
    }
    nsci_arg *grown = nsci_realloc(n->args, (size_t)(n->n_args + 1) * sizeof *grown);
    if (!grown) {
        return NSC_ERR_OOM;
    }
    n->args = grown;
    n->args[n->n_args++] = (nsci_arg){ block, -1 }; // waits for the condition
    nsci_gnode *c = &g->nodes[block];
    if (c->n_consumers == c->cap_consumers) {
        int cap = c->cap_consumers ? c->cap_consumers * 2 : 4;
        int32_t *more = nsci_realloc(c->consumers, (size_t)cap * sizeof *more);
        if (!more) {
            n->n_args--;
            return NSC_ERR_OOM;
        }
        c->consumers = more;
        c->cap_consumers = cap;
    }
    c->consumers[c->n_consumers++] = id;
    n->gate = block;
    n->gate_branch = g->block_branch[g->n_blocks - 1];
    return NSC_OK;
}

bool nsci_gate_open(nsci_graph *g, const nsci_gnode *n) {
    const nsci_gnode *c = &g->nodes[n->gate];
    return c->state == NSCI_NODE_DONE &&
           ((const condition_payload *)c->payload)->value == n->gate_branch;
}

nsc_status nsc_trace_if(nsc_trace *tr, nsc_tensor *cond) {
    if (!tr || !cond) {
        return nsc_last_status() != NSC_OK && tr
                   ? nsci_graph_fail(tr, -1, nsc_last_status())
                   : nsci_fail(NSC_ERR_ARG, "trace_if: trace or condition is NULL");
    }
    if (nsci_graph_check_building(tr) != NSC_OK) {
        return nsc_last_status();
    }
    if (nsc_tensor_numel(cond) != 1 || tr->n_blocks == NSCI_ARRAY_LEN(tr->blocks)) {
        char buf[160];
        nsci_fail(NSC_ERR_SHAPE, "trace_if: condition %s: expected one element (reduce it with "
                                 "nsc_all or nsc_any), and at most 32 nested blocks",
                  nsci_shape_str(buf, sizeof buf, nsc_tensor_ndim(cond), nsc_tensor_shape(cond)));
        return nsci_graph_fail(tr, -1, NSC_ERR_SHAPE);
    }
    nsci_arg arg;
    condition_payload *p = nsci_calloc(1, sizeof *p);
    int32_t id = p && nsci_arg_for(tr, cond, &arg) == NSC_OK
                     ? nsci_node_add(tr, NSCI_PROTO_conditional, 1, &arg)
                     : -1;
    if (id < 0) {
        nsci_free(p);
        return nsci_graph_fail(tr, -1, nsc_last_status());
    }
    tr->nodes[id].payload = p;
    tr->nodes[id].n_out = 1;
    tr->blocks[tr->n_blocks] = id;
    tr->block_branch[tr->n_blocks] = true;
    tr->n_blocks++;
    return nsci_order_node(tr, id) == NSC_OK ? NSC_OK : nsci_graph_fail(tr, id, nsc_last_status());
}

nsc_status nsc_trace_else(nsc_trace *tr) {
    if (!tr || tr->n_blocks == 0 || !tr->block_branch[tr->n_blocks - 1]) {
        nsci_fail(NSC_ERR_STATE, "trace_else: no open if block (or its else already began)");
        return tr ? nsci_graph_fail(tr, -1, NSC_ERR_STATE) : NSC_ERR_STATE;
    }
    tr->block_branch[tr->n_blocks - 1] = false;
    return NSC_OK;
}

nsc_status nsc_trace_end(nsc_trace *tr) {
    if (!tr || tr->n_blocks == 0) {
        nsci_fail(NSC_ERR_STATE, "trace_end: no open if block");
        return tr ? nsci_graph_fail(tr, -1, NSC_ERR_STATE) : NSC_ERR_STATE;
    }
    tr->n_blocks--;
    return NSC_OK;
}

const nsci_protocol nsci_protocol_conditional = {
    .name = "Conditional",
    .execute = conditional_execute,
    .style = { "#FF8C00", "polygon", "Conditional" },
    .redirect = true,
    .condition = true,
};
