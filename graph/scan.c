// Batching the invokes' inputs, and the META scan: the model runs once on
// META copies of the batch so every hook point's shape and firing order are
// known while the graph is built (nnsight's FakeTensor validation pass).
#include <string.h>

#include "graph/graph_impl.h"

// --- batching ---

static bool token_ids(const nsc_tensor *t) {
    return t && t->dtype == NSC_I64 && t->ndim == 2;
}

// Invokes of token ids with different lengths are left-padded (HF's way).
static bool needs_padding(const nsci_graph *g) {
    for (int i = 0; i < g->n_invokes; i++) {
        const nsc_tensor *ids = g->invokes[i]->inputs[0];
        if (!token_ids(ids) || ids->shape[1] != g->invokes[0]->inputs[0]->shape[1]) {
            return token_ids(ids) && token_ids(g->invokes[0]->inputs[0]);
        }
    }
    return false;
}

// Fills the padded ids, mask and HF position ids (cumsum(mask) - 1, 1 where
// masked) for invoke rows [row0, row0 + b).
static void fill_padded(const nsc_invoke *inv, const nsc_tensor *src, const nsc_tensor *src_mask,
                        int64_t T, int64_t row0, int64_t *ids, int64_t *mask, int64_t *pos) {
    int64_t len = src->shape[1], pad = T - len;
    for (int64_t b = 0; b < inv->batch_size; b++) {
        int64_t r = (row0 + b) * T, seen = 0;
        for (int64_t t = 0; t < T; t++) {
            int64_t m = 0, id = 0;
            if (t >= pad) {
                int64_t at = src->offset + b * src->stride[0] + (t - pad) * src->stride[1];
                id = ((const int64_t *)src->storage->data)[at];
                m = 1;
                if (src_mask) {
                    double v;
                    nsc_tensor *row = nsc_select((nsc_tensor *)src_mask, 0, b);
                    nsc_tensor *one = nsc_select(row, 0, t - pad);
                    v = nsc_tensor_item(one);
                    nsc_free(one);
                    nsc_free(row);
                    m = v != 0;
                }
            }
            ids[r + t] = id;
            mask[r + t] = m;
            seen += m;
            pos[r + t] = m ? seen - 1 : 1;
        }
    }
}

static nsc_status padded_inputs(nsci_graph *g, nsc_device device, int *n, nsc_tensor **in) {
    int64_t T = 0;
    for (int i = 0; i < g->n_invokes; i++) {
        T = NSCI_MAX(T, g->invokes[i]->inputs[0]->shape[1]);
        if (g->invokes[i]->n_inputs > 2) {
            return nsci_fail(NSC_ERR_UNSUPPORTED, "trace: invokes of different lengths are "
                                                  "padded from (ids, mask); position ids given "
                                                  "by invoke %d cannot be padded",
                             i);
        }
    }
    int64_t shape[2] = { g->total_batch, T };
    for (int k = 0; k < 3; k++) {
        in[k] = device == NSC_META ? nsc_empty(NSC_I64, NSC_META, 2, shape)
                                   : nsc_zeros(NSC_I64, NSC_CPU, 2, shape);
        if (!in[k]) {
            return nsc_last_status();
        }
    }
    *n = 3;
    if (device == NSC_META) {
        return NSC_OK;
    }
    for (int i = 0; i < g->n_invokes; i++) {
        const nsc_invoke *inv = g->invokes[i];
        nsc_tensor *ids = nsci_invoke_input_value(inv, 0, NSC_CPU);
        nsc_tensor *mask = inv->n_inputs > 1 && inv->inputs[1]
                               ? nsci_invoke_input_value(inv, 1, NSC_CPU)
                               : NULL;
        if (!ids || (inv->n_inputs > 1 && inv->inputs[1] && !mask)) {
            nsc_free(ids);
            return nsc_last_status();
        }
        fill_padded(inv, ids, mask, T, inv->batch_start, nsc_tensor_data(in[0]),
                    nsc_tensor_data(in[1]), nsc_tensor_data(in[2]));
        nsc_free(ids);
        nsc_free(mask);
    }
    return NSC_OK;
}

// Concatenates input i of every invoke along the model's batch dim for it.
static nsc_tensor *concat_input(nsci_graph *g, int i, nsc_device device) {
    nsc_tensor *parts[64] = { 0 };
    int dim = nsc_module_batch_dim(g->model, NSC_HOOK_INPUT, i);
    int n = (dim < 0 || g->n_invokes == 1) ? 1 : g->n_invokes;
    nsc_tensor *joined = NULL;
    for (int k = 0; k < g->n_invokes; k++) {
        if (!g->invokes[k]->inputs[i]) {
            nsci_fail(NSC_ERR_ARG, "trace: invoke %d has no input %d while invoke 0 does", k, i);
            goto done;
        }
    }
    for (int k = 0; k < n; k++) {
        if (!(parts[k] = nsci_invoke_input_value(g->invokes[k], i, device))) {
            goto done;
        }
    }
    joined = n == 1 ? nsc_retain(parts[0]) : nsc_cat(n, parts, dim);
done:
    for (int k = 0; k < n; k++) {
        nsc_free(parts[k]);
    }
    return joined;
}

nsc_status nsci_batch_inputs(nsci_graph *g, nsc_device device, int *n_inputs,
                             nsc_tensor **inputs) {
    if (g->n_invokes == 0) {
        return nsci_fail(NSC_ERR_STATE, "trace: no invoke: add one with nsc_trace_invoke");
    }
    bool was = nsc_set_grad_enabled(false);
    nsc_status status = NSC_OK;
    if (needs_padding(g)) {
        status = padded_inputs(g, device, n_inputs, inputs);
    } else {
        int n = g->invokes[0]->n_inputs;
        for (int k = 1; k < g->n_invokes && status == NSC_OK; k++) {
            if (g->invokes[k]->n_inputs != n) {
                status = nsci_fail(NSC_ERR_ARG, "trace: invoke %d has %d inputs, invoke 0 has %d",
                                   k, g->invokes[k]->n_inputs, n);
            }
        }
        for (int i = 0; i < n && status == NSC_OK; i++) {
            bool absent = !g->invokes[0]->inputs[i];
            inputs[i] = absent ? NULL : concat_input(g, i, device);
            status = (absent || inputs[i]) ? NSC_OK : nsc_last_status();
        }
        *n_inputs = n;
    }
    nsc_set_grad_enabled(was);
    return status;
}

// --- the scan ---

static void meta_of(nsci_meta *m, const nsc_tensor *t) {
    m->dtype = (nsc_dtype)t->dtype;
    m->device = (nsc_device)t->target_device;
    m->ndim = t->ndim;
    memcpy(m->shape, t->shape, sizeof t->shape);
    memcpy(m->stride, t->stride, sizeof t->stride);
    m->offset = t->offset;
}

static nsci_scan_entry *entry_for(nsci_graph *g, nsc_module *m, int64_t call_index) {
    for (int i = g->n_scan - 1; i >= 0; i--) {
        if (g->scan[i].module == m && g->scan[i].call_index == call_index) {
            return &g->scan[i];
        }
    }
    if (g->n_scan == g->cap_scan) {
        int cap = g->cap_scan ? g->cap_scan * 2 : 256;
        nsci_scan_entry *grown = nsci_realloc(g->scan, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NULL;
        }
        g->scan = grown;
        g->cap_scan = cap;
    }
    nsci_scan_entry *e = &g->scan[g->n_scan++];
    memset(e, 0, sizeof *e);
    e->module = m;
    e->call_index = call_index;
    return e;
}

static nsc_status scan_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                            nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)replace;
    nsci_graph *g = ctx;
    nsci_scan_entry *e = entry_for(g, m, call_index);
    if (!e) {
        return nsc_last_status();
    }
    if (kind == NSC_HOOK_INPUT) {
        e->seq_in = ++g->scan_seq;
        e->n_in = n;
        for (int i = 0; i < n && i < NSCI_MAX_MODULE_INPUTS; i++) {
            e->in_present[i] = values[i] != NULL;
            if (values[i]) {
                meta_of(&e->in[i], values[i]);
            }
        }
    } else {
        e->seq_out = ++g->scan_seq;
        e->has_out = true;
        meta_of(&e->out, values[0]);
    }
    return NSC_OK;
}

static nsc_status hook_all(nsci_graph *g, nsc_module *root, int64_t *handles, int64_t n_mod) {
    for (int64_t i = 0; i < n_mod; i++) {
        nsc_module *m = nsc_module_at(root, i);
        handles[2 * i] = nsc_module_add_hook(m, NSC_HOOK_INPUT, scan_hook, g, NULL);
        handles[2 * i + 1] = nsc_module_add_hook(m, NSC_HOOK_OUTPUT, scan_hook, g, NULL);
        if (handles[2 * i] < 0 || handles[2 * i + 1] < 0) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static nsc_status scan_model(nsci_graph *g);

nsc_status nsci_scan(nsci_graph *g) {
    // The model's own code may record source positions: keep the caller's.
    const char *file = nsci_source_file();
    int line = nsci_source_line();
    nsc_status status = scan_model(g);
    nsc_source_mark(file, line);
    return status;
}

static nsc_status scan_model(nsci_graph *g) {
    nsc_tensor *in[NSCI_MAX_MODULE_INPUTS] = { 0 };
    int n_in = 0;
    if (nsci_batch_inputs(g, NSC_META, &n_in, in) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_module *root = g->model;
    int64_t n_mod = nsc_module_n_modules(root);
    int64_t *handles = nsci_calloc((size_t)n_mod * 2, sizeof *handles);
    int64_t *calls = handles ? nsci_module_calls_save(root) : NULL;
    nsc_kv_cache *user = nsci_gpt2_attached_cache(root), *shadow = NULL;
    nsc_status status = calls ? NSC_OK : nsc_last_status();
    if (status == NSC_OK && user && g->generate) {
        status = nsci_fail(NSC_ERR_STATE, "trace (generate): the model has a cache attached "
                                          "(nsc_gpt2_set_cache): detach it first");
    } else if (status == NSC_OK && user) {
        // The scan sees the user's past length, on META buffers of its own.
        shadow = nsci_kv_cache_shadow(user);
        status = shadow ? NSC_OK : nsc_last_status();
        if (shadow) {
            nsci_gpt2_swap_cache(root, shadow);
        }
    }
    status = status == NSC_OK ? hook_all(g, root, handles, n_mod) : status;
    if (status == NSC_OK) {
        bool was = nsc_set_grad_enabled(false);
        nsc_module_reset_calls(root);
        nsc_tensor *out = NULL;
        if (g->generate) {
            status = nsci_scan_generation(g, n_in, in);
        } else {
            out = nsc_module_call(root, n_in, in);
            status = out ? NSC_OK : nsc_last_status();
        }
        nsc_set_grad_enabled(was);
        if (status != NSC_OK) {
            status = status == NSC_OK ? NSC_ERR_STATE : status;
            nsci_error_prefix("trace: the model's forward on META inputs (the shape scan) "
                              "failed");
        }
        nsc_free(out);
    }
    for (int64_t i = 0; handles && i < 2 * n_mod; i++) {
        if (handles[i] > 0) {
            nsc_module_remove_hook(nsc_module_at(root, i / 2), handles[i]);
        }
    }
    if (shadow) {
        nsci_gpt2_swap_cache(root, user);
        nsc_kv_cache_free(shadow);
    }
    nsci_module_calls_restore(root, calls); // a check is not a run
    nsci_free(handles);
    for (int i = 0; i < n_in; i++) {
        nsc_free(in[i]);
    }
    if (status != NSC_OK) {
        nsci_free(g->scan);
        g->scan = NULL;
        g->n_scan = g->cap_scan = 0;
    }
    return status;
}

const nsci_scan_entry *nsci_scan_find(const nsci_graph *g, const nsc_module *m,
                                      int64_t call_index) {
    for (int i = 0; i < g->n_scan; i++) {
        if (g->scan[i].module == m && g->scan[i].call_index == call_index) {
            return &g->scan[i];
        }
    }
    return NULL;
}
