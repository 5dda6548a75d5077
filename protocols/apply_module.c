// ApplyModule: call a sub-module of the traced model on proxies as one node
// (`lm_head(ln_f(h))` for a logit lens). Validated by a META forward of the
// module; at run time its forward runs on the values, without firing its
// hooks unless asked (forward() versus __call__ in PyTorch).
#include <string.h>

#include "protocols/protocols_impl.h"

typedef nsci_apply_payload apply_payload;

static void apply_payload_free(void *payload) {
    apply_payload *p = payload;
    nsc_module_free(p->module);
    nsci_free(p);
}

// Runs m on in apart from the model's own forward: without the model's KV
// cache (neither read nor extended), with no call counted and no hook point
// of the trace firing (the counters are put back, so the model's later calls
// keep the indices the scan saw). *applying is the trace's flag for its hooks.
static nsc_tensor *apart(nsc_module *model, nsc_module *m, int n_in, nsc_tensor *const *in,
                         bool fire_hooks, int *applying) {
    int64_t *calls = nsci_module_calls_save(m);
    if (!calls) {
        return NULL;
    }
    nsc_kv_cache *cache = nsci_gpt2_swap_cache(model, NULL);
    ++*applying;
    nsc_tensor *out = fire_hooks ? nsc_module_call(m, n_in, in) : nsc_module_forward(m, n_in, in);
    --*applying;
    nsci_gpt2_swap_cache(model, cache);
    nsci_module_calls_restore(m, calls);
    return out;
}

static nsc_status apply_execute(nsci_graph *g, nsci_gnode *n) {
    const apply_payload *p = n->payload;
    nsci_arg args[NSCI_MAX_MODULE_INPUTS];
    nsc_tensor *in[NSCI_MAX_MODULE_INPUTS];
    int n_in = nsci_value_args(n, args, NSCI_MAX_MODULE_INPUTS);
    for (int i = 0; i < n_in; i++) {
        in[i] = nsci_arg_value(g, args[i]);
    }
    nsc_tensor *out = apart(g->model, p->module, n_in, in, p->fire_hooks, &g->applying);
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
static nsc_tensor *validate(nsc_module *model, nsc_module *m, int n, nsc_tensor *const *xs) {
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
        int applying = 0; // not at run time: no hook of the trace is attached
        out = apart(model, m, n, twins, false, &applying);
        nsc_set_grad_enabled(was);
    }
    nsc_source_mark(file, line);
    for (int i = 0; i < n; i++) {
        nsc_free(twins[i]);
    }
    return out;
}

// Adds the ApplyModule node for module m (a module of tr's model, or any
// other module, which the node then retains).
nsc_tensor *nsci_graph_apply(nsc_trace *tr, nsc_module *m, int n, nsc_tensor *const *xs,
                             bool fire_hooks) {
    if (nsci_graph_check_building(tr) != NSC_OK) {
        return NULL;
    }
    nsc_tensor *meta = validate(tr->model, m, n, xs);
    nsci_arg args[NSCI_MAX_MODULE_INPUTS];
    bool ok = meta != NULL;
    for (int i = 0; i < n && ok; i++) {
        ok = nsci_arg_for(tr, xs[i], &args[i]) == NSC_OK;
    }
    int32_t id = ok ? nsci_node_add(tr, NSCI_PROTO_apply_module, n, args) : -1;
    apply_payload *p = id >= 0 ? nsci_malloc(sizeof *p) : NULL;
    if (!p) {
        if (!meta) {
            nsci_error_prefix("apply %s: the module's forward on META failed",
                              *nsc_module_path(m) ? nsc_module_path(m) : nsc_module_type(m));
        }
        nsc_free(meta);
        nsci_graph_fail(tr, -1, nsc_last_status());
        return NULL;
    }
    *p = (apply_payload){ nsc_module_retain(m), fire_hooks };
    tr->nodes[id].payload = p;
    tr->nodes[id].payload_free = apply_payload_free;
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

nsc_tensor *nsc_trace_apply_n(nsc_trace *tr, const char *path, int n, nsc_tensor *const *xs,
                              bool fire_hooks) {
    if (!tr) { // NULL from a failed call flows on with its error
        return nsci_fail_keep_null(NSC_ERR_ARG, "trace_apply: trace is NULL");
    }
    if (!path || n < 1 || n > NSCI_MAX_MODULE_INPUTS || !xs) {
        return nsci_fail_null(NSC_ERR_ARG, "trace_apply: path or inputs missing");
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
    if (!m) {
        nsci_graph_fail(tr, -1, nsc_last_status());
        return NULL;
    }
    return nsci_graph_apply(tr, m, n, xs, fire_hooks);
}

// A module called directly on proxies (nsc_module_call / _forward) becomes
// one ApplyModule node of their trace, as in nnsight.
static nsc_tensor *proxy_call(nsc_module *m, int n, nsc_tensor *const *in, bool fire_hooks) {
    nsc_trace *tr = NULL;
    for (int i = 0; i < n && !tr; i++) {
        tr = in[i] ? nsci_proxy_graph(in[i], NULL, NULL) : NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!in[i]) {
            return nsci_fail_null(NSC_ERR_ARG, "module %s called on proxies with input %d "
                                               "absent: pass every input",
                                  nsc_module_type(m), i);
        }
    }
    return nsci_graph_apply(tr, m, n, in, fire_hooks);
}

void nsci_apply_install(void) {
    nsci_module_proxy_call = proxy_call;
}

nsc_tensor *nsc_trace_apply(nsc_trace *tr, const char *path, nsc_tensor *x) {
    return nsc_trace_apply_n(tr, path, 1, &x, false);
}

static nsc_status apply_module_compile(nsci_graph *g, nsci_gnode *n) {
    const apply_payload *p = n->payload;
    nsci_arg args[NSCI_MAX_MODULE_INPUTS];
    nsc_tensor *xs[NSCI_MAX_MODULE_INPUTS];
    int n_in = nsci_value_args(n, args, NSCI_MAX_MODULE_INPUTS);
    for (int i = 0; i < n_in; i++) {
        nsci_gnode *src = &g->nodes[args[i].node];
        xs[i] =
            src->proxy[args[i].output] ? src->proxy[args[i].output] : src->value[args[i].output];
    }
    nsc_tensor *meta = validate(g->model, p->module, n_in, xs);
    if (!meta) {
        return nsc_last_status();
    }
    nsci_proxy_reshape(n->proxy[0], meta);
    nsc_free(meta);
    return NSC_OK;
}
const nsci_protocol nsci_protocol_apply_module = {
    .compile = apply_module_compile,
    .name = "ApplyModule",
    .execute = apply_execute,
    .style = { "blue", "polygon", "ApplyModule" },
    .redirect = true,
    .condition = true,
};
