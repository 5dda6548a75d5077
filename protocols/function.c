// Registered C functions as graph nodes (nnsight's apply): by name, so a
// graph stays serializable. Validated by calling the function on META
// twins of its arguments; at run time it gets the real values.
#include <pthread.h>
#include <string.h>

#include "graph/graph_impl.h"

typedef struct registered_fn {
    char name[64];
    nsc_graph_fn fn;
    void *ctx;
} registered_fn;

// The registry: written under the lock, before graphs use it (STYLE.md globals).
static pthread_mutex_t g_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static registered_fn g_registry[256];
static int g_n_registered;

static const registered_fn *lookup(const char *name) {
    pthread_mutex_lock(&g_registry_lock);
    const registered_fn *found = NULL;
    for (int i = 0; i < g_n_registered && !found; i++) {
        if (strcmp(g_registry[i].name, name) == 0) {
            found = &g_registry[i];
        }
    }
    pthread_mutex_unlock(&g_registry_lock);
    return found;
}

nsc_status nsc_function_register(const char *name, nsc_graph_fn fn, void *ctx) {
    if (!name || !*name || strlen(name) >= sizeof g_registry[0].name || !fn) {
        return nsci_fail(NSC_ERR_ARG, "function_register: expected a name of 1 to 63 characters "
                                      "and a function");
    }
    pthread_mutex_lock(&g_registry_lock);
    nsc_status status = NSC_OK;
    int at = -1;
    for (int i = 0; i < g_n_registered && at < 0; i++) {
        at = strcmp(g_registry[i].name, name) == 0 ? i : -1;
    }
    if (at < 0 && g_n_registered == NSCI_ARRAY_LEN(g_registry)) {
        status = nsci_fail(NSC_ERR_ARG, "function_register: %s: the registry is full (256)", name);
    } else {
        at = at < 0 ? g_n_registered++ : at; // re-registering a name replaces it
        snprintf(g_registry[at].name, sizeof g_registry[at].name, "%s", name);
        g_registry[at].fn = fn;
        g_registry[at].ctx = ctx;
    }
    pthread_mutex_unlock(&g_registry_lock);
    return status;
}

static nsc_status function_execute(nsci_graph *g, nsci_gnode *n) {
    const registered_fn *r = lookup((const char *)n->payload);
    if (!r) {
        return nsci_fail(NSC_ERR_STATE, "function %s is no longer registered",
                         (const char *)n->payload);
    }
    nsci_arg args[64];
    nsc_tensor *in[64];
    int n_in = nsci_value_args(n, args, 64);
    for (int i = 0; i < n_in; i++) {
        in[i] = nsci_arg_value(g, args[i]);
    }
    nsc_tensor *out = r->fn(n_in, in, r->ctx);
    if (!out) {
        if (nsc_last_status() == NSC_OK) {
            nsci_fail(NSC_ERR_STATE, "function %s returned NULL", r->name);
        }
        return nsc_last_status();
    }
    nsci_node_deliver(g, n->id, 0, out);
    return NSC_OK;
}

static nsc_tensor *twin(const nsc_tensor *t) {
    nsc_tensor *m = nsci_tensor_header((nsc_dtype)t->dtype, NSC_META, t->ndim, t->shape);
    if (m) {
        memcpy(m->stride, t->stride, sizeof t->stride);
        m->offset = t->offset;
        m->target_device = t->target_device;
    }
    return m;
}

static nsc_tensor *validate(const registered_fn *r, int n, nsc_tensor *const *args) {
    nsc_tensor *twins[64] = { 0 };
    nsc_tensor *out = NULL;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        ok = (twins[i] = twin(args[i])) != NULL;
    }
    const char *file = nsci_source_file(); // the module's code may record positions
    int line = nsci_source_line();
    if (ok) {
        bool was = nsc_set_grad_enabled(false);
        out = r->fn(n, twins, r->ctx);
        nsc_set_grad_enabled(was);
        if (!out && nsc_last_status() == NSC_OK) {
            nsci_fail(NSC_ERR_STATE, "function %s returned NULL on META inputs", r->name);
        }
    }
    nsc_source_mark(file, line);
    for (int i = 0; i < n; i++) {
        nsc_free(twins[i]);
    }
    return out;
}

nsc_tensor *nsc_trace_call(nsc_trace *tr, const char *name, int n, nsc_tensor *const *args) {
    if (!tr) { // NULL from a failed call flows on with its error
        return nsci_fail_keep_null(NSC_ERR_ARG, "trace_call: trace is NULL");
    }
    if (!name || n < 0 || n > 64 || (n > 0 && !args)) {
        return nsci_fail_null(NSC_ERR_ARG, "trace_call: name or arguments missing");
    }
    if (nsci_graph_check_building(tr) != NSC_OK) {
        return NULL;
    }
    const registered_fn *r = lookup(name);
    if (!r) {
        nsci_fail(NSC_ERR_ARG, "trace_call: no function registered as \"%s\"", name);
        nsci_graph_fail(tr, -1, NSC_ERR_ARG);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!args[i]) {
            return nsc_last_status() != NSC_OK ? NULL
                                               : nsci_fail_null(NSC_ERR_ARG, "trace_call %s: "
                                                                             "argument %d is NULL",
                                                                name, i);
        }
    }
    nsc_tensor *meta = validate(r, n, args);
    nsci_arg a[64];
    bool ok = meta != NULL;
    for (int i = 0; i < n && ok; i++) {
        ok = nsci_arg_for(tr, args[i], &a[i]) == NSC_OK;
    }
    int32_t id = ok ? nsci_node_add(tr, NSCI_PROTO_function, n, a) : -1;
    char *payload = id >= 0 ? nsci_strdup(name) : NULL;
    if (!payload) {
        nsc_free(meta);
        nsci_graph_fail(tr, -1, nsc_last_status());
        return NULL;
    }
    tr->nodes[id].payload = payload;
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

static nsc_status function_compile(nsci_graph *g, nsci_gnode *n) {
    const registered_fn *r = lookup((const char *)n->payload);
    if (!r) {
        return nsci_fail(NSC_ERR_STATE, "function %s is not registered", (const char *)n->payload);
    }
    nsci_arg args[64];
    nsc_tensor *xs[64];
    int n_in = nsci_value_args(n, args, 64);
    for (int i = 0; i < n_in; i++) {
        nsci_gnode *src = &g->nodes[args[i].node];
        xs[i] =
            src->proxy[args[i].output] ? src->proxy[args[i].output] : src->value[args[i].output];
    }
    nsc_tensor *meta = validate(r, n_in, xs);
    if (!meta) {
        return nsc_last_status();
    }
    nsci_proxy_reshape(n->proxy[0], meta);
    nsc_free(meta);
    return NSC_OK;
}
const nsci_protocol nsci_protocol_function = {
    .compile = function_compile,
    .name = "Function",
    .execute = function_execute,
    .style = { "black", "box", "Function" },
    .redirect = true,
    .condition = true,
};
