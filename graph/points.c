// Hook points: finding them (after the shape scan), and the public calls that
// read and replace them (the Intervention and Swap protocols' add side).
#include <string.h>

#include "graph/graph_impl.h"

static const char *kind_word(nsc_hook_kind kind) {
    return kind == NSC_HOOK_OUTPUT ? "output" : "input";
}

static const char *path_or_model(const nsci_graph *g, const nsc_module *m) {
    const char *p = nsci_graph_path(g, m);
    return *p ? p : "(model)";
}

static int64_t calls_seen(const nsci_graph *g, const nsc_module *m) {
    int64_t n = 0;
    for (int i = 0; i < g->n_scan; i++) {
        n += g->scan[i].module == m;
    }
    return n;
}

// Fills p's value geometry from the scan; fails for unreachable points.
static nsc_status locate(nsci_graph *g, nsci_point *p) {
    // An every-call point takes the first call's shape and firing position.
    int64_t call = p->call_index == NSC_EVERY_CALL ? 0 : p->call_index;
    const nsci_scan_entry *e = nsci_scan_find(g, p->module, call);
    if (!e) {
        return nsci_fail(NSC_ERR_ARG,
                         "%s %s: call index %lld is unreachable: the module runs "
                         "%lld time(s) in this trace",
                         path_or_model(g, p->module), kind_word(p->kind), (long long)p->call_index,
                         (long long)calls_seen(g, p->module));
    }
    if (p->kind == NSC_HOOK_INPUT && (p->index >= e->n_in || !e->in_present[p->index])) {
        return nsci_fail(NSC_ERR_ARG, "%s input %d: the module is called with %d input(s)%s",
                         path_or_model(g, p->module), p->index, e->n_in,
                         p->index < e->n_in ? " and this one is absent" : "");
    }
    p->meta = p->kind == NSC_HOOK_OUTPUT ? e->out : e->in[p->index];
    p->seq = p->kind == NSC_HOOK_OUTPUT ? e->seq_out : e->seq_in;
    p->batch_dim = nsc_module_batch_dim(p->module, p->kind, p->index);
    if (p->batch_dim >= 0 &&
        (p->batch_dim >= p->meta.ndim || p->meta.shape[p->batch_dim] != g->total_batch)) {
        char buf[160];
        return nsci_fail(NSC_ERR_SHAPE,
                         "%s %s: its declared batch dim %d does not hold the "
                         "batch of %lld rows (value %s)",
                         path_or_model(g, p->module), kind_word(p->kind), p->batch_dim,
                         (long long)g->total_batch,
                         nsci_shape_str(buf, sizeof buf, p->meta.ndim, p->meta.shape));
    }
    return NSC_OK;
}

nsc_status nsci_point_relocate(nsci_graph *g, nsci_point *p) {
    return locate(g, p);
}

int32_t nsci_point_get(nsci_graph *g, nsc_module *m, nsc_hook_kind kind, int index,
                       int64_t call_index) {
    if (nsci_scan_once(g) != NSC_OK) {
        return -1;
    }
    for (int i = 0; i < g->n_points; i++) {
        nsci_point *p = &g->points[i];
        if (p->module == m && p->kind == kind && p->index == index &&
            p->call_index == call_index) {
            return i;
        }
    }
    if (call_index < 0 && call_index != NSC_EVERY_CALL) {
        nsci_fail(NSC_ERR_ARG, "%s %s: call index %lld is negative", path_or_model(g, m),
                  kind_word(kind), (long long)call_index);
        return -1;
    }
    nsci_point p = { .module = m, .kind = kind, .index = index, .call_index = call_index };
    if (locate(g, &p) != NSC_OK) {
        return -1;
    }
    if (g->n_points == g->cap_points) {
        int cap = g->cap_points ? g->cap_points * 2 : 16;
        nsci_point *grown = nsci_realloc(g->points, (size_t)cap * sizeof *grown);
        if (!grown) {
            return -1;
        }
        g->points = grown;
        g->cap_points = cap;
    }
    g->points[g->n_points] = p;
    return g->n_points++;
}

void nsci_point_invoke_meta(const nsci_graph *g, const nsci_point *p, const nsc_invoke *inv,
                            nsci_meta *out) {
    (void)g;
    *out = p->meta;
    if (p->batch_dim >= 0) {
        out->shape[p->batch_dim] = inv->batch_size;
        out->offset += inv->batch_start * p->meta.stride[p->batch_dim];
    }
}

nsc_status nsci_point_add_node(nsci_graph *g, int32_t point, int32_t node) {
    nsci_point *p = &g->points[point];
    if (p->n_nodes == p->cap_nodes) {
        int cap = p->cap_nodes ? p->cap_nodes * 2 : 4;
        int32_t *grown = nsci_realloc(p->nodes, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        p->nodes = grown;
        p->cap_nodes = cap;
    }
    p->nodes[p->n_nodes++] = node;
    g->nodes[node].point = point;
    return NSC_OK;
}

// --- the public calls ---

static nsc_status begin(nsc_invoke *inv, const char *path, nsc_module **m) {
    if (!inv && nsc_last_status() != NSC_OK) {
        return nsc_last_status(); // NULL from a failed call flows on: keep its error
    }
    if (!inv || !path) {
        return nsci_fail(NSC_ERR_ARG, "hook point: invoke or path is NULL");
    }
    if (nsci_graph_check_building(inv->trace) != NSC_OK) {
        return nsc_last_status();
    }
    *m = nsc_module_find(inv->trace->model, path);
    return *m ? NSC_OK : nsci_graph_fail(inv->trace, -1, NSC_ERR_ARG);
}

static nsc_tensor *read_point(nsc_invoke *inv, const char *path, nsc_hook_kind kind, int index,
                              int64_t call_index) {
    nsc_module *m;
    if (begin(inv, path, &m) != NSC_OK) {
        return NULL;
    }
    nsci_graph *g = inv->trace;
    int32_t point = nsci_point_get(g, m, kind, index, call_index);
    int32_t id = point >= 0 ? nsci_node_add(g, NSCI_PROTO_intervention, 0, NULL) : -1;
    if (id < 0) {
        nsci_graph_fail(g, -1, nsc_last_status());
        return NULL;
    }
    g->nodes[id].invoke = inv->index;
    nsci_meta meta;
    nsci_point_invoke_meta(g, &g->points[point], inv, &meta);
    nsc_tensor *proxy = nsci_node_make_proxy(g, id, 0, &meta, meta.device);
    if (!proxy || nsci_point_add_node(g, point, id) != NSC_OK ||
        nsci_order_node(g, id) != NSC_OK) {
        nsci_graph_fail(g, id, nsc_last_status());
        return NULL;
    }
    return proxy;
}

nsc_tensor *nsc_invoke_output(nsc_invoke *inv, const char *path, int64_t call_index) {
    return read_point(inv, path, NSC_HOOK_OUTPUT, 0, call_index);
}

nsc_tensor *nsc_invoke_input(nsc_invoke *inv, const char *path, int input_index,
                             int64_t call_index) {
    if (input_index < 0 || input_index >= NSCI_MAX_MODULE_INPUTS) {
        nsci_fail(NSC_ERR_ARG, "%s input %d: the index is out of range", path ? path : "?",
                  input_index);
        return inv ? (nsci_graph_fail(inv->trace, -1, NSC_ERR_ARG), NULL) : NULL;
    }
    return read_point(inv, path, NSC_HOOK_INPUT, input_index, call_index);
}

// The value must broadcast to the point's per-invoke shape and fit its dtype.
static nsc_status check_swap_value(const nsci_meta *want, const nsc_tensor *v, const char *path,
                                   const char *kind) {
    char a[160], b[160];
    bool fits = v->ndim <= want->ndim;
    for (int d = 0; fits && d < v->ndim; d++) {
        int64_t size = v->shape[v->ndim - 1 - d], target = want->shape[want->ndim - 1 - d];
        fits = size == target || size == 1;
    }
    if (!fits) {
        return nsci_fail(NSC_ERR_SHAPE, "set %s of %s: value %s does not broadcast to the "
                                        "point's shape %s",
                         kind, path, nsci_shape_str(a, sizeof a, v->ndim, v->shape),
                         nsci_shape_str(b, sizeof b, want->ndim, want->shape));
    }
    if (nsci_promote((nsc_dtype)v->dtype, want->dtype) != want->dtype) {
        return nsci_fail(NSC_ERR_DTYPE, "set %s of %s: a %s value cannot replace a %s one", kind,
                         path, nsc_dtype_name((nsc_dtype)v->dtype), nsc_dtype_name(want->dtype));
    }
    return NSC_OK;
}

nsc_status nsci_point_write_check(nsci_graph *g, nsci_gnode *n) {
    const nsci_point *p = &g->points[n->point];
    nsci_meta want;
    nsci_point_invoke_meta(g, p, g->invokes[n->invoke], &want);
    nsc_tensor *value = nsci_arg_twin(g, n->args[0]);
    nsc_status status =
        value ? check_swap_value(&want, value, path_or_model(g, p->module), kind_word(p->kind))
              : nsc_last_status();
    nsc_free(value);
    return status;
}

int32_t nsci_point_write(nsc_invoke *inv, const char *path, nsc_hook_kind kind, int index,
                         int64_t call_index, nsc_tensor *value, nsci_protocol_id protocol) {
    nsc_module *m;
    if (!value) {
        if (nsc_last_status() == NSC_OK) {
            nsci_fail(NSC_ERR_ARG, "set %s: value is NULL", kind_word(kind));
        }
        return inv ? (nsci_graph_fail(inv->trace, -1, nsc_last_status()), -1) : -1;
    }
    if (begin(inv, path, &m) != NSC_OK) {
        return -1;
    }
    nsci_graph *g = inv->trace;
    int32_t point = nsci_point_get(g, m, kind, index, call_index);
    nsci_arg arg;
    if (point < 0 || nsci_arg_for(g, value, &arg) != NSC_OK) {
        nsci_graph_fail(g, -1, nsc_last_status());
        return -1;
    }
    nsci_meta want;
    nsci_point_invoke_meta(g, &g->points[point], inv, &want);
    if (check_swap_value(&want, value, path_or_model(g, m), kind_word(kind)) != NSC_OK) {
        nsci_graph_fail(g, arg.node, nsc_last_status());
        return -1;
    }
    int32_t id = nsci_node_add(g, protocol, 1, &arg);
    if (id < 0 || nsci_point_add_node(g, point, id) != NSC_OK) {
        nsci_graph_fail(g, -1, nsc_last_status());
        return -1;
    }
    g->nodes[id].invoke = inv->index;
    if (nsci_order_node(g, id) != NSC_OK) {
        nsci_graph_fail(g, id, nsc_last_status());
        return -1;
    }
    return id;
}

static nsc_status write_point(nsc_invoke *inv, const char *path, nsc_hook_kind kind, int index,
                              int64_t call_index, nsc_tensor *value) {
    int32_t id = nsci_point_write(inv, path, kind, index, call_index, value, NSCI_PROTO_swap);
    return id >= 0 ? NSC_OK : nsc_last_status();
}

nsc_status nsc_invoke_set_output(nsc_invoke *inv, const char *path, int64_t call_index,
                                 nsc_tensor *value) {
    return write_point(inv, path, NSC_HOOK_OUTPUT, 0, call_index, value);
}

nsc_status nsc_invoke_set_input(nsc_invoke *inv, const char *path, int input_index,
                                int64_t call_index, nsc_tensor *value) {
    if (input_index < 0 || input_index >= NSCI_MAX_MODULE_INPUTS) {
        nsci_fail(NSC_ERR_ARG, "set input %d of %s: the index is out of range", input_index,
                  path ? path : "?");
        return inv ? nsci_graph_fail(inv->trace, -1, NSC_ERR_ARG) : NSC_ERR_ARG;
    }
    return write_point(inv, path, NSC_HOOK_INPUT, input_index, call_index, value);
}
