// Running a trace: one forward pass with the batch of all invokes; module
// hooks deliver each hook point's rows to its nodes, ready nodes run in
// creation order, then replacements apply. Values are released as soon as
// their last consumer has run (NNSIGHT.md §3); only saved values remain.
#include <string.h>

#include "graph/graph_impl.h"

// --- held bytes: distinct storages referenced by graph values ---

struct nsci_held {
    const nsci_storage *storage;
    int count;
};

static void track(nsci_graph *g, const nsc_tensor *t, int delta) {
    if (!t || !t->storage) {
        return;
    }
    for (int i = 0; i < g->n_held; i++) {
        if (g->held[i].storage == t->storage) {
            g->held[i].count += delta;
            if (g->held[i].count == 0) {
                g->held_bytes -= (int64_t)t->storage->bytes;
                g->held[i] = g->held[--g->n_held];
            }
            return;
        }
    }
    if (delta < 0) {
        return;
    }
    if (g->n_held == g->cap_held) {
        int cap = g->cap_held ? g->cap_held * 2 : 64;
        struct nsci_held *grown = nsci_realloc(g->held, (size_t)cap * sizeof *grown);
        if (!grown) {
            return; // the count is for tests; a failed allocation only loses accuracy
        }
        g->held = grown;
        g->cap_held = cap;
    }
    g->held[g->n_held++] = (struct nsci_held){ t->storage, 1 };
    g->held_bytes += (int64_t)t->storage->bytes;
    g->peak_held_bytes = NSCI_MAX(g->peak_held_bytes, g->held_bytes);
}

static void drop_values(nsci_graph *g, nsci_gnode *n) {
    for (int k = 0; k < NSCI_MAX_OUTPUTS; k++) {
        if (n->value[k]) {
            track(g, n->value[k], -1);
            nsc_free(n->value[k]);
            n->value[k] = NULL;
        }
    }
}

// --- the ready heap (min node id: creation order) ---

static nsc_status push_ready(nsci_graph *g, int32_t id) {
    if (g->n_ready == g->cap_ready) {
        int cap = g->cap_ready ? g->cap_ready * 2 : 64;
        int32_t *grown = nsci_realloc(g->ready, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        g->ready = grown;
        g->cap_ready = cap;
    }
    int i = g->n_ready++;
    g->ready[i] = id;
    while (i > 0 && g->ready[(i - 1) / 2] > g->ready[i]) {
        int32_t tmp = g->ready[i];
        g->ready[i] = g->ready[(i - 1) / 2];
        g->ready[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
    return NSC_OK;
}

static int32_t pop_ready(nsci_graph *g) {
    int32_t top = g->ready[0];
    g->ready[0] = g->ready[--g->n_ready];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, best = i;
        best = (l < g->n_ready && g->ready[l] < g->ready[best]) ? l : best;
        best = (r < g->n_ready && g->ready[r] < g->ready[best]) ? r : best;
        if (best == i) {
            return top;
        }
        int32_t tmp = g->ready[i];
        g->ready[i] = g->ready[best];
        g->ready[best] = tmp;
        i = best;
    }
}

// Nodes whose values are delivered or given are never queued to execute.
static bool executes(const nsci_gnode *n) {
    return n->protocol != NSCI_PROTO_intervention && n->protocol != NSCI_PROTO_value;
}

void nsci_node_drop_values(nsci_graph *g, nsci_gnode *n) {
    drop_values(g, n);
}

nsc_status nsci_node_queue(nsci_graph *g, nsci_gnode *n) {
    return executes(n) ? push_ready(g, n->id) : NSC_OK;
}

void nsci_node_deliver(nsci_graph *g, int32_t id, int k, nsc_tensor *value) {
    nsci_gnode *n = &g->nodes[id];
    nsc_free(n->value[k]);
    n->value[k] = value;
    track(g, value, +1);
    n->state = NSCI_NODE_DONE;
}

// After n has its values: wake the consumers whose last missing arg this was.
nsc_status nsci_wake_consumers(nsci_graph *g, nsci_gnode *n) {
    for (int c = 0; c < n->n_consumers; c++) {
        nsci_gnode *consumer = &g->nodes[n->consumers[c]];
        if (--consumer->missing == 0 && consumer->state == NSCI_NODE_PENDING &&
            executes(consumer) && push_ready(g, consumer->id) != NSC_OK) {
            return NSC_ERR_OOM;
        }
    }
    return NSC_OK;
}

// n has run (or been skipped): its args lose a consumer; unsaved values
// whose last consumer this was are released at once.
static void release_args(nsci_graph *g, nsci_gnode *n) {
    for (int i = 0; i < n->n_args; i++) {
        if (n->args[i].output < 0) {
            continue; // an ordering edge holds no value
        }
        nsci_gnode *producer = &g->nodes[n->args[i].node];
        if (--producer->remaining == 0 && !nsci_keep_value(g, producer)) {
            drop_values(g, producer);
        }
    }
}

nsc_tensor *nsci_arg_value(nsci_graph *g, nsci_arg a) {
    return a.output >= 0 ? g->nodes[a.node].value[a.output] : NULL;
}

nsc_status nsci_run_ready(nsci_graph *g) {
    while (g->n_ready > 0) {
        if (g->run_below > 0 && g->ready[0] >= g->run_below) {
            break; // a node created after the running backward runs after it, recorded
        }
        nsci_gnode *n = &g->nodes[pop_ready(g)];
        if (n->state != NSCI_NODE_PENDING) {
            continue;
        }
        if (n->gate >= 0 && !nsci_gate_open(g, n)) {
            if (nsci_node_skip(g, n) != NSC_OK) {
                return nsc_last_status();
            }
            continue;
        }
        nsc_status status = nsci_protocols[n->protocol]->execute(g, n);
        if (status != NSC_OK) {
            char what[512];
            nsci_node_describe(g, n->id, what, sizeof what);
            nsci_error_context("while running %s", what);
            return status;
        }
        if (n->protocol != NSCI_PROTO_lock) { // a lock never lets go of its argument
            release_args(g, n);
        }
        if (n->state == NSCI_NODE_WAITING) {
            continue; // its value arrives later (a gradient): consumers wake then
        }
        n->state = NSCI_NODE_DONE;
        bool applied_later = n->protocol == NSCI_PROTO_swap || n->protocol == NSCI_PROTO_skip ||
                             n->protocol == NSCI_PROTO_grad_swap;
        if (n->remaining == 0 && !nsci_keep_value(g, n) && !applied_later) {
            drop_values(g, n);
        }
        if (nsci_wake_consumers(g, n) != NSC_OK) {
            return NSC_ERR_OOM;
        }
    }
    return NSC_OK;
}

// n, already marked skipped: its args lose a consumer, consumers whose input
// will never exist are marked and go onto todo, ordering-only consumers lose
// a dependency.
static nsc_status skip_consumers(nsci_graph *g, nsci_gnode *n, int32_t *todo, int32_t *n_todo) {
    release_args(g, n); // everything it would have consumed goes at once
    for (int c = 0; c < n->n_consumers; c++) {
        nsci_gnode *consumer = &g->nodes[n->consumers[c]];
        bool ordering_only = true;
        for (int a = 0; a < consumer->n_args; a++) {
            if (consumer->args[a].node == n->id && consumer->args[a].output >= 0) {
                ordering_only = false;
            }
        }
        if (!ordering_only) {
            if (consumer->state == NSCI_NODE_PENDING) {
                consumer->state = NSCI_NODE_SKIPPED;
                todo[(*n_todo)++] = consumer->id;
            }
        } else if (--consumer->missing == 0 && consumer->state == NSCI_NODE_PENDING &&
                   executes(consumer) && push_ready(g, consumer->id) != NSC_OK) {
            return NSC_ERR_OOM; // a skipped write no longer holds its readers back
        }
    }
    return NSC_OK;
}

// A worklist, not recursion: a false condition may gate a chain of a million
// nodes. A node is marked when queued, so the list holds each at most once.
nsc_status nsci_node_skip(nsci_graph *g, nsci_gnode *n) {
    if (n->state != NSCI_NODE_PENDING) {
        return NSC_OK;
    }
    int32_t *todo = nsci_malloc((size_t)g->n_nodes * sizeof *todo);
    if (!todo) {
        return NSC_ERR_OOM;
    }
    int32_t n_todo = 0;
    n->state = NSCI_NODE_SKIPPED;
    todo[n_todo++] = n->id;
    nsc_status status = NSC_OK;
    while (status == NSC_OK && n_todo > 0) {
        status = skip_consumers(g, &g->nodes[todo[--n_todo]], todo, &n_todo);
    }
    nsci_free(todo);
    return status;
}

// --- hooks ---

static nsc_tensor *invoke_rows(nsci_graph *g, const nsci_point *p, int invoke, nsc_tensor *full) {
    if (p->batch_dim < 0) {
        return nsc_retain(full);
    }
    const nsc_invoke *inv = g->invokes[invoke];
    return nsc_narrow(full, p->batch_dim, inv->batch_start, inv->batch_size);
}

// A replacement (swap, or skip at its output) of point p: the model goes on
// with a copy of *cur with the node's invoke rows replaced. *fresh says that
// *cur is already such a copy that no read has seen, so it takes the rows in
// place.
static nsc_status apply_swap(nsci_graph *g, nsci_point *p, nsci_gnode *s, nsc_tensor **cur,
                             nsc_tensor *given, bool *fresh) {
    if (s->state == NSCI_NODE_SKIPPED && s->gate >= 0) {
        return NSC_OK; // in a branch not taken
    }
    if (s->state != NSCI_NODE_DONE || !s->value[0]) {
        char what[512];
        nsci_node_describe(g, s->id, what, sizeof what);
        return nsci_fail(NSC_ERR_STATE,
                         "the replacement value of %s was not computed when "
                         "its point fired",
                         what);
    }
    if (!*fresh) {
        nsc_tensor *copy = nsc_clone(*cur);
        if (!copy) {
            return nsc_last_status();
        }
        if (*cur != given) {
            nsc_free(*cur);
        }
        *cur = copy;
        *fresh = true;
    }
    nsc_tensor *rows = invoke_rows(g, p, s->invoke, *cur);
    nsc_status status = rows ? nsc_copy_(rows, s->value[0]) : nsc_last_status();
    nsc_free(rows);
    if (status == NSC_OK && g->needs_grad) { // a later read's gradient is the replacement's
        nsc_free(p->live);
        p->live = nsc_retain(*cur);
    }
    if (s->body_point < 0) {
        drop_values(g, s); // an every-call one is read again by the next call's input (a skip)
    }
    return status;
}

// Fires point p on its full value *cur (given by the model, or the caller's
// own): reads get their invoke's rows and replacements apply, in creation
// order, so that a read made after a replacement sees it (NNSIGHT.md §1).
// The nodes that can run before a replacement applies run first.
static nsc_status fire_point(nsci_graph *g, nsci_point *p, nsc_tensor **cur, nsc_tensor *given) {
    int32_t here = (int32_t)(p - g->points);
    bool fresh = false;
    for (int i = 0; i < p->n_nodes; i++) {
        nsci_gnode *n = &g->nodes[p->nodes[i]];
        bool replaces = (n->protocol == NSCI_PROTO_swap || n->protocol == NSCI_PROTO_skip) &&
                        n->point == here; // skips are listed on their input point too
        if (replaces) {
            nsc_status status = nsci_run_ready(g);
            if (status == NSC_OK) {
                status = apply_swap(g, p, n, cur, given, &fresh);
            }
            if (status != NSC_OK) {
                return status;
            }
            continue;
        }
        if (n->protocol != NSCI_PROTO_intervention) {
            continue;
        }
        nsc_tensor *rows = invoke_rows(g, p, n->invoke, *cur);
        if (!rows) {
            return nsc_last_status();
        }
        fresh = false;
        nsci_node_deliver(g, n->id, 0, rows);
        if (n->remaining == 0 && !nsci_keep_value(g, n)) {
            drop_values(g, n);
        }
        if (nsci_wake_consumers(g, n) != NSC_OK) {
            return NSC_ERR_OOM;
        }
    }
    return NSC_OK;
}

// Before a module runs: if every invoke skips this call, its forward is not
// run and its output is assembled from the skip values, with this call's
// output geometry (from the scan: a generation step's differs from the
// prompt's) on the device of the module's input.
static nsc_status try_skip(nsci_graph *g, nsci_point *p, int64_t call_index,
                           const nsc_tensor *input) {
    nsci_gnode *found[64] = { 0 };
    int n_found = 0;
    for (int i = 0; i < p->n_nodes; i++) {
        nsci_gnode *s = &g->nodes[p->nodes[i]];
        if (s->protocol == NSCI_PROTO_skip && s->state == NSCI_NODE_DONE && s->value[0] &&
            !found[s->invoke]) {
            found[s->invoke] = s;
            n_found++;
        }
    }
    const nsci_scan_entry *e = nsci_scan_find(g, p->module, call_index);
    if (n_found == 0 || n_found < g->n_invokes || !e || !e->has_out) {
        return NSC_OK; // the forward runs; the skips replace rows at its output
    }
    const nsci_point *out = &g->points[found[0]->point];
    nsc_device device = input ? nsc_tensor_device((nsc_tensor *)input) : NSC_CPU;
    nsc_tensor *full = nsc_zeros(e->out.dtype, device, e->out.ndim, e->out.shape);
    for (int k = 0; full && k < g->n_invokes; k++) {
        nsc_tensor *rows = invoke_rows(g, out, k, full);
        nsc_status status = rows ? nsc_copy_(rows, found[k]->value[0]) : nsc_last_status();
        nsc_free(rows);
        if (status != NSC_OK) {
            nsc_free(full);
            return status;
        }
    }
    if (!full) {
        return nsc_last_status();
    }
    nsci_module_skip_next(p->module, full);
    return NSC_OK;
}

// A stop at p acts when its node ran: not gated, or its branch was taken.
static bool stops_here(nsci_graph *g, const nsci_point *p) {
    for (int i = 0; i < p->n_nodes; i++) {
        nsci_gnode *n = &g->nodes[p->nodes[i]];
        if (n->protocol == NSCI_PROTO_early_stop && n->state == NSCI_NODE_DONE) {
            return true;
        }
    }
    return false;
}

static bool fires(const nsci_point *p, nsc_module *m, nsc_hook_kind kind, int64_t call_index) {
    return p->module == m && p->kind == kind &&
           (p->call_index == call_index || p->call_index == NSC_EVERY_CALL);
}

// Fires each point of this hook call: cur[k] is made part of the tape first
// in gradient traces, then becomes what the model goes on with.
static nsc_status fire_points(nsci_graph *g, nsc_module *m, nsc_hook_kind kind, int64_t call_index,
                              int n_values, nsc_tensor *const *values, nsc_tensor **cur) {
    for (int i = 0; i < g->n_points; i++) {
        nsci_point *p = &g->points[i];
        if (!fires(p, m, kind, call_index) || p->index >= n_values || !cur[p->index]) {
            continue;
        }
        if (p->call_index == NSC_EVERY_CALL && nsci_body_reset(g, i) != NSC_OK) {
            return NSC_ERR_OOM; // the body runs afresh at each call
        }
        nsc_tensor *before = cur[p->index];
        if (g->needs_grad && nsci_grad_track_point(g, p, &cur[p->index]) != NSC_OK) {
            return nsc_last_status();
        }
        if (before != values[p->index] && before != cur[p->index]) {
            nsc_free(before); // an earlier point's replacement, now tracked anew
        }
        if (fire_point(g, p, &cur[p->index], (nsc_tensor *)values[p->index]) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

// Skips (before the forward) and stops at the points firing now.
static nsc_status apply_skips_and_stops(nsci_graph *g, nsc_module *m, nsc_hook_kind kind,
                                        int64_t call_index, const nsc_tensor *input, bool *stop) {
    nsc_status status = NSC_OK;
    for (int i = 0; i < g->n_points && status == NSC_OK; i++) {
        nsci_point *p = &g->points[i];
        if (!fires(p, m, kind, call_index)) {
            continue;
        }
        if (kind == NSC_HOOK_INPUT && p->index == 0) {
            status = try_skip(g, p, call_index, input);
        }
        *stop |= kind == NSC_HOOK_OUTPUT && stops_here(g, p);
    }
    return status;
}

static nsc_status graph_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n_values,
                             nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    nsci_graph *g = ctx;
    if (g->applying > 0) {
        return NSC_OK; // an applied module's calls are not the model's: no point fires
    }
    nsc_tensor *cur[NSCI_MAX_MODULE_INPUTS] = { 0 };
    n_values = NSCI_MIN(n_values, NSCI_MAX_MODULE_INPUTS);
    for (int k = 0; k < n_values; k++) {
        cur[k] = values[k];
    }
    bool stop = false;
    nsc_status status = fire_points(g, m, kind, call_index, n_values, values, cur);
    if (status == NSC_OK) {
        status = nsci_run_ready(g);
    }
    if (status == NSC_OK) {
        status = apply_skips_and_stops(g, m, kind, call_index, n_values > 0 ? cur[0] : NULL, &stop);
    }
    for (int k = 0; k < n_values; k++) {
        if (cur[k] != values[k]) { // the model goes on with it (replace takes our reference)
            nsc_free(replace[k]);
            replace[k] = cur[k];
        }
    }
    if (status == NSC_OK && stop) {
        g->stopped = true;
        const char *path = nsci_graph_path(g, m);
        return nsci_fail(NSC_STOPPED, "stopped after %s (call %lld)", *path ? path : "(model)",
                         (long long)call_index);
    }
    return status;
}

// --- the run ---

static void prepare(nsci_graph *g) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        nsci_gnode *n = &g->nodes[i];
        n->missing = n->n_args;
        n->remaining = 0;
        n->kept_for_calls = false;
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        nsci_gnode *n = &g->nodes[i];
        for (int a = 0; a < n->n_args; a++) {
            nsci_gnode *producer = &g->nodes[n->args[a].node];
            producer->remaining += n->args[a].output >= 0;
            // A value an every-call body reads at each call lives for the run.
            producer->kept_for_calls |= n->body_point >= 0 && producer->body_point != n->body_point;
            n->missing -= producer->state == NSCI_NODE_DONE;
        }
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        g->nodes[i].consumers_total = g->nodes[i].remaining;
    }
}

static nsc_status attach_hooks(nsci_graph *g, int64_t *handles) {
    for (int i = 0; i < g->n_points; i++) {
        handles[i] = 0;
        nsci_point *p = &g->points[i];
        bool first = true;
        for (int k = 0; k < i && first; k++) {
            first = !(g->points[k].module == p->module && g->points[k].kind == p->kind);
        }
        if (first) {
            handles[i] = nsc_module_add_hook(p->module, p->kind, graph_hook, g, NULL);
            if (handles[i] < 0) {
                return nsc_last_status();
            }
        }
    }
    return NSC_OK;
}

static nsc_status forward(nsci_graph *g) {
    nsc_tensor *in[NSCI_MAX_MODULE_INPUTS] = { 0 };
    int n_in = 0;
    if (nsci_batch_inputs(g, NSC_CPU, &n_in, in) != NSC_OK) {
        return nsc_last_status();
    }
    int64_t *handles = nsci_calloc((size_t)NSCI_MAX(g->n_points, 1), sizeof *handles);
    nsc_status status = handles ? attach_hooks(g, handles) : nsc_last_status();
    if (status == NSC_OK) {
        bool was = nsc_set_grad_enabled(g->needs_grad);
        nsc_module_reset_calls(g->model);
        nsc_tensor *out = NULL;
        if (g->generate) {
            status = nsci_run_generation(g, n_in, in);
        } else {
            out = nsc_module_call(g->model, n_in, in);
            status = out ? NSC_OK : nsc_last_status();
        }
        nsc_set_grad_enabled(was);
        if (status == NSC_STOPPED) {
            status = NSC_OK; // an early stop ends the pass; it is not an error
            nsc_clear_error();
        }
        nsc_free(out);
    }
    for (int i = 0; handles && i < g->n_points; i++) {
        if (handles[i] > 0) {
            nsc_module_remove_hook(g->points[i].module, handles[i]);
        }
    }
    nsci_free(handles);
    for (int i = 0; i < n_in; i++) {
        nsc_free(in[i]);
    }
    return status;
}

// After the pass: nodes that never ran are skipped; unsaved values go.
static void finish(nsci_graph *g) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        nsci_gnode *n = &g->nodes[i];
        if (n->state == NSCI_NODE_PENDING || n->state == NSCI_NODE_WAITING) {
            n->state = NSCI_NODE_SKIPPED;
        }
        nsci_grad_release(n); // no hook of the trace outlives its run
        // Values a later session step (or a later trace of this one) reads
        // stay until then; constants stay for the trace's next iteration.
        if (!n->saved && !nsci_bridged_later(g, n) && n->protocol != NSCI_PROTO_value) {
            drop_values(g, n);
        }
    }
    g->n_ready = 0;
    for (int i = 0; i < g->n_points; i++) {
        nsc_free(g->points[i].live);
        g->points[i].live = NULL;
    }
    nsc_module_reset_calls(g->model);
}

static nsc_status refuse(nsci_graph *g) {
    switch (g->state) {
        case NSCI_TRACE_FAILED:
            return nsci_fail(g->first_status, "trace_run: the graph has errors: %s",
                             g->first_error);
        case NSCI_TRACE_RAN:
            return nsci_fail(NSC_ERR_STATE, "trace_run: the trace already ran (a trace runs "
                                            "once: build a new one)");
        case NSCI_TRACE_RUNNING:
            return nsci_fail(NSC_ERR_STATE, "trace_run: the trace is running");
        default:
            return NSC_OK;
    }
}

nsc_status nsci_trace_execute(nsc_trace *tr) {
    if (tr->state != NSCI_TRACE_BUILDING) {
        return refuse(tr);
    }
    if ((tr->n_points > 0 || tr->generate) && nsci_scan_once(tr) != NSC_OK) {
        return nsc_last_status();
    }
    if (nsci_apply_edits(tr) != NSC_OK) { // a trace that read no hook point
        return nsc_last_status();
    }
    if (tr->state == NSCI_TRACE_FAILED) {
        return refuse(tr);
    }
    tr->state = NSCI_TRACE_RUNNING;
    tr->held_bytes = tr->peak_held_bytes = 0;
    tr->exit_requested = tr->stopped = false;
    prepare(tr);
    nsc_status status = NSC_OK;
    for (int32_t i = 0; i < tr->n_nodes && status == NSC_OK; i++) {
        nsci_gnode *n = &tr->nodes[i];
        if (n->state == NSCI_NODE_PENDING && n->missing == 0 && executes(n)) {
            status = push_ready(tr, i);
        }
    }
    if (status == NSC_OK) {
        status = nsci_run_ready(tr); // nodes that need no hook point (bridges, constants)
    }
    if (status == NSC_OK) {
        status = forward(tr);
    }
    finish(tr);
    tr->state = NSCI_TRACE_RAN;
    return status;
}

nsc_status nsc_trace_run(nsc_trace *tr) {
    if (!tr) { // NULL from a failed nsc_trace_new: its error surfaces here
        return nsc_last_status() != NSC_OK ? nsc_last_status()
                                           : nsci_fail(NSC_ERR_ARG, "trace_run: trace is NULL");
    }
    if (tr->session) {
        return nsci_fail(NSC_ERR_STATE, "trace_run: the trace belongs to a session: run the "
                                        "session (nsc_session_run)");
    }
    return nsci_trace_execute(tr);
}

void nsci_trace_reset(nsc_trace *tr) {
    for (int32_t i = 0; i < tr->n_nodes; i++) {
        nsci_gnode *n = &tr->nodes[i];
        if (n->protocol == NSCI_PROTO_value) {
            continue; // constants stay
        }
        drop_values(tr, n);
        n->state = NSCI_NODE_PENDING;
    }
    tr->held_bytes = 0;
    tr->n_held = 0;
    tr->state = NSCI_TRACE_BUILDING;
}
