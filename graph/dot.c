// Graphviz DOT export, each node drawn in its protocol's style (the
// reference protocols.py), edges solid for values and dashed for ordering.
#include <string.h>

#include "graph/graph_impl.h"

static void node_label(const nsci_graph *g, const nsci_gnode *n, char *buf, size_t bytes) {
    const nsci_protocol *p = nsci_protocols[n->protocol];
    if (n->protocol == NSCI_PROTO_op) {
        snprintf(buf, bytes, "%s", nsci_op_defs[n->op]->name);
    } else if (n->point >= 0) {
        const nsci_point *pt = &g->points[n->point];
        const char *path = nsci_graph_path(g, pt->module);
        snprintf(buf, bytes, "%s\\n%s.%s[%lld]", p->style.label ? p->style.label : p->name,
                 *path ? path : "model", pt->kind == NSC_HOOK_OUTPUT ? "output" : "input",
                 (long long)pt->call_index);
    } else {
        snprintf(buf, bytes, "%s", p->style.label ? p->style.label : p->name);
    }
}

void nsci_dot_nodes(const nsc_trace *tr, FILE *out, const char *prefix, const char *indent) {
    for (int32_t i = 0; i < tr->n_nodes; i++) {
        const nsci_gnode *n = &tr->nodes[i];
        const nsci_style *st = &nsci_protocols[n->protocol]->style;
        char label[512];
        node_label(tr, n, label, sizeof label);
        fprintf(out, "%s%sn%d [label=\"%d: %s\", color=\"%s\", shape=%s%s];\n", indent, prefix,
                i, i, label, st->color, st->shape,
                strcmp(st->shape, "polygon") == 0 ? ", sides=6" : "");
        for (int a = 0; a < n->n_args; a++) {
            fprintf(out, "%s%sn%d -> %sn%d%s;\n", indent, prefix, n->args[a].node, prefix, i,
                    n->args[a].output < 0 ? " [style=dashed]" : "");
        }
    }
}

nsc_status nsc_trace_dot(const nsc_trace *tr, FILE *out) {
    if (!tr || !out) {
        return nsci_fail(NSC_ERR_ARG, "trace_dot: trace or stream is NULL");
    }
    fprintf(out, "digraph nsc {\n  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n");
    nsci_dot_nodes(tr, out, "", "  ");
    fprintf(out, "}\n");
    return ferror(out) ? nsci_fail(NSC_ERR_IO, "trace_dot: writing failed") : NSC_OK;
}
