// Module calls and hooks (the one entry point every module call takes, where
// the intervention graph attaches), call counters, batch dims, the graph
// slot; and iteration over the tree's parameters and buffers.
#include <string.h>

#include "nn/nn_impl.h"

// --- parameters and buffers of a tree ---

// Paths are built in fixed buffers, not allocated: an exhausted allocator
// must not turn a path into "" (optimizers and checkpoints name tensors by
// it). One that does not fit is an error (cut: it was cut, silently).
typedef struct tensor_walk {
    bool params, cut; // cut: the found tensor's path does not fit
    int64_t target, seen;
    nsc_tensor *found;
    char path[NSCI_TENSOR_PATH_BYTES];
} tensor_walk;

// prefix: m's path, or its first bytes when cut.
static void walk_tensors(nsc_module *m, const char *prefix, bool cut, tensor_walk *w) {
    nsci_named_tensor *items = w->params ? m->params : m->buffers;
    int n = w->params ? m->n_params : m->n_buffers;
    for (int i = 0; i < n && !w->found; i++) {
        if (w->seen++ == w->target) {
            w->found = items[i].tensor;
            int len = snprintf(w->path, sizeof w->path, "%s%s%s", prefix, *prefix ? "." : "",
                               items[i].name);
            w->cut = cut || len >= (int)sizeof w->path;
        }
    }
    for (int i = 0; i < m->n_children && !w->found; i++) {
        char child[NSCI_TENSOR_PATH_BYTES];
        int len = snprintf(child, sizeof child, "%s%s%s", prefix, *prefix ? "." : "",
                           m->children[i]->name);
        walk_tensors(m->children[i], child, cut || len >= (int)sizeof child, w);
    }
}

// A NULL module (a failed call's result) gives NULL, 0, -1 or an error
// status and records NSC_ERR_ARG, unless an earlier error is recorded.
static bool is_null(const nsc_module *m, const char *fn) {
    if (m) {
        return false;
    }
    if (nsc_last_status() == NSC_OK) {
        nsci_fail(NSC_ERR_ARG, "%s: module is NULL", fn);
    }
    return true;
}

// m named for a message: its path, or its type at the root.
static const char *who(const nsc_module *m) {
    const char *path = nsc_module_path(m);
    return *path ? path : nsc_module_type(m);
}

static int64_t count_tensors(const nsc_module *m, bool params) {
    if (is_null(m, params ? "module_n_params" : "module_n_buffers")) {
        return 0;
    }
    int64_t n = params ? m->n_params : m->n_buffers;
    for (int i = 0; i < m->n_children; i++) {
        n += count_tensors(m->children[i], params);
    }
    return n;
}

// The path is kept per thread until the next call (a fixed buffer, so the
// allocator's live counts do not include it).
static nsc_tensor *tensor_at(nsc_module *root, int64_t index, const char **path, bool params) {
    static _Thread_local char t_path[NSCI_TENSOR_PATH_BYTES];
    if (is_null(root, params ? "module_param_at" : "module_buffer_at")) {
        return NULL;
    }
    tensor_walk w = { .params = params, .target = index };
    walk_tensors(root, "", false, &w);
    const char *fn = params ? "module_param_at" : "module_buffer_at";
    if (!w.found) {
        int64_t n = count_tensors(root, params);
        return nsci_fail_null(NSC_ERR_ARG, "%s: index %lld: expected 0..%lld (%lld %s)", fn,
                              (long long)index, (long long)n - 1, (long long)n,
                              params ? "parameters" : "buffers");
    }
    if (w.cut && path) { // the tensor itself is fine: only its name cannot be given
        return nsci_fail_null(NSC_ERR_ARG,
                              "%s: index %lld: path \"%.64s...\": longer than %d "
                              "bytes, the limit of a tensor path",
                              fn, (long long)index, w.path, NSCI_TENSOR_PATH_BYTES - 1);
    }
    memcpy(t_path, w.path, sizeof t_path);
    if (path) {
        *path = t_path;
    }
    return w.found;
}

int64_t nsc_module_n_params(nsc_module *root) {
    return count_tensors(root, true);
}

nsc_tensor *nsc_module_param_at(nsc_module *root, int64_t index, const char **path) {
    return tensor_at(root, index, path, true);
}

int64_t nsc_module_n_buffers(nsc_module *root) {
    return count_tensors(root, false);
}

nsc_tensor *nsc_module_buffer_at(nsc_module *root, int64_t index, const char **path) {
    return tensor_at(root, index, path, false);
}

nsc_tensor *nsc_module_find_tensor(nsc_module *root, const char *path) {
    if (is_null(root, "module_find_tensor")) {
        return NULL;
    }
    if (!path) {
        return nsci_fail_null(NSC_ERR_ARG, "module_find_tensor: path is NULL");
    }
    if (strlen(path) >= NSCI_TENSOR_PATH_BYTES) { // (the prefix below then fits)
        return nsci_fail_null(NSC_ERR_ARG,
                              "module_find_tensor: path \"%.64s...\" of %zu bytes: expected "
                              "at most %d, the limit of a tensor path",
                              path, strlen(path), NSCI_TENSOR_PATH_BYTES - 1);
    }
    const char *dot = strrchr(path, '.');
    nsc_module *owner = root;
    const char *name = path;
    if (dot) {
        char prefix[NSCI_TENSOR_PATH_BYTES];
        size_t len = (size_t)(dot - path);
        memcpy(prefix, path, len);
        prefix[len] = '\0';
        owner = nsc_module_find(root, prefix);
        name = dot + 1;
    }
    if (!owner) {
        return NULL;
    }
    nsc_tensor *t = nsc_module_param(owner, name);
    t = t ? t : nsc_module_buffer(owner, name);
    if (!t) {
        return nsci_fail_null(NSC_ERR_ARG, "tensor path \"%s\": no parameter or buffer \"%s\"",
                              path, name);
    }
    return t;
}

int64_t nsc_module_param_count(nsc_module *root) {
    if (is_null(root, "module_param_count")) {
        return 0;
    }
    int64_t n = nsc_module_n_params(root), total = 0;
    for (int64_t i = 0; i < n; i++) {
        nsc_tensor *t = nsc_module_param_at(root, i, NULL);
        bool seen = false;
        for (int64_t k = 0; k < i && !seen; k++) {
            nsc_tensor *other = nsc_module_param_at(root, k, NULL);
            seen = other == t || nsc_tensor_shares_storage(other, t); // tied weights, META too
        }
        total += seen ? 0 : nsc_tensor_numel(t);
    }
    return total;
}

nsc_status nsc_module_requires_grad_(nsc_module *m, bool requires_grad) {
    if (is_null(m, "module_requires_grad_")) {
        return nsc_last_status();
    }
    for (int i = 0; i < m->n_params; i++) {
        if (nsc_requires_grad_(m->params[i].tensor, requires_grad) != NSC_OK) {
            nsci_error_context("parameter %s.%s", nsc_module_path(m), m->params[i].name);
            return nsc_last_status();
        }
    }
    for (int i = 0; i < m->n_children; i++) {
        if (nsc_module_requires_grad_(m->children[i], requires_grad) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

nsc_status nsc_module_zero_grad(nsc_module *m, bool set_to_none) {
    if (is_null(m, "module_zero_grad")) {
        return nsc_last_status();
    }
    for (int i = 0; i < m->n_params; i++) {
        nsc_tensor *p = m->params[i].tensor, *g = nsc_tensor_get_grad(p);
        nsc_status status = !g ? NSC_OK : set_to_none ? nsc_tensor_set_grad(p, NULL) : nsc_zero_(g);
        if (status != NSC_OK) {
            nsci_error_context("parameter %s.%s", nsc_module_path(m), m->params[i].name);
            return status;
        }
    }
    for (int i = 0; i < m->n_children; i++) {
        if (nsc_module_zero_grad(m->children[i], set_to_none) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

// --- hooks ---

static atomic_llong g_next_hook = 1; // atomic: handles are unique process-wide

int64_t nsc_module_add_hook(nsc_module *m, nsc_hook_kind kind, nsc_module_hook_fn fn, void *ctx,
                            void (*ctx_free)(void *ctx)) {
    if (!m || !fn || (kind != NSC_HOOK_INPUT && kind != NSC_HOOK_OUTPUT)) {
        nsci_fail(NSC_ERR_ARG, "module add_hook: module, function or kind missing");
        return -1;
    }
    if (m->n_hooks == m->cap_hooks) {
        int cap = m->cap_hooks ? m->cap_hooks * 2 : 4;
        nsci_module_hook *grown = nsci_realloc(m->hooks, (size_t)cap * sizeof *grown);
        if (!grown) {
            return -1;
        }
        m->hooks = grown;
        m->cap_hooks = cap;
    }
    int64_t handle = atomic_fetch_add(&g_next_hook, 1);
    m->hooks[m->n_hooks++] = (nsci_module_hook){ handle, kind, fn, ctx, ctx_free, false };
    return handle;
}

// A module whose last hook went holds no hook memory (traces hook and unhook
// every module for their shape scan; that must leave nothing behind).
static void release_empty_hooks(nsc_module *m) {
    if (m->n_hooks == 0 && m->hooks) {
        nsci_free(m->hooks);
        m->hooks = NULL;
        m->cap_hooks = 0;
    }
}

nsc_status nsc_module_remove_hook(nsc_module *m, int64_t handle) {
    for (int i = 0; m && i < m->n_hooks; i++) {
        nsci_module_hook *h = &m->hooks[i];
        if (h->handle != handle || h->removed) {
            continue;
        }
        h->removed = true;
        if (h->ctx_free) {
            h->ctx_free(h->ctx);
        }
        if (m->running_hooks == 0) { // compact when no hook loop is walking the array
            memmove(h, h + 1, (size_t)(m->n_hooks - i - 1) * sizeof *h);
            m->n_hooks--;
            release_empty_hooks(m);
        }
        return NSC_OK;
    }
    return nsci_fail(NSC_ERR_ARG, "module remove_hook: no hook %lld on %s", (long long)handle,
                     m ? who(m) : "(null)");
}

static void compact_hooks(nsc_module *m) {
    int kept = 0;
    for (int i = 0; i < m->n_hooks; i++) {
        if (!m->hooks[i].removed) {
            m->hooks[kept++] = m->hooks[i];
        }
    }
    m->n_hooks = kept;
    release_empty_hooks(m);
}

// Runs m's hooks of kind over values[0..n), replacing values in place (the
// array holds references owned by the caller).
static nsc_status run_hooks(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                            nsc_tensor **values) {
    nsc_status status = NSC_OK;
    m->running_hooks++;
    // Hooks added by a hook wait for the next call, as torch iterates over a
    // snapshot of its hook dict.
    int n_hooks = m->n_hooks;
    for (int i = 0; i < n_hooks && status == NSC_OK; i++) {
        if (m->hooks[i].removed || m->hooks[i].kind != kind) {
            continue;
        }
        nsc_tensor *replace[NSCI_MAX_MODULE_INPUTS] = { 0 };
        m->hook_dispatches++;
        nsci_module_hook h = m->hooks[i]; // the array may grow inside the hook
        status = h.fn(m, kind, call_index, n, values, replace, h.ctx);
        for (int k = 0; k < n; k++) {
            if (status == NSC_OK && replace[k]) {
                nsc_free(values[k]);
                values[k] = replace[k];
            } else {
                nsc_free(replace[k]);
            }
        }
    }
    if (--m->running_hooks == 0) {
        compact_hooks(m);
    }
    if (status == NSC_STOPPED && nsc_last_status() != NSC_STOPPED) {
        nsci_fail(NSC_STOPPED, "forward stopped by a hook on %s", who(m));
    }
    if (status != NSC_OK && status != NSC_STOPPED && nsc_last_status() == NSC_OK) {
        nsci_fail(status, "%s hook on %s failed", kind == NSC_HOOK_INPUT ? "input" : "output",
                  who(m));
    }
    return status;
}

static bool has_hooks(const nsc_module *m, nsc_hook_kind kind) {
    for (int i = 0; i < m->n_hooks; i++) {
        if (!m->hooks[i].removed && m->hooks[i].kind == kind) {
            return true;
        }
    }
    return false;
}

// --- calls ---

nsc_tensor *(*nsci_module_proxy_call)(nsc_module *m, int n_in, nsc_tensor *const *in,
                                      bool fire_hooks);

static _Thread_local nsc_module *t_skip_module;
static _Thread_local nsc_tensor *t_skip_output;

void nsci_module_skip_next(nsc_module *m, nsc_tensor *output) {
    nsc_free(t_skip_output);
    t_skip_module = m;
    t_skip_output = output;
}

static bool any_proxy(int n_in, nsc_tensor *const *in) {
    for (int i = 0; i < n_in; i++) {
        if (in[i] && nsc_tensor_is_proxy(in[i])) {
            return true;
        }
    }
    return false;
}

// NSC_OK when n_in and in can be m's inputs, else the recorded error. (Paths
// are built only for a message: a path is cached, an allocation, on first use.)
static nsc_status check_inputs(const char *op, const nsc_module *m, int n_in,
                               nsc_tensor *const *in) {
    if (n_in < 0 || n_in > NSCI_MAX_MODULE_INPUTS) {
        return nsci_fail(NSC_ERR_ARG, "module %s %s: %d inputs (at most %d)", op, who(m), n_in,
                         NSCI_MAX_MODULE_INPUTS);
    }
    if (n_in > 0 && !in) {
        return nsci_fail(NSC_ERR_ARG,
                         "module %s %s: %d inputs and a NULL input array: expected an array of "
                         "%d tensors (entries may be NULL)",
                         op, who(m), n_in, n_in);
    }
    return NSC_OK;
}

// NSC_OK when m can run a forward on n_in inputs, else the recorded error.
static nsc_status check_forward(const nsc_module *m, int n_in, nsc_tensor *const *in) {
    if (!m->forward) {
        return nsci_fail(NSC_ERR_STATE, "module %s has no forward", who(m));
    }
    return check_inputs("forward", m, n_in, in);
}

// The forward itself (or, on proxies, its node): call_done runs after it
// only once the call's output hooks are done (nsc_module_call) or at once
// (nsc_module_forward).
static nsc_tensor *run_forward(nsc_module *m, int n_in, nsc_tensor *const *in) {
    if (check_forward(m, n_in, in) != NSC_OK) {
        return NULL;
    }
    nsc_tensor *out = nsci_module_proxy_call && any_proxy(n_in, in)
                          ? nsci_module_proxy_call(m, n_in, in, false)
                          : m->forward(m, n_in, in, m->state);
    if (!out && nsc_last_status() == NSC_OK) { // else a caller would take NULL for success
        nsci_fail(NSC_ERR_STATE, "module %s: its forward returned NULL without recording an error",
                  who(m));
    }
    return out;
}

// out, after telling m's call_done whether the call succeeded.
static nsc_tensor *done(nsc_module *m, nsc_tensor *out) {
    if (m->call_done) {
        m->call_done(m, out != NULL);
    }
    return out;
}

nsc_tensor *nsc_module_forward(nsc_module *m, int n_in, nsc_tensor *const *in) {
    if (is_null(m, "module_forward")) {
        return NULL;
    }
    return done(m, run_forward(m, n_in, in));
}

// A call of m with hooks: input hooks, forward (or the output a hook asked
// to skip to), output hooks, then the NaN/Inf check, which looks at the
// inputs the forward received (an input hook may have replaced them).
static nsc_tensor *call_with_hooks(nsc_module *m, int n_in, nsc_tensor *const *in,
                                   int64_t call_index) {
    nsc_tensor *held[NSCI_MAX_MODULE_INPUTS] = { 0 };
    for (int i = 0; i < n_in; i++) {
        held[i] = nsc_retain(in[i]);
    }
    nsc_tensor *out = NULL;
    if (!has_hooks(m, NSC_HOOK_INPUT)) {
        out = run_forward(m, n_in, held);
    } else if (run_hooks(m, NSC_HOOK_INPUT, call_index, n_in, held) == NSC_OK) {
        if (t_skip_module == m && t_skip_output) { // a hook asked to skip the forward
            out = t_skip_output;
            t_skip_output = NULL;
            t_skip_module = NULL;
        } else {
            out = run_forward(m, n_in, held);
        }
    }
    if (out && has_hooks(m, NSC_HOOK_OUTPUT) &&
        run_hooks(m, NSC_HOOK_OUTPUT, call_index, 1, &out) != NSC_OK) {
        nsc_free(out);
        out = NULL;
    }
    out = nsci_check_finite_output(m, call_index, n_in, held, out);
    for (int i = 0; i < n_in; i++) {
        nsc_free(held[i]);
    }
    return out;
}

nsc_tensor *nsc_module_call(nsc_module *m, int n_in, nsc_tensor *const *in) {
    if (!m) {
        return nsci_fail_null(NSC_ERR_ARG, "module call: module is NULL");
    }
    if (check_inputs("call", m, n_in, in) != NSC_OK) {
        return NULL;
    }
    if (nsci_module_proxy_call && any_proxy(n_in, in)) {
        return nsci_module_proxy_call(m, n_in, in, true);
    }
    int64_t call_index = m->call_count++;
    if (m->n_hooks == 0) { // no hook: nothing but the count (and the optional check)
        return done(m, nsci_check_finite_output(m, call_index, n_in, in, run_forward(m, n_in, in)));
    }
    return done(m, call_with_hooks(m, n_in, in, call_index));
}

int64_t nsc_module_call_count(const nsc_module *m) {
    return is_null(m, "module_call_count") ? -1 : m->call_count;
}

void nsc_module_reset_calls(nsc_module *m) {
    if (is_null(m, "module_reset_calls")) {
        return;
    }
    m->call_count = 0;
    for (int i = 0; i < m->n_children; i++) {
        nsc_module_reset_calls(m->children[i]);
    }
}

int64_t nsc_module_hook_dispatches(const nsc_module *m) {
    return is_null(m, "module_hook_dispatches") ? -1 : m->hook_dispatches;
}

// The value a batch dim belongs to: input 0..7 or output 0 (op names the call).
static nsc_status check_batch_value(const char *op, nsc_hook_kind kind, int index) {
    if (kind != NSC_HOOK_INPUT && kind != NSC_HOOK_OUTPUT) {
        return nsci_fail(NSC_ERR_ARG, "%s: kind %d: expected NSC_HOOK_INPUT or NSC_HOOK_OUTPUT", op,
                         (int)kind);
    }
    if (kind == NSC_HOOK_INPUT && (index < 0 || index >= NSCI_MAX_MODULE_INPUTS)) {
        return nsci_fail(NSC_ERR_ARG, "%s: input %d: expected 0..%d", op, index,
                         NSCI_MAX_MODULE_INPUTS - 1);
    }
    if (kind == NSC_HOOK_OUTPUT && index != 0) {
        return nsci_fail(NSC_ERR_ARG, "%s: output %d: expected 0 (one output)", op, index);
    }
    return NSC_OK;
}

nsc_status nsc_module_set_batch_dim(nsc_module *m, nsc_hook_kind kind, int index, int dim) {
    if (is_null(m, "module_set_batch_dim")) {
        return nsc_last_status();
    }
    if (check_batch_value("module_set_batch_dim", kind, index) != NSC_OK) {
        return NSC_ERR_ARG;
    }
    if (dim < -1 || dim >= NSC_MAX_DIMS) {
        return nsci_fail(NSC_ERR_ARG, "module_set_batch_dim: dim %d: expected -1 (none) or 0..%d",
                         dim, NSC_MAX_DIMS - 1);
    }
    if (kind == NSC_HOOK_INPUT) {
        m->batch_dim_in[index] = dim;
    } else {
        m->batch_dim_out = dim;
    }
    return NSC_OK;
}

int nsc_module_batch_dim(const nsc_module *m, nsc_hook_kind kind, int index) {
    if (is_null(m, "module_batch_dim") ||
        check_batch_value("module_batch_dim", kind, index) != NSC_OK) {
        return -1;
    }
    return kind == NSC_HOOK_OUTPUT ? m->batch_dim_out : m->batch_dim_in[index];
}

void nsc_module_set_slot(nsc_module *m, void *slot, void (*slot_free)(void *slot)) {
    if (is_null(m, "module_set_slot")) {
        return;
    }
    if (m->slot_free && m->slot != slot) {
        m->slot_free(m->slot);
    }
    m->slot = slot;
    m->slot_free = slot_free;
}

void *nsc_module_get_slot(const nsc_module *m) {
    return is_null(m, "module_get_slot") ? NULL : m->slot;
}
