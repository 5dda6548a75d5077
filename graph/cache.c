// The module cache (TransformerLens' run_with_cache, later nnsight's cache):
// save the output, and optionally input 0, of every module whose path
// matches a per-segment glob; read them back by path after the run.
#include <fnmatch.h>
#include <string.h>

#include "graph/graph_impl.h"

// "transformer.h.*.attn" matches "transformer.h.3.attn": same number of
// dot-separated segments, each matched with shell wildcards; "*" alone
// matches every module, the root ("") included, and "" only the root.
static bool path_matches(const char *pattern, const char *path) {
    if (strcmp(pattern, "*") == 0) {
        return true;
    }
    if (!*pattern) {
        return !*path;
    }
    char p[512], q[512];
    snprintf(p, sizeof p, "%s", pattern);
    snprintf(q, sizeof q, "%s", path);
    char *ps = NULL, *qs = NULL;
    char *a = strtok_r(p, ".", &ps), *b = strtok_r(q, ".", &qs);
    while (a && b) {
        if (fnmatch(a, b, 0) != 0) {
            return false;
        }
        a = strtok_r(NULL, ".", &ps);
        b = strtok_r(NULL, ".", &qs);
    }
    return !a && !b && *path;
}

static nsc_status remember(nsci_graph *g, int invoke, nsc_module *m, nsc_hook_kind kind,
                           nsc_tensor *proxy) {
    if (g->n_cache == g->cap_cache) {
        int cap = g->cap_cache ? g->cap_cache * 2 : 32;
        nsci_cache_entry *grown = nsci_realloc(g->cache, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        g->cache = grown;
        g->cap_cache = cap;
    }
    g->cache[g->n_cache++] = (nsci_cache_entry){ invoke, m, kind, proxy };
    return NSC_OK;
}

static nsc_status cache_one(nsci_graph *g, nsc_invoke *inv, nsc_module *m, bool inputs) {
    const char *path = nsci_graph_path(g, m);
    nsc_tensor *out = nsc_save(nsc_invoke_output(inv, path, 0));
    if (!out || remember(g, inv->index, m, NSC_HOOK_OUTPUT, out) != NSC_OK) {
        return nsc_last_status();
    }
    const nsci_scan_entry *e = nsci_scan_find(g, m, 0);
    if (inputs && e && e->n_in > 0 && e->in_present[0]) {
        nsc_tensor *in = nsc_save(nsc_invoke_input(inv, path, 0, 0));
        if (!in || remember(g, inv->index, m, NSC_HOOK_INPUT, in) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

int64_t nsc_trace_cache(nsc_trace *tr, nsc_invoke *inv, const char *pattern, bool inputs) {
    if (!tr || !inv) { // NULL from a failed call flows on with its error
        nsci_fail_keep(NSC_ERR_ARG, "trace_cache: trace or invoke is NULL");
        return -1;
    }
    if (!pattern || inv->trace != tr) {
        nsci_fail(NSC_ERR_ARG, "trace_cache: %s",
                  !pattern ? "pattern is NULL" : "the invoke is of another trace");
        return -1;
    }
    if (nsci_graph_check_building(tr) != NSC_OK || nsci_scan_once(tr) != NSC_OK) {
        return -1;
    }
    int64_t matched = 0;
    for (int64_t i = 0; i < nsc_module_n_modules(tr->model); i++) {
        nsc_module *m = nsc_module_at(tr->model, i);
        bool called = nsci_scan_find(tr, m, 0) != NULL;
        if (!path_matches(pattern, nsci_graph_path(tr, m)) || !called) {
            continue; // modules never called in this run have nothing to cache
        }
        if (cache_one(tr, inv, m, inputs) != NSC_OK) {
            return -1;
        }
        matched++;
    }
    return matched;
}

nsc_tensor *nsc_trace_cache_get(nsc_trace *tr, nsc_invoke *inv, const char *path,
                                nsc_hook_kind kind) {
    for (int i = 0; tr && inv && path && i < tr->n_cache; i++) {
        nsci_cache_entry *e = &tr->cache[i];
        if (e->invoke == inv->index && e->kind == kind &&
            strcmp(nsci_graph_path(tr, e->module), path) == 0) {
            return nsc_trace_get(tr, e->proxy);
        }
    }
    return nsci_fail_null(NSC_ERR_ARG, "trace_cache_get: %s %s was not cached",
                          path ? path : "(null)", kind == NSC_HOOK_OUTPUT ? "output" : "input");
}
