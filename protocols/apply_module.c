// ApplyModule: call a sub-module of the traced model on proxies as one node
// (`lm_head(ln_f(h))` for a logit lens). Validated by a META forward of the
// module; at run time its forward runs on the values, without firing its
// hooks unless asked (forward() versus __call__ in PyTorch).
#include <string.h>

#include "graph/graph_impl.h"

typedef struct apply_payload {
    nsc_module *module; // borrowed: the trace retains the model that owns it
    bool fire_hooks;
} apply_payload;

static nsc_status apply_execute(nsci_graph *g, nsci_gnode *n) {
    const apply_payload *p = n->payload;
    nsc_tensor *in[NSCI_MAX_MODULE_INPUTS];
    for (int i = 0; i < n->n_args; i++) {
        in[i] = nsci_arg_value(g, n->args[i]);
    }
    nsc_tensor *out = p->fire_hooks ? nsc_module_call(p->module, n->n_args, in)
                                    : nsc_module_forward(p->module, n->n_args, in);
    if (!out) {
        return nsc_last_status();
    }
    nsci_node_deliver(g, n->id, 0, out);
    return NSC_OK;
}

// A META tensor with t's geometry that is not a proxy, for validation runs.
static nsc_tensor *twin(const nsc_tensor *t) {
    nsc_tensor *m = nsci_tensor_header((nsc_dtype)t->dtype, NSC_META, t->ndim, t->shape);
    if (m) {
        memcpy(m->stride, t->stride, sizeof t->stride);
        m->offset = t->offset;
        m->target_device = t->target_device;
    }
    return m;
}

// Runs fn-like validation: out = module forward on META twins of xs.
static nsc_tensor *validate(nsc_module *m, int n, nsc_tensor *const *xs) {
    nsc_tensor *twins[NSCI_MAX_MODULE_INPUTS] = { 0 };
    nsc_tensor *out = NULL;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        ok = (twins[i] = twin(xs[i])) != NULL;
    }
    const char *file = nsci_source_file(); // the module's code may record positions
    int line = nsci_source_line();
    if (ok) {
        bool was = nsc_set_grad_enabled(false);
        out = nsc_module_forward(m, n, twins);
        nsc_set_grad_enabled(was);
    }
    nsc_source_mark(file, line);
    for (int i = 0; i < n; i++) {
        nsc_free(twins[i]);
    }
    return out;
}

nsc_tensor *nsc_trace_apply_n(nsc_trace *tr, const char *path, int n, nsc_tensor *const *xs,
                              bool fire_hooks) {
    if (!tr || !path || n < 1 || n > NSCI_MAX_MODULE_INPUTS || !xs) {
        return nsci_fail_null(NSC_ERR_ARG, "trace_apply: trace, path or inputs missing");
    }
    for (int i = 0; i < n; i++) {
        if (!xs[i]) {
            return nsc_last_status() != NSC_OK
                       ? NULL
                       : nsci_fail_null(NSC_ERR_ARG, "trace_apply %s: input %d is NULL", path, i);
        }
    }
    if (nsci_graph_check_building(tr) != NSC_OK) {
        return NULL;
    }
    nsc_module *m = nsc_module_find(tr->model, path);
    nsc_tensor *meta = m ? validate(m, n, xs) : NULL;
    nsci_arg args[NSCI_MAX_MODULE_INPUTS];
    bool ok = meta != NULL;
    for (int i = 0; i < n && ok; i++) {
        ok = nsci_arg_for(tr, xs[i], &args[i]) == NSC_OK;
    }
    int32_t id = ok ? nsci_node_add(tr, NSCI_PROTO_apply_module, n, args) : -1;
    apply_payload *p = id >= 0 ? nsci_malloc(sizeof *p) : NULL;
    if (!p) {
        if (m && meta == NULL) {
            nsci_error_prefix("trace_apply %s: the module's forward on META failed", path);
        }
        nsc_free(meta);
        nsci_graph_fail(tr, -1, nsc_last_status());
        return NULL;
    }
    *p = (apply_payload){ m, fire_hooks };
    tr->nodes[id].payload = p;
    nsci_meta mm = { .dtype = (nsc_dtype)meta->dtype, .ndim = meta->ndim, .offset = meta->offset };
    memcpy(mm.shape, meta->shape, sizeof meta->shape);
    memcpy(mm.stride, meta->stride, sizeof meta->stride);
    nsc_tensor *proxy = nsci_node_make_proxy(tr, id, 0, &mm, (nsc_device)meta->target_device);
    nsc_free(meta);
    if (!proxy || nsci_order_node(tr, id) != NSC_OK) {
        nsci_graph_fail(tr, id, nsc_last_status());
        return NULL;
    }
    return proxy;
}

nsc_tensor *nsc_trace_apply(nsc_trace *tr, const char *path, nsc_tensor *x) {
    return nsc_trace_apply_n(tr, path, 1, &x, false);
}

const nsci_protocol nsci_protocol_apply_module = {
    .name = "ApplyModule",
    .execute = apply_execute,
    .style = { "blue", "polygon", "ApplyModule" },
    .redirect = true,
    .condition = true,
};
