// Sessions and iterators: traces run in order as one unit, values bridged
// from earlier traces, session values updated across iterations, an
// iterator re-running its traces per item without rebuilding them.
#include <string.h>

#include "graph/graph_impl.h"

nsc_trace *nsci_graph_new_empty(void) {
    nsci_graph_install();
    nsc_trace *g = nsci_calloc(1, sizeof *g);
    if (g) {
        g->state = NSCI_TRACE_BUILDING;
    }
    return g;
}

nsc_session *nsc_session_new(void) {
    nsc_session *s = nsci_calloc(1, sizeof *s);
    if (s && !(s->values = nsci_graph_new_empty())) {
        nsci_free(s);
        return NULL;
    }
    if (s) {
        s->values->session = s;
        s->values->order = -1; // before every trace
    }
    return s;
}



void nsc_session_free(nsc_session *s) {
    if (!s) {
        return;
    }
    for (int i = 0; i < s->n_traces; i++) {
        nsci_trace_destroy(s->traces[i]);
    }
    for (int i = 0; i < s->n_steps; i++) {
        nsc_iterator *it = s->steps[i].iterator;
        for (int k = 0; it && k < it->n_items; k++) {
            nsc_free(it->items[k]);
        }
        if (it) {
            nsci_free(it->items);
            nsci_free(it->traces);
            nsci_free(it);
        }
    }
    nsci_trace_destroy(s->values);
    nsci_free(s->steps);
    nsci_free(s->traces);
    nsci_free(s);
}

static nsc_status grow(void **items, int *cap, int n, size_t item_bytes) {
    if (n < *cap) {
        return NSC_OK;
    }
    int grown_cap = *cap ? *cap * 2 : 8;
    void *grown = nsci_realloc(*items, (size_t)grown_cap * item_bytes);
    if (!grown) {
        return NSC_ERR_OOM;
    }
    *items = grown;
    *cap = grown_cap;
    return NSC_OK;
}

static void no_free(void *p) {
    (void)p; // the session owns the trace a step node points at
}

// A building call failed: the session keeps the first error (the one just
// recorded) and refuses to run with it, as a trace does. Returns NULL.
static void *session_fail(nsc_session *s) {
    nsc_trace *g = s->values; // the session graph keeps it, never running itself
    if (g->first_status == NSC_OK) {
        g->first_status = nsc_last_status() != NSC_OK ? nsc_last_status() : NSC_ERR_STATE;
        snprintf(g->first_error, sizeof g->first_error, "%s", nsc_last_error());
    }
    return NULL;
}

// Undoes the session graph's last node (a value or an item nothing reads
// yet), so a refused call leaves the graph as it was.
static void drop_last_node(nsc_session *s, int32_t id) {
    nsci_gnode *n = &s->values->nodes[id];
    NSCI_ASSERT(id == s->values->n_nodes - 1 && n->n_consumers == 0 && n->n_args == 0);
    nsci_free_pinned(n->proxy[0]);
    nsc_free(n->value[0]);
    s->values->n_nodes--;
}

// A step of the session graph (drawn and executed in order).
static nsc_status add_step(nsc_session *s, nsc_trace *tr, nsc_iterator *it) {
    if (grow((void **)&s->steps, &s->cap_steps, s->n_steps, sizeof *s->steps) != NSC_OK) {
        return NSC_ERR_OOM;
    }
    if (tr) {
        int32_t id = nsci_node_add(s->values, NSCI_PROTO_local_backend_execute, 0, NULL);
        if (id < 0) {
            return nsc_last_status();
        }
        s->values->nodes[id].payload = tr;
        s->values->nodes[id].payload_free = no_free;
    }
    s->steps[s->n_steps++] = (nsci_session_step){ tr, it };
    return NSC_OK;
}

static nsc_trace *new_member(nsc_session *s, nsc_module *model, nsc_iterator *it) {
    if (grow((void **)&s->traces, &s->cap_traces, s->n_traces, sizeof *s->traces) != NSC_OK) {
        return NULL;
    }
    nsc_trace *tr = nsc_trace_new(model);
    if (!tr) {
        return NULL;
    }
    tr->session = s;
    tr->iterator = it;
    tr->order = s->n_traces;
    tr->step = it ? it->step : s->n_steps;
    s->traces[s->n_traces++] = tr;
    s->current = tr;
    return tr;
}

// Undoes new_member: the trace built last goes, the one before is current.
static void drop_last_trace(nsc_session *s) {
    nsci_trace_destroy(s->traces[--s->n_traces]);
    s->current = s->n_traces > 0 ? s->traces[s->n_traces - 1] : NULL;
}

nsc_trace *nsci_graph_for(nsc_trace *a, nsc_trace *b) {
    if (a && b && a != b && (!a->session || a->session != b->session)) {
        return nsci_fail_null(NSC_ERR_STATE, "a proxy of another trace cannot be used here: save "
                                             "it there and pass its value, or build both traces "
                                             "in one session");
    }
    nsc_trace *g = !a ? b : !b ? a : (a->order >= b->order ? a : b);
    if (g && g->session && g == g->session->values) {
        if (!g->session->current) { // the session graph itself never runs ops
            return nsci_fail_null(NSC_ERR_STATE, "an op on session values alone runs in the "
                                                 "trace being built, and the session has none "
                                                 "yet: create its first trace before the op");
        }
        g = g->session->current; // redirect: built into the trace being built
    }
    return g;
}

nsc_trace *nsc_session_trace(nsc_session *s, nsc_module *model) {
    if (!s) {
        return nsci_fail_keep_null(NSC_ERR_ARG, "session_trace: session is NULL");
    }
    nsc_trace *tr = new_member(s, model, NULL);
    if (tr && add_step(s, tr, NULL) != NSC_OK) {
        drop_last_trace(s);
        tr = NULL;
    }
    return tr ? tr : session_fail(s);
}

static nsc_tensor *value_proxy(nsc_session *s, int32_t id, nsc_tensor *like) {
    nsci_meta m = { .dtype = nsc_tensor_dtype(like), .ndim = nsc_tensor_ndim(like) };
    memcpy(m.shape, nsc_tensor_shape(like), (size_t)m.ndim * sizeof(int64_t));
    nsci_contiguous_strides(m.ndim, m.shape, m.stride);
    return nsci_node_make_proxy(s->values, id, 0, &m, nsc_tensor_device(like));
}

nsc_tensor *nsc_session_value(nsc_session *s, nsc_tensor *initial) {
    if (!s) {
        return nsci_fail_keep_null(NSC_ERR_ARG, "session_value: session is NULL");
    }
    if (!initial) { // a failed call's NULL keeps its error
        nsci_fail_keep(NSC_ERR_ARG, "session_value: initial tensor is NULL");
        return session_fail(s);
    }
    if (nsc_tensor_is_proxy(initial)) {
        nsci_fail(NSC_ERR_ARG, "session_value: initial tensor is a proxy: expected a tensor");
        return session_fail(s);
    }
    int32_t id = nsci_node_add_constant(s->values, initial);
    nsc_tensor *proxy = id >= 0 ? value_proxy(s, id, initial) : NULL;
    if (!proxy) {
        if (id >= 0) {
            drop_last_node(s, id);
        }
        return session_fail(s);
    }
    return proxy;
}

nsc_iterator *nsc_session_iterate(nsc_session *s, int n_items, nsc_tensor *const *items) {
    if (!s) {
        return nsci_fail_keep_null(NSC_ERR_ARG, "session_iterate: session is NULL");
    }
    if (n_items < 1 || !items) {
        nsci_fail(NSC_ERR_ARG, "session_iterate: %d items: expected at least one", n_items);
        return session_fail(s);
    }
    for (int i = 0; i < n_items; i++) {
        if (!items[i] || nsc_tensor_is_proxy(items[i])) {
            nsci_fail(NSC_ERR_ARG, "session_iterate: item %d is NULL or a proxy", i);
            return session_fail(s);
        }
    }
    // Everything that can fail comes first: the step's slot, the item node
    // and its proxy; a failure undoes the node and registers nothing.
    nsc_iterator *it = nsci_calloc(1, sizeof *it);
    nsc_tensor **held = it ? nsci_calloc((size_t)n_items, sizeof *held) : NULL;
    bool room =
        held && grow((void **)&s->steps, &s->cap_steps, s->n_steps, sizeof *s->steps) == NSC_OK;
    int32_t id = room ? nsci_node_add(s->values, NSCI_PROTO_value, 0, NULL) : -1;
    if (id < 0 || !value_proxy(s, id, items[0])) {
        if (id >= 0) {
            drop_last_node(s, id);
        }
        nsci_free(held);
        nsci_free(it);
        return session_fail(s);
    }
    add_step(s, NULL, it); // cannot fail: the slot is there
    for (int i = 0; i < n_items; i++) {
        held[i] = nsc_retain(items[i]);
    }
    *it = (nsc_iterator){ .session = s, .step = s->n_steps - 1, .items = held,
                          .n_items = n_items, .item_node = id };
    nsci_gnode *item = &s->values->nodes[id];
    item->value[0] = nsc_retain(items[0]);
    item->state = NSCI_NODE_DONE;
    return it;
}

nsc_tensor *nsc_iterator_item(nsc_iterator *it) {
    return it ? it->session->values->nodes[it->item_node].proxy[0] : NULL;
}

nsc_trace *nsc_iterator_trace(nsc_iterator *it, nsc_module *model) {
    if (!it) { // NULL from a failed nsc_session_iterate flows on with its error
        return nsci_fail_keep_null(NSC_ERR_ARG, "iterator_trace: iterator is NULL");
    }
    if (it->step < it->session->n_steps - 1) {
        // Traces are made in the order they run, so that a value passes
        // only from a trace made earlier (the bridge's check).
        nsci_fail(NSC_ERR_STATE,
                  "iterator_trace: the session has a step after this "
                  "iterator's (step %d of %d): add an iterator's traces "
                  "before the session's later steps",
                  it->step, it->session->n_steps);
        return session_fail(it->session);
    }
    nsc_trace *tr =
        grow((void **)&it->traces, &it->cap_traces, it->n_traces, sizeof *it->traces) == NSC_OK
            ? new_member(it->session, model, it)
            : NULL;
    if (!tr) {
        return session_fail(it->session);
    }
    it->traces[it->n_traces++] = tr;
    return tr;
}

int64_t nsc_iterator_iterations(const nsc_iterator *it) {
    return it ? it->iterations : 0;
}
