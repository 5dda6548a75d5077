// Generation traces: the shape scan steps through a generation on META
// (the prompt, then one token per step, with a META key/value cache), and
// the run calls nsc_generate with the graph's hooks attached. Every-call
// bodies: nodes reading a point at NSC_EVERY_CALL re-run at each call.
#include <string.h>

#include "graph/graph_impl.h"
#include "nsc/gpt2.h"

nsc_trace *nsc_trace_new_generate(nsc_module *model, const nsc_generate_options *options) {
    if (!model) { // NULL from a failed load flows on with its error
        return nsci_fail_keep_null(NSC_ERR_ARG, "trace_new_generate: model is NULL");
    }
    if (!options) {
        return nsci_fail_null(NSC_ERR_ARG, "trace_new_generate: options are NULL");
    }
    nsc_gpt2_config config;
    if (!nsc_is_gpt2(model) || nsc_gpt2_get_config(model, &config) != NSC_OK) {
        return nsci_fail_null(NSC_ERR_ARG, "trace_new_generate: generation needs a GPT-2 root "
                                           "(nsc_gpt2_new or nsc_gpt2_load)");
    }
    if (nsci_generate_check_options("trace_new_generate", options, 0, 0, &config) != NSC_OK) {
        return NULL;
    }
    nsc_trace *tr = nsc_trace_new(model);
    if (tr) {
        tr->generate = true;
        tr->gen_options = *options;
    }
    return tr;
}

nsc_tensor *nsc_trace_generated(nsc_trace *tr) {
    if (!tr || !tr->generated) {
        return nsci_fail_null(NSC_ERR_STATE, "trace_generated: no tokens (not a generation trace, "
                                             "or it did not run)");
    }
    return nsc_retain(tr->generated);
}

// One META step: ids [B, t] of new tokens, mask [B, past + t] when given.
static nsc_status meta_step(nsci_graph *g, int64_t b, int64_t t, int64_t seen, bool mask) {
    nsc_tensor *in[3] = { nsc_empty(NSC_I64, NSC_META, NSC_SHAPE(b, t)), NULL, NULL };
    if (mask) {
        in[1] = nsc_empty(NSC_I64, NSC_META, NSC_SHAPE(b, seen));
        in[2] = nsc_empty(NSC_I64, NSC_META, NSC_SHAPE(b, t));
    }
    nsc_tensor *out = in[0] && (!mask || (in[1] && in[2])) ? nsc_module_call(g->model, 3, in)
                                                          : NULL;
    nsc_status status = out ? NSC_OK : nsc_last_status();
    nsc_free(out);
    for (int i = 0; i < 3; i++) {
        nsc_free(in[i]);
    }
    return status;
}

nsc_status nsci_scan_generation(nsci_graph *g, int n_in, nsc_tensor **in) {
    const nsc_generate_options *o = &g->gen_options;
    int64_t b = in[0]->shape[0], t = in[0]->shape[1], n = o->max_new_tokens;
    bool mask = n_in > 1 && in[1];
    nsc_gpt2_config config;
    if (nsc_gpt2_get_config(g->model, &config) != NSC_OK ||
        nsci_generate_check_options("generate", o, b, t, &config) != NSC_OK) {
        return nsc_last_status(); // before t + n, which wraps for a huge n
    }
    nsc_kv_cache *cache = o->use_cache ? nsc_kv_cache_new(g->model, b, t + n) : NULL;
    nsc_status status = (o->use_cache && !cache) ? nsc_last_status() : NSC_OK;
    if (status == NSC_OK && cache) {
        status = nsc_gpt2_set_cache(g->model, cache);
    }
    // Step 0 runs the prompt; step k one token with a cache, all tokens
    // without. No new token: nsc_generate runs no forward, so neither does
    // the scan (a model point is then unreachable at build time).
    for (int64_t k = 0; k < n && status == NSC_OK; k++) {
        int64_t seen = t + k, fresh = (k == 0 || !cache) ? seen : 1;
        status = meta_step(g, b, fresh, seen, mask);
    }
    if (cache) {
        nsc_gpt2_set_cache(g->model, NULL);
        nsc_kv_cache_free(cache);
    }
    nsc_module *generator = nsc_module_child(g->model, "generator");
    if (status == NSC_OK && generator) {
        nsc_tensor *tokens = nsc_empty(NSC_I64, NSC_META, NSC_SHAPE(b, t + n));
        nsc_tensor *out = tokens ? nsc_module_call(generator, 1, &tokens) : NULL;
        status = out ? NSC_OK : nsc_last_status();
        nsc_free(out);
        nsc_free(tokens);
    }
    return status;
}

nsc_status nsci_run_generation(nsci_graph *g, int n_in, nsc_tensor **in) {
    nsc_free(g->generated);
    g->generated = NULL;
    nsc_tensor *mask = n_in > 1 ? in[1] : NULL;
    return nsc_generate(g->model, in[0], mask, &g->gen_options, &g->generated);
}

// --- every-call bodies ---

nsc_status nsci_body_of(nsci_graph *g, int32_t id) {
    nsci_gnode *n = &g->nodes[id];
    n->body_point = -1;
    if (n->point >= 0 && g->points[n->point].call_index == NSC_EVERY_CALL) {
        n->body_point = n->point;
    }
    for (int i = 0; i < n->n_args; i++) {
        int32_t b = g->nodes[n->args[i].node].body_point;
        if (b >= 0 && n->body_point >= 0 && b != n->body_point) {
            return nsci_fail(NSC_ERR_STATE, "a node may depend on one every-call point only "
                                            "(its body runs at each call of that point)");
        }
        n->body_point = b >= 0 ? b : n->body_point;
    }
    return NSC_OK;
}

nsc_status nsci_body_reset(nsci_graph *g, int32_t point) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        nsci_gnode *n = &g->nodes[i];
        if (n->body_point != point) {
            continue;
        }
        nsci_node_drop_values(g, n); // counted out of the held bytes too
        n->state = NSCI_NODE_PENDING;
        n->remaining = n->consumers_total;
        n->missing = 0;
        for (int a = 0; a < n->n_args; a++) {
            n->missing += g->nodes[n->args[a].node].state != NSCI_NODE_DONE ||
                          g->nodes[n->args[a].node].body_point == point;
        }
        // A node of the point that needs nothing of this call (a stop, a
        // constant replacement) runs again now.
        if (n->missing == 0 && nsci_node_queue(g, n) != NSC_OK) {
            return NSC_ERR_OOM;
        }
    }
    return NSC_OK;
}
