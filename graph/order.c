// Ordering rules (NNSIGHT.md §1), checked as each node is added: a node can
// run once the last hook point it depends on has fired (its ready_seq); a
// replacement or an in-place write into a hook point must be computable
// before the point passes; an earlier reader of a value must be able to read
// it before a later write changes it.
#include "graph/graph_impl.h"

static void point_text(nsci_graph *g, int32_t point, char *buf, size_t n) {
    nsci_point_words(g, &g->points[point], buf, n);
}

// The hook point whose firing made node id ready (its latest dependency).
static int32_t latest_point(nsci_graph *g, int32_t id, int depth) {
    nsci_gnode *n = nsci_node(g, id);
    if (n->point >= 0 && n->protocol == NSCI_PROTO_intervention) {
        return n->point;
    }
    for (int i = 0; depth < 256 && i < n->n_args; i++) {
        nsci_gnode *a = nsci_node(g, n->args[i].node);
        if (a->ready_seq == n->ready_seq && a->ready_seq > 0) {
            return latest_point(g, a->id, depth + 1);
        }
    }
    return -1;
}

static nsc_status too_late(nsci_graph *g, int32_t id, int32_t target_point, const char *what) {
    char target[256], late[256] = "a later point";
    point_text(g, target_point, target, sizeof target);
    int32_t lp = latest_point(g, id, 0);
    if (lp >= 0) {
        point_text(g, lp, late, sizeof late);
    }
    // The caller's nsci_graph_fail names the node.
    return nsci_fail(NSC_ERR_STATE, "%s %s needs %s, which exists only after %s has passed", what,
                     target, late, target);
}

// Earlier readers of root must not need a point that fires after the write.
static nsc_status check_earlier_readers(nsci_graph *g, nsci_gnode *w) {
    for (int32_t v = 0; v < w->id; v++) {
        nsci_gnode *view = &g->nodes[v];
        if (view->root != w->root) {
            continue;
        }
        for (int c = 0; c < view->n_consumers; c++) {
            nsci_gnode *reader = nsci_node(g, view->consumers[c]);
            bool is_view_chain = reader->root == w->root && reader->protocol == NSCI_PROTO_op;
            if (reader->id >= w->id || is_view_chain || reader->ready_seq <= w->ready_seq) {
                continue;
            }
            char r_text[512]; // the caller's nsci_graph_fail names the write
            nsci_node_describe(g, reader->id, r_text, sizeof r_text);
            return nsci_fail(NSC_ERR_STATE,
                             "%s reads a value before an in-place write changes it, but can only "
                             "run after the write: read a clone instead",
                             r_text);
        }
    }
    return NSC_OK;
}

nsc_status nsci_order_node(nsci_graph *g, int32_t id) {
    nsci_gnode *n = nsci_node(g, id);
    if (nsci_body_of(g, id) != NSC_OK) {
        return nsc_last_status();
    }
    if (n->protocol == NSCI_PROTO_intervention) {
        n->ready_seq = g->points[n->point].seq;
        return NSC_OK;
    }
    int64_t ready = 0;
    for (int i = 0; i < n->n_args; i++) {
        ready = NSCI_MAX(ready, nsci_node(g, n->args[i].node)->ready_seq);
    }
    n->ready_seq = ready;
    if (n->protocol == NSCI_PROTO_swap && ready > g->points[n->point].seq) {
        return too_late(g, id, n->point, "the replacement of");
    }
    if (n->protocol == NSCI_PROTO_early_stop && n->point >= 0) {
        if (ready > g->points[n->point].seq) { // a gated stop: its condition comes too late
            return too_late(g, id, n->point, "the stop after");
        }
        n->ready_seq = g->points[n->point].seq;
    }
    bool writes = n->protocol == NSCI_PROTO_op && (nsci_op_defs[n->op]->flags & NSCI_OP_INPLACE);
    if (!writes) {
        return NSC_OK;
    }
    nsci_gnode *root = nsci_node(g, n->root);
    if (root->protocol == NSCI_PROTO_intervention && ready > g->points[root->point].seq) {
        return too_late(g, id, root->point, "an in-place write into");
    }
    return check_earlier_readers(g, n);
}
