// Persistent edits (nnsight's model.edit()): interventions kept on a model
// in its graph slot and added to every invoke of every later trace. They are
// built right after the trace's shape scan, before the first node that reads
// a hook point, so the user's code sees the edited model, as nnsight's edit
// graph comes before the user's nodes.
#include "graph/graph_impl.h"

typedef struct edit {
    nsc_edit_fn fn;
    void *ctx;
    void (*ctx_free)(void *ctx);
} edit;

typedef struct edit_list {
    edit *items;
    int n, cap;
} edit_list;

static void edit_list_free(void *p) {
    edit_list *list = p;
    for (int i = 0; i < list->n; i++) {
        if (list->items[i].ctx_free) {
            list->items[i].ctx_free(list->items[i].ctx);
        }
    }
    nsci_free(list->items);
    nsci_free(list);
}

nsc_status nsc_model_edit(nsc_module *model, nsc_edit_fn fn, void *ctx,
                          void (*ctx_free)(void *ctx)) {
    if (!model || !fn) {
        return nsci_fail(NSC_ERR_ARG, "model_edit: model or function is NULL");
    }
    edit_list *list = nsc_module_get_slot(model);
    if (!list) {
        if (!(list = nsci_calloc(1, sizeof *list))) {
            return NSC_ERR_OOM;
        }
        nsc_module_set_slot(model, list, edit_list_free);
    }
    if (list->n == list->cap) {
        int cap = list->cap ? list->cap * 2 : 4;
        edit *grown = nsci_realloc(list->items, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        list->items = grown;
        list->cap = cap;
    }
    list->items[list->n++] = (edit){ fn, ctx, ctx_free };
    return NSC_OK;
}

void nsc_model_edit_clear(nsc_module *model) {
    if (model && nsc_module_get_slot(model)) {
        nsc_module_set_slot(model, NULL, NULL);
    }
}

nsc_status nsci_apply_edits(nsci_graph *g) {
    if (g->edits_applied) {
        return NSC_OK;
    }
    g->edits_applied = true; // the edits' own hook-point reads come back here
    const edit_list *list = nsc_module_get_slot(g->model);
    for (int e = 0; list && e < list->n; e++) {
        for (int i = 0; i < g->n_invokes; i++) {
            nsc_status status = list->items[e].fn(g, g->invokes[i], list->items[e].ctx);
            if (status != NSC_OK) {
                nsci_error_context("persistent edit %d, invoke %d", e, i);
                return nsci_graph_fail(g, -1, status);
            }
        }
    }
    return NSC_OK;
}

nsc_status nsci_scan_once(nsci_graph *g) {
    if (g->scan) {
        return NSC_OK;
    }
    return nsci_scan(g) == NSC_OK ? nsci_apply_edits(g) : nsc_last_status();
}
