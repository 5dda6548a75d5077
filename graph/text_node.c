// Reading a trace's node lines: each line becomes the call user code makes
// (nsc_invoke_output, nsci_dispatch with the stored params, nsc_save,
// nsc_trace_if, ...), preceded by nsc_source_mark with the line's position,
// so every node passes the same checks and gets the same id. Constants and
// bridges are made by the call that first uses them, as in user code.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "graph/text_impl.h"

// --- labels ---

nsci_text_label *nsci_text_find(nsci_text_labels *t, int64_t label) {
    int64_t lo = 0, hi = t->n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (t->items[mid].label == label) {
            return &t->items[mid];
        }
        if (t->items[mid].label < label) {
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return NULL;
}

nsci_text_label *nsci_text_labels_add(nsci_text_labels *t, int64_t label) {
    if (t->n == t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 64;
        nsci_text_label *grown = nsci_realloc(t->items, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NULL;
        }
        t->items = grown;
        t->cap = cap;
    }
    nsci_text_label *e = &t->items[t->n++];
    memset(e, 0, sizeof *e);
    *e = (nsci_text_label){ .label = label, .kind = NSCI_TEXT_NONE, .node = -1, .gate = -1 };
    return e;
}

void nsci_text_labels_free(nsci_text_labels *t) {
    for (int64_t i = 0; i < t->n; i++) {
        for (int k = 0; t->items[i].kind == NSCI_TEXT_CONST && k < t->items[i].n_out; k++) {
            nsc_free(t->items[i].out[k]);
        }
    }
    nsci_free(t->items);
    memset(t, 0, sizeof *t);
}

// --- one line ---

#define FAIL NSCI_TEXT_FAIL

static nsc_status resolve(nsci_text_line *c, const nsci_json *ref, nsc_tensor **out) {
    int64_t label = -1, k = 0;
    if (ref->type == NSCI_JSON_NUMBER && ref->is_int) {
        label = ref->integer;
    } else if (ref->type == NSCI_JSON_ARRAY && ref->n_items == 2 && ref->items[0]->is_int &&
               ref->items[1]->is_int) {
        label = ref->items[0]->integer;
        k = ref->items[1]->integer;
    } else {
        return FAIL(c, ref, "an arg is a node id or [id, output]");
    }
    nsci_text_label *e = nsci_text_find(c->labels, label);
    if (!e || label >= c->label) {
        return FAIL(c, ref, "node %lld is not defined before this line (a dangling reference)",
                    (long long)label);
    }
    if (k < 0 || k >= e->n_out || !e->out[k]) {
        return FAIL(c, ref, "node %lld has no value%s%lld to use", (long long)label,
                    e->n_out > 0 ? " at output " : "", (long long)k);
    }
    *out = e->out[k];
    return NSC_OK;
}

nsc_status nsci_text_line_args(nsci_text_line *c, int lo, int hi, nsc_tensor **out, int *n) {
    const nsci_json *a = nsci_json_get(c->v, "args");
    int64_t count = a && a->type == NSCI_JSON_ARRAY ? a->n_items : -1;
    if (!a && lo == 0) {
        *n = 0;
        return NSC_OK;
    }
    if (count < lo || count > hi) {
        return lo == hi ? FAIL(c, a, "\"args\": expected an array of %d node id(s)", lo)
                        : FAIL(c, a, "\"args\": expected an array of %d to %d node ids", lo, hi);
    }
    for (int64_t i = 0; i < count; i++) {
        if (resolve(c, a->items[i], &out[i]) != NSC_OK) {
            return NSC_ERR_FORMAT;
        }
    }
    *n = (int)count;
    return NSC_OK;
}

// Marks the line's source position: its "at", else <text>:<line>:<column>.
static nsc_status mark_position(nsci_text_line *c) {
    const char *at;
    char buf[512];
    if (nsci_text_get_string(c->r->what, c->v, "at", false, &at) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    const char *colon = at ? strrchr(at, ':') : NULL;
    long line = c->v->column;
    if (at) {
        char *end;
        line = colon && colon != at ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == at || *end || line < 1 || line > INT_MAX ||
            colon - at >= (long)sizeof buf) {
            return FAIL(c, nsci_json_get(c->v, "at"), "\"at\": expected \"file:line\"");
        }
        snprintf(buf, sizeof buf, "%.*s", (int)(colon - at), at);
    } else {
        snprintf(buf, sizeof buf, "%s:%d", c->r->what, c->v->line);
    }
    const char *file = nsci_text_keep(c->r->graph, buf);
    if (!file) {
        return NSC_ERR_OOM;
    }
    nsc_source_mark(file, (int)line);
    return NSC_OK;
}

// The blocks a node's "if"/"else" puts it in, outermost first.
typedef struct block_chain {
    int32_t node[32];
    bool branch[32];
    int n;
} block_chain;

static nsc_status chain_of(nsci_text_line *c, const nsci_json *g, bool branch, block_chain *chain) {
    int64_t label = g ? (g->is_int ? g->integer : -2) : -1;
    chain->n = 0;
    while (label != -1) {
        nsci_text_label *e = label >= 0 ? nsci_text_find(c->labels, label) : NULL;
        if (!e || e->kind != NSCI_TEXT_COND || chain->n == 32) {
            return FAIL(c, g,
                        "\"%s\": expected the id of an earlier Conditional (32 nested at "
                        "most)",
                        branch ? "if" : "else");
        }
        memmove(chain->node + 1, chain->node, (size_t)chain->n * sizeof chain->node[0]);
        memmove(chain->branch + 1, chain->branch, (size_t)chain->n * sizeof chain->branch[0]);
        chain->node[0] = e->node;
        chain->branch[0] = branch;
        chain->n++;
        label = e->gate;
        branch = e->branch;
    }
    return NSC_OK;
}

// Opens, switches and closes conditional blocks so the next node lands in
// the block its "if"/"else" names (nesting included).
static nsc_status set_blocks(nsci_text_line *c, bool gated) {
    const nsci_json *gi = nsci_json_get(c->v, "if"), *ge = nsci_json_get(c->v, "else");
    if ((gi || ge) && !gated) {
        return FAIL(c, gi ? gi : ge, "this protocol's nodes are never gated");
    }
    if (gi && ge) {
        return FAIL(c, ge, "a node is in the \"if\" or the \"else\" branch, not both");
    }
    block_chain want;
    if (!gated || chain_of(c, gi ? gi : ge, gi != NULL, &want) != NSC_OK) {
        return gated ? NSC_ERR_FORMAT : NSC_OK;
    }
    nsc_trace *tr = c->tr;
    int k = 0;
    while (k < tr->n_blocks && k < want.n && tr->blocks[k] == want.node[k]) {
        if (tr->block_branch[k] != want.branch[k]) {
            if (!tr->block_branch[k]) {
                break; // an else cannot go back to its if
            }
            while (tr->n_blocks > k + 1) {
                nsc_trace_end(tr);
            }
            nsc_trace_else(tr);
        }
        k++;
    }
    if (k < want.n) {
        return FAIL(c, gi ? gi : ge,
                    "the block this node belongs to was closed (or switched to its else) by an "
                    "earlier line: blocks nest, and an if's nodes come before its else's");
    }
    while (tr->n_blocks > k) {
        nsc_trace_end(tr);
    }
    return NSC_OK;
}

nsci_text_label *nsci_text_line_ref(nsci_text_line *c, const char *key, nsci_text_labels *in) {
    int64_t label;
    if (nsci_text_get_int(c->r->what, c->v, key, 0, INT32_MAX, true, 0, &label) != NSC_OK) {
        return NULL;
    }
    nsci_text_label *e = nsci_text_find(in, label);
    if (!e || (in == c->labels && label >= c->label)) {
        FAIL(c, nsci_json_get(c->v, key),
             "\"%s\": node %lld is not defined before this line (a "
             "dangling reference)",
             key, (long long)label);
        return NULL;
    }
    return e;
}

// --- the trace: invokes, then the node lines ---

static nsc_status read_invoke(nsci_text_reader *r, nsc_trace *tr, const nsci_json *v, int i,
                              const char *prefix) {
    static const char *const keys[] = { "inputs", NULL };
    if (nsci_text_check_keys(r->what, v, keys) != NSC_OK) {
        return NSC_ERR_FORMAT;
    }
    const nsci_json *in = nsci_json_get(v, "inputs");
    if (!in || in->type != NSCI_JSON_ARRAY || in->n_items < 1 ||
        in->n_items > NSCI_MAX_MODULE_INPUTS) {
        return nsci_text_fail(r->what, in ? in : v, "\"inputs\": expected 1 to %d tensors",
                              NSCI_MAX_MODULE_INPUTS);
    }
    nsc_tensor *inputs[NSCI_MAX_MODULE_INPUTS] = { 0 };
    nsc_status status = NSC_OK;
    for (int64_t k = 0; k < in->n_items && status == NSC_OK; k++) {
        char key[96];
        snprintf(key, sizeof key, "%sinvoke%d.input%d", prefix, i, (int)k);
        if (in->items[k]->type != NSCI_JSON_NULL || k == 0) {
            inputs[k] = nsci_text_read_tensor(r, in->items[k], key, r->session != NULL);
            status = inputs[k] ? NSC_OK : nsc_last_status();
        }
    }
    if (status == NSC_OK && !nsc_trace_invoke(tr, (int)in->n_items, inputs)) {
        status = nsc_last_status();
        nsci_error_context("graph text %s: line %d, column %d", r->what, v->line, v->column);
    }
    for (int k = 0; k < NSCI_MAX_MODULE_INPUTS; k++) {
        nsc_free(inputs[k]);
    }
    return status;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

// The Grad lines that GradSwap lines replace: nsc_proxy_set_grad makes them.
static int64_t *collect_swapped(const nsci_json *nodes, int64_t *n) {
    *n = 0;
    int64_t *out = nsci_malloc((size_t)(nodes->n_items + 1) * sizeof *out);
    for (int64_t i = 0; out && i < nodes->n_items; i++) {
        const nsci_json *line = nodes->items[i], *p = nsci_json_get(line, "protocol");
        const nsci_json *g = nsci_json_get(line, "grad");
        if (p && p->type == NSCI_JSON_STRING && strcmp(p->string, "GradSwap") == 0 && g &&
            g->type == NSCI_JSON_NUMBER && g->is_int) {
            out[(*n)++] = g->integer;
        }
    }
    if (out) {
        qsort(out, (size_t)*n, sizeof *out, cmp_i64);
    }
    return out;
}

static bool is_common_key(const char *key) {
    static const char *const common[] = { "id", "protocol", "args", "if", "else", "at", NULL };
    for (int i = 0; common[i]; i++) {
        if (strcmp(common[i], key) == 0) {
            return true;
        }
    }
    return false;
}

static nsc_status check_line_keys(nsci_text_line *c, const nsci_text_protocol *p) {
    for (int64_t i = 0; i < c->v->n_items; i++) {
        bool known = is_common_key(c->v->keys[i]);
        for (int k = 0; p->keys[k] && !known; k++) {
            known = strcmp(p->keys[k], c->v->keys[i]) == 0;
        }
        if (!known) {
            return FAIL(c, c->v->items[i], "a %s line has no key \"%.60s\"", p->name,
                        c->v->keys[i]);
        }
        for (int64_t j = 0; j < i; j++) {
            if (strcmp(c->v->keys[j], c->v->keys[i]) == 0) {
                return FAIL(c, c->v->items[i], "key \"%.60s\" appears twice", c->v->keys[i]);
            }
        }
    }
    return NSC_OK;
}

static nsc_status read_line(nsci_text_line *c, int64_t previous) {
    const char *what = c->r->what, *protocol;
    if (c->v->type != NSCI_JSON_OBJECT) {
        return FAIL(c, NULL, "a node line is an object");
    }
    if (nsci_text_get_int(what, c->v, "id", previous + 1, INT32_MAX, true, 0, &c->label) ||
        nsci_text_get_string(what, c->v, "protocol", true, &protocol)) {
        nsci_error_context("node ids increase from line to line");
        return NSC_ERR_FORMAT;
    }
    const nsci_text_protocol *p = nsci_text_protocol_find(protocol);
    if (!p) {
        return FAIL(c, nsci_json_get(c->v, "protocol"), "unknown protocol \"%.60s\"", protocol);
    }
    if (check_line_keys(c, p) != NSC_OK ||
        (!p->defers && (mark_position(c) != NSC_OK || set_blocks(c, p->gated) != NSC_OK))) {
        return nsc_last_status();
    }
    nsci_text_label *e = nsci_text_labels_add(c->labels, c->label);
    if (!e) {
        return NSC_ERR_OOM;
    }
    int32_t before = c->tr->n_nodes;
    nsc_status status = p->read(c, e);
    bool may_make_none = p->defers || strcmp(p->name, "Cache") == 0;
    if (status == NSC_OK && !may_make_none && e->kind != NSCI_TEXT_GRAD &&
        c->tr->n_nodes == before) {
        // The call built its node where its args live: another trace or the session.
        status = FAIL(c, NULL,
                      "this %s belongs to the graph of its args (another trace or the "
                      "session's values), not to this trace",
                      p->name);
    }
    char own[600]; // the reader's own errors start with "<what>: line"
    snprintf(own, sizeof own, "%s: line ", what);
    if (status != NSC_OK && strncmp(nsc_last_error(), own, strlen(own)) != 0) {
        nsci_error_context("graph text %s: line %d, column %d", what, c->v->line, c->v->column);
    }
    if (status == NSC_OK && c->tr->n_nodes > c->r->max_nodes) {
        status = FAIL(c, NULL, "the trace has more than %lld nodes", (long long)c->r->max_nodes);
    }
    return status;
}

nsc_status nsci_text_read_trace(nsci_text_reader *r, nsc_trace *tr, int index, const nsci_json *v,
                                const char *prefix) {
    const nsci_json *invokes = nsci_json_get(v, "invokes"), *nodes = nsci_json_get(v, "nodes");
    if ((invokes && invokes->type != NSCI_JSON_ARRAY) ||
        (nodes && nodes->type != NSCI_JSON_ARRAY)) {
        return nsci_text_fail(r->what, v, "\"invokes\" and \"nodes\" are arrays");
    }
    for (int64_t i = 0; invokes && i < invokes->n_items; i++) {
        if (i >= NSCI_ARRAY_LEN(tr->invokes)) {
            return nsci_text_fail(r->what, invokes->items[i], "more than %d invokes",
                                  NSCI_ARRAY_LEN(tr->invokes));
        }
        if (read_invoke(r, tr, invokes->items[i], (int)i, prefix) != NSC_OK) {
            return nsc_last_status();
        }
    }
    if (!nodes) {
        return NSC_OK;
    }
    nsci_text_line c = {
        .r = r, .tr = tr, .index = index, .labels = &r->traces[index], .prefix = prefix, .label = -1
    };
    int64_t *swapped = collect_swapped(nodes, &c.n_swapped);
    c.swapped = swapped;
    nsc_status status = swapped ? NSC_OK : NSC_ERR_OOM;
    for (int64_t i = 0; i < nodes->n_items && status == NSC_OK; i++) {
        c.v = nodes->items[i];
        status = read_line(&c, c.label);
    }
    nsci_free(swapped);
    while (status == NSC_OK && tr->n_blocks > 0) {
        nsc_trace_end(tr);
    }
    return status;
}
