// Running a session: validate every trace, then the steps in order; an
// iterator binds each item, validates its traces again when the item's
// shape changes, and re-runs them; bridged values are released after the
// last step that reads them.
#include <string.h>

#include "graph/graph_impl.h"

// Marks, for every value read through a bridge, the last step reading it
// and the last trace of that step (traces of one iterator share a step).
static void plan_bridges(nsc_session *s) {
    for (int t = 0; t < s->n_traces; t++) {
        nsc_trace *tr = s->traces[t];
        for (int32_t i = 0; i < tr->n_nodes; i++) {
            if (tr->nodes[i].protocol != NSCI_PROTO_bridge) {
                continue;
            }
            const nsci_bridge_payload *p = tr->nodes[i].payload;
            nsci_gnode *src = &p->source->nodes[p->node];
            if (tr->step > src->last_bridge_step) {
                src->last_bridge_step = tr->step;
                src->last_bridge_order = tr->order;
            } else if (tr->step == src->last_bridge_step) {
                src->last_bridge_order = NSCI_MAX(src->last_bridge_order, tr->order);
            }
        }
    }
}

// After step k: values whose last reader was step k go (unless saved).
static void release_bridged(nsc_session *s, int k) {
    for (int t = 0; t < s->n_traces; t++) {
        nsc_trace *tr = s->traces[t];
        for (int32_t i = 0; i < tr->n_nodes; i++) {
            nsci_gnode *n = &tr->nodes[i];
            if (n->last_bridge_step == k && !n->saved) {
                nsci_node_drop_values(tr, n);
            }
        }
    }
}

static nsc_status check_all(nsc_session *s) {
    for (int t = 0; t < s->n_traces; t++) {
        nsc_trace *tr = s->traces[t];
        if (tr->state == NSCI_TRACE_FAILED) {
            return nsci_fail(tr->first_status, "session: the trace of step %d has errors: %s",
                             tr->step, tr->first_error);
        }
        if (tr->n_invokes == 0) {
            return nsci_fail(NSC_ERR_STATE, "session: the trace of step %d has no invoke",
                             tr->step);
        }
    }
    return NSC_OK;
}

static bool same_shape(const nsc_tensor *a, const nsc_tensor *b) {
    return a->ndim == b->ndim && a->dtype == b->dtype &&
           memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(int64_t)) == 0;
}

// Rebinds the item; a new shape re-validates the iterator's traces.
static nsc_status bind_item(nsc_iterator *it, int i) {
    nsci_gnode *item = &it->session->values->nodes[it->item_node];
    nsc_tensor *next = it->items[i];
    nsc_free(item->value[0]);
    item->value[0] = nsc_retain(next);
    nsc_tensor *proxy = item->proxy[0];
    if (same_shape(proxy, next)) {
        return NSC_OK;
    }
    const char *changed = proxy->dtype == next->dtype ? "shape" : "dtype";
    proxy->dtype = next->dtype;
    proxy->ndim = next->ndim;
    memcpy(proxy->shape, next->shape, sizeof next->shape);
    nsci_contiguous_strides(proxy->ndim, proxy->shape, proxy->stride);
    for (int t = 0; t < it->n_traces; t++) {
        if (nsci_graph_revalidate(it->traces[t]) != NSC_OK) {
            nsci_error_context("item %d changed %s; iterator trace %d", i, changed, t);
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static nsc_status run_iterator(nsc_iterator *it) {
    it->iterations = 0;
    for (int i = 0; i < it->n_items; i++) {
        if (bind_item(it, i) != NSC_OK) {
            return nsc_last_status();
        }
        bool leave = false;
        for (int t = 0; t < it->n_traces; t++) {
            nsc_trace *tr = it->traces[t];
            if (tr->state == NSCI_TRACE_RAN) {
                nsci_trace_reset(tr);
            }
            if (nsci_trace_execute(tr) != NSC_OK) {
                nsci_error_context("iteration %d, iterator trace %d", i, t);
                return nsc_last_status();
            }
            leave |= tr->exit_requested;
        }
        it->iterations++;
        if (leave) {
            break; // exit: the loop ends after this iteration
        }
    }
    return NSC_OK;
}

nsc_status nsc_session_run(nsc_session *s) {
    if (!s) {
        return nsci_fail_keep(NSC_ERR_ARG, "session_run: session is NULL");
    }
    if (s->values->first_status != NSC_OK) { // a building call failed: the build is partial
        return nsci_fail(s->values->first_status, "session_run: the session has errors: %s",
                         s->values->first_error);
    }
    if (check_all(s) != NSC_OK) {
        return nsc_last_status();
    }
    plan_bridges(s);
    for (int k = 0; k < s->n_steps; k++) {
        nsci_session_step *step = &s->steps[k];
        nsc_trace *tr = step->trace;
        if (tr && tr->state == NSCI_TRACE_RAN) {
            nsci_trace_reset(tr); // a session runs again from the start
        }
        nsc_status status = tr ? nsci_trace_execute(tr) : run_iterator(step->iterator);
        if (status != NSC_OK) {
            nsci_error_prefix("session step %d", k);
            return status;
        }
        release_bridged(s, k);
    }
    return NSC_OK;
}

nsc_tensor *nsc_session_get(nsc_session *s, nsc_tensor *proxy) {
    int32_t id, k;
    nsc_trace *g = nsci_proxy_graph(proxy, &id, &k);
    if (!s || !proxy) { // NULL from a failed call flows on with its error
        return nsci_fail_keep_null(NSC_ERR_ARG, "session_get: session or proxy is NULL");
    }
    if (!g || g->session != s) {
        return nsci_fail_null(NSC_ERR_ARG, "session_get: not a proxy of this session");
    }
    if (g != s->values) {
        return nsc_trace_get(g, proxy);
    }
    nsc_tensor *v = g->nodes[id].value[k];
    return v ? nsc_retain(v) : nsci_fail_null(NSC_ERR_STATE, "session_get: no value yet");
}

nsc_status nsc_iterator_exit(nsc_trace *tr) {
    if (!tr) { // NULL from a failed nsc_iterator_trace flows on with its error
        return nsci_fail_keep(NSC_ERR_ARG, "iterator_exit: trace is NULL");
    }
    if (!tr->iterator) {
        return nsci_fail(NSC_ERR_STATE, "iterator_exit: the trace does not belong to an iterator");
    }
    if (nsci_graph_check_building(tr) != NSC_OK) {
        return nsc_last_status();
    }
    int32_t id = nsci_node_add(tr, NSCI_PROTO_early_stop, 0, NULL);
    if (id < 0 || !(tr->nodes[id].payload = nsci_strdup("exit"))) {
        return nsci_graph_fail(tr, -1, nsc_last_status());
    }
    return nsci_order_node(tr, id) == NSC_OK ? NSC_OK : nsci_graph_fail(tr, id, nsc_last_status());
}

nsc_status nsc_session_dot(const nsc_session *s, FILE *out) {
    if (!s || !out) {
        return nsci_fail(NSC_ERR_ARG, "session_dot: session or stream is NULL");
    }
    fprintf(out, "digraph nsc_session {\n  rankdir=TB;\n  compound=true;\n");
    fprintf(out, "  node [fontname=\"Helvetica\"];\n");
    for (int k = 0; k < s->n_steps; k++) {
        const nsc_iterator *it = s->steps[k].iterator;
        int n = it ? it->n_traces : 1;
        if (it) {
            fprintf(out, "  subgraph cluster_iter%d {\n    label=\"step %d: iterator over %d "
                         "items\";\n    color=purple;\n",
                    k, k, it->n_items);
        }
        for (int t = 0; t < n; t++) {
            const nsc_trace *tr = it ? it->traces[t] : s->steps[k].trace;
            char prefix[32];
            snprintf(prefix, sizeof prefix, "t%d_", tr->order);
            fprintf(out, "  subgraph cluster_t%d {\n    label=\"step %d: trace %d\";\n",
                    tr->order, k, tr->order);
            nsci_dot_nodes(tr, out, prefix, "    ");
            fprintf(out, "  }\n");
        }
        if (it) {
            fprintf(out, "  }\n");
        }
    }
    for (int t = 0; t < s->n_traces; t++) { // bridges cross from their source
        const nsc_trace *tr = s->traces[t];
        for (int32_t i = 0; i < tr->n_nodes; i++) {
            const nsci_bridge_payload *p = tr->nodes[i].payload;
            if (tr->nodes[i].protocol == NSCI_PROTO_bridge && p->source != s->values) {
                fprintf(out, "  t%d_n%d -> t%d_n%d [style=dotted, color=purple];\n",
                        p->source->order, p->node, tr->order, i);
            }
        }
    }
    fprintf(out, "}\n");
    return ferror(out) ? nsci_fail(NSC_ERR_IO, "session_dot: writing failed") : NSC_OK;
}
