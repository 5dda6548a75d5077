// One reader per protocol of the graph text: each turns a node line into
// the public (or dispatch) call that user code makes for that node.
#include <string.h>

#include "graph/text_impl.h"

#define FAIL NSCI_TEXT_FAIL

// A proxy-returning call's result: e stands for node proxy's outputs.
static nsc_status took_proxy(nsci_text_line *c, nsci_text_label *e, nsc_tensor *proxy) {
    int32_t node;
    if (!proxy || nsci_proxy_graph(proxy, &node, NULL) != c->tr) {
        return proxy ? FAIL(c, NULL, "the node was built into another trace") : nsc_last_status();
    }
    e->kind = NSCI_TEXT_NODE;
    e->node = node;
    const nsci_gnode *n = &c->tr->nodes[node];
    e->n_out = n->n_out;
    for (int k = 0; k < n->n_out; k++) {
        e->out[k] = n->proxy[k];
    }
    return NSC_OK;
}

// A status-returning call's result: e names the node it made last.
static nsc_status took_status(nsci_text_line *c, nsci_text_label *e, nsc_status status) {
    if (status == NSC_OK) {
        e->node = c->tr->n_nodes - 1;
    }
    return status;
}

static nsc_status get_call(nsci_text_line *c, int64_t *call) {
    const nsci_json *v = nsci_json_get(c->v, "call");
    *call = 0;
    if (v && v->type == NSCI_JSON_STRING && strcmp(v->string, "every") == 0) {
        *call = NSC_EVERY_CALL;
        return NSC_OK;
    }
    if (v && (v->type != NSCI_JSON_NUMBER || !v->is_int || v->integer < 0)) {
        return FAIL(c, v, "\"call\": expected a call index >= 0 or \"every\"");
    }
    *call = v ? v->integer : 0;
    return NSC_OK;
}

static nsc_invoke *get_invoke(nsci_text_line *c) {
    int64_t i;
    if (nsci_text_get_int(c->r->what, c->v, "invoke", 0, INT32_MAX, true, 0, &i) != NSC_OK) {
        return NULL;
    }
    if (i >= c->tr->n_invokes) {
        FAIL(c, nsci_json_get(c->v, "invoke"), "\"invoke\": %lld, but the trace has %d invoke(s)",
             (long long)i, c->tr->n_invokes);
        return NULL;
    }
    return c->tr->invokes[i];
}

// A hook point: module, kind, index, call, invoke.
typedef struct point_ref {
    const char *module;
    bool input;
    int64_t index, call;
    nsc_invoke *inv;
} point_ref;

static nsc_status get_point(nsci_text_line *c, point_ref *p, bool with_kind) {
    const char *kind = NULL, *what = c->r->what;
    memset(p, 0, sizeof *p);
    if (nsci_text_get_string(what, c->v, "module", true, &p->module) ||
        (with_kind && nsci_text_get_string(what, c->v, "kind", false, &kind)) ||
        nsci_text_get_int(what, c->v, "index", 0, NSCI_MAX_MODULE_INPUTS - 1, false, 0,
                          &p->index) ||
        get_call(c, &p->call)) {
        return NSC_ERR_FORMAT;
    }
    if (kind && strcmp(kind, "input") != 0 && strcmp(kind, "output") != 0) {
        return FAIL(c, nsci_json_get(c->v, "kind"), "\"kind\": \"input\" or \"output\"");
    }
    p->input = kind && strcmp(kind, "input") == 0;
    if (!p->input && p->index != 0) {
        return FAIL(c, nsci_json_get(c->v, "index"), "\"index\" is for inputs (outputs have one)");
    }
    p->inv = get_invoke(c);
    return p->inv ? NSC_OK : NSC_ERR_FORMAT;
}

// --- the protocols ---

// Dispatches op on in[] with the line's params: the node (as user code's
// op call makes it), or an error for an op without an arg of this trace.
static nsc_status dispatch_op(nsci_text_line *c, nsc_op op, nsc_tensor **in, int n,
                              nsci_text_label *e) {
    const nsci_op_def *def = nsci_op_defs[op];
    void *params = def->params_size ? nsci_calloc(1, def->params_size) : NULL;
    if (def->params_size && !params) {
        return NSC_ERR_OOM;
    }
    nsc_status status =
        nsci_text_read_params(c->r->what, nsci_json_get(c->v, "params"), def, params);
    int32_t before = c->tr->n_nodes;
    nsci_call call = { .op = op, .n_in = n, .in = in, .params = params };
    if (status == NSC_OK) {
        status = nsci_dispatch(&call);
    }
    nsci_free(params);
    for (int k = 0; status == NSC_OK && k < call.n_out; k++) {
        e->out[k] = call.out[k]; // pinned proxies (or an in-place op's input)
        nsc_free(call.out[k]);
    }
    if (status == NSC_OK && c->tr->n_nodes == before) { // computed now, or built elsewhere
        return FAIL(c, NULL,
                    "an Op line needs an arg that is a node of this trace (a Value "
                    "holds a constant; an op on another trace's nodes alone belongs "
                    "to that trace)");
    }
    e->kind = status == NSC_OK ? NSCI_TEXT_NODE : NSCI_TEXT_NONE;
    e->node = c->tr->n_nodes - 1;
    e->n_out = status == NSC_OK ? call.n_out : 0;
    return status;
}

static nsc_status read_op(nsci_text_line *c, nsci_text_label *e) {
    const char *name;
    if (nsci_text_get_string(c->r->what, c->v, "op", true, &name) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    nsc_op op = nsci_op_by_name(name);
    if (op == NSC_OP_COUNT) {
        return FAIL(c, nsci_json_get(c->v, "op"), "unknown op \"%.60s\"", name);
    }
    const nsci_op_def *def = nsci_op_defs[op];
    const nsci_json *pv = nsci_json_get(c->v, "params");
    nsc_tensor *in[64];
    int n;
    if (pv && !def->params) {
        return FAIL(c, pv, "op %s takes no params", def->name);
    }
    if (nsci_text_line_args(c, def->arity < 0 ? 1 : def->arity, def->arity < 0 ? 64 : def->arity,
                            in, &n) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    return dispatch_op(c, op, in, n, e);
}

static nsc_status read_value(nsci_text_line *c, nsci_text_label *e) {
    const nsci_json *t = nsci_json_get(c->v, "tensor");
    char key[96];
    snprintf(key, sizeof key, "%sn%lld", c->prefix, (long long)c->label);
    if (!t) {
        return FAIL(c, NULL, "missing \"tensor\"");
    }
    e->out[0] = nsci_text_read_tensor(c->r, t, key, false);
    e->kind = NSCI_TEXT_CONST;
    e->n_out = e->out[0] ? 1 : 0;
    return e->out[0] ? NSC_OK : nsc_last_status();
}

static nsc_status read_intervention(nsci_text_line *c, nsci_text_label *e) {
    point_ref p;
    if (get_point(c, &p, true) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    nsc_tensor *proxy = p.input ? nsc_invoke_input(p.inv, p.module, (int)p.index, p.call)
                                : nsc_invoke_output(p.inv, p.module, p.call);
    return took_proxy(c, e, proxy);
}

static nsc_status read_swap(nsci_text_line *c, nsci_text_label *e) {
    point_ref p;
    nsc_tensor *value;
    int n;
    if (get_point(c, &p, true) != NSC_OK || nsci_text_line_args(c, 1, 1, &value, &n) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    return took_status(c, e,
                       p.input ? nsc_invoke_set_input(p.inv, p.module, (int)p.index, p.call, value)
                               : nsc_invoke_set_output(p.inv, p.module, p.call, value));
}

static nsc_status read_skip(nsci_text_line *c, nsci_text_label *e) {
    point_ref p;
    nsc_tensor *value;
    int n;
    if (get_point(c, &p, false) != NSC_OK || nsci_text_line_args(c, 1, 1, &value, &n) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    return took_status(c, e, nsc_invoke_skip(p.inv, p.module, p.call, value));
}

static nsc_status read_lock(nsci_text_line *c, nsci_text_label *e) {
    nsc_tensor *x;
    int n;
    const char *name;
    nsci_text_reader *r = c->r;
    if (nsci_text_line_args(c, 1, 1, &x, &n) != NSC_OK ||
        nsci_text_get_string(r->what, c->v, "name", false, &name) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    for (int i = 0; name && i < r->n_save_names; i++) {
        if (strcmp(r->save_names[i], name) == 0) {
            return FAIL(c, nsci_json_get(c->v, "name"), "a save named \"%.60s\" exists already",
                        name);
        }
    }
    if (name && r->n_save_names == r->cap_save_names) {
        int cap = r->cap_save_names ? r->cap_save_names * 2 : 16;
        char **grown = nsci_realloc(r->save_names, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        r->save_names = grown;
        r->cap_save_names = cap;
    }
    if (name && !(r->save_names[r->n_save_names] = nsci_strdup(name))) {
        return NSC_ERR_OOM;
    }
    r->n_save_names += name != NULL;
    nsc_tensor *saved = name ? nsc_save_as(x, name) : nsc_save(x);
    return took_status(c, e, saved ? NSC_OK : nsc_last_status());
}

static nsc_status read_apply(nsci_text_line *c, nsci_text_label *e) {
    const char *module;
    bool hooks;
    nsc_tensor *xs[NSCI_MAX_MODULE_INPUTS];
    int n;
    if (nsci_text_get_string(c->r->what, c->v, "module", true, &module) ||
        nsci_text_get_bool(c->r->what, c->v, "hooks", false, &hooks) ||
        nsci_text_line_args(c, 1, NSCI_MAX_MODULE_INPUTS, xs, &n)) {
        return NSC_ERR_FORMAT;
    }
    return took_proxy(c, e, nsc_trace_apply_n(c->tr, module, n, xs, hooks));
}

static nsc_status read_function(nsci_text_line *c, nsci_text_label *e) {
    const char *name;
    nsc_tensor *xs[64];
    int n;
    if (nsci_text_get_string(c->r->what, c->v, "function", true, &name) ||
        nsci_text_line_args(c, 0, 64, xs, &n)) {
        return NSC_ERR_FORMAT;
    }
    return took_proxy(c, e, nsc_trace_call(c->tr, name, n, xs));
}

static nsc_status read_stop(nsci_text_line *c, nsci_text_label *e) {
    bool is_exit;
    const char *module;
    int64_t call;
    if (nsci_text_get_bool(c->r->what, c->v, "exit", false, &is_exit) ||
        nsci_text_get_string(c->r->what, c->v, "module", !is_exit, &module) || get_call(c, &call)) {
        return NSC_ERR_FORMAT;
    }
    if (is_exit && (module || nsci_json_get(c->v, "call"))) {
        return FAIL(c, NULL, "an exit leaves the iterator: it has no module or call");
    }
    return took_status(c, e,
                       is_exit ? nsc_iterator_exit(c->tr) : nsc_trace_stop(c->tr, module, call));
}

static nsc_status read_log(nsci_text_line *c, nsci_text_label *e) {
    const char *label;
    nsc_tensor *x;
    int n;
    if (nsci_text_get_string(c->r->what, c->v, "label", true, &label) ||
        nsci_text_line_args(c, 1, 1, &x, &n)) {
        return NSC_ERR_FORMAT;
    }
    return took_status(c, e, nsc_trace_log(c->tr, label, x));
}

static nsc_status read_backward(nsci_text_line *c, nsci_text_label *e) {
    bool retain;
    nsc_tensor *loss;
    int n;
    if (nsci_text_get_bool(c->r->what, c->v, "retain_graph", false, &retain) ||
        nsci_text_line_args(c, 1, 1, &loss, &n)) {
        return NSC_ERR_FORMAT;
    }
    return took_proxy(c, e, nsc_trace_backward(loss, retain));
}

static nsc_status read_grad(nsci_text_line *c, nsci_text_label *e) {
    nsc_tensor *x;
    int n;
    if (nsci_text_line_args(c, 1, 1, &x, &n) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    bool swapped = false;
    for (int64_t i = 0; i < c->n_swapped && !swapped; i++) {
        swapped = c->swapped[i] == c->label;
    }
    if (swapped) {
        e->kind = NSCI_TEXT_GRAD; // made by the GradSwap line (nsc_proxy_set_grad)
        e->out[0] = x;
        return NSC_OK;
    }
    return took_proxy(c, e, nsc_proxy_grad(x));
}

static nsc_status read_grad_swap(nsci_text_line *c, nsci_text_label *e) {
    nsci_text_label *g = nsci_text_line_ref(c, "grad", c->labels);
    nsc_tensor *value;
    int n;
    if (!g || nsci_text_line_args(c, 1, 1, &value, &n) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    if (g->kind != NSCI_TEXT_GRAD) {
        return FAIL(c, nsci_json_get(c->v, "grad"),
                    "\"grad\": expected the id of a Grad line "
                    "this GradSwap alone replaces");
    }
    g->kind = NSCI_TEXT_NONE; // one replacement per Grad line
    return took_status(c, e, nsc_proxy_set_grad(g->out[0], value));
}

static nsc_status read_conditional(nsci_text_line *c, nsci_text_label *e) {
    nsc_tensor *cond;
    int n;
    if (nsci_text_line_args(c, 1, 1, &cond, &n) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    const nsci_json *gi = nsci_json_get(c->v, "if"), *ge = nsci_json_get(c->v, "else");
    e->gate = gi ? gi->integer : ge ? ge->integer : -1;
    e->branch = gi != NULL;
    nsc_status status = took_status(c, e, nsc_trace_if(c->tr, cond));
    e->kind = status == NSC_OK ? NSCI_TEXT_COND : NSCI_TEXT_NONE;
    return status;
}

static nsc_status read_bridge(nsci_text_line *c, nsci_text_label *e) {
    static const char *const keys[] = { "session", "trace", "node", "output", NULL };
    const nsci_json *from = nsci_json_get(c->v, "from");
    nsci_text_reader *r = c->r;
    int64_t trace, output;
    if (!r->session) {
        return FAIL(c, NULL, "a Bridge brings a value from an earlier trace of a session");
    }
    if (!from || nsci_text_check_keys(r->what, from, keys) ||
        nsci_text_get_int(r->what, from, "trace", 0, c->index - 1, false, -1, &trace) ||
        nsci_text_get_int(r->what, from, "output", 0, NSCI_MAX_OUTPUTS - 1, false, 0, &output)) {
        return from ? NSC_ERR_FORMAT : FAIL(c, NULL, "missing \"from\"");
    }
    nsci_text_line src = *c;
    src.v = from;
    src.label = INT64_MAX;
    nsci_text_label *s = trace >= 0 ? nsci_text_line_ref(&src, "node", &r->traces[trace])
                                    : nsci_text_line_ref(&src, "session", &r->session_labels);
    if (!s) {
        return NSC_ERR_FORMAT;
    }
    if (output >= s->n_out || !s->out[output] || !nsc_tensor_is_proxy(s->out[output])) {
        return FAIL(c, from, "the source has no value at output %lld", (long long)output);
    }
    e->kind = NSCI_TEXT_BRIDGE;
    e->n_out = 1;
    e->out[0] = s->out[output];
    return NSC_OK;
}

static nsc_status read_update(nsci_text_line *c, nsci_text_label *e) {
    nsci_text_label *target =
        c->r->session ? nsci_text_line_ref(c, "target", &c->r->session_labels) : NULL;
    nsc_tensor *value;
    int n;
    if (!c->r->session) {
        return FAIL(c, NULL, "an Update overwrites a session value: only in sessions");
    }
    if (!target || nsci_text_line_args(c, 1, 1, &value, &n) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    if (!target->out[0] || target->iterator) {
        return FAIL(c, nsci_json_get(c->v, "target"), "\"target\": expected a session value");
    }
    return took_status(c, e, nsc_update(target->out[0], value));
}

static nsc_status read_cache(nsci_text_line *c, nsci_text_label *e) {
    const char *pattern;
    bool inputs;
    if (nsci_text_get_string(c->r->what, c->v, "module", true, &pattern) ||
        nsci_text_get_bool(c->r->what, c->v, "inputs", false, &inputs)) {
        return NSC_ERR_FORMAT;
    }
    nsc_invoke *inv = get_invoke(c);
    if (!inv) {
        return NSC_ERR_FORMAT;
    }
    (void)e;
    int64_t matched = nsc_trace_cache(c->tr, inv, pattern, inputs);
    if (matched == 0) { // a line names a module the writer cached: this model lacks it
        return FAIL(c, nsci_json_get(c->v, "module"),
                    "\"module\": \"%s\" matches no module this model calls", pattern);
    }
    return matched < 0 ? nsc_last_status() : NSC_OK;
}

// --- the table ---

static const char *const k_none[] = { NULL };
static const char *const k_op[] = { "op", "params", NULL };
static const char *const k_value[] = { "tensor", NULL };
static const char *const k_point[] = { "module", "kind", "index", "call", "invoke", NULL };
static const char *const k_skip[] = { "module", "call", "invoke", NULL };
static const char *const k_lock[] = { "name", NULL };
static const char *const k_apply[] = { "module", "hooks", NULL };
static const char *const k_function[] = { "function", NULL };
static const char *const k_stop[] = { "module", "call", "exit", NULL };
static const char *const k_log[] = { "label", NULL };
static const char *const k_backward[] = { "retain_graph", NULL };
static const char *const k_grad_swap[] = { "grad", NULL };
static const char *const k_bridge[] = { "from", NULL };
static const char *const k_update[] = { "target", NULL };
static const char *const k_cache[] = { "module", "invoke", "inputs", NULL };

static const nsci_text_protocol g_protocols[] = {
    { "Op", k_op, read_op, true, false },
    { "Value", k_value, read_value, true, true },
    { "Intervention", k_point, read_intervention, false, false },
    { "Swap", k_point, read_swap, true, false },
    { "Lock", k_lock, read_lock, true, false },
    { "ApplyModule", k_apply, read_apply, true, false },
    { "Function", k_function, read_function, true, false },
    { "EarlyStop", k_stop, read_stop, true, false },
    { "Log", k_log, read_log, true, false },
    { "Skip", k_skip, read_skip, true, false },
    { "Backward", k_backward, read_backward, true, false },
    { "Grad", k_none, read_grad, true, false },
    { "GradSwap", k_grad_swap, read_grad_swap, true, false },
    { "Conditional", k_none, read_conditional, true, false },
    { "Bridge", k_bridge, read_bridge, false, true },
    { "Update", k_update, read_update, true, false },
    { "Cache", k_cache, read_cache, true, false },
};

const nsci_text_protocol *nsci_text_protocol_find(const char *name) {
    for (int i = 0; i < NSCI_ARRAY_LEN(g_protocols); i++) {
        if (strcmp(g_protocols[i].name, name) == 0) {
            return &g_protocols[i];
        }
    }
    return NULL;
}
