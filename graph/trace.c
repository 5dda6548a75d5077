// Traces and invokes: creation, freeing, save and get, inspection.
#include <string.h>

#include "graph/graph_impl.h"

nsc_trace *nsc_trace_new(nsc_module *model) {
    if (!model) { // NULL from a failed load flows on with its error
        return nsci_fail_keep_null(NSC_ERR_ARG, "trace_new: model is NULL");
    }
    nsci_graph_install();
    nsc_trace *tr = nsci_calloc(1, sizeof *tr);
    if (!tr) {
        return NULL;
    }
    tr->model = nsc_module_retain(model);
    tr->state = NSCI_TRACE_BUILDING;
    return tr;
}

static void free_node(nsci_gnode *n) {
    for (int k = 0; k < NSCI_MAX_OUTPUTS; k++) {
        nsci_free_pinned(n->proxy[k]);
        nsc_free(n->value[k]);
    }
    nsci_free(n->params);
    nsci_free(n->args);
    nsci_free(n->consumers);
    if (n->payload_free) {
        n->payload_free(n->payload);
    } else {
        nsci_free(n->payload);
    }
}

void nsc_trace_free(nsc_trace *tr) {
    if (!tr || tr->session) {
        return; // a session's trace is freed with its session
    }
    nsci_trace_destroy(tr);
}

void nsci_trace_destroy(nsc_trace *tr) {
    if (!tr) {
        return;
    }
    for (int32_t i = 0; i < tr->n_nodes; i++) {
        free_node(&tr->nodes[i]);
    }
    for (int i = 0; i < tr->n_points; i++) {
        nsci_free(tr->points[i].nodes);
        nsc_free(tr->points[i].live);
    }
    for (int i = 0; i < tr->n_invokes; i++) {
        for (int k = 0; k < tr->invokes[i]->n_inputs; k++) {
            nsc_free(tr->invokes[i]->inputs[k]);
        }
        nsci_free(tr->invokes[i]);
    }
    nsci_free(tr->nodes);
    nsci_free(tr->points);
    nsci_free(tr->scan);
    nsci_free(tr->ready);
    nsci_free(tr->held);
    nsci_free(tr->cache);
    nsc_free(tr->generated);
    nsc_module_free(tr->model);
    nsci_free(tr);
}

// --- invokes ---

static bool inputs_allowed(const nsc_trace *tr, int n, nsc_tensor *const *inputs) {
    for (int i = 0; i < n; i++) {
        nsci_graph *owner = inputs[i] ? nsci_proxy_graph(inputs[i], NULL, NULL) : NULL;
        if (owner && !(tr->session && owner == tr->session->values)) {
            return false;
        }
    }
    return true;
}

nsc_tensor *nsci_invoke_input_value(const nsc_invoke *inv, int i, nsc_device device) {
    nsc_tensor *t = inv->inputs[i];
    int32_t node, k;
    nsci_graph *owner = t ? nsci_proxy_graph(t, &node, &k) : NULL;
    if (device == NSC_META) { // a shape-only stand-in that is not a proxy
        return t ? nsc_empty((nsc_dtype)t->dtype, NSC_META, t->ndim, t->shape) : NULL;
    }
    if (owner) {
        nsc_tensor *v = owner->nodes[node].value[k];
        return v ? nsc_retain(v) : nsci_fail_null(NSC_ERR_STATE, "invoke input %d: the session "
                                                                 "value has no tensor",
                                                  i);
    }
    return nsc_retain(t);
}

nsc_invoke *nsc_trace_invoke(nsc_trace *tr, int n_inputs, nsc_tensor *const *inputs) {
    if (!tr) { // NULL from a failed nsc_trace_new flows on with its error
        return nsc_last_status() != NSC_OK
                   ? NULL
                   : nsci_fail_null(NSC_ERR_ARG, "trace_invoke: trace is NULL");
    }
    if (nsci_graph_check_building(tr) != NSC_OK) {
        return NULL;
    }
    const char *problem = NULL;
    if (n_inputs < 1 || n_inputs > NSCI_MAX_MODULE_INPUTS || !inputs || !inputs[0]) {
        problem = "expected 1 to 8 inputs, the first not NULL";
    } else if (tr->scan) {
        problem = "add every invoke before reading hook points (the batch is fixed then)";
    } else if (tr->n_invokes == NSCI_ARRAY_LEN(tr->invokes)) {
        problem = "too many invokes (64 at most)";
    } else if (!inputs_allowed(tr, n_inputs, inputs)) {
        problem = "an input is a proxy: only a session's values and items may be invoke inputs "
                  "(of a trace of that session)";
    } else if (nsc_module_batch_dim(tr->model, NSC_HOOK_INPUT, 0) >= inputs[0]->ndim) {
        problem = "input 0 has no dim at the model's declared batch dim";
    }
    if (problem) {
        nsci_fail(NSC_ERR_ARG, "trace_invoke: %s", problem);
        nsci_graph_fail(tr, -1, NSC_ERR_ARG);
        return NULL;
    }
    nsc_invoke *inv = nsci_calloc(1, sizeof *inv);
    if (!inv) {
        nsci_graph_fail(tr, -1, NSC_ERR_OOM); // the trace refuses to run without it
        return NULL;
    }
    inv->trace = tr;
    inv->index = tr->n_invokes;
    inv->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) {
        inv->inputs[i] = nsc_retain(inputs[i]);
    }
    int dim = nsc_module_batch_dim(tr->model, NSC_HOOK_INPUT, 0);
    inv->batch_size = dim >= 0 && dim < inputs[0]->ndim ? inputs[0]->shape[dim] : 1;
    inv->batch_start = tr->total_batch;
    tr->total_batch += inv->batch_size;
    tr->invokes[tr->n_invokes++] = inv;
    return inv;
}

int64_t nsc_invoke_batch_size(const nsc_invoke *inv) {
    return inv ? inv->batch_size : 0;
}

// --- values ---

static nsci_gnode *node_of(nsc_trace *tr, nsc_tensor *proxy, int32_t *output, const char *op) {
    int32_t id, k;
    nsci_graph *g = nsci_proxy_graph(proxy, &id, &k);
    if (!proxy) {
        return NULL; // an earlier error: keep its message
    }
    if (!g || (tr && g != tr)) {
        nsci_fail(NSC_ERR_ARG, "%s: the tensor is not a proxy of %s", op,
                  tr ? "this trace" : "any trace");
        return NULL;
    }
    if (output) {
        *output = k;
    }
    return nsci_node(g, id);
}

nsc_tensor *nsc_save(nsc_tensor *proxy) {
    if (!node_of(NULL, proxy, NULL, "save")) {
        return NULL;
    }
    nsci_graph *g = nsci_proxy_graph(proxy, NULL, NULL);
    if (nsci_graph_check_building(g) != NSC_OK) {
        return NULL;
    }
    int32_t id, k;
    nsci_proxy_graph(proxy, &id, &k);
    nsci_arg arg = { id, k };
    if (nsci_node_add(g, NSCI_PROTO_lock, 1, &arg) < 0) { // nnsight's save is a Lock node
        nsci_graph_fail(g, id, nsc_last_status());
        return NULL;
    }
    g->nodes[id].saved = true; // and the right to take the value with nsc_trace_get
    return proxy;
}

// A skipped node in a branch not taken, or reading one through its values
// (*budget bounds the nodes looked at: this only words a message).
static bool gated_off(nsc_trace *tr, const nsci_gnode *n, int *budget) {
    if (n->state != NSCI_NODE_SKIPPED || --*budget < 0) {
        return false;
    }
    if (n->gate >= 0 && tr->nodes[n->gate].state == NSCI_NODE_DONE && !nsci_gate_open(tr, n)) {
        return true;
    }
    for (int i = 0; i < n->n_args; i++) {
        if (n->args[i].output >= 0 && gated_off(tr, &tr->nodes[n->args[i].node], budget)) {
            return true;
        }
    }
    return false;
}

nsc_tensor *nsc_trace_get(nsc_trace *tr, nsc_tensor *proxy) {
    int32_t k;
    nsci_gnode *n = tr ? node_of(tr, proxy, &k, "trace_get") : NULL;
    if (!n) {
        return tr ? NULL : nsci_fail_null(NSC_ERR_ARG, "trace_get: trace is NULL");
    }
    const char *problem = !n->saved ? "was not saved (call nsc_save on it before the run)"
                          : (tr->state != NSCI_TRACE_RAN && tr->state != NSCI_TRACE_RUNNING)
                              ? "is not computed yet: the trace has not run"
                          : n->state == NSCI_NODE_SKIPPED && gated_off(tr, n, &(int){ 256 })
                              ? "was never computed (a condition it depends on was false)"
                          : (n->state != NSCI_NODE_DONE || !n->value[k])
                              ? "was never computed (its hook point was not reached in this run)"
                              : NULL;
    if (problem) {
        char what[512]; // described only on failure: describing caches module paths
        nsci_node_describe(tr, n->id, what, sizeof what);
        return nsci_fail_null(NSC_ERR_STATE, "trace_get: %s %s", what, problem);
    }
    return nsc_retain(n->value[k]);
}

// --- scan ---

nsc_status nsc_trace_check(nsc_trace *tr) {
    if (!tr) {
        return nsci_fail_keep(NSC_ERR_ARG, "trace_check: trace is NULL");
    }
    if (tr->state == NSCI_TRACE_FAILED) {
        return nsci_fail(tr->first_status, "%s", tr->first_error);
    }
    if (tr->n_invokes > 0 && nsci_scan_once(tr) != NSC_OK) {
        return nsci_graph_fail(tr, -1, nsc_last_status());
    }
    return NSC_OK;
}

// --- inspection ---

int64_t nsc_trace_n_nodes(const nsc_trace *tr) {
    return tr ? tr->n_nodes : 0;
}

int64_t nsc_trace_node_id(const nsc_trace *tr, const nsc_tensor *proxy) {
    int32_t id;
    return tr && nsci_proxy_graph(proxy, &id, NULL) == tr ? id : -1;
}

int64_t nsc_trace_held_bytes(const nsc_trace *tr) {
    return tr ? tr->held_bytes : 0;
}

int64_t nsc_trace_peak_held_bytes(const nsc_trace *tr) {
    return tr ? tr->peak_held_bytes : 0;
}
